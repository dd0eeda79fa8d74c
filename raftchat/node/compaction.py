"""When to snapshot the chat state and when to compact the log to a snapshot.

Snapshots are taken every ``compaction_threshold`` entries, but the log is compacted to
one only once ``catchup_entries`` more are applied: the log keeps that many entries, so
a member that fell a little behind (a busy or briefly paused machine) catches up from
entries and sees every message, instead of getting a snapshot that shows only the
history window.
"""

from __future__ import annotations

from collections import deque

MAX_PENDING_SNAPSHOTS = 8
"""Snapshots waiting for their catch-up entries are taken at least ``catchup_entries`` / this
many entries apart, so a small ``compaction_threshold`` cannot pile up snapshots in memory."""


class CompactionSchedule:
    """Snapshots (index, chat state) waiting for ``catchup_entries`` more entries."""

    def __init__(
        self, compaction_threshold: int, catchup_entries: int, max_snapshot_bytes: int
    ) -> None:
        self.catchup_entries = catchup_entries
        self.max_snapshot_bytes = max_snapshot_bytes
        self.skipped_at = 0
        """Where the last snapshot too big to send was taken (and dropped): the log is
        kept instead, and the next try waits another ``spacing`` entries."""
        self.spacing = max(compaction_threshold, catchup_entries // MAX_PENDING_SNAPSHOTS)
        self.candidates: deque[tuple[int, bytes]] = deque()
        """Oldest first."""

    def wants_snapshot(self, applied: int, log_snapshot_index: int) -> bool:
        """Whether to take a snapshot of the state at ``applied`` now."""
        newest = self.candidates[-1][0] if self.candidates else log_snapshot_index
        return applied - max(newest, self.skipped_at) >= self.spacing

    def add(self, index: int, state: bytes) -> bool:
        """Keep ``state`` for compacting to; False if it is larger than any member would
        take in (then no snapshot replaces the log, and members catch up from entries)."""
        if len(state) > self.max_snapshot_bytes:
            self.skipped_at = index
            return False
        self.candidates.append((index, state))
        return True

    def due(self, applied: int, log_snapshot_index: int) -> tuple[int, bytes] | None:
        """The newest snapshot old enough to compact the log to, if any."""
        target: tuple[int, bytes] | None = None
        candidates = self.candidates
        while candidates and applied - candidates[0][0] >= self.catchup_entries:
            target = candidates.popleft()
        if target is not None and target[0] > log_snapshot_index:
            return target  # (not when a snapshot from the leader has already replaced it)
        return None

    def clear(self) -> None:
        """A snapshot from the leader replaced the state: the candidates are older."""
        self.candidates.clear()
