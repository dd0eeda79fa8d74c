"""Carrying on without a dead voter (raft/forced.py): the forced change, the forgotten
voter's return, and two sides that forgot each other. Replayed deterministically."""

from __future__ import annotations

import pytest
from raft_utils import Cluster, normal_entries

from raftchat.raft import (
    AppendEntries,
    ClusterIdentity,
    Configuration,
    Entry,
    EntryKind,
    HistoryDiverged,
    Reason,
    RequestStatus,
    Role,
    Snapshot,
    SnapshotMeta,
)
from raftchat.raft import core as core_module
from raftchat.raft.configuration import ConfigurationChangeError
from raftchat.raft.forced import (
    FORCED_TERM_SPREAD,
    committed_conflict,
    forced_configuration,
    forced_term,
)
from raftchat.raft.log import RaftLog

CLUSTER = ClusterIdentity(founded_ms=1_700_000_000_000, cluster_id="c" * 32)


def two_voters(messages: int = 3) -> Cluster:
    """a leads, b follows, ``messages`` entries committed and applied on both."""
    cluster = Cluster("ab")
    for i in range(messages):
        cluster.propose("a", b"m%d" % i)
    cluster.tick(3)
    assert cluster.core("b").log.applied == cluster.core("a").log.commit
    return cluster


def stuck_without(cluster: Cluster, victim: str) -> str:
    """``victim`` dies; the survivor finds no quorum (it campaigns in vain)."""
    survivor = "b" if victim == "a" else "a"
    cluster.crash(victim)
    cluster.tick(40)
    assert cluster.leader() is None
    return survivor


def readd(cluster: Cluster, leader: str, node_id: str, max_ticks: int = 100) -> None:
    """What the runtime's membership does for a member that came back: learner, then
    voter once caught up."""
    for change in ("add_learner", "promote"):
        for _ in range(max_ticks):
            core = cluster.core(leader)
            match = {p.node_id: p.match for p in core.status().progress}.get(node_id, 0)
            if change == "promote" and match < core.log.commit:
                cluster.tick()
                continue
            if getattr(core, change)(node_id).ok:
                cluster.process(leader)
                break
            cluster.tick()
        else:
            raise AssertionError(f"{change} {node_id} refused throughout")
    cluster.settle()


def committed(cluster: Cluster, node_id: str) -> list[tuple[int, int]]:
    """(index, term) of every entry the node applied, in order."""
    return [(entry.index, entry.term) for entry in cluster.nodes[node_id].applied]


# --- which changes may be forced ----------------------------------------------------


def test_the_forced_configuration_keeps_everything_but_the_dead_voters() -> None:
    current = Configuration(
        voters=frozenset("abw"),
        learners=frozenset("l"),
        cluster=CLUSTER,
        witnesses=frozenset("w"),
    )
    forced = forced_configuration(current, "a", ["b", "w"])
    assert forced == Configuration(frozenset("a"), frozenset("l"), CLUSTER, frozenset())


@pytest.mark.parametrize(
    ("voters", "me", "removed", "reason"),
    [
        ("ab", "a", [], Reason.FORCE_NOBODY),
        ("ab", "a", [""], Reason.FORCE_NOBODY),
        ("ab", "a", ["a"], Reason.FORCE_SELF),
        ("ab", "a", ["a", "b"], Reason.FORCE_SELF),
        ("ab", "l", ["a", "b"], Reason.FORCE_NOT_A_VOTER.format(node="l")),
        ("ab", "a", ["l"], Reason.NOT_A_VOTER.format(node="l")),
        ("ab", "a", ["x"], Reason.NOT_A_VOTER.format(node="x")),
        ("abc", "a", ["c"], Reason.FORCE_OTHERS_LEFT.format(nodes="b")),
    ],
)
def test_only_the_last_voter_left_may_force_a_change(voters, me, removed, reason) -> None:
    current = Configuration(voters=frozenset(voters), learners=frozenset("l"))
    with pytest.raises(ConfigurationChangeError) as refused:
        forced_configuration(current, me, removed)
    assert str(refused.value) == reason


def test_a_witness_cannot_force_a_change() -> None:
    current = Configuration(voters=frozenset("aw"), witnesses=frozenset("w"))
    with pytest.raises(ConfigurationChangeError):
        forced_configuration(current, "w", ["a"])


def test_the_forced_term_is_fresh_and_spread() -> None:
    import random

    rng = random.Random(1)
    terms = [forced_term(7, rng) for _ in range(200)]
    assert all(8 <= term <= 7 + FORCED_TERM_SPREAD for term in terms)
    assert len(set(terms)) > 190


def test_a_refused_force_changes_nothing() -> None:
    cluster = Cluster("abc")
    core = cluster.core("a")
    before = (core.term, core.log.last_index, core.configuration, core.role)
    result = core.force_remove(["b"])
    assert result.status is RequestStatus.REJECTED
    assert result.error == Reason.FORCE_OTHERS_LEFT.format(nodes="c")
    assert (core.term, core.log.last_index, core.configuration, core.role) == before
    assert not core.has_ready() or not core.ready().entries


