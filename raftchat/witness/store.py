"""The witness's durable state, one SQLite file for every cluster it votes in.

A witness that forgot a vote could vote twice in one term and fork a channel, so what a
:class:`~raftchat.raft.witness.WitnessCore` asks to store is on disk (``synchronous=FULL``)
before any answer that depends on it leaves: :meth:`WitnessStore.save` for each core's
Ready, then one :meth:`WitnessStore.commit` for all of them.

The witness's id is made when the file is created and kept in it: a server whose data
is lost comes back as a *different* witness, which the channels replace, instead of a
blank one that would vote again in terms it already voted in.

Besides term, vote and positions it keeps each cluster's configurations (the one in force
at the snapshot position, and every configuration entry after it), so a restarted
witness still knows who may lead and stand for election. A file of schema 1 (before
configurations were kept) is brought to schema 2 when opened: its clusters keep their
votes and positions and know no configuration until the next configuration entry or
snapshot reaches them (until then they take a leader from anyone, as before).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from raftchat.raft import CodecError, Configuration, decode_configuration, encode_configuration
from raftchat.raft.witness import (
    UNKNOWN_CONFIGURATION,
    IndexedConfiguration,
    LogPosition,
    WitnessHardState,
    WitnessReady,
    WitnessState,
)

SCHEMA_VERSION = 2
DATABASE_NAME = "witness.sqlite3"

_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS witness (
    channel TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    founded_ms INTEGER NOT NULL,
    term INTEGER NOT NULL,
    vote TEXT NOT NULL,
    snapshot_index INTEGER NOT NULL,
    snapshot_term INTEGER NOT NULL,
    snapshot_configuration BLOB NOT NULL DEFAULT x'',
    PRIMARY KEY (channel, cluster_id)
);
CREATE TABLE IF NOT EXISTS positions (
    channel TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL,
    PRIMARY KEY (channel, cluster_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS configurations (
    channel TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    configuration BLOB NOT NULL,
    PRIMARY KEY (channel, cluster_id, idx)
) WITHOUT ROWID;
"""
_FROM_SCHEMA_1 = "ALTER TABLE witness ADD COLUMN snapshot_configuration BLOB NOT NULL DEFAULT x''"
"""Schema 1 had no configurations: its clusters know none (an empty blob)."""


class WitnessStoreError(Exception):
    """The witness's data cannot be used; the message says what to do."""


@dataclass(frozen=True, slots=True)
class WitnessKey:
    """One cluster of one channel: what a witness state belongs to."""

    channel: str
    cluster_id: str
    founded_ms: int


