"""Unit tests of RaftCore, one feature at a time (no event loop, no sleeps)."""

from __future__ import annotations

import random

import pytest
from raft_utils import Cluster, make_settings

from raftchat.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Configuration,
    ConfigurationChanged,
    Entry,
    EntryKind,
    ForwardProposal,
    HardState,
    LeaderChanged,
    PersistentState,
    RaftCore,
    RaftError,
    Reason,
    RequestStatus,
    RequestVote,
    RequestVoteResponse,
    Role,
    encode_configuration,
)
from raftchat.raft.log import ENTRY_OVERHEAD_BYTES
from raftchat.raft.sim import MemoryStorage, client_command


def two_voter_state(
    node_id: str, voters: frozenset[str] = frozenset({"a", "b"})
) -> PersistentState:
    config = Configuration(voters)
    entry = Entry(1, 1, EntryKind.CONFIG, encode_configuration(config))
    return PersistentState(HardState(term=1), None, [entry])


# --- elections ----------------------------------------------------------------------


def test_election_timeout_is_randomized_within_t_and_2t():
    timeouts = set()
    for seed in range(30):
        core = RaftCore(make_settings("a"), two_voter_state("a"), random.Random(seed))
        ticks = 0
        while core.role is Role.FOLLOWER:
            core.tick()
            ticks += 1
        assert core.role is Role.PRE_CANDIDATE
        timeouts.add(ticks)
    assert min(timeouts) >= 10 and max(timeouts) < 20
    assert len(timeouts) > 3


def test_ticks_until_due_names_the_first_tick_that_acts():
    follower = RaftCore(make_settings("b"), two_voter_state("b"), random.Random(3))
    due = follower.ticks_until_due()
    for _ in range(due - 1):
        follower.tick()
    assert follower.role is Role.FOLLOWER and not follower.has_ready()
    follower.tick()
    assert follower.role is Role.PRE_CANDIDATE  # its election timer ran out
    cluster = Cluster("ab")
    cluster.settle()
    leader = cluster.core("a")
    assert leader.ticks_until_due() <= leader.settings.heartbeat_ticks
    for _ in range(leader.ticks_until_due() - 1):
        leader.tick()
    assert not leader.has_ready()
    leader.tick()
    assert any(isinstance(m, AppendEntries) for _, m in leader.ready().early_messages)


def test_prevote_does_not_change_the_term_and_vote_is_persisted_with_its_grant():
    state = two_voter_state("b", frozenset({"a", "b", "c"}))
    core = RaftCore(make_settings("b"), state, random.Random(1))
    core.step(RequestVote("a", 2, 1, 1, pre_vote=True))
    ready = core.ready()
    assert core.term == 1 and ready.hard_state is None
    assert ready.messages == [("a", RequestVoteResponse("b", 2, True, True))]
    core.advance(ready)
    core.step(RequestVote("a", 2, 1, 1))
    ready = core.ready()
    assert ready.hard_state == HardState(term=2, vote="a", commit=0)
    assert ready.messages == [("a", RequestVoteResponse("b", 2, True, False))]
    core.advance(ready)
    core.step(RequestVote("c", 2, 1, 1))  # a second candidate of the same term
    (message,) = [m for _, m in core.ready().messages]
    assert not message.granted


def test_vote_refused_to_a_candidate_with_an_older_log():
    core = RaftCore(make_settings("b"), two_voter_state("b"))
    core.step(RequestVote("a", 5, 0, 0))
    (message,) = [m for _, m in core.ready().messages]
    assert not message.granted and core.term == 5 and core.vote == ""


def test_bootstrapped_single_node_leads_and_commits():
    cluster = Cluster("a")
    assert cluster.core("a").role is Role.LEADER
    result = cluster.propose("a", b"hi", "c1", 1)
    assert result.status is RequestStatus.APPENDED
    (outcome,) = cluster.nodes["a"].outcomes
    assert outcome.committed and outcome.index == result.index
    assert cluster.nodes["a"].applied[-1].data == b"hi"
    with pytest.raises(RaftError, match="bootstrap"):
        cluster.core("a").bootstrap()


def test_check_quorum_makes_an_isolated_leader_step_down():
    cluster = Cluster("abc")
    cluster.isolate("a")
    cluster.tick(10, nodes="a")
    assert cluster.core("a").role is Role.LEADER
    cluster.tick(11, nodes="a")
    assert cluster.core("a").role is Role.FOLLOWER
    assert LeaderChanged(cluster.core("a").term, "") in cluster.nodes["a"].events


