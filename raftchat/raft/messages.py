"""Log entries, persistent state and the messages Raft peers exchange.

Every message is a small frozen dataclass carrying the sender id and the
sender's term: DataChannels are message-based, not request/response, so a
response says who it comes from (as raft.js's ``sourceId`` does).

Field types are restricted to ``int``, ``bool``, ``str``, ``bytes``,
``NodeId``, ``EntryKind``, ``Configuration``, ``tuple[Entry, ...]`` and
``X | None`` of those, so that the codec can validate every field from the
type hints alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

NodeId = str
"""A peer id: short, random, unguessable text chosen by the node itself."""

NO_NODE: NodeId = ""
"""Stands for "nobody" where a node id is expected (no vote, no known leader)."""


class EntryKind(IntEnum):
    """What a log entry carries."""

    NORMAL = 0
    """Application data (a chat command), with a client session id and serial."""
    NOOP = 1
    """Appended by a new leader so it can commit entries of its own term."""
    CONFIG = 2
    """A new cluster configuration (``data`` is its encoding)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. ``client_id``/``serial`` name a client's proposal: the state machine
    keeps its client sessions by them, the core only reports outcomes by them."""

    index: int
    term: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""
    client_id: str = ""
    serial: int = 0


@dataclass(frozen=True, slots=True)
class ClusterIdentity:
    """Which cluster a log belongs to: fixed when the cluster is founded, never changed.

    Two clusters can serve one channel (a newcomer founded one while the members were
    away); their logs must never be mixed. ``founded_ms`` is the founder's wall clock
    (Unix milliseconds), ``cluster_id`` 32 random hex digits.
    """

    founded_ms: int
    cluster_id: str


@dataclass(frozen=True, slots=True)
class Configuration:
    """Cluster membership: voters count toward quorum; learners only receive the log.

    ``cluster`` rides along so every CONFIG entry and every snapshot names the cluster
    (None in logs written before clusters had an identity).

    Witnesses are voters too (quorums count them like any voter), but a witness never
    leads and holds only the (index, term) of entries, never their data: a tie-breaker
    vote, so that a channel of two members survives losing one.
    """

    voters: frozenset[NodeId] = field(default_factory=frozenset)
    learners: frozenset[NodeId] = field(default_factory=frozenset)
    cluster: ClusterIdentity | None = None
    witnesses: frozenset[NodeId] = field(default_factory=frozenset)
    """The voters that are witnesses (a subset of ``voters``)."""

    def __post_init__(self) -> None:
        if not self.witnesses <= self.voters:
            extra = sorted(self.witnesses - self.voters)
            raise ValueError(f"witnesses must be voters: {extra} are not")

    @property
    def members(self) -> frozenset[NodeId]:
        return self.voters | self.learners

    @property
    def member_voters(self) -> frozenset[NodeId]:
        """The voters that hold the whole log and may lead (every voter but the witnesses)."""
        return self.voters - self.witnesses

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before a message that depends on it is sent."""

    term: int = 0
    vote: NodeId = NO_NODE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot ends in the log, and the configuration in force there."""

    index: int = 0
    term: int = 0
    configuration: Configuration = field(default_factory=Configuration)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A compacted prefix of the log: the state machine's state up to ``meta.index``."""

    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""


# --- messages -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestVote:
    sender: NodeId
    term: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    leadership_transfer: bool = False
    """Set when the election follows TimeoutNow: voters ignore their leader lease."""


@dataclass(frozen=True, slots=True)
class RequestVoteResponse:
    sender: NodeId
    term: int
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    sender: NodeId
    term: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    heartbeat_seq: int = 0
    """Round number of the leader's heartbeats; echoed back for ReadIndex/CheckQuorum."""


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    sender: NodeId
    term: int
    success: bool
    match_index: int
    conflict_index: int = 0
    """On rejection: the first index of ``conflict_term`` in the follower's log (or its length)."""
    conflict_term: int = 0
    heartbeat_seq: int = 0
    reject_index: int = 0
    """On rejection: the ``prev_log_index`` that did not match (lets the leader drop stale ones)."""


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """One chunk of a snapshot; ``offset`` is the byte position of ``data`` in it."""

    sender: NodeId
    term: int
    last_included_index: int
    last_included_term: int
    configuration: Configuration
    offset: int
    data: bytes
    done: bool


@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse:
    sender: NodeId
    term: int
    last_included_index: int
    next_offset: int
    """Bytes the follower holds so far; the leader sends the chunk starting there."""
    done: bool = False


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: the target starts an election at once."""

    sender: NodeId
    term: int


@dataclass(frozen=True, slots=True)
class ForwardProposal:
    """A follower or learner hands a client proposal to the leader."""

    sender: NodeId
    term: int
    client_id: str
    serial: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ProposalResult:
    """The leader's answer to ForwardProposal: where it was appended, or why not."""

    sender: NodeId
    term: int
    client_id: str
    serial: int
    index: int = 0
    entry_term: int = 0
    error: str = ""
    leader: NodeId = NO_NODE


@dataclass(frozen=True, slots=True)
class ReadIndexRequest:
    """A follower asks the leader for a linearizable read index."""

    sender: NodeId
    term: int
    request_id: int


@dataclass(frozen=True, slots=True)
class ReadIndexResponse:
    sender: NodeId
    term: int
    request_id: int
    read_index: int = 0
    error: str = ""
    leader: NodeId = NO_NODE


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
    | ForwardProposal
    | ProposalResult
    | ReadIndexRequest
    | ReadIndexResponse
)

MESSAGE_TYPES: tuple[type, ...] = (
    RequestVote,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    TimeoutNow,
    ForwardProposal,
    ProposalResult,
    ReadIndexRequest,
    ReadIndexResponse,
)
"""Every message type, in a fixed order: the position is the wire type tag."""
