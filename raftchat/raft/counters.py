"""What the core counts for :class:`~raftchat.raft.ready.Status` (totals since start)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Counters:
    messages_sent: dict[str, int] = field(default_factory=dict)
    """Per message type name."""
    messages_received: dict[str, int] = field(default_factory=dict)
    proposals_forwarded: int = 0
    proposals_appended: int = 0
    reads_forwarded: int = 0
    elections_started: int = 0
    snapshots_sent: int = 0
    snapshots_installed: int = 0
    snapshots_refused: int = 0
    messages_refused: int = 0
    """Messages dropped because the sender's role does not allow them (:mod:`.admission`)."""
    """Incoming snapshots dropped: over the size limit, or refused by the snapshot check."""
