"""A follower takes in a snapshot only within the size limit and only once the state
machine's check accepts it: nothing too large is buffered, nothing invalid is stored."""

from __future__ import annotations

from raft_utils import make_settings

from raftchat.raft import (
    Configuration,
    InstallSnapshot,
    InstallSnapshotResponse,
    RaftCore,
    SnapshotRefused,
)

LEADER = "leader-node"
CONFIGURATION = Configuration(voters=frozenset({LEADER, "follower"}))


def chunk(offset: int, data: bytes, done: bool, index: int = 5) -> InstallSnapshot:
    return InstallSnapshot(LEADER, 1, index, 1, CONFIGURATION, offset, data, done)


def drain(core: RaftCore) -> tuple[list, list, list]:
    """(responses, events, snapshots) of every Ready until there is none."""
    responses, events, snapshots = [], [], []
    while core.has_ready():
        ready = core.ready()
        responses += [m for _, m in ready.messages + ready.early_messages]
        events += ready.events
        if ready.snapshot is not None:
            snapshots.append(ready.snapshot)
        core.advance(ready)
    return responses, events, snapshots


def test_a_snapshot_over_the_limit_is_dropped_not_buffered() -> None:
    core = RaftCore(make_settings("follower", max_snapshot_bytes=100))
    core.step(chunk(0, b"x" * 60, done=False))
    responses, _, _ = drain(core)
    assert responses[-1] == InstallSnapshotResponse("follower", 1, 5, 60, False)

    core.step(chunk(60, b"x" * 60, done=True))
    responses, events, snapshots = drain(core)
    assert responses[-1] == InstallSnapshotResponse("follower", 1, 5, 0, False)
    assert [type(event) for event in events] == [SnapshotRefused]
    assert "100 bytes" in events[0].reason
    assert snapshots == [] and core.status().snapshots_refused == 1
    # Nothing was kept: a chunk that continues the dropped buffer is out of order.
    core.step(chunk(120, b"x", done=True))
    responses, _, snapshots = drain(core)
    assert responses[-1].next_offset == 0 and snapshots == []


def test_a_snapshot_the_check_refuses_never_reaches_storage() -> None:
    seen = []

    def check(data: bytes) -> str | None:
        seen.append(data)
        return "not a chat snapshot" if data.startswith(b"bad") else None

    core = RaftCore(make_settings("follower"), snapshot_check=check)
    core.step(chunk(0, b"bad snap", done=True))
    responses, events, snapshots = drain(core)
    assert seen == [b"bad snap"]
    assert snapshots == [] and core.log.last_index == 0
    assert events[-1] == SnapshotRefused(LEADER, 5, "not a chat snapshot")
    assert responses[-1] == InstallSnapshotResponse("follower", 1, 5, 0, False)

    core.step(chunk(0, b"good snap", done=True))
    responses, _, snapshots = drain(core)
    assert [snapshot.data for snapshot in snapshots] == [b"good snap"]
    assert core.log.last_index == 5 and responses[-1].done
