"""The membership tracker's leave requests: a member's request belongs to one incarnation
of it, and a later run of the member is never removed by an earlier run's request."""

from __future__ import annotations

from support.links import link_info

from raftchat.node.membership import MembershipPolicy, MembershipTracker
from raftchat.node.membership_plan import Change
from raftchat.raft import Configuration, PeerProgress, Role, Status

LEADER, BOB = "alice", "bob"
NOW = 100.0


def tracker() -> MembershipTracker:
    policy = MembershipPolicy(
        presence_grace_s=3.0, member_timeout_s=30.0, max_voters=5, silent_link_reset_s=2.0
    )
    membership = MembershipTracker(LEADER, policy)
    membership.presence_changed(frozenset({LEADER, BOB}), frozenset({LEADER, BOB}), NOW)
    return membership


def status(voters: set[str], learners: set[str] = frozenset()) -> Status:
    """A leader's status: every other member caught up."""
    peers = (voters | set(learners)) - {LEADER}
    return Status(
        node_id=LEADER,
        term=2,
        role=Role.LEADER,
        leader=LEADER,
        vote=LEADER,
        commit_index=10,
        applied_index=10,
        last_index=10,
        last_term=2,
        snapshot_index=0,
        snapshot_term=0,
        configuration=Configuration(frozenset(voters), frozenset(learners)),
        configuration_index=1,
        transfer_target="",
        messages_sent={},
        messages_received={},
        proposals_forwarded=0,
        proposals_appended=0,
        reads_forwarded=0,
        elections_started=0,
        snapshots_sent=0,
        snapshots_installed=0,
        progress=tuple(PeerProgress(peer, 10, 11, "replicate", True) for peer in sorted(peers)),
    )


OPEN_LINK = link_info(BOB)


def decide(membership: MembershipTracker, voters: set[str]) -> Change | None:
    """The leader's next change while bob is present and linked."""
    present = frozenset({LEADER, BOB})
    decision = membership.next_change(status(voters), present, True, {BOB: OPEN_LINK}, NOW)
    return None if decision is None else decision[0]


def test_the_current_runs_leave_request_removes_it() -> None:
    membership = tracker()
    membership.heard_incarnation(BOB, 5)
    membership.leave_requested(BOB, 5)
    assert decide(membership, {LEADER, BOB}) == Change("remove", BOB, "asked to leave")


def test_an_earlier_runs_leave_request_applied_after_the_restart_is_ignored() -> None:
    membership = tracker()
    membership.heard_incarnation(BOB, 5)
    membership.heard_incarnation(BOB, 6)  # bob quit and started again at once
    membership.leave_requested(BOB, 5)  # the first run's request commits only now
    assert decide(membership, {LEADER, BOB}) is None


def test_a_member_removed_by_its_request_is_added_again_once_a_new_run_speaks() -> None:
    membership = tracker()
    membership.heard_incarnation(BOB, 5)
    membership.leave_requested(BOB, 5)
    assert decide(membership, {LEADER}) is None, "the quitting run is not added back"
    membership.heard_incarnation(BOB, 6)  # presence never saw it go: no other sign
    assert decide(membership, {LEADER}) == Change("add_learner", BOB, "joined the channel")


def test_a_late_frame_of_an_earlier_run_changes_nothing() -> None:
    membership = tracker()
    membership.heard_incarnation(BOB, 6)
    membership.heard_incarnation(BOB, 5)
    assert membership.incarnations[BOB] == 6
    membership.leave_requested(BOB, 5)
    assert decide(membership, {LEADER, BOB}) is None


def test_a_leave_request_of_unknown_incarnation_counts_as_the_run_heard_then() -> None:
    heard_before = tracker()
    heard_before.heard_incarnation(BOB, 5)
    heard_before.leave_requested(BOB, None)
    assert decide(heard_before, {LEADER, BOB}) == Change("remove", BOB, "asked to leave")
    heard_before.heard_incarnation(BOB, 6)
    assert decide(heard_before, {LEADER}) == Change("add_learner", BOB, "joined the channel")

    never_heard = tracker()  # a member of an earlier release: honoured as it always was
    never_heard.leave_requested(BOB, None)
    assert decide(never_heard, {LEADER, BOB}) == Change("remove", BOB, "asked to leave")


def test_a_member_added_again_settles_its_earlier_request() -> None:
    """A leader that starts again applies its log again: a leave request followed by the
    member's removal and its return must not remove it once more, even before the new
    leader has heard the member's incarnation."""
    membership = tracker()
    membership.leave_requested(BOB, 5)
    membership.member_joined(BOB)
    assert decide(membership, {LEADER, BOB}) is None


def test_coming_back_to_the_channel_settles_a_request() -> None:
    membership = tracker()
    membership.leave_requested(BOB, None)
    membership.presence_changed(frozenset({LEADER}), frozenset({LEADER}), NOW)
    membership.presence_changed(frozenset({LEADER, BOB}), frozenset({LEADER}), NOW)
    assert decide(membership, {LEADER}) == Change("add_learner", BOB, "joined the channel")
