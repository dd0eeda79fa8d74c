"""The signaling server (a real ``raftchat serve`` process, holding the witness) is
SIGKILLed and SIGSTOPped while two members chat, and a newcomer arrives while the
restarted server has not heard from them yet: nothing acknowledged is lost, nobody is
removed, and everyone ends up in one channel with one history.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.nodes import Cluster, NodeProcess
from support.ports import free_port

from raftchat.net.signaling.client import server_is_up

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow, pytest.mark.usefixtures("node_webrtc")]

CHANNEL = "outage"
DOWN_S = 5.0
"""How long the server stays dead, and then frozen, while the members chat."""
SEND_EVERY_S = 0.2


class ServerProcess:
    """``raftchat serve`` on a fixed loopback port, with its witness's data dir."""

    def __init__(self, root: Path, port: int) -> None:
        self.port = port
        self.data_dir = root / "server"
        self.log = root / "server.stderr"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "raftchat", "serve", "--port", str(self.port)),
                *("--data-dir", str(self.data_dir)),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while not await server_is_up(self.url, timeout=0.5):
            if time.monotonic() > deadline or self.process.returncode is not None:
                raise AssertionError(f"the server did not come up; see {self.log}")
            await asyncio.sleep(0.05)  # polling a port that is not open yet

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        await self.process.wait()

    async def close(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.kill()
            await process.wait()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    process = ServerProcess(tmp_path, free_port())
    await process.start()
    try:
        yield process
    finally:
        await process.close()


@pytest.fixture
async def cluster(
    tmp_path: Path, server: ServerProcess, request: pytest.FixtureRequest
) -> AsyncIterator[Cluster]:
    failed_before = request.session.testsfailed
    nodes = Cluster(tmp_path, server.url, CHANNEL)
    try:
        yield nodes
    finally:
        if request.session.testsfailed > failed_before:
            print(nodes.report())
            print(server.log.read_text(errors="replace")[-4000:])
        await nodes.close()


class Traffic:
    """Each member sends a numbered line every ``SEND_EVERY_S`` until stopped."""

    def __init__(self, nodes: list[NodeProcess]) -> None:
        self.nodes = nodes
        self.sent: dict[str, list[str]] = {node.name: [] for node in nodes}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        count = 0
        while True:
            for node in self.nodes:
                if node.running:
                    text = f"{node.name}-{count}"
                    node.send(text)
                    self.sent[node.name].append(text)
            count += 1
            await asyncio.sleep(SEND_EVERY_S)  # the pace of the chat, not a wait

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def log_of(node: NodeProcess) -> list[tuple[str, str]]:
    """The channel's history as ``node`` has it since its last reset: (id, text)."""
    output = node.output
    resets = [i for i, event in enumerate(output) if event["event"] == "reset"]
    start = resets[-1] + 1 if resets else 0
    return [(e["id"], e["text"]) for e in output[start:] if e["event"] == "message"]


def everything_acknowledged(node: NodeProcess, sent: list[str]) -> bool:
    return len(node.acks()) >= len(sent)


async def test_server_killed_and_frozen_under_traffic_with_a_newcomer_in_between(
    cluster: Cluster, server: ServerProcess
) -> None:
    alice, bob = await cluster.grow(2)
    await cluster.wait_all(lambda n: n.status.get("witness"), "the witness voting")
    members = {alice.node_id, bob.node_id}
    traffic = Traffic([alice, bob])
    traffic.start()
    await alice.wait_for(lambda n: len(n.acks()) >= 5, 30, "traffic flowing")

    # Dead: the members go on committing without the server (and its witness).
    await server.kill()
    acked = len(alice.acks())
    await alice.wait_for(lambda n: len(n.acks()) >= acked + 10, 30, "commits while it is dead")

    # Back, but the members have not heard it yet (held still), and a newcomer comes
    # first: it finds nobody and founds a cluster of its own.
    for node in (alice, bob):
        node.process.send_signal(signal.SIGSTOP)
    await server.start()
    cyd = await cluster.add("cyd")
    await cyd.wait_for(NodeProcess.is_leader, 30, "cyd founding a cluster of its own")
    cyd.send("cyd alone")
    await cyd.wait_for(lambda n: len(n.acks()) == 1, 30, "cyd's message in its own cluster")
    for node in (alice, bob):
        node.process.send_signal(signal.SIGCONT)

    # cyd's cluster is the younger: it merges into the members'.
    await cyd.wait_for(
        lambda n: n.status.get("cluster") == alice.status.get("cluster"), 60, "cyd merged"
    )
    await alice.wait_for(lambda n: "cyd alone" in n.texts(), 60, "cyd's message merged")

    # Frozen: sockets stay open, nothing answers.
    server.signal(signal.SIGSTOP)
    acked = len(alice.acks())
    await alice.wait_for(lambda n: len(n.acks()) >= acked + 10, 30, "commits while frozen")
    await asyncio.sleep(DOWN_S)  # the length of the outage under test
    server.signal(signal.SIGCONT)

    await traffic.stop()
    for node in (alice, bob):
        sent = traffic.sent[node.name]
        await node.wait_for(
            lambda n, sent=sent: everything_acknowledged(n, sent), 60, "every line acknowledged"
        )
    everyone = [alice, bob, cyd]
    expected = sum(len(lines) for lines in traffic.sent.values()) + 1
    await cluster.wait_all(lambda n: len(log_of(n)) == expected, "one whole history", everyone)
    logs = [log_of(node) for node in everyone]
    assert logs[0] == logs[1] == logs[2], "the members' histories differ"
    ids = [message_id for message_id, _ in logs[0]]
    assert len(ids) == len(set(ids)), "a message is there twice"
    texts = {text for _, text in logs[0]}
    for lines in traffic.sent.values():
        assert set(lines) <= texts, "an acknowledged message is missing"
    assert members <= set(alice.status["voters"]), "a member was removed"
    await alice.wait_for(lambda n: cyd.node_id in n.voters(), 30, "cyd a voter of the channel")