# --- one voter dies, the other carries on -----------------------------------------------


@pytest.mark.parametrize("victim", ["a", "b"])
def test_the_survivor_carries_on_alone_and_commits(victim: str) -> None:
    cluster = two_voters()
    survivor = stuck_without(cluster, victim)
    core = cluster.core(survivor)
    old_term, old_last = core.term, core.log.last_index
    result = core.force_remove([victim])
    assert result.status is RequestStatus.APPENDED
    assert result.index == old_last + 1 and result.term > old_term
    cluster.process(survivor)
    assert core.role is Role.LEADER and core.term == result.term
    assert core.configuration.voters == {survivor}
    assert core.log.commit == core.log.last_index  # the change and the no-op, stored alone
    cluster.propose(survivor, b"alone")
    cluster.tick(1)
    assert normal_entries(cluster.nodes[survivor].applied)[-1] == b"alone"


def test_a_leader_without_its_quorum_may_force_too() -> None:
    cluster = two_voters()
    cluster.crash("b")
    core = cluster.core("a")
    assert core.role is Role.LEADER  # CheckQuorum has not noticed yet
    core.propose(b"pending")  # appended, never committed with b gone
    assert core.force_remove(["b"]).ok
    cluster.process("a")
    assert core.role is Role.LEADER and core.configuration.voters == {"a"}
    assert b"pending" in normal_entries(cluster.nodes["a"].applied)


# --- the forgotten voter comes back ---------------------------------------------------


def test_the_forgotten_voter_returns_as_a_newcomer_and_loses_only_its_uncommitted_tail():
    cluster = two_voters()
    a_before = committed(cluster, "a")
    # a leads; entries it appends stop reaching b, then a dies: an uncommitted tail.
    cluster.drop_rules.append(lambda s, t, m: s == "a" and isinstance(m, AppendEntries))
    for i in range(3):
        cluster.propose("a", b"tail%d" % i)
    cluster.deliver_all()
    tail = {(e.index, e.term) for e in cluster.nodes["a"].storage.entries[-3:]}
    cluster.heal()
    survivor = stuck_without(cluster, "a")
    assert cluster.core(survivor).force_remove(["a"]).ok
    cluster.process(survivor)
    for i in range(2):
        cluster.propose("b", b"new%d" % i)
    cluster.tick(2)

    cluster.restart("a")
    cluster.tick(30)  # its pre-votes: refused unseen, it is no member of b's configuration
    assert cluster.leader() == "b" and cluster.core("b").status().messages_refused > 0
    readd(cluster, "b", "a")
    a, b = cluster.core("a"), cluster.core("b")
    assert a.configuration.voters == {"a", "b"} == b.configuration.voters
    assert committed(cluster, "a")[: len(a_before)] == a_before  # applied before: intact
    assert normal_entries(cluster.nodes["a"].applied)[-2:] == [b"new0", b"new1"]
    stored = {(e.index, e.term) for e in cluster.nodes["a"].storage.entries}
    assert not tail & stored  # the tail nobody acknowledged is gone
    assert [(e.index, e.term, e.data) for e in cluster.nodes["a"].storage.entries] == [
        (e.index, e.term, e.data) for e in cluster.nodes["b"].storage.entries
    ]
    cluster.propose("a", b"back")
    cluster.tick(3)
    assert normal_entries(cluster.nodes["b"].applied)[-1] == b"back"


# --- two sides that forgot each other ------------------------------------------------


def split_brain(cluster: Cluster, *, compact: bool = False) -> dict[str, list]:
    """a and b cannot talk and each carries on without the other; then they meet and
    each adds the other back (as their membership would). Returns what each had
    applied before they met."""
    cluster.partition(["a"], ["b"])
    cluster.tick(40)
    for me, other in (("a", "b"), ("b", "a")):
        assert cluster.core(me).force_remove([other]).ok
        cluster.process(me)
    for i in range(4):
        cluster.propose("a", b"a%d" % i)
    for i in range(2):
        cluster.propose("b", b"b%d" % i)
    cluster.tick(2)
    if compact:
        for node_id in "ab":
            core = cluster.core(node_id)
            core.compact(core.log.applied, cluster.nodes[node_id].machine.snapshot())
            cluster.process(node_id)
    before = {n: list(cluster.nodes[n].applied) for n in "ab"}
    cluster.heal()
    for me, other in (("a", "b"), ("b", "a")):
        assert cluster.core(me).add_learner(other).ok
        cluster.process(me)
    cluster.tick(60)
    return before


@pytest.mark.parametrize("compact", [False, True])
def test_two_sides_that_forgot_each_other_refuse_each_others_claims(compact) -> None:
    """Each added the other back as a learner, and a learner cannot lead (role checks):
    neither side ever takes the other's log."""
    cluster = two_voters()
    before = split_brain(cluster, compact=compact)
    for node_id in "ab":
        applied = cluster.nodes[node_id].applied
        assert applied[: len(before[node_id])] == before[node_id], "committed entries changed"
        other = b"b" if node_id == "a" else b"a"
        assert not [d for d in normal_entries(applied) if d.startswith(other)]
        assert cluster.core(node_id).status().messages_refused > 0


