"""The proposal tracker on its own: no loop, no core, a scripted ``submit``."""

from __future__ import annotations

import pytest

from raftchat.chat import ChatMessage, InvalidCommandError, Leave, NickChange, decode_command
from raftchat.node.proposals import ProposalTracker
from raftchat.raft.ready import ProposalOutcome, RequestResult, RequestStatus

APPENDED = RequestResult(RequestStatus.APPENDED)
NO_LEADER = RequestResult(RequestStatus.REJECTED, error="no leader")


def text(words: str) -> ChatMessage:
    return ChatMessage("ada", words, 1_700_000_000_000)


class ScriptedCore:
    """Records (serial, prev_serial) of each submission and answers with ``answer``."""

    def __init__(self) -> None:
        self.answer = APPENDED
        self.submitted: list[tuple[int, int]] = []

    def submit(self, data: bytes, serial: int) -> RequestResult:
        self.submitted.append((serial, decode_command(data)[1]))
        return self.answer


def tracker(window: int = 8) -> tuple[ProposalTracker, ScriptedCore]:
    core = ScriptedCore()
    return ProposalTracker("me", core.submit, window, first_serial=100), core


def test_proposals_get_consecutive_serials_and_name_their_predecessor() -> None:
    proposals, core = tracker()
    ids = [proposals.propose(text("x"), "message", now=0.0) for _ in range(3)]
    assert ids == ["me:101", "me:102", "me:103"]
    assert core.submitted == [(101, 0), (102, 101), (103, 102)]


def test_an_invalid_command_is_refused_before_it_takes_a_serial() -> None:
    proposals, core = tracker()
    with pytest.raises(InvalidCommandError):
        proposals.propose(text(""), "message", now=0.0)
    assert proposals.propose(text("x"), "message", now=0.0) == "me:101"
    assert core.submitted == [(101, 0)]


def test_a_proposal_whose_predecessor_was_applied_meanwhile_names_none() -> None:
    proposals, core = tracker()
    core.answer = NO_LEADER
    proposals.propose(text("a"), "message", now=0.0)
    proposals.propose(text("b"), "message", now=0.0)  # held behind the first, naming it
    proposals.acknowledge(101)  # applied after all (a retry that got through)
    core.answer = APPENDED
    proposals.after_round([], new_leader=True, leader_known=True, now=1.0)
    assert core.submitted[-1] == (102, 0)
    assert decode_command(proposals.pending[102].data)[1] == 0


def test_refused_proposal_holds_every_later_one_until_a_leader_takes_them() -> None:
    proposals, core = tracker()
    core.answer = NO_LEADER
    proposals.propose(text("a"), "message", now=0.0)
    proposals.propose(text("b"), "message", now=0.0)
    assert list(proposals.held) == [101, 102]
    assert core.submitted == [(101, 0)], "the second waits behind the first"
    core.answer = APPENDED
    proposals.after_round([], new_leader=True, leader_known=True, now=1.0)
    assert not proposals.held
    assert core.submitted[1:] == [(101, 0), (102, 101)]


def test_window_caps_unacknowledged_proposals_and_frees_as_they_are_acknowledged() -> None:
    proposals, core = tracker(window=2)
    for _ in range(4):
        proposals.propose(text("x"), "message", now=0.0)
    assert [serial for serial, _ in core.submitted] == [101, 102]
    assert list(proposals.held) == [103, 104]
    proposals.acknowledge(101)
    proposals.after_round([], new_leader=False, leader_known=True, now=0.0)
    assert [serial for serial, _ in core.submitted] == [101, 102, 103]


def test_out_of_order_drop_resends_everything_after_the_last_applied_serial_once() -> None:
    proposals, core = tracker()
    for _ in range(4):
        proposals.propose(text("x"), "message", now=0.0)
    proposals.acknowledge(101)
    # 102 was lost: the session drops 103 and 104, naming 101 as the last applied.
    proposals.out_of_order(103, last_applied_serial=101)
    proposals.out_of_order(104, last_applied_serial=101)
    assert len(core.submitted) == 4, "acted on at the end of the round, not per entry"
    proposals.after_round([], new_leader=False, leader_known=True, now=0.0)
    assert core.submitted[4:] == [(102, 0), (103, 102), (104, 103)]
    proposals.out_of_order(104, last_applied_serial=101)  # a later batch: the same drop
    proposals.after_round([], new_leader=False, leader_known=True, now=0.0)
    assert len(core.submitted) == 7, "a drop of a copy sent before the resend is answered"


def test_an_out_of_order_drop_of_a_proposal_no_longer_pending_resends_nothing() -> None:
    proposals, core = tracker()
    proposals.propose(text("x"), "message", now=0.0)
    proposals.propose(text("y"), "message", now=0.0)
    proposals.out_of_order(102, last_applied_serial=100)
    proposals.acknowledge(102)  # a later copy applied in the same round
    proposals.after_round([], new_leader=False, leader_known=True, now=0.0)
    assert len(core.submitted) == 2


