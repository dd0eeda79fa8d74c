"""Role checks: a peer's role must allow what it sends, or the core drops it unseen."""

from __future__ import annotations

import random

from raft_utils import make_settings

from raftchat.raft import (
    AppendEntries,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    PersistentState,
    RaftCore,
    RequestVote,
    Role,
    TimeoutNow,
    encode_configuration,
)
from raftchat.raft.admission import STRANDED_ELECTION_TIMEOUTS

CONFIGURATION = Configuration(
    voters=frozenset({"a", "b", "c", "w"}), learners=frozenset({"l"}), witnesses=frozenset({"w"})
)


def follower_of(leader: str = "a", term: int = 3) -> RaftCore:
    """``b``, following ``leader`` in ``term`` (voters a, b, c and the witness w; learner l)."""
    entry = Entry(1, 1, EntryKind.CONFIG, encode_configuration(CONFIGURATION))
    core = RaftCore(
        make_settings("b"), PersistentState(HardState(term=term), None, [entry]), random.Random(1)
    )
    core.step(AppendEntries(leader, term, 1, 1, (), 1))
    drain(core)
    assert core.leader == leader
    return core


def drain(core: RaftCore) -> list:
    sent = []
    while core.has_ready():
        ready = core.ready()
        sent += ready.early_messages + ready.messages
        core.advance(ready)
    return sent


def huge_append(sender: str, term: int = 1_000_002) -> AppendEntries:
    return AppendEntries(sender, term, 1, 1, (Entry(2, term, EntryKind.NORMAL, b"FORGED"),), 2)


def test_a_non_member_cannot_make_a_member_follow_it_or_adopt_its_term() -> None:
    core = follower_of()
    core.step(huge_append("mallory"))
    assert drain(core) == []
    assert (core.term, core.leader, core.log.last_index) == (3, "a", 1)
    assert core.status().messages_refused == 1


def test_a_learner_or_the_witness_cannot_lead() -> None:
    core = follower_of()
    for sender in ("l", "w"):
        core.step(huge_append(sender))
    assert drain(core) == [] and core.term == 3 and core.log.last_index == 1


def test_another_voter_cannot_speak_for_the_leader_of_this_term() -> None:
    core = follower_of(leader="a")
    core.step(huge_append("c", term=3))
    assert core.log.last_index == 1 and core.leader == "a"
    core.step(huge_append("a", term=3))  # the leader itself
    assert core.log.last_index == 2

    core.step(huge_append("c", term=4))  # a later term, while a still leads: refused
    assert core.leader == "a" and core.term == 3
    for _ in range(core.settings.election_timeout_ticks):  # a's lease runs out
        core.tick()
    drain(core)
    core.step(AppendEntries("c", 4, 2, 3, (), 2))  # now c may well have won term 4
    assert core.leader == "c" and core.term == 4


def test_a_leadership_hand_over_is_for_the_next_term_only() -> None:
    core = follower_of(leader="a", term=3)
    core.step(RequestVote("c", 9, 1, 1, False, leadership_transfer=True))
    assert drain(core) == [] and core.term == 3
    core.step(RequestVote("c", 4, 1, 1, False, leadership_transfer=True))
    assert core.term == 4 and core.vote == "c"


def test_only_the_leader_hands_over_leadership() -> None:
    core = follower_of(leader="a")
    core.step(TimeoutNow("l", 3))
    core.step(TimeoutNow("mallory", 3))
    assert core.role is Role.FOLLOWER and core.status().elections_started == 0
    core.step(TimeoutNow("a", 3))
    assert core.status().elections_started == 1


def test_a_forged_transfer_vote_cannot_depose_anyone() -> None:
    core = follower_of()
    for sender in ("mallory", "l", "w"):
        core.step(RequestVote(sender, 1_000_002, 99, 1_000_001, False, leadership_transfer=True))
    assert drain(core) == [] and core.term == 3 and core.leader == "a"


def test_a_newcomer_takes_its_first_leader_from_anyone_of_its_cluster() -> None:
    core = RaftCore(make_settings("n"), PersistentState(), random.Random(1))
    core.step(AppendEntries("a", 3, 0, 0, (), 0))
    assert core.leader == "a" and core.term == 3


def test_a_stranded_member_takes_a_leader_its_stale_configuration_does_not_know() -> None:
    """``d`` became a voter while ``b`` was away; b's configuration does not list it."""
    core = follower_of(leader="a")
    core.step(huge_append("d", term=9))
    assert core.leader == "a" and core.term == 3  # b has a leader: d is nobody to it
    timeout = core.settings.election_timeout_ticks
    for _ in range((STRANDED_ELECTION_TIMEOUTS + 2) * timeout):  # a goes silent
        core.tick()
        drain(core)
    assert core.leader == ""
    core.step(huge_append("d", term=9))
    assert core.leader == "d" and core.term == 9
    assert core.log.term(1) == 1, "nothing at or below the commit index was rewritten"


def test_a_former_leader_that_says_it_does_not_lead_is_forgotten() -> None:
    """Else proposals bounce between a follower and its former leader at link speed."""
    from raftchat.raft import ProposalResult, RequestStatus
    from raftchat.raft.reasons import Reason

    core = follower_of(leader="a")
    assert core.propose(b"x", "b", 1).status is RequestStatus.FORWARDED
    drain(core)
    core.step(ProposalResult("a", 3, "b", 1, error=Reason.NO_LEADER))
    drain(core)
    assert core.leader == ""
    assert core.propose(b"x", "b", 2).status is RequestStatus.REJECTED  # waits for a leader