@pytest.fixture
def without_role_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed check is the second line: shown with the first one out of the way."""
    monkeypatch.setattr(core_module, "refusal", lambda *args, **kwargs: None)


@pytest.mark.usefixtures("without_role_checks")
@pytest.mark.parametrize("compact", [False, True])
def test_two_sides_that_forgot_each_other_keep_their_histories_and_say_so(compact) -> None:
    cluster = two_voters()
    before = split_brain(cluster, compact=compact)
    for node_id in "ab":
        applied = cluster.nodes[node_id].applied
        assert applied[: len(before[node_id])] == before[node_id], "committed entries changed"
        other = b"b" if node_id == "a" else b"a"
        assert not [d for d in normal_entries(applied) if d.startswith(other)]
        diverged = [e for e in cluster.nodes[node_id].events if isinstance(e, HistoryDiverged)]
        assert len(diverged) == 1 and diverged[0].leader != node_id
    # Each side still commits on its own.
    for node_id in "ab":
        cluster.campaign(node_id)
        cluster.propose(node_id, b"still " + node_id.encode())
        cluster.tick(3)
        assert normal_entries(cluster.nodes[node_id].applied)[-1] == b"still " + node_id.encode()


@pytest.mark.usefixtures("without_role_checks")
def test_without_the_committed_check_one_side_would_follow_the_other_unawares(
    monkeypatch,
) -> None:
    """Why the follower compares a leader's log with its committed entries: otherwise it
    follows a leader whose log it can never take, and commits nothing more, unawares."""
    monkeypatch.setattr(core_module, "committed_conflict", lambda *args: 0)
    cluster = two_voters()
    split_brain(cluster)
    assert not [e for n in "ab" for e in cluster.nodes[n].events if isinstance(e, HistoryDiverged)]
    (stuck,) = [n for n in "ab" if cluster.core(n).role is not Role.LEADER]
    cluster.propose(stuck, b"lost", client_id="c", serial=1)
    cluster.tick(30)
    assert b"lost" not in normal_entries(cluster.nodes[stuck].applied)


@pytest.mark.usefixtures("without_role_checks")
def test_without_a_fresh_random_term_both_sides_would_write_the_same_positions(
    monkeypatch,
) -> None:
    """Why the forced term is drawn at random: both sides at term T would both pick T + 1
    and write entries with equal (index, term), which no check can tell apart."""
    monkeypatch.setattr(core_module, "forced_term", lambda term, rng: term + 1)
    cluster = two_voters()
    split_brain(cluster)
    diverged = [e for n in "ab" for e in cluster.nodes[n].events if isinstance(e, HistoryDiverged)]
    mixed = [
        n for n in "ab" if {d[:1] for d in normal_entries(cluster.nodes[n].applied)} >= {b"a", b"b"}
    ]
    assert mixed or not diverged


# --- the committed check on its own -------------------------------------------------------


def _log(terms: list[int], commit: int, snapshot_index: int = 0) -> RaftLog:
    entries = [Entry(i + 1, term, EntryKind.NORMAL) for i, term in enumerate(terms)]
    snapshot_term = terms[snapshot_index - 1] if snapshot_index else 0
    snapshot = Snapshot(SnapshotMeta(snapshot_index, snapshot_term))
    return RaftLog(snapshot, entries[snapshot_index:], commit)


def test_committed_conflict_finds_a_disagreement_up_to_the_commit_index_only() -> None:
    log = _log([1, 1, 2, 2, 3], commit=4)
    assert committed_conflict(log, 2, 1, [Entry(3, 2), Entry(4, 2), Entry(5, 9)]) == 0
    assert committed_conflict(log, 3, 5, []) == 3  # prev at or below the commit index
    assert committed_conflict(log, 4, 2, [Entry(5, 9)]) == 0  # past it: ordinary conflict
    assert committed_conflict(log, 2, 1, [Entry(3, 2), Entry(4, 7)]) == 4
    assert committed_conflict(log, 5, 9, []) == 0


def test_committed_conflict_bounds_compacted_positions_by_the_snapshot_term() -> None:
    log = _log([1, 1, 2, 2, 3], commit=4, snapshot_index=3)
    assert committed_conflict(log, 1, 1, [Entry(2, 1), Entry(3, 2)]) == 0
    assert committed_conflict(log, 1, 1, [Entry(2, 0)]) == 0  # lower: cannot tell
    assert committed_conflict(log, 1, 7, [Entry(2, 7)]) == 1  # above the snapshot's term
    assert committed_conflict(log, 1, 1, [Entry(2, 7)]) == 2
    assert committed_conflict(log, 3, 7, []) == 3  # the snapshot's own term is known
    assert committed_conflict(log, 2, 1, [Entry(3, 2), Entry(4, 5)]) == 4
