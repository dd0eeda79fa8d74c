"""The in-memory Raft log: a snapshot followed by a list of entries.

Entry ``i`` lives at ``entries[i - snapshot_index - 1]``: every lookup is index
arithmetic, never a scan. The log also remembers which suffix is not yet on
disk (``stable_index``) and what has been committed and applied.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from .messages import Entry, Snapshot, SnapshotMeta

ENTRY_OVERHEAD_BYTES = 24
"""Rough per-entry framing cost, counted when bounding message sizes."""


class LogError(Exception):
    """The log was asked to do something that would break its invariants."""


class RaftLog:
    """Snapshot + entries, with commit, applied and stable (persisted) positions."""

    def __init__(self, snapshot: Snapshot, entries: Sequence[Entry], commit: int) -> None:
        self.snapshot = snapshot
        base = snapshot.meta.index
        kept = [e for e in entries if e.index > base]
        for offset, entry in enumerate(kept):
            if entry.index != base + 1 + offset:
                raise LogError(
                    f"stored log is not contiguous: expected index {base + 1 + offset}, "
                    f"found {entry.index}"
                )
        self._entries: list[Entry] = kept
        self.commit = max(min(commit, self.last_index), base)
        self.applied = base
        self.stable_index = self.last_index

    # --- positions ---------------------------------------------------------------

    @property
    def snapshot_index(self) -> int:
        return self.snapshot.meta.index

    @property
    def snapshot_term(self) -> int:
        return self.snapshot.meta.term

    @property
    def first_index(self) -> int:
        return self.snapshot.meta.index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot.meta.index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot.meta.term

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``; None if compacted away or beyond the end."""
        base = self.snapshot.meta.index
        if index > base:
            position = index - base - 1
            if position < len(self._entries):
                return self._entries[position].term
            return None
        if index == base:
            return self.snapshot.meta.term
        return 0 if index == 0 else None

    def entry(self, index: int) -> Entry:
        return self._entries[index - self.snapshot.meta.index - 1]

    def matches(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Election restriction: is a candidate's log at least as up to date as ours?"""
        own_term = self.last_term
        return last_term > own_term or (last_term == own_term and last_index >= self.last_index)

    # --- reading -----------------------------------------------------------------

    def slice(self, low: int, high: int, max_bytes: int) -> list[Entry]:
        """Entries ``low`` .. ``high - 1`` up to ``max_bytes`` (always at least one)."""
        base = self.snapshot.meta.index
        if low <= base:
            raise LogError(f"entries from {low} are compacted (snapshot at {base})")
        high = min(high, self.last_index + 1)
        if low >= high:
            return []
        start = low - base - 1
        end = high - base - 1
        entries = self._entries
        total = 0
        for position in range(start, end):
            total += ENTRY_OVERHEAD_BYTES + len(entries[position].data)
            if total > max_bytes and position > start:
                return entries[start:position]
        return entries[start:end]

    def entries_after_snapshot(self) -> list[Entry]:
        """Every entry the log holds (a copy)."""
        return self._entries[:]

    def unstable_entries(self) -> list[Entry]:
        return self._entries[self.stable_index - self.snapshot.meta.index :]

    def committed_entries(self, limit: int) -> list[Entry]:
        """Committed entries not yet applied, at most ``limit`` of them."""
        base = self.snapshot.meta.index
        start = self.applied - base
        end = min(self.commit - base, start + limit)
        return self._entries[start:end] if end > start else []

    def first_index_of_term(self, term: int, upto: int) -> int:
        """First index whose term is >= ``term``, searching entries up to ``upto``."""
        base = self.snapshot.meta.index
        hi = max(0, min(upto, self.last_index) - base)
        position = bisect.bisect_left(self._entries, term, 0, hi, key=lambda e: e.term)
        return base + 1 + position

    def last_index_of_term(self, term: int) -> int:
        """Last index holding an entry of exactly ``term``; 0 if there is none."""
        base = self.snapshot.meta.index
        position = bisect.bisect_right(self._entries, term, key=lambda e: e.term)
        if position > 0 and self._entries[position - 1].term == term:
            return base + position
        if position == 0 and self.snapshot.meta.term == term and base > 0:
            return base
        return 0

    # --- writing -----------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries that directly follow the last one (the leader's own)."""
        if entries and entries[0].index != self.last_index + 1:
            raise LogError(f"append at {entries[0].index} does not follow {self.last_index}")
        self._entries.extend(entries)

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Index of the first of ``entries`` that is new or disagrees with ours; 0 if none."""
        base = self.snapshot.meta.index
        last = self.last_index
        own = self._entries
        for entry in entries:
            index = entry.index
            if index > last:
                return index
            if index > base and own[index - base - 1].term != entry.term:
                return index
        return 0

    def truncate_and_append(self, entries: Sequence[Entry]) -> None:
        """Replace everything from ``entries[0].index`` on by ``entries``."""
        first = entries[0].index
        if first <= self.commit:
            raise LogError(f"refusing to overwrite committed entry {first} (commit {self.commit})")
        if first > self.last_index + 1:
            raise LogError(f"append at {first} leaves a gap after {self.last_index}")
        del self._entries[first - self.snapshot.meta.index - 1 :]
        if first <= self.stable_index:
            self.stable_index = first - 1
        self._entries.extend(entries)

    def commit_to(self, index: int) -> bool:
        if index > self.commit:
            if index > self.last_index:
                raise LogError(f"commit {index} beyond last index {self.last_index}")
            self.commit = index
            return True
        return False

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (of ``term``) are on disk."""
        if index > self.stable_index and self.term(index) == term:
            self.stable_index = index

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by ``snapshot`` (received from the leader)."""
        self.snapshot = snapshot
        self._entries = []
        index = snapshot.meta.index
        self.commit = index
        self.applied = index
        self.stable_index = index

    def compact(self, index: int, data: bytes, meta: SnapshotMeta) -> Snapshot:
        """Drop entries up to ``index``; the snapshot ``data`` now stands for them."""
        del self._entries[: index - self.snapshot.meta.index]
        self.snapshot = Snapshot(meta=meta, data=data)
        return self.snapshot
