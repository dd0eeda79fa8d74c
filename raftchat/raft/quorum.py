"""Majority arithmetic over a configuration's voters (learners never count)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import Enum

from .messages import NodeId


class VoteResult(Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority(voters: Collection[NodeId]) -> int:
    """How many of ``voters`` make a quorum."""
    return len(voters) // 2 + 1


def committed_index(matches: Collection[int]) -> int:
    """The highest index that a majority of voters holds, from each voter's match index."""
    ordered = sorted(matches)
    return ordered[len(ordered) - majority(ordered)]


def vote_result(voters: Collection[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """WON once a majority granted, LOST once a majority can no longer grant."""
    grants = sum(1 for granted in votes.values() if granted)
    rejects = len(votes) - grants
    quorum = majority(voters)
    if grants >= quorum:
        return VoteResult.WON
    if rejects > len(voters) - quorum:
        return VoteResult.LOST
    return VoteResult.PENDING
