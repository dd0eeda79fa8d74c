"""The membership policy: one change at a time, additions first, outages are not departures."""

from __future__ import annotations

from raftchat.node.membership_plan import Change, MembershipView, leave_is_current, next_change
from raftchat.raft.messages import Configuration


def view(voters: set[str], learners: set[str] = frozenset(), **kwargs: object) -> MembershipView:
    defaults: dict[str, object] = {
        "self_id": "a",
        "present": frozenset(voters | set(learners)),
        "signaling_connected": True,
    }
    defaults.update(kwargs)
    configuration = Configuration(frozenset(voters), frozenset(learners))
    return MembershipView(configuration=configuration, **defaults)  # type: ignore[arg-type]


def test_stable_cluster_needs_no_change() -> None:
    assert next_change(view({"a", "b", "c"})) is None


def test_newcomer_joins_as_learner() -> None:
    change = next_change(view({"a"}, present=frozenset({"a", "b"})))
    assert change == Change("add_learner", "b", "joined the channel")


def test_additions_come_before_removals() -> None:
    change = next_change(view({"a", "b"}, present=frozenset({"a", "c"})))
    assert change is not None and (change.kind, change.node_id) == ("add_learner", "c")


def test_caught_up_learner_is_promoted_while_voters_are_few() -> None:
    promoted = next_change(view({"a"}, {"b"}, caught_up=frozenset({"b"})))
    assert promoted is not None and (promoted.kind, promoted.node_id) == ("promote", "b")
    not_caught_up = next_change(view({"a"}, {"b"}))
    assert not_caught_up is None


def test_learners_beyond_max_voters_stay_learners() -> None:
    voters = {"a", "b", "c"}
    change = next_change(view(voters, {"d"}, caught_up=frozenset({"d"}), max_voters=3))
    assert change is None


def test_departed_member_is_removed_learners_first() -> None:
    change = next_change(view({"a", "b"}, {"c"}, present=frozenset({"a"})))
    assert change is not None and (change.kind, change.node_id) == ("remove", "c")


def test_signaling_outage_is_not_a_departure() -> None:
    outage = view({"a", "b", "c"}, present=frozenset(), signaling_connected=False)
    assert next_change(outage) is None


def test_unreachable_member_is_removed_even_if_present() -> None:
    change = next_change(view({"a", "b", "c"}, unreachable=frozenset({"c"})))
    assert change is not None and (change.kind, change.node_id) == ("remove", "c")
    assert "member timeout" in change.reason


def test_unreachable_peer_is_not_re_added() -> None:
    change = next_change(view({"a"}, present=frozenset({"a", "b"}), unreachable=frozenset({"b"})))
    assert change is None


def test_departing_member_is_removed_and_not_promoted() -> None:
    change = next_change(view({"a"}, {"b"}, caught_up=frozenset({"b"}), leave_requests={"b": 7}))
    assert change is not None and (change.kind, change.node_id) == ("remove", "b")


def test_leader_never_removes_itself() -> None:
    assert next_change(view({"a", "b"}, leave_requests={"a": 7})) is None


# --- leave requests and incarnations ---------------------------------------------------


def test_a_leave_request_stands_unless_a_newer_incarnation_was_heard() -> None:
    assert leave_is_current(5, None)
    assert leave_is_current(5, 5)
    assert leave_is_current(6, 5), "its hello may not have arrived yet"
    assert not leave_is_current(5, 6)
    assert leave_is_current(None, None), "an earlier release's request, nothing heard"
    assert not leave_is_current(None, 6), "an incarnation heard since: a later run"


def test_a_leave_of_an_earlier_incarnation_does_not_remove_the_member() -> None:
    restarted = view({"a", "b"}, leave_requests={"b": 5}, incarnations={"b": 6})
    assert next_change(restarted) is None


def test_a_member_removed_before_it_restarted_is_added_again() -> None:
    removed = view(
        {"a"}, present=frozenset({"a", "b"}), leave_requests={"b": 5}, incarnations={"b": 6}
    )
    assert next_change(removed) == Change("add_learner", "b", "joined the channel")
    still_quitting = view(
        {"a"}, present=frozenset({"a", "b"}), leave_requests={"b": 5}, incarnations={"b": 5}
    )
    assert next_change(still_quitting) is None, "the run that asked to leave is not re-added"


def test_a_leave_of_the_newest_incarnation_is_honoured() -> None:
    for heard in ({"b": 5}, {"b": 4}, {}):
        change = next_change(view({"a", "b"}, leave_requests={"b": 5}, incarnations=heard))
        assert change == Change("remove", "b", "asked to leave"), heard


def test_a_leave_of_unknown_incarnation_is_honoured_until_an_incarnation_is_heard() -> None:
    legacy = view({"a", "b"}, leave_requests={"b": None})
    assert next_change(legacy) == Change("remove", "b", "asked to leave")
    upgraded = view({"a", "b"}, leave_requests={"b": None}, incarnations={"b": 3})
    assert next_change(upgraded) is None


