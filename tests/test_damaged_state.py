"""A node whose stored state is damaged starts anyway: the damaged database is set aside,
the node starts over as a new member, and every front end is told what happened."""

from __future__ import annotations

from pathlib import Path

from raftchat.frontends.launch import open_node
from raftchat.node.api import ErrorEvent
from raftchat.node.compaction import CompactionSchedule
from raftchat.raft import (
    Configuration,
    HardState,
    InstallSnapshot,
    Snapshot,
    SnapshotMeta,
    SnapshotRefused,
)
from raftchat.settings import Settings
from raftchat.storage import DB_FILENAME, Storage

CHANNEL = "damaged"


def store_snapshot(data_dir: Path, data: bytes) -> str:
    """A data dir whose snapshot holds ``data``; returns its node id."""
    storage = Storage.open_channel(CHANNEL, data_dir)
    node_id = storage.node_id
    configuration = Configuration(voters=frozenset({node_id}))
    storage.save(
        HardState(1, node_id, 3), snapshot=Snapshot(SnapshotMeta(3, 1, configuration), data)
    )
    storage.close()
    return node_id


async def test_an_invalid_stored_snapshot_is_set_aside_and_the_node_starts(
    tmp_path: Path,
) -> None:
    old_id = store_snapshot(tmp_path, b"\x93 not a chat snapshot")
    node = open_node(CHANNEL, Settings(data_dir=tmp_path), passphrase=None)
    try:
        assert node.node_id != old_id, "a node that lost its state must not keep its vote"
        assert node.history() == []
        queue = node.subscribe()
        event = queue.get_nowait()
        assert isinstance(event, ErrorEvent)
        assert "damaged" in event.message and "new member" in event.message
        set_aside = list((tmp_path / CHANNEL).glob(f"{DB_FILENAME}.damaged-*"))
        assert set_aside and str(set_aside[0]).split(".damaged-")[0].endswith(DB_FILENAME)
        assert str(set_aside[0].name) in event.message or str(set_aside[0]) in event.message
    finally:
        await node.stop()


def test_a_chat_state_too_large_to_send_is_not_made_a_snapshot() -> None:
    schedule = CompactionSchedule(10, 5, max_snapshot_bytes=100)
    assert schedule.wants_snapshot(10, 0)
    assert not schedule.add(10, b"x" * 101)
    assert not schedule.wants_snapshot(15, 0), "the next try waits another spacing"
    assert schedule.wants_snapshot(20, 0)
    assert schedule.add(20, b"x" * 100)
    assert schedule.due(25, 0) == (20, b"x" * 100)


async def test_the_node_refuses_a_snapshot_that_is_no_chat_state(tmp_path: Path) -> None:
    node = open_node(CHANNEL, Settings(data_dir=tmp_path), passphrase=None)
    try:
        leader = "leader-of-the-channel"
        configuration = Configuration(voters=frozenset({leader, node.node_id}))
        garbage = InstallSnapshot(leader, 1, 7, 1, configuration, 0, b"\x93garbage", True)
        node.core.step(garbage)
        ready = node.core.ready()
        assert ready.snapshot is None
        assert [type(event) for event in ready.events if type(event) is SnapshotRefused]
        assert node.core.status().snapshots_refused == 1
    finally:
        await node.stop()