def test_a_new_leader_appends_a_noop_of_its_term():
    cluster = Cluster("abc")
    cluster.elect("b")
    log = cluster.core("b").log
    noop = next(
        log.entry(i) for i in range(1, log.last_index + 1) if log.term(i) == cluster.core("b").term
    )
    assert noop.kind == EntryKind.NOOP


# --- replication --------------------------------------------------------------------


def test_appends_are_bounded_in_bytes_and_in_flight():
    bound = 3 * (ENTRY_OVERHEAD_BYTES + 100)
    cluster = Cluster("ab", max_append_bytes=bound, max_inflight=2)
    cluster.drop_rules.append(lambda s, t, m: isinstance(m, AppendEntriesResponse))
    for serial in range(1, 21):
        cluster.core("a").propose(b"x" * 100, "c", serial)
    cluster.process("a")
    sent = [m for s, _, m in cluster.queue if s == "a" and isinstance(m, AppendEntries)]
    assert [len(m.entries) for m in sent] == [3, 3]  # two messages in flight, three entries each
    cluster.deliver_all()
    cluster.heal()
    cluster.tick(12)  # lost acknowledgements: resent after a few silent heartbeat rounds
    assert cluster.core("b").log.last_index == cluster.core("a").log.last_index
    assert cluster.core("a").log.commit == cluster.core("a").log.last_index


def test_messages_leave_in_the_same_ready_as_the_state_they_promise():
    cluster = Cluster("ab")
    cluster.core("a").propose(b"x")
    ready = cluster.core("a").ready()
    appends = [m for _, m in ready.early_messages if isinstance(m, AppendEntries) and m.entries]
    assert appends and ready.entries and appends[0].entries[-1] == ready.entries[-1]
    with pytest.raises(RaftError, match="before advance"):
        cluster.core("a").ready()
    cluster.core("a").advance(ready)


def test_a_leader_sends_appends_before_storing_them_and_counts_itself_after():
    cluster = Cluster("abc")
    leader = cluster.core("a")
    leader.propose(b"x")
    ready = leader.ready()
    assert {to for to, m in ready.early_messages if isinstance(m, AppendEntries)} == {"b", "c"}
    assert not ready.messages
    for to in "bc":  # both followers store the entry and answer before the leader's write ends
        follower = cluster.core(to)
        (message,) = [m for t, m in ready.early_messages if t == to]
        follower.step(message)
        follower_ready = follower.ready()
        assert not follower_ready.early_messages  # an answer promises what it stores
        (answer,) = [m for _, m in follower_ready.messages]
        assert isinstance(answer, AppendEntriesResponse) and answer.success
        follower.advance(follower_ready)
        leader.step(answer)
    assert leader.log.commit == ready.entries[-1].index  # a majority without the leader
    leader.advance(ready)


def test_a_heartbeat_anchored_below_the_commit_does_not_count_as_telling_it():
    """A follower learns at most the commit index up to the heartbeat's anchor (its
    match): the leader must still send the commit once the follower's answer arrives."""
    cluster = Cluster("abc")
    cluster.settle()
    leader = cluster.core("a")
    leader.propose(b"x")
    cluster.process("a")
    for _ in range(2):  # the entry reaches b and c
        cluster.deliver_one()
    (b_answer,) = [item for item in cluster.queue if item[0] == "b"]
    cluster.queue.remove(b_answer)
    cluster.queue.insert(0, b_answer)
    cluster.deliver_one()  # committed with b; c's answer is still on its way
    for _ in range(cluster.core("a").settings.heartbeat_ticks):
        leader.tick()  # a heartbeat to c, anchored at what c was known to hold
    cluster.process("a")
    cluster.deliver_all()  # no tick: nothing but answers and what they trigger
    assert cluster.core("c").log.commit == leader.log.commit == leader.log.last_index


def test_a_leader_elected_within_a_ready_sends_nothing_before_storing_its_term():
    cluster = Cluster("a")
    cluster.change(lambda core: core.add_learner("l"))
    cluster.deliver_all()
    cluster.crash("a")
    cluster.restart("a")
    core = cluster.core("a")
    while core.role is not Role.LEADER:  # a lone voter: elected by its own tick
        core.tick()
    ready = core.ready()
    assert ready.hard_state is not None and ready.hard_state.term == core.term
    assert not ready.early_messages
    assert any(to == "l" and isinstance(m, AppendEntries) for to, m in ready.messages)


