"""What the core hands to the runtime, and what it is built from.

The Ready contract (the runtime's loop)::

    while core.has_ready():
        ready = core.ready()
        # 0. ready.early_messages may be sent now, before step 1: a leader's
        #    AppendEntries, replicated while the leader stores the same entries.
        # 1. persist, in one transaction, in this order:
        #    - ready.compacted: store it, delete stored entries <= its index
        #    - ready.snapshot: store it, delete ALL stored entries
        #    - ready.truncate_from: delete stored entries >= it (if non-zero)
        #    - ready.entries: append them
        #    - ready.hard_state: store it (if not None)
        #    then fsync (not needed when only the commit index changed: it is
        #    volatile in Raft, and a lower one after a power loss is safe).
        # 2. send ready.messages (only now: they may promise what step 1 stored).
        # 3. if ready.snapshot: restore the state machine from ready.snapshot.data.
        # 4. apply ready.committed_entries in order.
        # 5. serve ready.read_states once applied index >= read_state.index.
        # 6. report ready.proposal_outcomes and react to ready.events.
        core.advance(ready)

Other inputs (tick, step, propose, ...) may be given between ``ready()`` and
``advance()``; ``ready()`` must not be called again before ``advance()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from .messages import NO_NODE, Configuration, Entry, HardState, Message, NodeId, Snapshot


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
    LEARNER = "learner"
    """Reported by ``status()`` for a follower that is a learner in its configuration."""


@dataclass(frozen=True, slots=True)
class PersistentState:
    """What storage hands back on start: the core is rebuilt from exactly this."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: Sequence[Entry] = ()
    """Stored entries after the snapshot, contiguous (older ones are ignored)."""
    applied: int = 0
    """Index the state machine already reflects (at least the snapshot index)."""


class RequestStatus(Enum):
    APPENDED = "appended"
    """Appended to the leader's log at ``index``/``term`` (not yet committed)."""
    FORWARDED = "forwarded"
    """Sent to the leader; the outcome arrives later in ``Ready.proposal_outcomes``."""
    PENDING = "pending"
    """A read waiting for the leader to confirm its leadership; see ``Ready.read_states``."""
    REJECTED = "rejected"
    """Refused now: ``error`` says why, ``leader`` hints where to go instead."""


@dataclass(frozen=True, slots=True)
class RequestResult:
    """Immediate answer to ``propose``, ``read_index`` and membership changes."""

    status: RequestStatus
    index: int = 0
    term: int = 0
    error: str = ""
    leader: NodeId = NO_NODE

    @property
    def ok(self) -> bool:
        return self.status is not RequestStatus.REJECTED


@dataclass(frozen=True, slots=True)
class ProposalOutcome:
    """Final word on a proposal made or forwarded by this node.

    ``error == ""``: committed at ``index`` (its entry is in this or an earlier
    Ready's ``committed_entries``; whether it takes effect there is the state
    machine's word). Otherwise it is not known to be committed: retrying with the
    same client id and serial is safe, the state machine drops duplicates.
    """

    client_id: str
    serial: int
    index: int = 0
    term: int = 0
    error: str = ""
    leader: NodeId = NO_NODE

    @property
    def committed(self) -> bool:
        return not self.error


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read: serve ``request_id`` once applied index >= ``index``.

    With ``error`` set the read failed (no leader, leadership lost): retry.
    """

    request_id: int
    index: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    term: int
    leader: NodeId
    """NO_NODE while no leader is known."""


@dataclass(frozen=True, slots=True)
class RoleChanged:
    term: int
    role: Role


@dataclass(frozen=True, slots=True)
class ConfigurationChanged:
    """The configuration in force changed (appended, truncated away, or from a snapshot)."""

    index: int
    configuration: Configuration


@dataclass(frozen=True, slots=True)
class TransferAborted:
    target: NodeId
    reason: str


@dataclass(frozen=True, slots=True)
class SnapshotRefused:
    """A snapshot from ``sender`` was dropped before anything of it was stored."""

    sender: NodeId
    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class HistoryDiverged:
    """``leader`` (of ``term``) sent a log that disagrees with this node's committed entry
    at ``index``: the two histories split (both sides carried on without each other, see
    :mod:`raftchat.raft.forced`). This node keeps its log and refuses that leader's.
    Reported once per leader and term."""

    leader: NodeId
    term: int
    index: int


Event = (
    LeaderChanged
    | RoleChanged
    | ConfigurationChanged
    | TransferAborted
    | SnapshotRefused
    | HistoryDiverged
)


@dataclass(slots=True)
class Ready:
    """Work for the runtime, in the order it must be done (see the module docstring)."""

    hard_state: HardState | None = None
    compacted: Snapshot | None = None
    snapshot: Snapshot | None = None
    truncate_from: int = 0
    entries: list[Entry] = field(default_factory=list)
    early_messages: list[tuple[NodeId, Message]] = field(default_factory=list)
    """The leader's AppendEntries: may be sent before step 1 (see the module docstring)."""
    messages: list[tuple[NodeId, Message]] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    proposal_outcomes: list[ProposalOutcome] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PeerProgress:
    """The leader's view of one follower's log."""

    node_id: NodeId
    match: int
    next: int
    state: str
    recent_active: bool


@dataclass(frozen=True, slots=True)
class Status:
    node_id: NodeId
    term: int
    role: Role
    leader: NodeId
    vote: NodeId
    commit_index: int
    applied_index: int
    last_index: int
    last_term: int
    snapshot_index: int
    snapshot_term: int
    configuration: Configuration
    configuration_index: int
    transfer_target: NodeId
    messages_sent: Mapping[str, int]
    """Count per message type name, e.g. ``{"AppendEntries": 12, ...}``."""
    messages_received: Mapping[str, int]
    proposals_forwarded: int
    proposals_appended: int
    reads_forwarded: int
    elections_started: int
    snapshots_sent: int
    snapshots_installed: int
    snapshots_refused: int = 0
    messages_refused: int = 0
    progress: tuple[PeerProgress, ...] = ()
    """Leader only: one per other member."""
