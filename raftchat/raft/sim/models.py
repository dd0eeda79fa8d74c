"""What the simulator runs the core against: storage, a state machine, and nodes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

from ..core import RaftCore
from ..messages import Entry, EntryKind, HardState, NodeId, Snapshot
from ..ready import PersistentState, Ready
from ..settings import RaftSettings


class StorageError(Exception):
    """A Ready asked storage for something impossible (a gap in the log...)."""


class MemoryStorage:
    """Storage that follows the Ready contract exactly; what it holds survives a crash."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []

    @property
    def snapshot_index(self) -> int:
        return self.snapshot.meta.index if self.snapshot is not None else 0

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    def persist(self, ready: Ready) -> None:
        if ready.compacted is not None:
            index = ready.compacted.meta.index
            if index > self.snapshot_index:
                del self.entries[: min(len(self.entries), index - self.snapshot_index)]
                self.snapshot = ready.compacted
        if ready.snapshot is not None:
            self.snapshot = ready.snapshot
            self.entries = []
        if ready.truncate_from:
            del self.entries[max(0, ready.truncate_from - self.snapshot_index - 1) :]
        if ready.entries:
            first = ready.entries[0].index
            if first != self.last_index + 1:
                raise StorageError(
                    f"append at {first} does not follow stored last index {self.last_index}"
                )
            self.entries.extend(ready.entries)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state

    def state(self) -> PersistentState:
        return PersistentState(self.hard_state, self.snapshot, list(self.entries))


def chain_digest(previous: bytes, *parts: object) -> bytes:
    """The next link of a hash chain: ``previous`` extended by ``parts``."""
    hasher = hashlib.blake2b(previous, digest_size=12)
    for part in parts:
        hasher.update(part if isinstance(part, bytes) else str(part).encode())
        hasher.update(b"|")
    return hasher.digest()


Verdict = Literal["applied", "duplicate", "out of order"]
"""What the session rule made of a client's entry."""


def client_command(prev_serial: int, payload: bytes) -> bytes:
    """The data of a simulated client's proposal: the serial it follows, then the payload."""
    return b"%d|%s" % (prev_serial, payload)


def prev_serial_of(data: bytes) -> int:
    """The serial a proposal follows (0, following anything, for data of another form)."""
    head, separator, _ = data.partition(b"|")
    return int(head) if separator and head.isdigit() else 0


class SessionStateMachine:
    """A replicated state machine with client sessions, under the chat's session rule:
    serial ``s`` of a client applies only above the client's last applied serial (else a
    duplicate) and, unless it follows no serial (``prev_serial`` 0), right after the one it
    names (else out of order). ``raft/`` may not import the chat, so this is a small copy
    of its rule (:class:`raftchat.chat.ChatState`), kept to the lines above.

    Apart from the rule it checks per-sender FIFO: an applied serial must directly follow
    the client's last one, unless it is in ``run_starts`` (the first proposal of a run).
    """

    def __init__(self, run_starts: set[tuple[str, int]] | None = None) -> None:
        self.run_starts = run_starts if run_starts is not None else set()
        self.index = 0
        self.sessions: dict[str, int] = {}
        self.digest = b""
        self.duplicates = 0
        self.out_of_order = 0
        self.fifo_breaks: list[str] = []

    def apply(self, entry: Entry) -> Verdict | None:
        """Apply the next entry; for a client's entry, what the session rule made of it."""
        if entry.index != self.index + 1:
            raise StorageError(f"applied {entry.index} right after {self.index}")
        self.index = entry.index
        if entry.kind != EntryKind.NORMAL:
            return None
        verdict: Verdict | None = None
        if entry.client_id:
            last = self.sessions.get(entry.client_id, 0)
            if entry.serial <= last:
                self.duplicates += 1
                return "duplicate"
            prev_serial = prev_serial_of(entry.data)
            if prev_serial and prev_serial != last:
                self.out_of_order += 1
                return "out of order"
            if entry.serial != last + 1 and (entry.client_id, entry.serial) not in self.run_starts:
                self.fifo_breaks.append(
                    f"client {entry.client_id} serial {entry.serial} applied after {last}"
                )
            self.sessions[entry.client_id] = entry.serial
            verdict = "applied"
        self.digest = chain_digest(self.digest, entry.client_id, entry.serial, entry.data)
        return verdict

    def snapshot(self) -> bytes:
        body = {"index": self.index, "sessions": self.sessions, "digest": self.digest.hex()}
        return json.dumps(body, sort_keys=True).encode()

    def restore(self, data: bytes) -> None:
        body = json.loads(data)
        self.index = body["index"]
        self.sessions = dict(body["sessions"])
        self.digest = bytes.fromhex(body["digest"])


@dataclass
class SimNode:
    """One simulated node: its core (None while down), storage and state machine."""

    node_id: NodeId
    settings: RaftSettings
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    machine: SessionStateMachine = field(default_factory=SessionStateMachine)
    core: RaftCore | None = None
    chain: list[bytes] = field(default_factory=list)
    """Hash chain over the persisted log: chain[k] covers entries up to chain_base_index + k."""
    chain_base_index: int = 0
    down_until: int = 0
    checked_leader_term: int = -1
    writing: bool = False
    """Sent its early AppendEntries and is stuck before storing them: it crashes next."""
