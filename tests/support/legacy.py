"""Data dirs as releases before identity keys wrote them: a random 16-hex-digit node id
with a reconnect token in the meta table, and no key file."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

from raftchat import chat
from raftchat.raft import (
    ClusterIdentity,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    encode_configuration,
)
from raftchat.storage import DB_FILENAME, KEY_FILENAME, Storage


def make_legacy(directory: Path, old_id: str | None = None) -> str:
    """Turn a closed channel data dir into one of an earlier release (see the module
    docstring), whose node id is ``old_id`` (a new random one if None); return it."""
    old_id = old_id or secrets.token_hex(8)
    connection = sqlite3.connect(directory / DB_FILENAME)
    with connection:
        connection.execute("DELETE FROM meta WHERE key = 'public_key'")
        connection.execute("UPDATE meta SET value = ? WHERE key = 'node_id'", (old_id,))
        connection.execute(
            "INSERT INTO meta (key, value) VALUES ('reconnect_token', ?)",
            (secrets.token_urlsafe(24),),
        )
    connection.close()
    (directory / KEY_FILENAME).unlink()
    return old_id


def prepare_legacy_cluster(
    root: Path, channel: str, names: list[str], messages: int
) -> dict[str, str]:
    """Legacy data dirs ``root/<name>`` of one cluster whose voters are all of ``names``,
    each holding the same log: ``messages`` committed messages per name, in turns. Returns
    the old node id of each name."""
    old_ids = {name: secrets.token_hex(8) for name in names}
    cluster = ClusterIdentity(1_700_000_000_000, secrets.token_hex(16))
    configuration = Configuration(frozenset(old_ids.values()), cluster=cluster)
    entries = [Entry(1, 1, EntryKind.CONFIG, encode_configuration(configuration))]
    for k in range(messages):
        for name in names:
            command = chat.ChatMessage(name, f"{name}-{k}", 1_700_000_000_000 + len(entries))
            data = chat.encode_command(command)
            entries.append(Entry(len(entries) + 1, 1, EntryKind.NORMAL, data, old_ids[name], k + 1))
    leader = old_ids[names[0]]
    for name in names:
        with Storage.open_channel(channel, root / name) as store:
            directory = store.directory
            store.set_cluster(cluster)
            store.save(HardState(1, leader, len(entries)), entries)
        make_legacy(directory, old_ids[name])
    return old_ids
