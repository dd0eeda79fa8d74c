"""The node's identity key in its data dir: made once, checked on every open, never
silently replaced; data dirs from before identity keys are re-identified."""

from __future__ import annotations

import logging
import secrets
import sqlite3
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from support.legacy import make_legacy

from raftchat import chat
from raftchat.net import LinkState
from raftchat.net.identity import create_key_file, derive_node_id, load_key_file
from raftchat.node import Node
from raftchat.raft import (
    ClusterIdentity,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    encode_configuration,
)
from raftchat.settings import Settings
from raftchat.storage import (
    DB_FILENAME,
    KEY_FILENAME,
    Storage,
    StorageCorruptError,
    StorageIdentityError,
)

CHANNEL = "room"
CLUSTER = ClusterIdentity(1_700_000_000_000, "c" * 32)


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    return tmp_path / "node" / CHANNEL


def meta(directory: Path) -> dict[str, str]:
    connection = sqlite3.connect(directory / DB_FILENAME)
    try:
        return dict(connection.execute("SELECT key, value FROM meta").fetchall())
    finally:
        connection.close()


def with_history(directory: Path, texts: list[str], author: str | None = None) -> str:
    """A data dir whose log holds a one-member cluster and ``texts`` committed (plus one
    uncommitted message); returns the id its entries were written under."""
    with Storage.open(directory, CHANNEL) as store:
        author = author or store.node_id
        store.set_cluster(CLUSTER)
        configuration = Configuration(frozenset({author}), cluster=CLUSTER)
        entries = [Entry(1, 1, EntryKind.CONFIG, encode_configuration(configuration))]
        for serial, text in enumerate([*texts, "never committed"], start=1):
            data = chat.encode_command(chat.ChatMessage("ada", text, 1_700_000_000_000))
            entries.append(Entry(1 + serial, 1, EntryKind.NORMAL, data, author, serial))
        store.save(HardState(1, author, len(entries) - 1), entries)
    return author


# --- a new data dir ---------------------------------------------------------------------


def test_a_new_data_dir_gets_a_private_key_and_the_id_derived_from_it(node_dir: Path) -> None:
    with Storage.open(node_dir, CHANNEL) as store:
        node_id = store.node_id
        assert node_id == derive_node_id(store.identity.public_key)
        assert store.legacy_node_id is None
    key = node_dir / KEY_FILENAME
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert load_key_file(key).node_id == node_id
    assert meta(node_dir)["public_key"] == load_key_file(key).public_key.hex()
    assert "reconnect_token" not in meta(node_dir)
    with Storage.open(node_dir, CHANNEL) as store:
        assert store.node_id == node_id  # reloaded, not made anew


def test_a_key_made_by_a_first_start_that_stopped_is_used(node_dir: Path) -> None:
    node_dir.mkdir(parents=True, mode=0o700)
    made = create_key_file(node_dir / KEY_FILENAME)  # then the process died
    with Storage.open(node_dir, CHANNEL) as store:
        assert store.node_id == made.node_id


# --- refused, never replaced --------------------------------------------------------------


def test_a_missing_key_file_is_refused_and_no_new_identity_is_made(node_dir: Path) -> None:
    with Storage.open(node_dir, CHANNEL) as store:
        node_id = store.node_id
    (node_dir / KEY_FILENAME).unlink()
    for _ in range(2):  # the same answer every time: no crash loop, no new key
        with pytest.raises(StorageIdentityError) as caught:
            Storage.open(node_dir, CHANNEL)
        message = str(caught.value)
        assert "is missing" in message and node_id in message and str(node_dir) in message
        assert "Restore" in message and "move" in message
        assert not (node_dir / KEY_FILENAME).exists()
    assert meta(node_dir)["node_id"] == node_id


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_file_others_can_read_is_refused_not_narrowed(node_dir: Path, mode: int) -> None:
    Storage.open(node_dir, CHANNEL).close()
    key = node_dir / KEY_FILENAME
    key.chmod(mode)
    with pytest.raises(StorageIdentityError, match=f"chmod 600 {key}"):
        Storage.open(node_dir, CHANNEL)
    assert stat.S_IMODE(key.stat().st_mode) == mode
    key.chmod(0o600)
    Storage.open(node_dir, CHANNEL).close()


def test_a_key_file_of_another_node_is_refused(node_dir: Path, tmp_path: Path) -> None:
    with Storage.open(node_dir, CHANNEL) as store:
        node_id = store.node_id
    other = tmp_path / "other" / CHANNEL
    with Storage.open(other, CHANNEL) as store:
        other_id = store.node_id
    (node_dir / KEY_FILENAME).write_bytes((other / KEY_FILENAME).read_bytes())
    with pytest.raises(
        StorageIdentityError, match=f"key of node {other_id}, not of node {node_id}"
    ):
        Storage.open(node_dir, CHANNEL)


