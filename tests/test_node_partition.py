"""A silent partition: traffic to one member is dropped while the signaling server still
lists it. The leader removes it after ``member_timeout`` and adds it back once it is heard
from again. In-process nodes, so the test can block traffic with ``node.mesh.block``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest

from raftchat.config import Settings
from raftchat.net.signaling_server import RunningServer, start_server
from raftchat.node import Node, RuntimeTuning
from raftchat.storage import Storage

pytestmark = pytest.mark.timeout(90)

T = TypeVar("T")
CHANNEL = "partition"
SETTINGS = Settings(
    heartbeat_ms=50,
    election_timeout_min_ms=300,
    election_timeout_max_ms=600,
    member_timeout_s=2.0,
    adaptive_election_timeout=False,
)
TUNING = RuntimeTuning(presence_grace_s=1.0, leave_timeout_s=2.0)


async def eventually(condition: Callable[[], T], what: str, timeout: float = 20.0) -> T:
    """Poll ``condition`` until it holds (a deadline, not a sleep used as synchronisation)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := condition()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        await asyncio.sleep(0.05)
    return result


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await start_server("127.0.0.1", 0)
    yield running
    await running.close()


@pytest.fixture
async def nodes(tmp_path: Path, server: RunningServer) -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    try:
        for name in ("a", "b", "c"):
            storage = Storage.open_channel(CHANNEL, tmp_path / name)
            node = Node(storage, SETTINGS, server_url=server.url, nick=name, tuning=TUNING)
            started.append(node)
            await node.start()
            await eventually(lambda n=node: n.node_id in n.status().voters, f"{name} a voter")
        yield started
    finally:
        await asyncio.gather(*(node.stop() for node in started))


async def present(server: RunningServer) -> set[str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/channels/{CHANNEL}/peers") as response,
    ):
        return set(await response.json())


async def test_silent_member_is_removed_after_member_timeout_and_readded_when_heard(
    nodes: list[Node], server: RunningServer
) -> None:
    leader = await eventually(
        lambda: next((n for n in nodes if n.status().state == "leader"), None), "a leader"
    )
    victim = next(n for n in nodes if n is not leader)
    others = [n for n in nodes if n is not victim]
    for node in others:
        assert node.mesh is not None and victim.mesh is not None
        node.mesh.block(victim.node_id)
        victim.mesh.block(node.node_id)

    await eventually(
        lambda: victim.node_id not in leader.core.configuration.members, "the victim removed"
    )
    assert victim.node_id in await present(server), "presence never said it left"
    message_id = leader.send_chat("without the victim")
    await eventually(
        lambda: all("without the victim" in [m.text for m in n.chat.history()] for n in others),
        "the remaining two commit",
    )
    assert message_id not in leader._pending

    for node in others:
        assert node.mesh is not None and victim.mesh is not None
        node.mesh.unblock(victim.node_id)
        victim.mesh.unblock(node.node_id)
    await eventually(
        lambda: victim.node_id in leader.core.configuration.members, "the victim added again"
    )
    await eventually(
        lambda: "without the victim" in [m.text for m in victim.chat.history()],
        "the victim catching up",
    )
