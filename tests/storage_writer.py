"""Writer process for the storage crash test, and the model the test checks it against.

The writer follows a deterministic chain of states: the next write (append a batch, or
truncate an uncommitted suffix and append at a higher term, or compact a committed
prefix) is chosen by a random generator seeded from the seed and the current state, so
a writer restarted from whatever reached the disk carries on along the same chain. Entry
contents are derived from (seed, index, term). After each ``save``/``compact`` returns,
the writer prints ``durable up to index I, term T, commit C, snapshot S, key K``; the test
kills it at random moments and checks that what is on disk is a state of the chain at or
after the last one reported.

Run by hand: ``python tests/storage_writer.py DIR SEED [MAX_WRITES]``.
"""

from __future__ import annotations

import hashlib
import random
import sys
from dataclasses import dataclass, replace

from raftchat.raft import Configuration, Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from raftchat.storage import PersistedState, Storage

CHANNEL = "crash-test"
NODE_VOTE = "writer"
MAX_BATCH = 120
CONFIGURATION = Configuration(voters=frozenset({"writer", "peer-1", "peer-2"}))


def entry_for(seed: int, index: int, term: int) -> Entry:
    digest = hashlib.blake2b(f"{seed}:{index}:{term}".encode(), digest_size=32).digest()
    return Entry(
        index=index,
        term=term,
        kind=EntryKind.NORMAL if index % 5 else EntryKind.NOOP,
        data=digest * 3,
        client_id=f"client-{index % 7}",
        serial=index,
    )


def snapshot_for(seed: int, index: int, term: int) -> Snapshot:
    data = hashlib.blake2b(f"snapshot:{seed}:{index}:{term}".encode()).digest() * 4
    return Snapshot(SnapshotMeta(index=index, term=term, configuration=CONFIGURATION), data)


def state_key(state: PersistedState) -> tuple[int, int, int, int]:
    """Strictly increases along the chain, so a state is found by walking forward."""
    snapshot_index = state.snapshot.meta.index if state.snapshot else 0
    return (state.hard_state.term, state.last_index, snapshot_index, state.hard_state.commit)


@dataclass(frozen=True)
class Step:
    """One write: either a ``save`` (hard state, truncation, entries) or a ``compact``."""

    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    truncate_from: int | None = None
    compact: Snapshot | None = None


def next_step(seed: int, state: PersistedState) -> Step:
    rng = random.Random(f"{seed}:{state_key(state)}")
    hard_state = state.hard_state
    term = max(hard_state.term, 1)
    last_index = state.last_index
    snapshot_index = state.snapshot.meta.index if state.snapshot else 0
    roll = rng.random()
    if roll < 0.12 and hard_state.commit > snapshot_index:
        index = rng.randint(snapshot_index + 1, hard_state.commit)
        entry_term = state.entries[index - snapshot_index - 1].term
        return Step(compact=snapshot_for(seed, index, entry_term))
    if roll < 0.2 and last_index > hard_state.commit and hard_state.term:
        # Only the commit index moves: Storage writes it without an fsync.
        commit = rng.randint(hard_state.commit + 1, last_index)
        return Step(HardState(term=hard_state.term, vote=hard_state.vote, commit=commit))
    truncate_from = None
    first = last_index + 1
    if roll < 0.3 and last_index > max(hard_state.commit, snapshot_index):
        truncate_from = rng.randint(max(hard_state.commit, snapshot_index) + 1, last_index)
        first = truncate_from
        term += 1
    count = rng.randint(1, MAX_BATCH)
    entries = tuple(entry_for(seed, index, term) for index in range(first, first + count))
    commit = rng.randint(hard_state.commit, first + count - 1)
    return Step(HardState(term=term, vote=NODE_VOTE, commit=commit), entries, truncate_from)


def apply_step(state: PersistedState, step: Step) -> PersistedState:
    """What Storage holds after ``step``, computed without Storage."""
    if step.compact is not None:
        index = step.compact.meta.index
        entries = [entry for entry in state.entries if entry.index > index]
        return replace(state, snapshot=step.compact, entries=entries)
    if not step.entries:
        return replace(state, hard_state=step.hard_state)
    first = step.truncate_from or step.entries[0].index
    entries = [entry for entry in state.entries if entry.index < first]
    entries.extend(step.entries)
    return replace(state, hard_state=step.hard_state, entries=entries)


def run(directory: str, seed: int, max_writes: int) -> None:
    storage = Storage.open(directory, CHANNEL)
    state = storage.load()
    print(f"ready at key {state_key(state)}", flush=True)
    for _ in range(max_writes):
        step = next_step(seed, state)
        if step.compact is not None:
            storage.compact(step.compact)
        else:
            storage.save(step.hard_state, step.entries, step.truncate_from)
        state = apply_step(state, step)
        snapshot_index = state.snapshot.meta.index if state.snapshot else 0
        print(
            f"durable up to index {state.last_index}, term {state.hard_state.term},"
            f" commit {state.hard_state.commit}, snapshot {snapshot_index},"
            f" key {','.join(map(str, state_key(state)))}",
            flush=True,
        )
    storage.close()


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 10_000)
