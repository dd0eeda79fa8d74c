"""The consensus core: pure, deterministic Raft (sans-I/O).

Feed a :class:`RaftCore` ticks, peers' messages and local requests; take its work
from :meth:`RaftCore.ready` (see :mod:`raftchat.raft.ready` for the order to do it
in) and hand it back with :meth:`RaftCore.advance`. Messages travel as bytes made
by :func:`encode` and read back by :func:`decode`. Nothing here touches a clock, a
socket or a file. A :class:`WitnessCore` is the small core of a witness: a voter
that never leads and keeps only the (index, term) of entries. ``python -m
raftchat.raft.sim`` runs the deterministic fault simulator.
"""

from .codec import CodecError, decode, decode_configuration, encode, encode_configuration
from .core import RaftCore, RaftError
from .messages import (
    MESSAGE_TYPES,
    NO_NODE,
    AppendEntries,
    AppendEntriesResponse,
    ClusterIdentity,
    Configuration,
    Entry,
    EntryKind,
    ForwardProposal,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    NodeId,
    ProposalResult,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    SnapshotMeta,
    TimeoutNow,
)
from .ready import (
    ConfigurationChanged,
    Event,
    HistoryDiverged,
    LeaderChanged,
    PeerProgress,
    PersistentState,
    ProposalOutcome,
    ReadState,
    Ready,
    RequestResult,
    RequestStatus,
    Role,
    RoleChanged,
    SnapshotRefused,
    Status,
    TransferAborted,
)
from .reasons import Reason
from .settings import RaftSettings
from .witness import (
    LogPosition,
    WitnessCore,
    WitnessError,
    WitnessHardState,
    WitnessReady,
    WitnessSettings,
    WitnessState,
)

__all__ = [
    "MESSAGE_TYPES",
    "NO_NODE",
    "AppendEntries",
    "AppendEntriesResponse",
    "ClusterIdentity",
    "CodecError",
    "Configuration",
    "ConfigurationChanged",
    "Entry",
    "EntryKind",
    "Event",
    "ForwardProposal",
    "HardState",
    "HistoryDiverged",
    "InstallSnapshot",
    "InstallSnapshotResponse",
    "LeaderChanged",
    "LogPosition",
    "Message",
    "NodeId",
    "PeerProgress",
    "PersistentState",
    "ProposalOutcome",
    "ProposalResult",
    "RaftCore",
    "RaftError",
    "RaftSettings",
    "ReadIndexRequest",
    "ReadIndexResponse",
    "ReadState",
    "Ready",
    "Reason",
    "RequestResult",
    "RequestStatus",
    "RequestVote",
    "RequestVoteResponse",
    "Role",
    "RoleChanged",
    "Snapshot",
    "SnapshotMeta",
    "SnapshotRefused",
    "Status",
    "TimeoutNow",
    "TransferAborted",
    "WitnessCore",
    "WitnessError",
    "WitnessHardState",
    "WitnessReady",
    "WitnessSettings",
    "WitnessState",
    "decode",
    "decode_configuration",
    "encode",
    "encode_configuration",
]