def test_newcomer_waits_for_an_open_link() -> None:
    unreachable_newcomer = view({"a"}, present=frozenset({"a", "b"}), connected=frozenset())
    assert next_change(unreachable_newcomer) is None
    linked = view({"a"}, present=frozenset({"a", "b"}), connected=frozenset({"b"}))
    assert next_change(linked) == Change("add_learner", "b", "joined the channel")


# --- the witness --------------------------------------------------------------------------


def witness_view(
    voters: set[str], witnesses: set[str] = frozenset(), **kwargs: object
) -> MembershipView:
    """A view whose configuration has ``witnesses`` among its voters."""
    defaults: dict[str, object] = {
        "self_id": "a",
        "present": frozenset(voters),
        "signaling_connected": True,
        "witness_available": "w",
    }
    defaults.update(kwargs)
    configuration = Configuration(
        frozenset(voters | set(witnesses)), witnesses=frozenset(witnesses)
    )
    return MembershipView(configuration=configuration, **defaults)  # type: ignore[arg-type]


def test_a_witness_joins_two_members():
    assert next_change(witness_view({"a", "b"})) == Change(
        "add_witness", "w", "the member voters are even"
    )


def test_no_witness_for_one_or_three_members_nor_when_none_is_offered():
    assert next_change(witness_view({"a"})) is None
    assert next_change(witness_view({"a", "b", "c"})) is None
    assert next_change(witness_view({"a", "b"}, witness_available=None)) is None


def test_a_witness_joins_four_members_and_stays_with_two():
    assert next_change(witness_view({"a", "b", "c", "d"})) == Change(
        "add_witness", "w", "the member voters are even"
    )
    assert next_change(witness_view({"a", "b"}, {"w"})) is None


def test_the_witness_leaves_once_the_member_voters_are_odd():
    change = next_change(witness_view({"a", "b", "c"}, {"w"}))
    assert change == Change("remove_witness", "w", "the member voters are odd")
    alone = next_change(witness_view({"a"}, {"w"}))
    assert alone is not None and alone.kind == "remove_witness"


def test_a_dead_member_goes_first_then_the_witness():
    dead = next_change(witness_view({"a", "b"}, {"w"}, unreachable=frozenset({"b"})))
    assert dead is not None and (dead.kind, dead.node_id) == ("remove", "b")


def test_a_witness_joins_before_a_removal_that_would_leave_two_members():
    view = witness_view({"a", "b", "c"}, unreachable=frozenset({"c"}))
    assert next_change(view) == Change("add_witness", "w", "the member voters are even")
    later = witness_view({"a", "b", "c"}, {"w"}, unreachable=frozenset({"c"}))
    removal = next_change(later)
    assert removal is not None and (removal.kind, removal.node_id) == ("remove", "c")


def test_a_promotion_to_three_members_comes_before_the_witness_leaves():
    configuration = Configuration(
        frozenset({"a", "b", "w"}), frozenset({"c"}), witnesses=frozenset({"w"})
    )
    view = MembershipView(
        "a",
        configuration,
        present=frozenset({"a", "b", "c"}),
        signaling_connected=True,
        caught_up=frozenset({"c"}),
        witness_available="w",
    )
    assert next_change(view) == Change("promote", "c", "caught up")


def test_a_witness_the_server_no_longer_offers_is_replaced():
    old = witness_view({"a", "b"}, {"w"}, witness_available="w2")
    assert next_change(old) == Change(
        "remove_witness", "w", "the signaling server no longer holds it"
    )
    assert next_change(witness_view({"a", "b"}, witness_available="w2")) == Change(
        "add_witness", "w2", "the member voters are even"
    )


def test_a_signaling_outage_keeps_the_witness():
    outage = witness_view(
        {"a", "b"}, {"w"}, present=frozenset(), signaling_connected=False, witness_available=None
    )
    assert next_change(outage) is None


def test_the_witness_is_never_added_as_a_learner():
    view = witness_view({"a", "b"}, {"w"}, present=frozenset({"a", "b", "w"}))
    assert next_change(view) is None
    not_yet = witness_view({"a", "b"}, present=frozenset({"a", "b", "w"}))
    assert next_change(not_yet) == Change("add_witness", "w", "the member voters are even")


def test_max_voters_counts_members_only():
    configuration = Configuration(
        frozenset({"a", "b", "w"}), frozenset({"c"}), witnesses=frozenset({"w"})
    )
    view = MembershipView(
        "a",
        configuration,
        present=frozenset({"a", "b", "c"}),
        signaling_connected=True,
        caught_up=frozenset({"c"}),
        max_voters=3,
        witness_available="w",
    )
    assert next_change(view) == Change("promote", "c", "caught up")
