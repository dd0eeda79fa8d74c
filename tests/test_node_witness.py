"""Two members and the signaling server's witness, with real node processes over real
DataChannels: a two-member channel survives losing either member.

Without the witness, the survivor of a two-voter cluster can neither win an election nor
remove the dead member (the raft.js paper's "unavailable without manual intervention").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.nodes import Cluster, NodeProcess
from support.waiting import wait_until

from raftchat.net.signaling.server import RunningServer, start_server
from raftchat.witness import WitnessHost

pytestmark = [pytest.mark.timeout(150), pytest.mark.usefixtures("node_webrtc")]

CHANNEL = "pair"
MEMBER_TIMEOUT_S = 4


@pytest.fixture
async def witness(tmp_path: Path) -> WitnessHost:
    return WitnessHost.open(tmp_path / "witness")


@pytest.fixture
async def signaling(witness: WitnessHost) -> AsyncIterator[RunningServer]:
    server = await start_server("127.0.0.1", 0, witness=witness)
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def cluster(
    tmp_path: Path, signaling: RunningServer, request: pytest.FixtureRequest
) -> AsyncIterator[Cluster]:
    failed_before = request.session.testsfailed
    nodes = Cluster(tmp_path, signaling.url, CHANNEL)
    nodes.configure(member_timeout_s=MEMBER_TIMEOUT_S)
    try:
        yield nodes
    finally:
        if request.session.testsfailed > failed_before:
            print(nodes.report())
        await nodes.close()


def has_witness(node: NodeProcess) -> bool:
    status = node.status
    return bool(status and status.get("witness") and status["witness"] in status["voters"])


async def pair_with_witness(cluster: Cluster, witness: WitnessHost) -> list[NodeProcess]:
    nodes = await cluster.grow(2)
    await cluster.wait_all(has_witness, "the witness in the configuration")
    for node in nodes:
        assert node.status["witness"] == witness.witness_id
    return nodes


async def say_and_see(sender: NodeProcess, readers: list[NodeProcess], text: str) -> None:
    sender.send(text)
    await sender.wait_for(lambda n: text in n.texts(), 30, f"{text!r} committed")
    for reader in readers:
        await reader.wait_for(lambda n: text in n.texts(), 30, f"{text!r} seen")


@pytest.mark.parametrize("victim", ["leader", "follower"])
async def test_the_survivor_of_two_carries_on_with_the_witness(
    cluster: Cluster, witness: WitnessHost, victim: str
) -> None:
    nodes = await pair_with_witness(cluster, witness)
    await say_and_see(nodes[0], nodes[1:], "before")
    leader = await cluster.leader()
    dead = leader if victim == "leader" else next(n for n in nodes if n is not leader)
    survivor = next(n for n in nodes if n is not dead)
    dead.kill()

    await survivor.wait_for(NodeProcess.is_leader, 30, "leading with the witness's vote")
    await say_and_see(survivor, [], "after")
    await survivor.wait_for(
        lambda n: dead.node_id not in n.voters(), MEMBER_TIMEOUT_S + 30, "the dead one removed"
    )
    # One member voter left: the witness is not needed any more, and leaves.
    await survivor.wait_for(lambda n: not has_witness(n), 30, "the witness removed")
    assert survivor.texts() == ["before", "after"]


async def test_the_witness_keeps_positions_never_messages(
    cluster: Cluster, witness: WitnessHost, tmp_path: Path
) -> None:
    nodes = await pair_with_witness(cluster, witness)
    secret = "the witness must never see this"
    await say_and_see(nodes[1], nodes[:1], secret)
    index = next(m["index"] for m in nodes[0].messages() if m["text"] == secret)
    cluster_id = nodes[0].status["cluster"]

    def stored_through() -> int:
        core = witness.core(CHANNEL, cluster_id)
        return core.last_index if core is not None else 0

    await wait_until(lambda: stored_through() >= index, 30, "the witness storing the position")
    database = b"".join(path.read_bytes() for path in (tmp_path / "witness").iterdir())
    assert secret.encode() not in database
    assert witness.stats.messages_received > 0 and witness.stats.messages_sent > 0
    assert not witness.stats.dropped


@pytest.mark.parametrize("back", ["leader", "follower"])
async def test_both_killed_and_one_back_carries_on_with_the_witness(
    cluster: Cluster, witness: WitnessHost, back: str
) -> None:
    nodes = await pair_with_witness(cluster, witness)
    await say_and_see(nodes[0], nodes[1:], "before")
    leader = await cluster.leader()
    returning = leader if back == "leader" else next(n for n in nodes if n is not leader)
    gone = next(n for n in nodes if n is not returning)
    for node in nodes:
        node.kill()
    await returning.restart()

    # The witness never holds entries the follower lacks, so either one wins its vote.
    await returning.wait_for(NodeProcess.is_leader, 30, "leading with the witness's vote")
    await say_and_see(returning, [], "after")
    await returning.wait_for(
        lambda n: gone.node_id not in n.voters(), MEMBER_TIMEOUT_S + 30, "the absent one removed"
    )
    assert returning.texts() == ["before", "after"]
