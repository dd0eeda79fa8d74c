"""A witness in the simulator: its storage, and the checks only a witness needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    NodeId,
    RequestVoteResponse,
)
from ..witness import (
    LogPosition,
    WitnessCore,
    WitnessHardState,
    WitnessReady,
    WitnessSettings,
    WitnessState,
)
from .models import StorageError

WITNESS_ANSWERS = (AppendEntriesResponse, InstallSnapshotResponse, RequestVoteResponse)
"""All a witness ever sends: it never campaigns, leads, proposes or reads."""


class MemoryWitnessStorage:
    """A witness's storage, following its Ready contract; it survives a crash."""

    def __init__(self) -> None:
        self.hard_state = WitnessHardState()
        self.snapshot = LogPosition(0, 0)
        self.entries: list[LogPosition] = []

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self.entries)

    def persist(self, ready: WitnessReady) -> None:
        if ready.compacted is not None and ready.compacted.index > self.snapshot.index:
            drop = ready.compacted.index - self.snapshot.index
            if drop > len(self.entries) or self.entries[drop - 1] != ready.compacted:
                raise StorageError(f"compaction at {ready.compacted} names no stored entry")
            del self.entries[:drop]
            self.snapshot = ready.compacted
        if ready.snapshot is not None:
            self.snapshot = ready.snapshot
            self.entries = []
        if ready.truncate_from:
            del self.entries[max(0, ready.truncate_from - self.snapshot.index - 1) :]
        if ready.entries:
            first = ready.entries[0].index
            if first != self.last_index + 1:
                raise StorageError(
                    f"witness append at {first} does not follow stored last index {self.last_index}"
                )
            self.entries.extend(ready.entries)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state

    def state(self) -> WitnessState:
        return WitnessState(self.hard_state, self.snapshot, tuple(self.entries))


@dataclass
class SimWitness:
    """The simulated witness: its core (None while down) and its storage."""

    node_id: NodeId
    settings: WitnessSettings
    storage: MemoryWitnessStorage = field(default_factory=MemoryWitnessStorage)
    core: WitnessCore | None = None
    down_until: int = 0

    def start(self) -> None:
        self.core = WitnessCore(self.settings, self.storage.state())


def payload_in(message: Message) -> str:
    """What a message to a witness carries beyond metadata ("" if nothing)."""
    if isinstance(message, AppendEntries):
        for entry in message.entries:
            if entry.data or entry.client_id or entry.serial:
                return f"entry {entry.index} with its data"
    elif isinstance(message, InstallSnapshot) and message.data:
        return f"snapshot {message.last_included_index} with {len(message.data)} bytes of data"
    return ""
