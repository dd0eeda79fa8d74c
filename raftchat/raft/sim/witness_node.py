"""A witness in the simulator: its storage, and the checks only a witness needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..codec import CodecError, decode_configuration
from ..messages import (
    AppendEntries,
    AppendEntriesResponse,
    Configuration,
    EntryKind,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    NodeId,
    RequestVoteResponse,
)
from ..witness import (
    IndexedConfiguration,
    LogPosition,
    WitnessCore,
    WitnessReady,
    WitnessSettings,
    WitnessState,
)
from .models import StorageError

WITNESS_ANSWERS = (AppendEntriesResponse, InstallSnapshotResponse, RequestVoteResponse)
"""All a witness ever sends: it never campaigns, leads, proposes or reads."""


class MemoryWitnessStorage:
    """A witness's storage, following its Ready contract; it survives a crash."""

    def __init__(self, state: WitnessState | None = None) -> None:
        state = state if state is not None else WitnessState()
        self.hard_state = state.hard_state
        self.snapshot = state.snapshot
        self.entries: list[LogPosition] = list(state.entries)
        self.snapshot_configuration: Configuration = state.snapshot_configuration
        self.configurations: list[IndexedConfiguration] = list(state.configurations)

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
            self._set_snapshot_configuration(ready)
        if ready.snapshot is not None:
            self.snapshot = ready.snapshot
            self.entries = []
            self._set_snapshot_configuration(ready)
        if ready.truncate_from:
            del self.entries[max(0, ready.truncate_from - self.snapshot.index - 1) :]
        self.configurations = [
            change
            for change in self.configurations
            if self.snapshot.index < change.index <= self.last_index
        ]
        appended_from = self.last_index + 1
        if ready.entries:
            first = ready.entries[0].index
            if first != appended_from:
                raise StorageError(
                    f"witness append at {first} does not follow stored last index {self.last_index}"
                )
            self.entries.extend(ready.entries)
        for change in ready.configurations:
            if not appended_from <= change.index <= self.last_index:
                raise StorageError(f"witness configuration at {change.index} with no new entry")
            self.configurations.append(change)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state

    def _set_snapshot_configuration(self, ready: WitnessReady) -> None:
        if ready.snapshot_configuration is None:
            raise StorageError("a witness snapshot position without its configuration")
        self.snapshot_configuration = ready.snapshot_configuration

    def state(self) -> WitnessState:
        return WitnessState(
            self.hard_state,
            self.snapshot,
            tuple(self.entries),
            self.snapshot_configuration,
            tuple(self.configurations),
        )


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
    """What a message to a witness carries beyond metadata and configurations ("" if
    nothing): a configuration entry may keep its data, if that is a configuration."""
    if isinstance(message, AppendEntries):
        for entry in message.entries:
            if entry.client_id or entry.serial:
                return f"entry {entry.index} with its client session"
            if entry.kind != EntryKind.CONFIG:
                if entry.data:
                    return f"entry {entry.index} with its data"
                continue
            try:
                decode_configuration(entry.data)
            except CodecError:
                return f"configuration entry {entry.index} with data that is no configuration"
    elif isinstance(message, InstallSnapshot) and message.data:
        return f"snapshot {message.last_included_index} with {len(message.data)} bytes of data"
    return ""