def test_a_follower_refuses_to_overwrite_committed_entries_from_a_bad_peer():
    cluster = Cluster("abc")
    follower = cluster.core("c")
    commit = follower.log.commit
    bogus = AppendEntries(
        "b",
        follower.term,
        commit - 1,
        follower.log.term(commit - 1) or 0,
        (Entry(commit, 99),),
        commit,
    )
    follower.step(bogus)
    cluster.process("c")
    assert follower.log.term(commit) != 99
    assert follower.log.commit == commit


def test_messages_from_self_or_without_sender_are_ignored():
    core = RaftCore(make_settings("a"), two_voter_state("a"))
    core.step(RequestVote("a", 9, 5, 5))
    core.step(RequestVote("", 9, 5, 5))
    assert (core.term == 1 and not core.has_ready()) or not core.ready().messages


# --- membership ---------------------------------------------------------------------


def test_membership_changes_are_refused_with_reasons():
    cluster = Cluster("abc")
    leader = cluster.core("a")
    follower = cluster.core("b").add_learner("d")
    assert follower.error == Reason.NOT_LEADER and follower.leader == "a"
    assert leader.add_learner("b").error == Reason.ALREADY_MEMBER.format(node="b", kind="voter")
    assert leader.remove("zz").error == Reason.NOT_A_MEMBER.format(node="zz")
    assert leader.promote("b").error == Reason.NOT_A_LEARNER.format(node="b")
    assert leader.add_learner("").error == Reason.BAD_NODE_ID
    single = Cluster("a")
    assert single.core("a").remove("a").error == Reason.LAST_VOTER.format(node="a")


def test_learner_promotion_makes_it_a_voter_that_can_lead():
    cluster = Cluster("ab")
    cluster.add_node("c")
    cluster.change(lambda core: core.add_learner("c"))
    assert cluster.core("c").status().role is Role.LEARNER
    leader = cluster.core("a")
    # A learner does not count toward commitment.
    assert leader.configuration.quorum() == 2 and "c" not in leader.configuration.voters
    cluster.change(lambda core: core.promote("c"))
    assert cluster.core("c").status().role is Role.FOLLOWER
    cluster.elect("c")
    assert cluster.leader() == "c"


def test_learners_get_every_fifth_heartbeat_and_new_commits_at_once():
    cluster = Cluster("ab", learner_heartbeat_rounds=5)
    cluster.add_node("c")
    cluster.change(lambda core: core.add_learner("c"))
    cluster.settle()
    start = len(cluster.delivered)
    cluster.tick(2 * 10)  # ten heartbeat rounds

    def empty_appends_to(peer: str) -> int:
        return sum(
            1
            for _, to, message in cluster.delivered[start:]
            if to == peer and isinstance(message, AppendEntries) and not message.entries
        )

    assert empty_appends_to("b") == 10
    assert empty_appends_to("c") == 2
    cluster.propose("a", b"hello")
    cluster.deliver_all()
    assert cluster.core("c").status().commit_index == cluster.core("a").status().commit_index


def test_configuration_takes_effect_on_append_and_reverts_when_truncated():
    cluster = Cluster("abcde", check_quorum=False)
    cluster.add_node("f")
    cluster.drop_rules.append(lambda s, t, m: t != "b" and s == "a")
    cluster.drop_rules.append(lambda s, t, m: s == "b" and t == "a")
    cluster.core("a").add_learner("f")
    cluster.process("a")
    cluster.deliver_all()
    assert "f" in cluster.core("b").configuration.learners  # in force before commit
    cluster.crash("a")
    cluster.heal()
    cluster.partition("cde", "b")
    cluster.campaign("c")
    cluster.heal()
    cluster.propose("c", b"next")
    cluster.tick(3)
    assert "f" not in cluster.core("b").configuration.members
    changes = [e for e in cluster.nodes["b"].events if isinstance(e, ConfigurationChanged)]
    assert "f" not in changes[-1].configuration.members


# --- proposals and sessions ---------------------------------------------------------


def test_follower_forwards_proposals_and_reports_the_outcome():
    cluster = Cluster("abc")
    result = cluster.propose("b", b"hello", "client", 1)
    assert result.status is RequestStatus.FORWARDED and result.leader == "a"
    cluster.deliver_all()
    (outcome,) = cluster.nodes["b"].outcomes
    assert outcome.committed and outcome.client_id == "client" and outcome.serial == 1
    assert cluster.core("b").status().proposals_forwarded == 1
    assert cluster.core("b").status().messages_sent["ForwardProposal"] == 1


