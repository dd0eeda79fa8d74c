"""Forced configuration changes: the last voter left carries on without the dead ones.

Raft changes membership through the log, so a change needs a quorum of the old
configuration. Two voters where one machine died for good have none left: the survivor
can neither win an election nor commit the dead voter's removal. The way out is the
Raft dissertation's "manual intervention" (etcd's ``--force-new-cluster``): the
survivor alone decides, outside normal Raft, that the configuration is now itself.
:meth:`RaftCore.force_remove <raftchat.raft.core.RaftCore.force_remove>` does that:

1. it moves to a fresh term, votes for itself and appends a CONFIG entry without the
   removed voters (learners, witnesses that stay and the cluster identity are kept);
2. the new configuration takes effect when appended, and its quorum is this node
   alone: it leads at once and commits that entry (with its no-op) as soon as it is
   stored, and with it whatever its log held uncommitted.

Why the survivor loses nothing acknowledged: only the last voter left may force
(:func:`forced_configuration`), and the caller checks that the others are gone. Every
entry committed before is on a quorum of the old configuration; with two voters that is
both, so the survivor holds it. (With three or more voters the dead ones may have
committed an entry this node never received; forcing cannot know, and such an entry is
lost. If they come back, they report the split, below.) No other leader can exist in
the fresh term: in the old configuration anyone else would need this node's vote, and
the new one has no other voter.

A forgotten voter that comes back holds an older term, a configuration that still
names the survivor and perhaps an uncommitted tail. Its pre-votes are refused (they
teach it the survivor's term); the survivor, which sees it present and not a member,
adds it as a newcomer, and its tail is overwritten by the survivor's log like any
follower's uncommitted entries. In a two-voter configuration everything it committed
was committed with the survivor's help, so that part of the logs agrees and is never
touched.

The dangerous case is two survivors that each forgot the other while they could not
talk (a partition, not a death): two leaders, two histories, both committed. Nothing
in Raft can merge them. Two rules keep it from going unnoticed:

- the fresh term is drawn at random above the current one (:func:`forced_term`), so
  the two sides almost surely never write entries with the same (index, term) and
  the log matching check tells their logs apart (both would otherwise pick term + 1,
  and a follower could take the other side's entries as its own);
- a follower compares what a leader sends with what it has committed
  (:func:`committed_conflict`, :func:`snapshot_conflict`): in Raft a leader's log
  always agrees with every follower's committed entries, so a disagreement proves a
  split history. The core then never truncates its committed entries: it refuses that
  leader's log and snapshots and stops hearing it as a leader, reports
  :class:`~raftchat.raft.ready.HistoryDiverged` and carries on with its own history.
  A leader in turn ignores a success claimed past the end of its log (only a split
  follower can claim that).

What is left undetected: a leader whose snapshot ends past everything this node holds,
with terms above this node's, looks like any leader catching up a lagging follower;
the node takes it and its own split-off entries are gone (the runtime compares the
messages and says so, :mod:`raftchat.node.forget`).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import replace

from .configuration import ConfigurationChangeError
from .log import RaftLog
from .messages import Configuration, Entry, NodeId
from .reasons import Reason

FORCED_TERM_SPREAD = 1 << 16
"""A forced change moves to a term 1 to this many above the current one, at random."""


def forced_configuration(
    current: Configuration, self_id: NodeId, node_ids: Collection[NodeId]
) -> Configuration:
    """``current`` without the voters ``node_ids``, leaving ``self_id`` the only voter.

    Only the last voter left may force a change: with another voter remaining, this
    node could not know that voter's log, which may hold committed entries this one
    lacks (and that voter never agreed). Raises ConfigurationChangeError otherwise.
    """
    removed = frozenset(node_ids)
    if not removed or any(not isinstance(n, str) or not n for n in removed):
        raise ConfigurationChangeError(Reason.FORCE_NOBODY)
    if self_id in removed:
        raise ConfigurationChangeError(Reason.FORCE_SELF)
    if self_id not in current.member_voters:
        raise ConfigurationChangeError(Reason.FORCE_NOT_A_VOTER.format(node=self_id))
    strangers = sorted(removed - current.voters)
    if strangers:
        raise ConfigurationChangeError(Reason.NOT_A_VOTER.format(node=", ".join(strangers)))
    left = sorted(current.voters - removed - {self_id})
    if left:
        raise ConfigurationChangeError(Reason.FORCE_OTHERS_LEFT.format(nodes=", ".join(left)))
    return replace(current, voters=frozenset({self_id}), witnesses=current.witnesses - removed)


def forced_term(term: int, rng: random.Random) -> int:
    """The term a forced change moves to: fresh, and unlikely to be another's."""
    return term + 1 + rng.randrange(FORCED_TERM_SPREAD)


def committed_conflict(
    log: RaftLog, prev_index: int, prev_term: int, entries: Sequence[Entry]
) -> int:
    """The first index up to the commit index where a leader's AppendEntries disagrees
    with this log (0 if none): proof that the two histories split.

    A position compacted into the snapshot has no term left to compare, but it cannot
    be above the snapshot's (terms never decrease along a log): a leader claiming more
    there disagrees too.
    """
    commit = log.commit
    if prev_index <= commit and _disagrees(log, prev_index, prev_term):
        return prev_index
    for entry in entries:
        if entry.index > commit:
            break
        if _disagrees(log, entry.index, entry.term):
            return entry.index
    return 0


def snapshot_conflict(log: RaftLog, snapshot_term: int) -> bool:
    """Whether a leader's snapshot, ending past this log's commit index with an entry of
    ``snapshot_term``, contradicts it: in the leader's log the entry at our commit index
    is ours, and terms never decrease along a log. (A snapshot of a split history with
    terms above ours passes: :class:`RaftCore` cannot tell it apart.)"""
    own = log.term(log.commit)
    return own is not None and snapshot_term < own


def _disagrees(log: RaftLog, index: int, term: int) -> bool:
    own = log.term(index)
    if own is None:
        return index < log.snapshot_index and term > log.snapshot_term
    return own != term
