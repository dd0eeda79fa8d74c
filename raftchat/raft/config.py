"""Core settings, and the cluster configuration carried in CONFIG log entries.

A configuration takes effect as soon as its entry is appended to a log (not
when it commits), and reverts if that entry is truncated away; so every node
keeps the list of configuration entries past its snapshot. The ``data`` of a
CONFIG entry is the codec's encoding of the configuration (the same one the
wire and the snapshot metadata use).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .codec import decode_configuration, encode_configuration
from .messages import Configuration, Entry, EntryKind, NodeId

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Settings of one Raft node. Times are in ticks (the runtime decides a tick's length)."""

    node_id: NodeId
    """This node's id; must be non-empty."""
    election_timeout_ticks: int = 10
    """T: a follower campaigns after a random timeout in [T, 2T) without hearing a leader."""
    heartbeat_ticks: int = 2
    """A leader sends heartbeats this often; must be smaller than the election timeout."""
    learner_heartbeat_rounds: int = 5
    """Learners get every this-many-th heartbeat. They never campaign and new commits reach
    them at once anyway, so their heartbeats only show the leader is alive and find stalled
    replication; in a large channel, heartbeats to learners are most of the leader's work."""
    stalled_heartbeat_rounds: int = 3
    """Replication to a follower that acknowledged nothing new for this many heartbeat
    rounds, with entries in flight, restarts from what it holds (the entries may have been
    lost). Not fewer: under a burst, a link's queue can hold more than one round's worth,
    and resending it all every round only makes the queue longer."""
    max_append_bytes: int = 64 * 1024
    """Upper bound on entry bytes in one AppendEntries (one entry is always allowed)."""
    max_inflight: int = 8
    """AppendEntries messages in flight to one follower before waiting for acknowledgements."""
    snapshot_chunk_bytes: int = 48 * 1024
    """Bytes of snapshot data per InstallSnapshot message."""
    pre_vote: bool = True
    """Run a pre-vote round first, so a partitioned node does not bump terms when it rejoins."""
    check_quorum: bool = True
    """A leader steps down when it has not heard from a quorum for an election timeout;
    followers that heard from a leader recently refuse to vote (leader lease)."""
    max_proposal_bytes: int = 1024 * 1024
    """Largest accepted proposal payload."""
    max_uncommitted_entries: int = 100_000
    """A leader refuses proposals while this many of its entries are not yet committed."""
    max_committed_per_ready: int = 8192
    """At most this many committed entries are handed out by one ``ready()``."""
    request_timeout_ticks: int = 0
    """A forwarded proposal or read with no answer fails after this long (0: 2 x election)."""

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not self.node_id:
            raise ValueError(f"node_id must be a non-empty string, got {self.node_id!r}")
        positive = (
            "election_timeout_ticks",
            "heartbeat_ticks",
            "learner_heartbeat_rounds",
            "stalled_heartbeat_rounds",
            "max_append_bytes",
            "max_inflight",
            "snapshot_chunk_bytes",
            "max_proposal_bytes",
            "max_uncommitted_entries",
            "max_committed_per_ready",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.heartbeat_ticks >= self.election_timeout_ticks:
            raise ValueError(
                f"heartbeat_ticks ({self.heartbeat_ticks}) must be smaller than "
                f"election_timeout_ticks ({self.election_timeout_ticks})"
            )
        if self.request_timeout_ticks < 0:
            raise ValueError("request_timeout_ticks must be >= 0")

    @property
    def effective_request_timeout(self) -> int:
        return self.request_timeout_ticks or 2 * self.election_timeout_ticks


class ConfigurationHistory:
    """The configurations found in the log past the snapshot, newest last."""

    def __init__(self, base_index: int, base: Configuration) -> None:
        self._base_index = base_index
        self._base = base
        self._changes: list[tuple[int, Configuration]] = []

    @property
    def current(self) -> Configuration:
        return self._changes[-1][1] if self._changes else self._base

    @property
    def current_index(self) -> int:
        """Index of the entry that set the current configuration (snapshot index if none)."""
        return self._changes[-1][0] if self._changes else self._base_index

    def at(self, index: int) -> Configuration:
        """The configuration in force once the log is applied up to ``index``."""
        result = self._base
        for change_index, configuration in self._changes:
            if change_index > index:
                break
            result = configuration
        return result

    def observe(self, entries: list[Entry] | tuple[Entry, ...]) -> bool:
        """Record the CONFIG entries among freshly appended ``entries``; True if any."""
        changed = False
        for entry in entries:
            if entry.kind == EntryKind.CONFIG:
                try:
                    configuration = decode_configuration(entry.data)
                except ValueError as error:
                    logger.error("ignoring configuration entry %d: %s", entry.index, error)
                    continue
                self._changes.append((entry.index, configuration))
                changed = True
        return changed

    def truncate_from(self, index: int) -> bool:
        """Forget configurations of entries at ``index`` and later; True if any."""
        before = len(self._changes)
        while self._changes and self._changes[-1][0] >= index:
            self._changes.pop()
        return len(self._changes) != before

    def compact_to(self, index: int) -> None:
        """The log prefix up to ``index`` became a snapshot."""
        self._base = self.at(index)
        self._base_index = max(self._base_index, index)
        self._changes = [(i, c) for i, c in self._changes if i > index]

    def reset(self, index: int, configuration: Configuration) -> None:
        """The whole log was replaced by a snapshot ending at ``index``."""
        self._base_index = index
        self._base = configuration
        self._changes = []


__all__ = [
    "ConfigurationHistory",
    "RaftConfig",
    "decode_configuration",
    "encode_configuration",
]