def test_a_damaged_key_file_is_refused(node_dir: Path) -> None:
    Storage.open(node_dir, CHANNEL).close()
    (node_dir / KEY_FILENAME).write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
    with pytest.raises(StorageIdentityError, match="damaged or not a raftchat key"):
        Storage.open(node_dir, CHANNEL)


def test_a_node_id_that_is_not_the_keys_is_damage(node_dir: Path) -> None:
    Storage.open(node_dir, CHANNEL).close()
    connection = sqlite3.connect(node_dir / DB_FILENAME)
    with connection:
        connection.execute("UPDATE meta SET value = ? WHERE key = 'node_id'", ("f" * 32,))
    connection.close()
    with pytest.raises(StorageCorruptError, match="not the key's"):
        Storage.open(node_dir, CHANNEL)


# --- data dirs from before identity keys --------------------------------------------------


def test_a_blank_legacy_data_dir_is_re_identified(node_dir: Path, caplog) -> None:
    Storage.open(node_dir, CHANNEL).close()
    old_id = make_legacy(node_dir)
    with caplog.at_level(logging.WARNING), Storage.open(node_dir, CHANNEL) as store:
        new_id = store.node_id
        assert new_id != old_id and new_id == derive_node_id(store.identity.public_key)
        assert store.legacy_node_id is None  # no Raft state was written under the old id
    assert f"predates identity keys: this node joins the channel as a new member {new_id}" in (
        caplog.text
    )
    assert old_id in caplog.text
    assert "reconnect_token" not in meta(node_dir)
    assert stat.S_IMODE((node_dir / KEY_FILENAME).stat().st_mode) == 0o600
    caplog.clear()
    with caplog.at_level(logging.WARNING), Storage.open(node_dir, CHANNEL) as store:
        assert store.node_id == new_id
    assert "predates" not in caplog.text  # once


def test_a_legacy_data_dir_with_history_keeps_its_state_until_the_node_settles_it(
    node_dir: Path,
) -> None:
    old_id = with_history(node_dir, ["m0", "m1"], author=secrets.token_hex(8))
    make_legacy(node_dir, old_id)
    with Storage.open(node_dir, CHANNEL) as store:
        assert store.legacy_node_id == old_id and store.node_id != old_id
        assert store.hard_state.vote == old_id  # untouched until settled
        assert store.cluster == CLUSTER
    with Storage.open(node_dir, CHANNEL) as store:
        assert store.legacy_node_id == old_id  # a crash before settling: settled next time


def make_node(storage: Storage) -> Node:
    node = Node(storage, Settings(), nick="ada")
    node._links["x"] = SimpleNamespace(state=LinkState.OPEN, connects=1)  # type: ignore[assignment]
    return node


def test_a_node_on_a_legacy_data_dir_queues_its_history_and_starts_blank(
    node_dir: Path, caplog
) -> None:
    old_id = with_history(node_dir, ["m0", "m1", "m2"], author=secrets.token_hex(8))
    make_legacy(node_dir, old_id)
    with caplog.at_level(logging.WARNING), Storage.open(node_dir, CHANNEL) as store:
        node = make_node(store)
        assert node.node_id == store.node_id != old_id
        # Nothing of the old id's Raft state is left: no vote, no log, no configuration.
        assert store.legacy_node_id is None and store.cluster is None
        persisted = store.load()
        assert persisted.hard_state == HardState() and persisted.entries == []
        assert node._is_blank() and node.chat.history() == []
        # The committed messages are queued for merging, with their original ids.
        pending = store.pending_merge()
        assert pending is not None and pending.source == CLUSTER
        assert [item.message_id for item in pending.items] == [f"{old_id}:{n}" for n in (1, 2, 3)]
        commands = [chat.decode_command(item.data)[0] for item in pending.items]
        assert [(c.client_id, c.text) for c in commands] == [
            (old_id, "m0"),
            (old_id, "m1"),
            (old_id, "m2"),
        ]
        assert node._merge is not None and len(node._merge) == 3
    assert "3 committed messages are merged back into the channel" in caplog.text
    with Storage.open(node_dir, CHANNEL) as store:
        assert len(make_node(store)._merge) == 3  # type: ignore[arg-type]


def test_a_legacy_data_dir_without_committed_messages_merges_nothing(node_dir: Path) -> None:
    old_id = with_history(node_dir, [], author=secrets.token_hex(8))
    make_legacy(node_dir, old_id)
    with Storage.open(node_dir, CHANNEL) as store:
        node = make_node(store)
        assert store.pending_merge() is None and node._merge is None
        assert node._is_blank() and store.legacy_node_id is None
