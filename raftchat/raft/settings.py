"""The settings of one Raft node: its id, its timers (in ticks) and its flow-control limits."""

from __future__ import annotations

from dataclasses import dataclass

from .messages import NodeId


@dataclass(frozen=True, slots=True)
class RaftSettings:
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
    max_snapshot_bytes: int = 256 * 1024 * 1024
    """Largest snapshot a follower takes in: chunks beyond it are refused and the partial
    snapshot dropped, so no sender can make a node buffer without bound."""
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
            "max_snapshot_bytes",
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
        """Ticks a forwarded request waits for its answer."""
        return self.request_timeout_ticks or 2 * self.election_timeout_ticks
