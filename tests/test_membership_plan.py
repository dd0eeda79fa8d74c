"""The membership policy: one change at a time, additions first, outages are not departures."""

from __future__ import annotations

from raftchat.node.membership_plan import Change, MembershipView, next_change
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
    change = next_change(view({"a"}, {"b"}, caught_up=frozenset({"b"}), departing=frozenset({"b"})))
    assert change is not None and (change.kind, change.node_id) == ("remove", "b")


def test_leader_never_removes_itself() -> None:
    assert next_change(view({"a", "b"}, departing=frozenset({"a"}))) is None


def test_newcomer_waits_for_an_open_link() -> None:
    unreachable_newcomer = view({"a"}, present=frozenset({"a", "b"}), connected=frozenset())
    assert next_change(unreachable_newcomer) is None
    linked = view({"a"}, present=frozenset({"a", "b"}), connected=frozenset({"b"}))
    assert next_change(linked) == Change("add_learner", "b", "joined the channel")
