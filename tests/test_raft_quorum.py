"""Majority arithmetic and single-server membership changes, without a core."""

from __future__ import annotations

import pytest

from raftchat.raft import Configuration, Reason
from raftchat.raft.configuration import (
    ConfigurationChangeError,
    with_learner,
    with_learner_promoted,
    without_member,
)
from raftchat.raft.quorum import VoteResult, committed_index, majority, vote_result


def test_majority_of_voters():
    assert [majority(range(n)) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]


def test_committed_index_is_what_a_majority_holds():
    assert committed_index([7]) == 7
    assert committed_index([5, 9, 1]) == 5
    assert committed_index([3, 8, 8, 2]) == 3
    assert committed_index([4, 6, 10, 9, 1]) == 6


def test_vote_result_decides_as_soon_as_it_can():
    voters = {"a", "b", "c"}
    assert vote_result(voters, {"a": True}) is VoteResult.PENDING
    assert vote_result(voters, {"a": True, "b": True}) is VoteResult.WON
    assert vote_result(voters, {"a": True, "b": False}) is VoteResult.PENDING
    assert vote_result(voters, {"a": True, "b": False, "c": False}) is VoteResult.LOST
    assert vote_result({"a", "b"}, {"a": True, "b": False}) is VoteResult.LOST


def test_membership_changes():
    start = Configuration(voters=frozenset({"a"}))
    grown = with_learner(start, "b")
    assert grown == Configuration(frozenset({"a"}), frozenset({"b"}))
    promoted = with_learner_promoted(grown, "b")
    assert promoted == Configuration(frozenset({"a", "b"}))
    assert without_member(promoted, "a") == Configuration(frozenset({"b"}))


@pytest.mark.parametrize(
    ("change", "node", "reason"),
    [
        (with_learner, "a", Reason.ALREADY_MEMBER.format(node="a", kind="voter")),
        (with_learner, "l", Reason.ALREADY_MEMBER.format(node="l", kind="learner")),
        (with_learner_promoted, "a", Reason.NOT_A_LEARNER.format(node="a")),
        (without_member, "z", Reason.NOT_A_MEMBER.format(node="z")),
        (without_member, "a", Reason.LAST_VOTER.format(node="a")),
    ],
)
def test_membership_changes_that_make_no_sense_say_why(change, node, reason):
    current = Configuration(voters=frozenset({"a"}), learners=frozenset({"l"}))
    with pytest.raises(ConfigurationChangeError) as raised:
        change(current, node)
    assert str(raised.value) == reason