def test_proposals_without_a_leader_or_too_large_are_rejected():
    core = RaftCore(make_settings("b", max_proposal_bytes=10), two_voter_state("b"))
    assert core.propose(b"x").error == Reason.NO_LEADER
    rejected = core.propose(b"x" * 11)
    assert rejected.status is RequestStatus.REJECTED and "too large" in rejected.error


def test_forwarded_proposal_fails_when_the_leader_never_answers():
    cluster = Cluster("abc")
    cluster.drop_rules.append(lambda s, t, m: isinstance(m, ForwardProposal))
    cluster.propose("b", b"lost", "client", 1)
    cluster.tick(25)
    (outcome,) = cluster.nodes["b"].outcomes
    assert not outcome.committed and outcome.error == Reason.TIMED_OUT


def test_leader_appends_a_retry_again_and_the_state_machine_drops_the_copy():
    """Sessions are the state machine's: the core appends what it is given."""
    cluster = Cluster("abc")
    first = cluster.core("a").propose(b"m", "client", 1)
    retry = cluster.core("a").propose(b"m", "client", 1)
    assert retry.status is RequestStatus.APPENDED and retry.index == first.index + 1
    cluster.process("a")
    cluster.settle()
    late_retry = cluster.propose("a", b"m", "client", 1)
    assert late_retry.status is RequestStatus.APPENDED and late_retry.index > retry.index
    cluster.settle()
    for node in "abc":
        machine = cluster.nodes[node].machine
        assert machine.sessions == {"client": 1} and machine.duplicates == 2  # applied once


def test_leader_appends_a_clients_proposals_as_given_and_leaves_order_to_the_session():
    cluster = Cluster("a")
    core = cluster.core("a")
    for serial, prev_serial in ((1, 0), (3, 2), (2, 1), (3, 2)):
        result = core.propose(client_command(prev_serial, b"x"), "c", serial)
        assert result.status is RequestStatus.APPENDED
    cluster.process("a")
    applied = [e.serial for e in cluster.nodes["a"].applied if e.client_id == "c"]
    assert applied == [1, 3, 2, 3]
    machine = cluster.nodes["a"].machine
    assert machine.sessions == {"c": 3} and machine.out_of_order == 1


# --- compaction, restart, status ----------------------------------------------------


def test_compaction_is_checked_against_the_applied_index():
    cluster = Cluster("a")
    core = cluster.core("a")
    with pytest.raises(RaftError, match="applied"):
        core.compact(core.log.applied + 1, b"")
    core.compact(core.log.applied, b"state")
    ready = core.ready()
    assert ready.compacted is not None and ready.compacted.data == b"state"
    core.advance(ready)
    with pytest.raises(RaftError, match="already compacted"):
        core.compact(core.log.applied, b"state")


def test_restart_restores_term_vote_log_and_configuration():
    cluster = Cluster("abc")
    cluster.propose("a", b"x")
    cluster.settle()
    before = cluster.core("b").status()
    cluster.crash("b")
    cluster.restart("b")
    after = cluster.core("b").status()
    assert (after.term, after.vote, after.last_index, after.configuration) == (
        before.term,
        before.vote,
        before.last_index,
        before.configuration,
    )


def test_restart_rejects_a_corrupt_log():
    storage = MemoryStorage()
    storage.entries = [Entry(1, 1), Entry(3, 1)]
    with pytest.raises(RaftError, match="contiguous"):
        RaftCore(make_settings("a"), storage.state())


def test_status_counts_every_message_sent_and_received():
    cluster = Cluster("abc")
    cluster.propose("a", b"x")
    cluster.settle()
    sent = sum(
        1 for s, _, m in cluster.delivered if s == "a" and type(m).__name__ == "AppendEntries"
    )
    status = cluster.core("a").status()
    assert status.messages_sent["AppendEntries"] == sent
    received = sum(
        1 for _, t, m in cluster.delivered if t == "a" and isinstance(m, AppendEntriesResponse)
    )
    assert status.messages_received["AppendEntriesResponse"] == received
    assert status.commit_index == status.applied_index == status.last_index
    assert {p.node_id for p in status.progress} == {"b", "c"}
