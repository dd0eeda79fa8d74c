"""A member that quits and starts again at once, over and over: real node processes over
real DataChannels.

Each start of a node is a new incarnation. The leave request of an earlier run must never
remove the new run, and a run whose removal committed before it started must be added
again, although its stored configuration still lists it as a voter; what it sends after
the restart is committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import nodes
from support.nodes import Cluster, NodeProcess

from raftchat.net.signaling.server import RunningServer

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("node_webrtc")]

ROUNDS = 10


@pytest.fixture
async def cluster(
    tmp_path: Path, server: RunningServer, request: pytest.FixtureRequest
) -> AsyncIterator[Cluster]:
    failed_before = request.session.testsfailed
    nodes = Cluster(tmp_path, f"http://127.0.0.1:{server.port}", "rejoin")
    try:
        yield nodes
    finally:
        if request.session.testsfailed > failed_before:
            print(nodes.report())
        await nodes.close()
        for node in nodes.nodes:
            assert not node.bad_lines, f"{node.name} printed non-JSON lines: {node.bad_lines}"


def acknowledged(text: str):
    """Whether a node was told its message ``text`` is committed (in its current run)."""

    def check(node: NodeProcess) -> bool:
        ids = {m["id"] for m in node.messages() if m["text"] == text}
        return bool(ids & node.acks().keys())

    return check


def configured(ids: set[str]):
    """Whether a node knows a leader among ``ids`` and a configuration of exactly ``ids``,
    all of them voters."""

    def check(node: NodeProcess) -> bool:
        status = node.status or {}
        return (
            set(status.get("voters", ())) == ids
            and not status.get("learners")
            and status.get("leader") in ids
        )

    return check


def assert_stayed_voters(node: NodeProcess, since: int, ids: set[str]) -> None:
    """Every status ``node`` printed from its output line ``since`` on lists ``ids`` as
    the voters: nobody was removed meanwhile (by an earlier run's leave request)."""
    for event in node.output[since:]:
        if event["event"] == "status":
            assert set(event["voters"]) == ids, f"{node.name}: a member was removed: {event}"


def history(node: NodeProcess) -> list[tuple[int, str, str]]:
    return [(m["index"], m["id"], m["text"]) for m in node.messages()]


@pytest.mark.parametrize("node_webrtc", nodes.engines_long_except("wrtc"), indirect=True)
@pytest.mark.parametrize("quitter", ["follower", pytest.param("leader", marks=pytest.mark.long)])
async def test_a_member_that_quits_and_restarts_at_once_stays_a_working_member(
    cluster: Cluster, quitter: str
) -> None:
    """bob (or, in the second run, whoever leads) types ``/quit`` and is started again on
    its data dir as soon as the process has exited, ten times in a row."""
    alice = await cluster.add("alice")
    await alice.wait_for(NodeProcess.is_leader, what="alice founding the channel")
    bob = await cluster.add("bob")
    ids = {alice.node_id, bob.node_id}
    assert None not in ids
    await cluster.wait_all(configured(ids), "alice and bob voters")
    steady: tuple[NodeProcess, int] | None = None
    for round_ in range(ROUNDS):
        if steady is not None:
            assert_stayed_voters(*steady, ids)
        node = bob if quitter == "follower" else await cluster.leader()
        other = alice if node is bob else bob
        node.quit()
        assert await node.wait_exit() == 0
        await node.restart()
        text = f"{node.name} is back ({round_})"
        node.send(text)
        await node.wait_for(acknowledged(text), what=f"the ack of {text!r}")
        await other.wait_for(lambda n, text=text: text in n.texts(), what=f"{text!r}")
        # The new run is a voter again, in both views: it was not removed for good by
        # its earlier run's request, and it learned of its removal and return.
        await cluster.wait_all(configured(ids), f"both voters again after round {round_}")
        # Watched from the node that did not restart (the restarted one may show its
        # stored configuration for a moment): nothing may change until the next quit.
        steady = (other, len(other.output))
    await cluster.wait_all(
        lambda n: n.status["commit_index"] == n.status["last_index"], "everything committed"
    )
    assert steady is not None
    assert_stayed_voters(*steady, ids)
    await bob.wait_for(
        lambda n: (
            n.status["commit_index"] == alice.status["commit_index"]
            and history(n) == history(alice)
        ),
        what="the same log as alice",
    )
    texts = [text for _, _, text in history(alice)]
    assert len(texts) == ROUNDS and len(set(texts)) == ROUNDS, texts
    assert alice.status["voters"] == bob.status["voters"] == sorted(ids)