def test_an_out_of_order_drop_covers_the_failed_proposals_of_its_round() -> None:
    proposals, core = tracker()
    for _ in range(3):
        proposals.propose(text("x"), "message", now=0.0)
    failed = ProposalOutcome("me", 102, error="no answer in time")
    proposals.out_of_order(103, last_applied_serial=100)
    proposals.after_round([failed], new_leader=False, leader_known=True, now=0.0)
    assert core.submitted[3:] == [(101, 0), (102, 101), (103, 102)]


def test_a_committed_outcome_is_not_an_acknowledgement() -> None:
    """Where the entry landed is the core's word; whether it applied is the session's."""
    proposals, core = tracker()
    proposals.propose(text("x"), "message", now=0.0)
    committed = ProposalOutcome("me", 101, index=7, term=1)
    proposals.after_round([committed], new_leader=False, leader_known=True, now=0.0)
    assert list(proposals.pending) == [101] and len(core.submitted) == 1


def test_overtaken_proposal_is_proposed_again_under_a_fresh_serial_keeping_its_id() -> None:
    """A restart whose clock-derived serials start below the previous run's: the previous
    run's 500 applies first, so ours below it can only be dropped as duplicates."""
    proposals, core = tracker()
    first = proposals.propose(text("first"), "message", now=0.0)
    proposals.propose(text("second"), "message", now=0.0)
    proposals.applied_own_entry(500, last_applied_serial=500, now=0.0)
    again = list(proposals.pending.values())
    assert [(p.serial, p.message_id) for p in again] == [(501, first), (502, "me:102")]
    assert again[0].command == text("first")
    assert core.submitted[-2:] == [(501, 0), (502, 501)]


def test_a_nick_change_or_leave_is_settled_only_when_the_session_applied_it() -> None:
    proposals, _ = tracker()
    proposals.propose(NickChange("grace"), "nick", now=0.0)
    proposals.propose(Leave(), "leave", now=0.0)
    proposals.applied_own_entry(102, last_applied_serial=100, now=0.0)  # out of order
    assert list(proposals.pending) == [101, 102]
    proposals.applied_own_entry(101, last_applied_serial=101, now=0.0)
    proposals.applied_own_entry(102, last_applied_serial=102, now=0.0)
    assert not proposals.pending


def test_stale_proposals_are_resent_after_the_retry_interval_only() -> None:
    proposals, core = tracker()
    proposals.propose(text("x"), "message", now=0.0)
    proposals.retry_stale(now=4.0, retry_after=5.0)
    assert len(core.submitted) == 1
    proposals.retry_stale(now=6.0, retry_after=5.0)
    assert core.submitted == [(101, 0), (101, 0)]


def test_snapshot_settles_covered_proposals_and_reproposes_overtaken_messages() -> None:
    proposals, _ = tracker()
    proposals.propose(text("in history"), "message", now=0.0)
    proposals.propose(text("overtaken"), "message", now=0.0)
    proposals.propose(Leave(), "leave", now=0.0)
    proposals.propose(text("later"), "message", now=0.0)
    settled = proposals.settle_after_snapshot(103, {101: 7}, now=0.0)
    assert [(p.serial, index) for p, index in settled.acknowledged] == [(101, 7)]
    assert settled.leave_applied
    assert sorted(proposals.pending) == [104, 105]
    assert proposals.pending[105].command == text("overtaken")


def test_handed_over_proposals_are_never_sent_again_and_acknowledged_once_applied() -> None:
    """The node left its cluster to merge: its pending messages went into the merge
    queue, so no leader change, retry or later proposal sends them again; the channel
    applying one (merged, by anyone), or a snapshot holding it, acknowledges it."""
    proposals, core = tracker()
    core.answer = NO_LEADER
    first = proposals.propose(text("a"), "message", now=0.0)
    proposals.propose(text("b"), "message", now=0.0)
    proposals.propose(NickChange("ada"), "nick", now=0.0)
    handed = proposals.hand_over()
    assert [(p.serial, p.kind) for p in handed] == [
        (101, "message"),
        (102, "message"),
        (103, "nick"),
    ]
    assert not proposals.pending and not proposals.held
    core.answer = APPENDED
    core.submitted.clear()
    proposals.after_round([], new_leader=True, leader_known=True, now=1.0)
    proposals.retry_stale(now=100.0, retry_after=5.0)
    assert core.submitted == []
    proposals.propose(text("c"), "message", now=1.0)
    assert core.submitted == [(104, 0)], "a new message names none of them"
    acknowledged = proposals.acknowledge(101)
    assert acknowledged is not None and acknowledged.message_id == first
    assert proposals.acknowledge(101) is None
    settled = proposals.settle_after_snapshot(104, {102: 9}, now=2.0)
    assert [(p.serial, index) for p, index in settled.acknowledged] == [(102, 9)]
    assert not proposals.handed_over
