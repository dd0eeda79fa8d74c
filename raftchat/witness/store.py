"""The witness's durable state, one SQLite file for every cluster it votes in.

A witness that forgot a vote could vote twice in one term and fork a channel, so what a
:class:`~raftchat.raft.witness.WitnessCore` asks to store is on disk (``synchronous=FULL``)
before any answer that depends on it leaves: :meth:`WitnessStore.save` for each core's
Ready, then one :meth:`WitnessStore.commit` for all of them.

The witness's id is made when the file is created and kept in it: a server whose data
is lost comes back as a *different* witness, which the channels replace, instead of a
blank one that would vote again in terms it already voted in.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from raftchat.raft.witness import LogPosition, WitnessHardState, WitnessReady, WitnessState

SCHEMA_VERSION = 1
DATABASE_NAME = "witness.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS witness (
    channel TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    founded_ms INTEGER NOT NULL,
    term INTEGER NOT NULL,
    vote TEXT NOT NULL,
    snapshot_index INTEGER NOT NULL,
    snapshot_term INTEGER NOT NULL,
    PRIMARY KEY (channel, cluster_id)
);
CREATE TABLE IF NOT EXISTS positions (
    channel TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL,
    PRIMARY KEY (channel, cluster_id, idx)
) WITHOUT ROWID;
"""


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
            self._db.executescript(_SCHEMA)
            self.witness_id = self._identity()
        except sqlite3.DatabaseError as error:
            raise WitnessStoreError(
                f"cannot use the witness data in {path}: {error}; move the file away to start"
                " a new witness (the channels then replace the old one)"
            ) from None
        self._in_transaction = False

    def _identity(self) -> str:
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        schema = rows.get("schema")
        if schema is not None and schema != str(SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"schema {schema} is not {SCHEMA_VERSION}")
        witness_id = rows.get("witness_id")
        if witness_id is None:
            witness_id = f"witness-{secrets.token_hex(8)}"
            self._db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("schema", str(SCHEMA_VERSION)), ("witness_id", witness_id)],
            )
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
            "SELECT term, vote, snapshot_index, snapshot_term FROM witness"
            " WHERE channel = ? AND cluster_id = ?",
            (key.channel, key.cluster_id),
        ).fetchone()
        if row is None:
            return None
        term, vote, snapshot_index, snapshot_term = row
        positions = self._db.execute(
            "SELECT idx, term FROM positions WHERE channel = ? AND cluster_id = ?"
            " AND idx > ? ORDER BY idx",
            (key.channel, key.cluster_id, snapshot_index),
        ).fetchall()
        return WitnessState(
            WitnessHardState(term, vote),
            LogPosition(snapshot_index, snapshot_term),
            tuple(LogPosition(index, term) for index, term in positions),
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
            "INSERT OR IGNORE INTO witness VALUES (?, ?, ?, 0, '', 0, 0)",
            (*where, key.founded_ms),
        )
        if ready.compacted is not None:
            self._set_snapshot(where, ready.compacted)
            db.execute(
                "DELETE FROM positions WHERE channel = ? AND cluster_id = ? AND idx <= ?",
                (*where, ready.compacted.index),
            )
        if ready.snapshot is not None:
            self._set_snapshot(where, ready.snapshot)
            db.execute("DELETE FROM positions WHERE channel = ? AND cluster_id = ?", where)
        if ready.truncate_from:
            db.execute(
                "DELETE FROM positions WHERE channel = ? AND cluster_id = ? AND idx >= ?",
                (*where, ready.truncate_from),
            )
        db.executemany(
            "INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?)",
            [(*where, position.index, position.term) for position in ready.entries],
        )
        if ready.hard_state is not None:
            db.execute(
                "UPDATE witness SET term = ?, vote = ? WHERE channel = ? AND cluster_id = ?",
                (ready.hard_state.term, ready.hard_state.vote, *where),
            )

    def _set_snapshot(self, where: tuple[str, str], position: LogPosition) -> None:
        self._db.execute(
            "UPDATE witness SET snapshot_index = ?, snapshot_term = ?"
            " WHERE channel = ? AND cluster_id = ?",
            (position.index, position.term, *where),
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
