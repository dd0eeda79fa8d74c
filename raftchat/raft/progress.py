"""What a leader knows about each follower's log, and how it paces replication.

As in etcd raft, a follower is in one of three states:

- PROBE: we do not know where its log ends; send one AppendEntries and wait.
- REPLICATE: its log matches ours up to ``match``; stream entries, up to
  ``max_inflight`` unacknowledged messages at a time.
- SNAPSHOT: it needs entries we compacted; send the snapshot in chunks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum


class ProgressState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(slots=True)
class Progress:
    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    inflight: deque[int] = field(default_factory=deque)
    """Last entry index of each AppendEntries sent in REPLICATE state, oldest first."""
    recent_active: bool = False
    """Heard from it since the last CheckQuorum round."""
    was_active: bool = True
    """Heard from it in the round before (True for a new follower: a round of grace)."""
    heartbeat_ack: int = 0
    """Highest heartbeat round it echoed in this term."""
    match_at_last_heartbeat: int = -1
    stalled_rounds: int = 0
    """Heartbeat rounds in a row with entries in flight and no progress."""
    commit_sent: int = 0
    """Commit index carried by the last AppendEntries sent to it."""
    snapshot_index: int = 0
    """Index of the snapshot being sent (SNAPSHOT state)."""
    snapshot_offset: int = 0
    """Bytes of it the follower confirmed holding."""
    snapshot_idle_rounds: int = 0
    """Heartbeat rounds without a snapshot response; the chunk is re-sent after one."""

    @property
    def lately_active(self) -> bool:
        """Heard from within the last full CheckQuorum round: not presumed dead."""
        return self.recent_active or self.was_active

    def end_round(self) -> None:
        """A CheckQuorum round ended: start counting what is heard afresh."""
        self.was_active = self.recent_active
        self.recent_active = False

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.snapshot_index + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, snapshot_index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.snapshot_index = snapshot_index
        self.snapshot_offset = 0
        self.snapshot_idle_rounds = 0
        self.inflight.clear()

    def maybe_update(self, match: int) -> bool:
        """A success up to ``match`` arrived; False if it told us nothing new."""
        updated = match > self.match
        if updated:
            self.match = match
            self.probe_sent = False
        if self.next < match + 1:
            self.next = match + 1
        return updated

    def sent(self, last_index: int, carried_entries: bool) -> None:
        """An AppendEntries ending at ``last_index`` went out."""
        if self.state is ProgressState.REPLICATE:
            if carried_entries:
                self.next = last_index + 1
                self.inflight.append(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def free_to(self, index: int) -> None:
        inflight = self.inflight
        while inflight and inflight[0] <= index:
            inflight.popleft()

    def is_paused(self, max_inflight: int) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= max_inflight
        return True
