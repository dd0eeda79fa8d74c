"""End to end: real ``raftchat join --headless`` processes over aiortc on loopback.

Each test starts its own signaling server in the test's event loop and its own
node processes with temporary data dirs and short timers (see support/nodes.py).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.nodes import Cluster, NodeProcess, write_config

from raftchat.net.signaling.server import RunningServer, start_server
from raftchat.storage import Storage

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("node_webrtc")]


class Signaling:
    """The in-test signaling server, which a test may stop and restart on the same port."""

    def __init__(self) -> None:
        self.server: RunningServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await start_server("127.0.0.1", self.port)
        self.port = self.server.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def peers(self, channel: str) -> set[str]:
        """Who the server says is present (asked in process: the HTTP peer list is only
        for the channel's peers)."""
        assert self.server is not None
        return self.server.peers(channel)


@pytest.fixture
async def signaling() -> AsyncIterator[Signaling]:
    holder = Signaling()
    await holder.start()
    try:
        yield holder
    finally:
        await holder.stop()


@pytest.fixture
async def cluster(
    tmp_path: Path, signaling: Signaling, request: pytest.FixtureRequest
) -> AsyncIterator[Cluster]:
    failed_before = request.session.testsfailed
    nodes = Cluster(tmp_path, signaling.url)
    try:
        yield nodes
    finally:
        if request.session.testsfailed > failed_before:
            print(nodes.report())
        await nodes.close()
        for node in nodes.nodes:
            assert not node.bad_lines, f"{node.name} printed non-JSON lines: {node.bad_lines}"


def log_of(node: NodeProcess) -> list[tuple[int, str, str]]:
    return [(m["index"], m["id"], m["text"]) for m in node.messages()]


def assert_same_log(nodes: list[NodeProcess]) -> list[tuple[int, str, str]]:
    logs = [log_of(node) for node in nodes]
    for node, log in zip(nodes, logs, strict=True):
        assert log == logs[0], f"{node.name} disagrees with {nodes[0].name}"
        assert [index for index, _, _ in log] == sorted({index for index, _, _ in log})
    return logs[0]


def assert_acks_match(acker: NodeProcess, log: list[tuple[int, str, str]]) -> None:
    """Every message ``acker`` was told is committed is in ``log`` at the index it was told,
    exactly once."""
    own_texts = {m["index"]: m["text"] for m in acker.messages()}
    by_index = {index: text for index, _, text in log}
    texts = [text for _, _, text in log]
    for message_id, index in acker.acks().items():
        assert index in by_index, f"acknowledged {message_id} at {index} is missing"
        assert by_index[index] == own_texts[index]
        assert texts.count(by_index[index]) == 1, f"{by_index[index]!r} is duplicated"


def never_campaigned_before_added(node: NodeProcess) -> bool:
    for status in node.statuses():
        if node.node_id in status["voters"]:
            return True
        if status["state"] in ("candidate", "leader"):
            return False
    return True


@pytest.mark.parametrize("size", [3, pytest.param(5, marks=pytest.mark.slow)])
async def test_all_nodes_agree_on_one_order_while_all_send_at_once(
    cluster: Cluster, size: int, node_webrtc: str
) -> None:
    nodes = await cluster.grow(size)
    assert {node.status["webrtc"] for node in nodes} == {node_webrtc}, "the engine asked for"
    per_node = 15
    for node in nodes:
        for i in range(per_node):
            node.send(f"{node.name}-{i}")
    total = size * per_node
    await cluster.wait_all(lambda n: len(n.messages()) >= total, f"{total} messages")
    await cluster.wait_all(lambda n: len(n.acks()) == per_node, "every own message acknowledged")
    log = assert_same_log(nodes)
    assert len(log) == total
    for node in nodes:
        assert_acks_match(node, log)
        own = [text for _, _, text in log if text.startswith(f"{node.name}-")]
        assert own == [f"{node.name}-{i}" for i in range(per_node)], "per-sender order"
        assert never_campaigned_before_added(node)


async def test_leader_killed_new_leader_loses_no_acknowledged_message(cluster: Cluster) -> None:
    nodes = await cluster.grow(3)
    old_leader = await cluster.leader()
    for node in nodes:
        for i in range(20):
            node.send(f"{node.name}-{i}")
    await old_leader.wait_for(lambda n: len(n.acks()) >= 5, what="some acknowledged messages")
    old_leader.kill()
    survivors = [node for node in nodes if node is not old_leader]
    new_leader = await cluster.leader(survivors)
    assert new_leader.node_id != old_leader.node_id
    await cluster.wait_all(lambda n: len(n.acks()) == 20, "every survivor message acknowledged")
    for node in survivors:
        node.send(f"{node.name}-after")
    await cluster.wait_all(
        lambda n: {f"{s.name}-after" for s in survivors} <= set(n.texts()), "messages after"
    )
    log = assert_same_log(survivors)
    await old_leader.wait_exit()
    for node in nodes:
        assert_acks_match(node, log)


async def test_killed_node_restarts_from_its_data_dir_and_catches_up(cluster: Cluster) -> None:
    nodes = await cluster.grow(3)
    leader = await cluster.leader()
    victim = next(node for node in nodes if node is not leader)
    victim_id = victim.node_id
    victim.send("before the crash")
    await cluster.wait_all(lambda n: "before the crash" in n.texts(), "first message")
    victim.kill()
    await victim.wait_exit()
    for i in range(10):
        leader.send(f"while down {i}")
    await leader.wait_for(lambda n: len(n.acks()) == 10, what="messages while the victim is down")
    await victim.restart()
    await victim.wait_for(lambda n: n.node_id == victim_id, what="the same node id")
    await victim.wait_for(lambda n: "while down 9" in n.texts(), what="catching up")
    await victim.wait_for(NodeProcess.is_voter, what="being a voter again")
    victim.send("after the restart")
    await victim.wait_for(lambda n: len(n.acks()) == 1, what="its new message acknowledged")
    await cluster.wait_all(lambda n: "after the restart" in n.texts(), "the new message")
    assert victim.node_id == victim_id
    live = [node for node in nodes if node.running]
    tail = [log_of(node)[-11:] for node in live]
    assert all(t == tail[0] for t in tail)


async def test_paused_follower_catches_up_from_entries_kept_after_compaction(
    cluster: Cluster,
) -> None:
    # Snapshots every 5 entries keep only 15 messages of history, so a follower that got
    # one would miss messages; the log keeps 60 entries before each snapshot's index.
    cluster.configure(compaction_threshold=5, catchup_entries=60, history_window=15)
    nodes = await cluster.grow(3)
    leader = await cluster.leader()
    follower = next(node for node in nodes if node is not leader)

    async def send_one_by_one(numbers: range) -> None:
        for i in numbers:
            leader.send(f"m{i}")
            acked = i + 1
            await leader.wait_for(lambda n, acked=acked: len(n.acks()) == acked, what=f"m{i} acked")

    await send_one_by_one(range(100))
    await cluster.wait_all(lambda n: "m99" in n.texts(), "the first 100 messages")
    await leader.wait_for(lambda n: n.status["snapshot_index"] > 0, what="a compaction")
    compacted_before_pause = leader.status["snapshot_index"]
    follower.process.send_signal(signal.SIGSTOP)
    try:
        await send_one_by_one(range(100, 140))
        await leader.wait_for(
            lambda n: n.status["snapshot_index"] > compacted_before_pause,
            what="the leader compacting its log during the pause",
        )
    finally:
        follower.process.send_signal(signal.SIGCONT)
    await follower.wait_for(lambda n: "m139" in n.texts(), what="catching up")
    assert follower.texts() == [f"m{i}" for i in range(140)]


async def test_node_joining_after_compaction_receives_a_snapshot(
    cluster: Cluster, tmp_path: Path
) -> None:
    history_window = 15
    cluster.configure(compaction_threshold=20, catchup_entries=0, history_window=history_window)
    # The newcomer never compacts its own log, so a snapshot in its storage came from the leader.
    newcomer_config = write_config(
        tmp_path / "newcomer.toml", compaction_threshold=100_000, history_window=history_window
    )
    (first,) = await cluster.grow(1)
    for i in range(60):
        first.send(f"m{i}")
    await first.wait_for(lambda n: len(n.acks()) == 60, what="60 acknowledged messages")
    newcomer = await cluster.add("newcomer", config_path=newcomer_config)
    await newcomer.wait_for(lambda n: "m59" in n.texts(), what="the history")
    await newcomer.wait_for(NodeProcess.is_voter, what="being a voter")
    texts = newcomer.texts()
    assert texts == [f"m{i}" for i in range(60 - len(texts), 60)]
    assert len(texts) <= history_window + 20, "history came from a snapshot, not the whole log"
    assert "m0" not in texts
    newcomer.kill()
    await newcomer.wait_exit()
    with Storage.open(newcomer.data_dir / cluster.channel, cluster.channel) as storage:
        snapshot = storage.snapshot()
    assert snapshot is not None and snapshot.meta.index > 0


async def test_survivor_of_two_says_it_waits_for_the_crashed_member(cluster: Cluster) -> None:
    """SIGKILL one of two voters: the other cannot commit, and its status says whom it
    waits for (by nick) and how many voters the channel needs; once the member is back,
    the problem is gone."""
    alice = await cluster.add("alice")
    await alice.wait_for(NodeProcess.is_voter, what="alice founding the channel")
    bob = await cluster.add("bob")
    await cluster.wait_all(lambda n: n.status and len(n.status["voters"]) == 2, "two voters")
    # bob proposes his nick once he is a member, but headless mode prints nothing to tell
    # when that committed: a message of his is the sign that alice knows his nick.
    bob.send("hello from bob")
    await alice.wait_for(lambda n: "hello from bob" in n.texts(), what="bob's message")
    bob.kill()
    alice.send("anyone there?")

    def names_bob(node: NodeProcess) -> dict | None:
        status = node.status or {}
        missing = status.get("missing_voters") or []
        return status if [voter["nick"] for voter in missing] == ["bob"] else None

    status = await alice.wait_for(names_bob, 20, "a status naming bob as the missing voter")
    assert status["leader"] is None
    problem = status["quorum_problem"]
    assert problem.startswith(
        "no leader: waiting for bob \u2014 the channel needs 2 of 2 voters; 1 reachable"
        " (bob last heard "
    ), problem
    assert problem.endswith("if bob is gone for good, type /forget bob"), problem
    assert status["forget_command"] == "/forget bob"
    assert (status["voters_needed"], status["voters_reachable"]) == (2, 1)
    (missing,) = status["missing_voters"]
    assert missing["node_id"] == bob.node_id
    assert isinstance(missing["silent_s"], int) and missing["silent_s"] >= 0
    assert not alice.acks(), "nothing can commit without bob"

    await bob.restart()
    await alice.wait_for(lambda n: len(n.acks()) == 1, what="the held message committing")
    assert "quorum_problem" not in (alice.status or {})
    assert alice.status and alice.status["leader"] is not None


@pytest.mark.parametrize(
    ("size", "who", "how"),
    [
        (2, "leader", "quit"),
        (2, "follower", "sigterm"),
        pytest.param(3, "leader", "eof", marks=pytest.mark.slow),
    ],
)
async def test_graceful_quit_keeps_the_channel_writable(
    cluster: Cluster, size: int, who: str, how: str
) -> None:
    nodes = await cluster.grow(size)
    leader = await cluster.leader()
    quitter = leader if who == "leader" else next(n for n in nodes if n is not leader)
    {"quit": quitter.quit, "sigterm": quitter.terminate, "eof": quitter.close_stdin}[how]()
    assert await quitter.wait_exit() == 0
    remaining = [node for node in nodes if node is not quitter]
    await cluster.wait_all(
        lambda n: n.status["voters"] == sorted(r.node_id for r in remaining),
        "the quitter removed",
        remaining,
    )
    writer = remaining[-1]
    writer.send("still writable")
    await writer.wait_for(lambda n: len(n.acks()) == 1, what="an acknowledged message")
    await cluster.wait_all(lambda n: "still writable" in n.texts(), "the message", remaining)


async def test_signaling_restart_does_not_disrupt_a_running_cluster(
    cluster: Cluster, signaling: Signaling
) -> None:
    nodes = await cluster.grow(2)
    await signaling.stop()
    for node in nodes:
        node.send(f"{node.name} during the outage")
    await cluster.wait_all(lambda n: len(n.acks()) == 1, "messages acknowledged during the outage")
    await cluster.wait_all(lambda n: len(n.messages()) == 2, "both messages everywhere")
    await signaling.start()
    ids = {node.node_id for node in nodes}

    async def reconnected() -> None:
        while await signaling.peers(cluster.channel) != ids:
            await asyncio.sleep(0.1)

    await asyncio.wait_for(reconnected(), 30)
    late = await cluster.add("late")
    await late.wait_for(NodeProcess.is_voter, what="the newcomer becoming a voter")
    await late.wait_for(lambda n: len(n.messages()) == 2, what="the history")
    assert set(late.status["voters"]) == ids | {late.node_id}, "no member was removed"
    assert_same_log([*nodes, late])
