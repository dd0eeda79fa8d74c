"""Kill -9 a writer at random moments: whatever it reported durable must be on disk, intact.

The seed is printed; replay a failure with ``RAFTCHAT_CRASH_SEED=<seed>``, and run longer
with ``RAFTCHAT_CRASH_ROUNDS=<n>`` (default 40 kills).
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_writer import CHANNEL, apply_step, next_step, state_key

from raftchat.storage import PersistedState, Storage

WRITER = Path(__file__).with_name("storage_writer.py")
LINE_TIMEOUT = 20.0


def read_line(process: subprocess.Popen, selector: selectors.BaseSelector) -> str:
    """The writer's next output line, waiting for it (not for a fixed time)."""
    deadline = time.monotonic() + LINE_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"the writer printed nothing for {LINE_TIMEOUT} s")
        if selector.select(remaining):
            line = process.stdout.readline()
            if not line:
                stderr = process.stderr.read()
                raise AssertionError(f"the writer exited early: {stderr}")
            return line


def chain(seed: int) -> Iterator[PersistedState]:
    """Every state the writer goes through, in order."""
    state = PersistedState()
    while True:
        yield state
        state = apply_step(state, next_step(seed, state))


def parse_key(line: str) -> tuple[int, ...]:
    assert line.startswith("durable up to index"), line
    return tuple(int(part) for part in line.rsplit("key ", 1)[1].split(","))


@pytest.mark.chaos
def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    seed = int(os.environ.get("RAFTCHAT_CRASH_SEED", random.randrange(2**32)))
    rounds = int(os.environ.get("RAFTCHAT_CRASH_ROUNDS", "40"))
    print(f"storage crash test: seed {seed}, {rounds} rounds (RAFTCHAT_CRASH_SEED to replay)")
    rng = random.Random(seed)
    directory = tmp_path / CHANNEL
    states = chain(seed)
    expected = next(states)
    reported_key: tuple[int, ...] = state_key(expected)
    total_writes = 0

    for round_number in range(rounds):
        process = subprocess.Popen(
            [sys.executable, str(WRITER), str(directory), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        try:
            ready = read_line(process, selector)
            assert ready.startswith("ready"), ready
            for _ in range(rng.randint(0, 25)):
                reported_key = parse_key(read_line(process, selector))
                total_writes += 1
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            selector.close()
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
            process.stderr.close()

        with Storage.open(directory, CHANNEL) as storage:
            on_disk = storage.load()
        disk_key = state_key(on_disk)
        context = f"seed {seed}, round {round_number}"
        assert disk_key >= reported_key, f"{context}: lost acknowledged writes"
        while state_key(expected) < disk_key:
            expected = next(states)
        assert on_disk == expected, f"{context}: disk state {disk_key} differs from the writer's"
        assert on_disk.hard_state.commit <= on_disk.last_index, context
        if on_disk.snapshot is not None:
            assert on_disk.snapshot.meta.index <= on_disk.hard_state.commit, context

    assert total_writes > rounds  # the writer made progress, so kills hit real work
