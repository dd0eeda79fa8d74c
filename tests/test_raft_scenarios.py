"""Known hard cases of Raft, each replayed deterministically on a small cluster."""

from __future__ import annotations

import pytest
from raft_utils import Cluster, make_settings, normal_entries

from raftchat.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    PersistentState,
    RaftCore,
    ReadIndexRequest,
    Reason,
    RequestStatus,
    RequestVote,
    Role,
    TransferAborted,
    encode_configuration,
)


def test_figure_8_old_term_entry_is_not_committed_by_counting_replicas():
    """Raft paper, Figure 8: a leader must not commit an older term's entry by counting."""
    _figure_8()


def test_figure_8_scenario_catches_a_commit_rule_that_counts_old_terms(monkeypatch):
    def count_any_term(self):
        voters = sorted(self._configurations.current.voters)
        matches = sorted(
            self.log.stable_index if v == self.id else self._progress[v].match for v in voters
        )
        candidate = matches[len(voters) - (len(voters) // 2 + 1)]
        return candidate > self.log.commit and self.log.commit_to(candidate)

    monkeypatch.setattr(RaftCore, "_maybe_commit", count_any_term)
    with pytest.raises(AssertionError):
        _figure_8()


def _figure_8() -> None:
    cluster = Cluster("abcde", check_quorum=False, max_append_bytes=1, max_inflight=1)
    a_term = cluster.core("a").term
    # (a) a replicates X only to b, then crashes.
    cluster.partition("ab", "c", "d", "e")
    cluster.propose("a", b"X")
    cluster.deliver_all()
    x_index = cluster.core("a").log.last_index
    assert cluster.core("b").log.term(x_index) == a_term
    assert cluster.core("a").log.commit < x_index
    cluster.crash("a")
    # (b) e is elected by c, d (and itself) and appends an entry at X's index; it reaches nobody.
    cluster.heal()
    cluster.partition("cde", "b")
    cluster.drop_rules.append(lambda s, t, m: s == "e" and isinstance(m, AppendEntries))
    cluster.campaign("e")
    assert cluster.core("e").role is Role.LEADER
    e_term = cluster.core("e").term
    assert cluster.core("e").log.term(x_index) == e_term
    cluster.crash("e")
    # (c) a restarts, wins with b, c, d and copies X to c: X is on a majority (a, b, c)...
    cluster.heal()
    cluster.restart("a")
    # c and d may receive X, but nothing after it (a's own-term entries).
    cluster.drop_rules.append(
        lambda s, t, m: (
            s == "a"
            and t in "cd"
            and isinstance(m, AppendEntries)
            and cluster.core(t).log.term(x_index) == a_term
            and any(entry.index > x_index for entry in m.entries)
        )
    )
    cluster.campaign("a")
    assert cluster.core("a").role is Role.LEADER
    assert cluster.core("c").log.term(x_index) == a_term
    # ...but it is from an older term, so it must not count as committed.
    assert cluster.core("a").log.commit < x_index
    assert all(b"X" not in normal_entries(h.applied) for h in cluster.nodes.values())
    # (d) a crashes; e (log ending in a newer term) wins and overwrites X everywhere.
    cluster.crash("a")
    cluster.heal()
    cluster.restart("e")
    cluster.campaign("e")
    assert cluster.core("e").role is Role.LEADER
    cluster.propose("e", b"Y")
    cluster.deliver_all()
    for node in "bcd":
        assert cluster.core(node).log.term(x_index) == e_term
        assert b"X" not in normal_entries(cluster.nodes[node].applied)
        assert b"Y" in normal_entries(cluster.nodes[node].applied)


def test_stale_leader_rejoining_steps_down_and_loses_its_uncommitted_entries():
    cluster = Cluster("abc")
    old_term = cluster.core("a").term
    cluster.isolate("a")
    stale = cluster.propose("a", b"stale")
    assert stale.status is RequestStatus.APPENDED
    # The others elect a new leader while a still believes it leads (no ticks on a).
    cluster.tick(40, nodes="bc")
    new_leader = next(n for n in "bc" if cluster.core(n).role is Role.LEADER)
    assert cluster.core(new_leader).term > old_term
    assert cluster.core("a").role is Role.LEADER
    cluster.propose(new_leader, b"fresh")
    cluster.heal()
    cluster.tick(5)
    assert cluster.core("a").role is Role.FOLLOWER
    assert cluster.core("a").leader == new_leader
    cluster.settle()
    for node in "abc":
        applied = normal_entries(cluster.nodes[node].applied)
        assert b"stale" not in applied
        assert b"fresh" in applied
    assert cluster.core("a").log.term(stale.index) != stale.term


def _stored_log(terms: list[int], voters: set[str]) -> list[Entry]:
    config = Entry(1, 1, EntryKind.CONFIG, encode_configuration(Configuration(frozenset(voters))))
    return [config] + [
        Entry(index, term, data=f"{index}@{term}".encode())
        for index, term in enumerate(terms, start=2)
    ]


def test_long_divergent_follower_log_backs_up_in_few_round_trips():
    """Fast back-off: one rejection per divergent term, not one per entry."""
    common = [1] * 9
    leader_terms = common + [5] * 150
    follower_terms = common + [2] * 60 + [3] * 60 + [4] * 60
    cluster = Cluster([], bootstrap=False, check_quorum=False)
    for node_id, terms in (("L", leader_terms), ("F", follower_terms)):
        harness = cluster.add_node(node_id)
        harness.storage.entries = _stored_log(terms, {"L", "F"})
        harness.storage.hard_state = HardState(term=max(terms), commit=10)
        harness.core = RaftCore(harness.settings, harness.storage.state())
    cluster.campaign("L")
    assert cluster.core("L").role is Role.LEADER
    rejections = [
        m
        for sender, _, m in cluster.delivered
        if sender == "F" and isinstance(m, AppendEntriesResponse) and not m.success
    ]
    # Divergent terms 4, 3 and 2 each cost one round trip; naive decrement would take ~170.
    assert 1 <= len(rejections) <= 3
    leader_log, follower_log = cluster.core("L").log, cluster.core("F").log
    assert follower_log.last_index == leader_log.last_index
    assert all(
        follower_log.term(i) == leader_log.term(i) for i in range(1, leader_log.last_index + 1)
    )


def test_disruptive_rejoining_server_does_not_bump_terms_with_prevote():
    cluster = Cluster("abc")
    leader, term = cluster.leader(), cluster.core("a").term
    cluster.isolate("c")
    cluster.tick(100)
    assert cluster.core("c").term == term  # pre-votes fail: no term inflation
    assert cluster.core("c").status().elections_started > 0
    cluster.heal()
    cluster.tick(10)
    assert cluster.leader() == leader
    assert all(cluster.core(n).term == term for n in "abc")


def test_without_prevote_an_isolated_server_would_bump_its_term():
    """Control for the test above: the term stays put because of PreVote."""
    cluster = Cluster("abc", pre_vote=False)
    term = cluster.core("a").term
    cluster.isolate("c")
    cluster.tick(100)
    assert cluster.core("c").term > term


def test_two_node_cluster_survives_graceful_removal_of_its_leader():
    cluster = Cluster("ab")
    assert cluster.leader() == "a"
    result = cluster.core("a").remove("a")
    assert result.status is RequestStatus.APPENDED
    cluster.process("a")
    cluster.deliver_all()
    # a stepped down once its removal committed and handed over with TimeoutNow.
    assert cluster.core("a").role is Role.FOLLOWER
    assert cluster.leader() == "b"
    assert cluster.core("b").configuration.voters == {"b"}
    assert cluster.propose("b", b"still here").ok
    cluster.deliver_all()
    assert b"still here" in normal_entries(cluster.nodes["b"].applied)


def test_removed_leader_keeps_replicating_until_removal_commits_without_counting_itself():
    cluster = Cluster("abc")
    cluster.isolate("c")
    removal = cluster.core("a").remove("a")
    cluster.process("a")
    cluster.deliver_all()
    # Old majority (a, b) holds it, but the new configuration {b, c} needs c too.
    assert cluster.core("b").log.term(removal.index) == removal.term
    assert cluster.core("a").log.commit < removal.index
    assert cluster.core("a").role is Role.LEADER
    cluster.heal()
    for _ in range(10):
        if cluster.core("a").role is not Role.LEADER:
            break
        cluster.tick()
    assert cluster.core("a").log.commit >= removal.index
    assert cluster.core("a").role is Role.FOLLOWER
    cluster.settle()
    assert cluster.leader() in ("b", "c")
    assert cluster.core(cluster.leader()).configuration.voters == {"b", "c"}
    # The removed node never campaigns again.
    before = cluster.core("a").status().elections_started
    cluster.tick(50)
    assert cluster.core("a").status().elections_started == before


def test_snapshot_install_in_chunks_after_a_partition():
    cluster = Cluster("abc", snapshot_chunk_bytes=8)
    cluster.isolate("c")
    for serial in range(1, 31):
        assert cluster.propose("a", b"m%d" % serial, "client", serial).ok
    cluster.deliver_all()
    leader = cluster.nodes["a"]
    applied = cluster.core("a").log.applied
    cluster.core("a").compact(applied, leader.machine.snapshot())
    cluster.process("a")
    assert cluster.core("a").log.snapshot_index == applied
    cluster.heal()
    cluster.settle()
    chunks = [m for _, to, m in cluster.delivered if to == "c" and isinstance(m, InstallSnapshot)]
    assert len(chunks) > 1
    assert cluster.core("c").status().snapshots_installed == 1
    assert cluster.nodes["c"].storage.snapshot.meta.index == applied
    assert cluster.nodes["c"].machine.sessions == {"client": 30}
    assert cluster.nodes["c"].machine.digest == leader.machine.digest
    cluster.propose("a", b"after", "client", 31)
    cluster.settle()
    assert cluster.nodes["c"].machine.sessions == {"client": 31}


def test_all_nodes_crash_and_restart_without_losing_committed_entries():
    cluster = Cluster("abc")
    for serial in range(1, 6):
        cluster.propose("a", b"m%d" % serial, "client", serial)
    cluster.settle()
    digest = cluster.nodes["a"].machine.digest
    commit = cluster.core("a").log.commit
    # One node crashes with a Ready it never persisted.
    cluster.propose("a", b"lost?", "client", 6)
    for node in "abc":
        cluster.crash(node)
    for node in "abc":
        cluster.restart(node)
    cluster.settle()
    for node in "abc":
        assert cluster.core(node).log.commit >= commit
        machine = cluster.nodes[node].machine
        assert machine.sessions["client"] >= 5
    leader = cluster.leader()
    cluster.propose(leader, b"m7", "client", 7)
    cluster.settle()
    assert len({cluster.nodes[n].machine.digest for n in "abc"}) == 1
    assert cluster.nodes["a"].machine.digest != digest


def test_learner_never_campaigns_and_its_vote_never_counts():
    cluster = Cluster("ab")
    cluster.add_node("c")
    cluster.change(lambda core: core.add_learner("c"))
    assert cluster.core("c").status().role is Role.LEARNER
    cluster.isolate("c")
    cluster.tick(100)
    status = cluster.core("c").status()
    assert status.elections_started == 0
    assert "RequestVote" not in status.messages_sent
    cluster.heal()
    cluster.settle()
    # With a down, b can only win with a's vote: the learner's support is not enough.
    cluster.crash("a")
    cluster.tick(100)
    assert cluster.core("b").role is not Role.LEADER
    assert cluster.core("c").status().elections_started == 0


def test_leadership_transfer_catches_up_the_target_then_hands_over():
    cluster = Cluster("abc")
    cluster.isolate("b")
    for serial in range(1, 11):
        cluster.propose("a", b"m%d" % serial, "client", serial)
    cluster.deliver_all()
    cluster.heal()
    term = cluster.core("a").term
    assert cluster.core("a").transfer_leadership("b").status is RequestStatus.PENDING
    refused = cluster.core("a").propose(b"during", "client", 11)
    assert refused.status is RequestStatus.REJECTED and refused.error == Reason.TRANSFERRING
    cluster.process("a")
    for _ in range(8):  # b lost 10 appends while isolated: the leader notices and resends
        if cluster.leader() == "b":
            break
        cluster.tick()
    assert cluster.leader() == "b"
    assert cluster.core("b").term == term + 1
    assert cluster.nodes["b"].machine.sessions["client"] == 10


def test_leadership_transfer_aborts_after_an_election_timeout():
    cluster = Cluster("abc")
    cluster.isolate("b")
    cluster.core("a").transfer_leadership("b")
    cluster.process("a")
    cluster.tick(12)
    assert any(isinstance(e, TransferAborted) for e in cluster.nodes["a"].events)
    assert cluster.leader() == "a"
    assert cluster.propose("a", b"accepted again").status is RequestStatus.APPENDED


def test_read_index_on_follower_goes_through_the_leader():
    cluster = Cluster("abc")
    write = cluster.propose("a", b"w1", "client", 1)
    cluster.settle()
    result = cluster.core("c").read_index(7)
    assert result.status is RequestStatus.FORWARDED
    cluster.process("c")
    cluster.deliver_all()
    assert any(isinstance(m, ReadIndexRequest) for s, _, m in cluster.delivered if s == "c")
    (state,) = cluster.nodes["c"].read_states
    assert state.request_id == 7 and not state.error
    assert state.index >= write.index
    assert cluster.core("c").log.applied >= state.index


def test_read_index_is_not_served_by_a_deposed_leader():
    cluster = Cluster("abc")
    cluster.isolate("a")
    assert cluster.core("a").read_index(1).status is RequestStatus.PENDING
    cluster.process("a")
    cluster.tick(25)
    (state,) = cluster.nodes["a"].read_states
    assert state.error == Reason.LEADERSHIP_LOST
    assert cluster.core("a").role is not Role.LEADER


def test_single_server_change_bug_guard():
    """No change before the leader commits its own-term entry; one pending change at most."""
    cluster = Cluster("abc")
    cluster.add_node("d")
    cluster.add_node("e")
    # A fresh leader whose no-op has not committed yet refuses membership changes.
    cluster.isolate("b")
    cluster.isolate("c")
    cluster.core("a").transfer_leadership("b")  # ignored by isolation; then step down by time
    cluster.tick(25, nodes="a")
    cluster.heal()
    cluster.drop_rules.append(lambda s, t, m: s == "b" and isinstance(m, AppendEntries))
    cluster.campaign("b")
    assert cluster.core("b").role is Role.LEADER
    early = cluster.core("b").add_learner("d")
    assert early.status is RequestStatus.REJECTED and early.error == Reason.NO_OWN_TERM_COMMIT
    cluster.heal()
    cluster.tick(3)
    first = cluster.core("b").add_learner("d")
    assert first.status is RequestStatus.APPENDED
    second = cluster.core("b").add_learner("e")
    assert second.error == Reason.CHANGE_PENDING.format(index=first.index)


def test_follower_refuses_votes_while_it_hears_from_a_leader_unless_transferring():
    cluster = Cluster("abc")
    follower = cluster.core("c")
    term = follower.term
    last = follower.log
    request = RequestVote("b", term + 1, last.last_index, last.last_term)
    follower.step(request)
    cluster.process("c")
    assert follower.term == term and not cluster.queue
    transfer = RequestVote("b", term + 1, last.last_index, last.last_term, leadership_transfer=True)
    follower.step(transfer)
    cluster.process("c")
    assert follower.term == term + 1 and follower.vote == "b"


def test_joining_node_never_elects_itself_before_it_is_added():
    core = RaftCore(make_settings("z"), PersistentState())
    for _ in range(200):
        core.tick()
    assert core.status().elections_started == 0
    assert core.role is Role.FOLLOWER
