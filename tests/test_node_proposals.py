"""The proposal tracker on its own: no loop, no core, a scripted ``submit``."""

from __future__ import annotations

from raftchat.node.proposals import ProposalTracker
from raftchat.raft.ready import ProposalOutcome, RequestResult, RequestStatus

APPENDED = RequestResult(RequestStatus.APPENDED)
NO_LEADER = RequestResult(RequestStatus.REJECTED, error="no leader")


class ScriptedCore:
    """Records (serial, prev_serial) of each submission and answers with ``answer``."""

    def __init__(self) -> None:
        self.answer = APPENDED
        self.submitted: list[tuple[int, int]] = []

    def submit(self, data: bytes, serial: int, prev_serial: int) -> RequestResult:
        self.submitted.append((serial, prev_serial))
        return self.answer


def tracker(window: int = 8) -> tuple[ProposalTracker, ScriptedCore]:
    core = ScriptedCore()
    return ProposalTracker("me", core.submit, window, first_serial=100), core


def test_proposals_get_consecutive_serials_and_name_their_predecessor() -> None:
    proposals, core = tracker()
    ids = [proposals.propose(b"x", "message", now=0.0) for _ in range(3)]
    assert ids == ["me:101", "me:102", "me:103"]
    assert core.submitted == [(101, 0), (102, 101), (103, 102)]


def test_refused_proposal_holds_every_later_one_until_a_leader_takes_them() -> None:
    proposals, core = tracker()
    core.answer = NO_LEADER
    proposals.propose(b"a", "message", now=0.0)
    proposals.propose(b"b", "message", now=0.0)
    assert list(proposals.held) == [101, 102]
    assert core.submitted == [(101, 0)], "the second waits behind the first"
    core.answer = APPENDED
    proposals.after_round([], new_leader=True, leader_known=True, now=1.0)
    assert not proposals.held
    assert core.submitted[1:] == [(101, 0), (102, 101)]


def test_window_caps_unacknowledged_proposals_and_frees_as_they_are_acknowledged() -> None:
    proposals, core = tracker(window=2)
    for _ in range(4):
        proposals.propose(b"x", "message", now=0.0)
    assert [serial for serial, _ in core.submitted] == [101, 102]
    assert list(proposals.held) == [103, 104]
    proposals.acknowledge(101)
    proposals.after_round([], new_leader=False, leader_known=True, now=0.0)
    assert [serial for serial, _ in core.submitted] == [101, 102, 103]


def test_out_of_order_refusal_resends_everything_after_the_leaders_last_serial() -> None:
    proposals, core = tracker()
    for _ in range(3):
        proposals.propose(b"x", "message", now=0.0)
    refusal = ProposalOutcome("me", 103, error="out of order", out_of_order=True, resume_after=101)
    proposals.after_round([refusal], new_leader=False, leader_known=True, now=0.0)
    assert core.submitted[3:] == [(102, 101), (103, 102)]
    proposals.after_round([refusal], new_leader=False, leader_known=True, now=0.0)
    assert len(core.submitted) == 5, "a refusal of an older copy is answered already"


def test_overtaken_proposal_is_proposed_again_under_a_fresh_serial_keeping_its_id() -> None:
    proposals, core = tracker()
    first = proposals.propose(b"first", "message", now=0.0)
    proposals.propose(b"second", "message", now=0.0)
    proposals.acknowledge(102)
    proposals.applied_own_entry(102, last_applied_serial=102, now=0.0)
    (again,) = proposals.pending.values()
    assert again.serial == 103 and again.message_id == first and again.data == b"first"
    assert core.submitted[-1] == (103, 0)


def test_stale_proposals_are_resent_after_the_retry_interval_only() -> None:
    proposals, core = tracker()
    proposals.propose(b"x", "message", now=0.0)
    proposals.retry_stale(now=4.0, retry_after=5.0)
    assert len(core.submitted) == 1
    proposals.retry_stale(now=6.0, retry_after=5.0)
    assert core.submitted == [(101, 0), (101, 0)]


def test_snapshot_settles_covered_proposals_and_reproposes_overtaken_messages() -> None:
    proposals, _ = tracker()
    proposals.propose(b"in history", "message", now=0.0)
    proposals.propose(b"overtaken", "message", now=0.0)
    proposals.propose(b"", "leave", now=0.0)
    proposals.propose(b"later", "message", now=0.0)
    settled = proposals.settle_after_snapshot(103, {101: 7}, now=0.0)
    assert [(p.serial, index) for p, index in settled.acknowledged] == [(101, 7)]
    assert settled.leave_applied
    assert sorted(proposals.pending) == [104, 105]
    assert proposals.pending[105].data == b"overtaken"
