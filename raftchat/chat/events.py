"""What applying a committed entry (or a configuration change) reports, in log order."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from raftchat.chat.signing import Signature
from raftchat.raft.messages import NodeId

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MessageApplied:
    """A chat message took its place in the log. ``id`` is ``"<client_id>:<serial>"``."""

    index: int
    id: str
    client_id: str
    serial: int
    nick: str
    text: str
    ts: int
    action: bool
    merged: bool = False
    """Written in another cluster of the channel and merged into this one."""
    signature: Signature | None = None
    """Its author's (None: written before commands were signed); kept so that a merge
    can carry the message into another cluster of the channel."""


@dataclass(frozen=True, slots=True)
class MergedDuplicate:
    """A merged message the channel already has (same id): dropped. ``proposer`` is the
    node that proposed it."""

    index: int
    message_id: str
    proposer: str


@dataclass(frozen=True, slots=True)
class MergeCompleted:
    """A member finished merging the history of cluster ``source``; ``count`` of its
    messages were new to the channel since the last such report (0: nothing new)."""

    index: int
    source: str
    proposer: str
    count: int


@dataclass(frozen=True, slots=True)
class NickChanged:
    """A client's nick changed; ``old`` is empty the first time a client is seen."""

    index: int
    client_id: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class DuplicateDropped:
    """A serial at or below its client's last applied one (a retry, or a copy the leader
    was given twice); ``original_index`` is where the original was applied, 0 if not known
    (no longer remembered, or never applied: a run that started below the last serial)."""

    index: int
    client_id: str
    serial: int
    original_index: int


@dataclass(frozen=True, slots=True)
class OutOfOrderDropped:
    """A serial whose predecessor in its client's run has not been applied (it was lost on
    the way, or is still behind in the log): dropped, so a sender's commands apply in the
    order sent. The client sends every command after ``last_serial`` (its last applied
    serial) again, in order."""

    index: int
    client_id: str
    serial: int
    last_serial: int


@dataclass(frozen=True, slots=True)
class InvalidCommand:
    """A malformed command was applied as a no-op. ``client_id``/``serial`` are those of
    the entry (possibly empty/0), so the proposer can learn of the rejection."""

    index: int
    reason: str
    client_id: str = ""
    serial: int = 0


@dataclass(frozen=True, slots=True)
class LeaveRequested:
    """A member asked to be removed; the leader acts on it."""

    index: int
    client_id: str
    incarnation: int | None = None
    """The member's run that asked (None: unknown, a request of an earlier release)."""


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A node entered the configuration, as a voter or a learner."""

    index: int
    node_id: NodeId
    voter: bool


@dataclass(frozen=True, slots=True)
class MemberLeft:
    index: int
    node_id: NodeId


@dataclass(frozen=True, slots=True)
class MemberRoleChanged:
    """A member was promoted to voter (``voter=True``) or demoted to learner."""

    index: int
    node_id: NodeId
    voter: bool


ChatEvent = (
    MessageApplied
    | NickChanged
    | DuplicateDropped
    | OutOfOrderDropped
    | InvalidCommand
    | LeaveRequested
    | MemberJoined
    | MemberLeft
    | MemberRoleChanged
    | MergedDuplicate
    | MergeCompleted
)