class WitnessStore:
    """Every witness state of one signaling server."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        path = directory / DATABASE_NAME
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            os.chmod(path, 0o600)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self.witness_id = self._open_schema()
        except sqlite3.DatabaseError as error:
            raise WitnessStoreError(
                f"cannot use the witness data in {path}: {error}; move the file away to start"
                " a new witness (the channels then replace the old one)"
            ) from None
        self._in_transaction = False

    def _open_schema(self) -> str:
        """Create the tables (or bring schema 1 to this one) in one transaction; the
        witness's id."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_META)
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
            schema = rows.get("schema")
            if schema == "1":
                db.execute(_FROM_SCHEMA_1)
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
            elif schema is not None and schema != str(SCHEMA_VERSION):
                raise sqlite3.DatabaseError(
                    f"it has schema {schema}, which this release cannot read (it reads 1 and"
                    f" {SCHEMA_VERSION}; a newer release wrote it?)"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            witness_id = rows.get("witness_id")
            if witness_id is None:
                witness_id = f"witness-{secrets.token_hex(8)}"
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("schema", str(SCHEMA_VERSION)), ("witness_id", witness_id)],
                )
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return witness_id

    # --- reading ------------------------------------------------------------------

    def founded_ms(self, channel: str, cluster_id: str) -> int | None:
        """When the stored cluster says it was founded; None if nothing is stored for it."""
        row = self._db.execute(
            "SELECT founded_ms FROM witness WHERE channel = ? AND cluster_id = ?",
            (channel, cluster_id),
        ).fetchone()
        return None if row is None else int(row[0])

    def load(self, key: WitnessKey) -> WitnessState | None:
        row = self._db.execute(
            "SELECT term, vote, snapshot_index, snapshot_term, snapshot_configuration"
            " FROM witness WHERE channel = ? AND cluster_id = ?",
            (key.channel, key.cluster_id),
        ).fetchone()
        if row is None:
            return None
        term, vote, snapshot_index, snapshot_term, snapshot_configuration = row
        where = (key.channel, key.cluster_id, snapshot_index)
        positions = self._db.execute(
            "SELECT idx, term FROM positions WHERE channel = ? AND cluster_id = ?"
            " AND idx > ? ORDER BY idx",
            where,
        ).fetchall()
        configurations = self._db.execute(
            "SELECT idx, configuration FROM configurations WHERE channel = ?"
            " AND cluster_id = ? AND idx > ? ORDER BY idx",
            where,
        ).fetchall()
        return WitnessState(
            WitnessHardState(term, vote),
            LogPosition(snapshot_index, snapshot_term),
            tuple(LogPosition(index, term) for index, term in positions),
            _configuration(snapshot_configuration, key, "the snapshot"),
            tuple(
                IndexedConfiguration(index, _configuration(data, key, f"index {index}"))
                for index, data in configurations
            ),
        )

    def clusters_in(self, channel: str) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM witness WHERE channel = ?", (channel,))
        return int(row.fetchone()[0])

    def clusters(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM witness").fetchone()[0])

    # --- writing ------------------------------------------------------------------

    def save(self, key: WitnessKey, ready: WitnessReady) -> None:
        """Stage what ``ready`` asks to store, in the order the core's contract gives;
        durable only after :meth:`commit`."""
        db = self._db
        if not self._in_transaction:
            db.execute("BEGIN IMMEDIATE")
            self._in_transaction = True
        where = (key.channel, key.cluster_id)
        db.execute(
            "INSERT OR IGNORE INTO witness (channel, cluster_id, founded_ms, term, vote,"
            " snapshot_index, snapshot_term) VALUES (?, ?, ?, 0, '', 0, 0)",
            (*where, key.founded_ms),
        )
        if ready.compacted is not None:
            self._set_snapshot(where, ready.compacted, ready.snapshot_configuration)
            for table in ("positions", "configurations"):
                db.execute(
                    f"DELETE FROM {table} WHERE channel = ? AND cluster_id = ? AND idx <= ?",
                    (*where, ready.compacted.index),
                )
        if ready.snapshot is not None:
            self._set_snapshot(where, ready.snapshot, ready.snapshot_configuration)
            for table in ("positions", "configurations"):
                db.execute(f"DELETE FROM {table} WHERE channel = ? AND cluster_id = ?", where)
        if ready.truncate_from:
            for table in ("positions", "configurations"):
                db.execute(
                    f"DELETE FROM {table} WHERE channel = ? AND cluster_id = ? AND idx >= ?",
                    (*where, ready.truncate_from),
                )
        db.executemany(
            "INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?)",
            [(*where, position.index, position.term) for position in ready.entries],
        )
        db.executemany(
            "INSERT OR REPLACE INTO configurations VALUES (?, ?, ?, ?)",
            [
                (*where, change.index, encode_configuration(change.configuration))
                for change in ready.configurations
            ],
        )
        if ready.hard_state is not None:
            db.execute(
                "UPDATE witness SET term = ?, vote = ? WHERE channel = ? AND cluster_id = ?",
                (ready.hard_state.term, ready.hard_state.vote, *where),
            )

    def _set_snapshot(
        self,
        where: tuple[str, str],
        position: LogPosition,
        configuration: Configuration | None,
    ) -> None:
        if configuration is None:
            raise ValueError(f"snapshot position {position} without its configuration")
        self._db.execute(
            "UPDATE witness SET snapshot_index = ?, snapshot_term = ?, snapshot_configuration = ?"
            " WHERE channel = ? AND cluster_id = ?",
            (position.index, position.term, encode_configuration(configuration), *where),
        )

    def commit(self) -> None:
        """Make everything saved since the last commit durable (one fsync)."""
        if self._in_transaction:
            self._in_transaction = False
            self._db.execute("COMMIT")

    def close(self) -> None:
        if self._in_transaction:
            self._in_transaction = False
            self._db.execute("ROLLBACK")
        self._db.close()


def _configuration(data: bytes, key: WitnessKey, where: str) -> Configuration:
    """A stored configuration; an empty one (schema 1 kept none) is unknown."""
    if not data:
        return UNKNOWN_CONFIGURATION
    try:
        return decode_configuration(data)
    except CodecError as error:
        raise WitnessStoreError(
            f"the witness's configuration at {where} for cluster {key.cluster_id[:8]} of"
            f" {key.channel} is damaged: {error}"
        ) from None
