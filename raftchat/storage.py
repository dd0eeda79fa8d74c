"""Durable Raft state on SQLite: hard state, log entries, the latest snapshot, node metadata.

Acknowledged means durable: every ``save`` and ``compact`` is exactly one SQLite transaction
in WAL mode with ``synchronous=FULL``, so once it returns the data survives ``kill -9`` and a
power cut. The runtime hands a whole Raft ``Ready`` batch to one ``save`` call, so a thousand
entries cost one commit (one fsync), not a thousand. One exception: a save that only moves
the commit index forward is not fsynced (it survives ``kill -9``, not a power cut). Raft
keeps the commit index in memory only; a lower one after a power cut is safe, and the
fsync would sit on the path of every commit.

Every stored row carries a CRC32 over its fields, and ``load`` also checks that the log is
contiguous and that the hard state agrees with it: damaged data is reported as
:class:`StorageCorruptError` naming the file and the entry, never handed back silently.

The meta table also names the cluster the log belongs to (see
:class:`~raftchat.raft.ClusterIdentity`) and, while this node merges the history of a
cluster that lost to another into it, the merge queue: the committed messages still to
be proposed there. Starting a merge replaces the Raft state by the queue in one
transaction, so a crash leaves either the old cluster's log or the queue, never neither.
It keeps the node's latest incarnation too (:meth:`Storage.begin_incarnation`), so every
start of a node on the directory has a larger one.

The node's identity key (:mod:`raftchat.net.identity`) is a file next to the database,
made once; the node id is derived from it, and the meta table records its public key, so
a key file that is missing, damaged, replaced or readable by others is refused, never
silently replaced by a new identity. A database from before identity keys (a random
16-hex-digit id, no key) is re-identified once: a key is made, the node takes the id
derived from it, and the old id is kept as ``legacy_node_id`` while Raft state written
under it remains (``raftchat.node.reidentify`` turns that state into a merge queue).

One directory per node per channel holds the database, the key file and a lock file. An
exclusive ``flock`` on the lock file keeps a second process off the same directory (two
processes writing one Raft log would break Raft's safety).

The data is private, as ssh treats its keys: the data root and every channel directory are
mode 0700 and every file in a channel directory 0600. This is checked on every open, and a
mode found wider is narrowed with a warning naming the path; a directory or file of another
user that others can read is refused. The key file is only checked: one that others could
read is refused (its key may have leaked), with the ``chmod`` that fixes it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import platformdirs

from raftchat.limits import MAX_INCARNATION, channel_name_problem, node_id_problem
from raftchat.net.identity import IdentityError, NodeIdentity, create_key_file, load_key_file
from raftchat.raft import (
    NO_NODE,
    ClusterIdentity,
    CodecError,
    Entry,
    EntryKind,
    HardState,
    Snapshot,
    SnapshotMeta,
    decode_configuration,
    encode_configuration,
)

logger = logging.getLogger(__name__)

APP_NAME = "raftchat"
SCHEMA_VERSION = 2
"""Layout version of the database, kept in SQLite's ``user_version`` header field.
Version 2 added the cluster identity (meta) and the merge queue; version 1 databases
are migrated when opened (:func:`legacy_cluster_identity`)."""
DB_FILENAME = "raftchat.sqlite3"
LOCK_FILENAME = "raftchat.lock"
KEY_FILENAME = "node.key"
"""The node's identity key (PKCS#8 PEM, mode 0600), next to the database."""
DIR_MODE = 0o700
FILE_MODE = 0o600
_OTHERS = 0o077
"""Permission bits of the group and others: private data has none of them."""

_T = TypeVar("_T")


# --- errors -----------------------------------------------------------------------------


class StorageError(Exception):
    """Something is wrong with the node's data dir; the message says what and what to do."""


class StorageCorruptError(StorageError):
    """Stored data failed a checksum or consistency check."""


class StorageLockedError(StorageError):
    """Another process holds the data dir."""


class StorageVersionError(StorageError):
    """The database was written by a newer raftchat with a layout this one cannot read."""


class StorageFullError(StorageError):
    """The disk (or the configured size cap) is full; nothing of the failed write was kept."""


class StorageAccessError(StorageError):
    """The data dir cannot be created, read or written."""


class StorageChannelError(StorageError):
    """A bad channel name, or a data dir that belongs to another channel."""


class StorageIdentityError(StorageError):
    """The node's identity key is missing, unreadable, readable by others, or not the one
    the data dir was made with."""


class InvalidWriteError(StorageError, ValueError):
    """The caller asked for a write that would break the log's rules (a bug in the caller)."""


class EntriesUnavailableError(StorageError, LookupError):
    """The requested entries were compacted away or were never written."""


# --- data ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StorageOptions:
    """How a node's database is opened."""

    max_size_bytes: int | None = None
    """Cap on the database file size; a write beyond it fails with StorageFullError."""

    def __post_init__(self) -> None:
        if self.max_size_bytes is not None and self.max_size_bytes < 64 * 1024:
            raise ValueError(f"max_size_bytes must be at least 65536, got {self.max_size_bytes}")


@dataclass(frozen=True, slots=True)
class PersistedState:
    """Everything a restarting node needs: hard state, snapshot, and the entries after it."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    @property
    def last_index(self) -> int:
        if self.entries:
            return self.entries[-1].index
        return self.snapshot.meta.index if self.snapshot else 0


@dataclass(frozen=True, slots=True)
class MergeItem:
    """One committed message of a cluster that lost a merge, to propose into the survivor."""

    message_id: str
    data: bytes
    """The encoded chat command that carries it (opaque here)."""


@dataclass(frozen=True, slots=True)
class PendingMerge:
    """A merge this node has not finished: where the history came from, what is left."""

    source: ClusterIdentity
    items: list[MergeItem]
    """In the order to propose them (the source's log order)."""


def legacy_cluster_identity(channel: str) -> ClusterIdentity:
    """The identity of a cluster whose log predates cluster identities.

    Derived from the channel name alone, because that is the one input every member of
    such a cluster is sure to still have: the founding entry may be compacted away on
    some members and not on others, and snapshots end at different indexes. Founded
    "at 0", so it is older than any cluster founded since and survives a merge with one.
    Two clusters of one channel that were already apart before the upgrade share it and
    are not told apart (as before).
    """
    digest = hashlib.sha256(b"raftchat legacy cluster\0" + channel.encode()).hexdigest()
    return ClusterIdentity(founded_ms=0, cluster_id=digest[:32])


# --- data dir --------------------------------------------------------------------------


def validate_channel_name(channel: str) -> str:
    """Return ``channel`` if it is a channel name in canonical form (and so safe as a
    directory name), else raise StorageChannelError."""
    problem = channel_name_problem(channel)
    if problem:
        raise StorageChannelError(problem)
    return channel


def default_data_root() -> Path:
    """Where nodes keep their state unless told otherwise (e.g. ~/.local/share/raftchat)."""
    return Path(platformdirs.user_data_dir(APP_NAME))


def set_aside_damaged(directory: Path, now: float | None = None) -> Path:
    """Move a channel's database (and its WAL files) aside as ``*.damaged-<time>``, so
    the node can start over as a new member; returns the new name of the database.

    Starting over is safe where repairing is not: a node that kept its id but lost part
    of its log could vote for a candidate missing committed entries. A new database
    brings a new identity key, so a new node id; the old one is removed from the channel
    as unreachable."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    target = directory / f"{DB_FILENAME}.damaged-{stamp}"
    names = (DB_FILENAME, f"{DB_FILENAME}-wal", f"{DB_FILENAME}-shm", KEY_FILENAME)
    for name in names:  # the key too: the new member needs an id of its own
        path = directory / name
        if path.exists():
            path.rename(directory / f"{name}.damaged-{stamp}")
    return target


def channel_data_dir(channel: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding this node's state for ``channel``, made private (mode 0700)
    like the data root above it.

    It is ``<data_dir>/<channel>/``, with ``data_dir`` defaulting to :func:`default_data_root`,
    so one data dir can serve several channels.
    """
    validate_channel_name(channel)
    root = Path(data_dir) if data_dir is not None else default_data_root()
    _make_private_dir(root)  # other users must not even see which channels there are
    directory = root / channel
    _make_private_dir(directory)
    return directory


def _make_private_dir(directory: Path) -> None:
    try:
        if not directory.is_dir():
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            directory.chmod(DIR_MODE)  # mkdir's mode is filtered through the umask
    except OSError as exc:
        raise StorageAccessError(
            f"cannot create data dir {directory}: {exc.strerror or exc};"
            " choose a writable directory with --data-dir"
        ) from exc
    _make_private(directory, DIR_MODE)
    if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
        raise StorageAccessError(
            f"data dir {directory} is not writable by this user;"
            " fix its permissions or choose another with --data-dir"
        )


def _make_private(path: Path, mode: int) -> None:
    """Narrow ``path`` to ``mode`` if the group or others have any access, with a warning."""
    try:
        info = path.stat()
    except OSError as exc:
        raise StorageAccessError(f"cannot read the mode of {path}: {exc.strerror or exc}") from exc
    current = info.st_mode & 0o777
    if not current & _OTHERS:
        return
    if info.st_uid != os.geteuid():
        raise StorageAccessError(
            f"{path} belongs to another user and others can read it (mode {current:o});"
            " choose a folder of your own with --data-dir"
        )
    try:
        path.chmod(mode)
    except OSError as exc:
        raise StorageAccessError(
            f"{path} can be read by other users (mode {current:o}) and cannot be made"
            f" private: {exc.strerror or exc}; fix it with: chmod {mode:o} {path}"
        ) from exc
    logger.warning(
        "%s could be read by other users (mode %o); made it private (mode %o)",
        path,
        current,
        mode,
    )


def _make_files_private(directory: Path) -> None:
    """Narrow every regular file in ``directory`` (database, WAL, lock) to mode 0600; the
    key file is checked when it is loaded, and refused rather than narrowed."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and entry.name != KEY_FILENAME:
                _make_private(Path(entry.path), FILE_MODE)


def _create_private_file(path: Path) -> None:
    """Create ``path`` (if missing) with mode 0600, before SQLite creates it 0644."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
    except OSError as exc:
        raise StorageAccessError(
            f"cannot create {path}: {exc.strerror or exc};"
            " fix the data dir's permissions or choose another with --data-dir"
        ) from exc


class _DirLock:
    """An exclusive ``flock`` on a file in the data dir, holding the owner's pid."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILENAME
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StorageAccessError(
                f"cannot open lock file {self.path}: {exc.strerror or exc};"
                " fix the data dir's permissions or choose another with --data-dir"
            ) from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = self._read_owner()
            os.close(self._fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StorageLockedError(
                    f"data dir {directory} is in use by another raftchat process (pid {owner});"
                    " stop that process or use another --data-dir"
                ) from exc
            raise StorageAccessError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def _read_owner(self) -> str:
        try:
            text = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            text = ""
        return text or "unknown"

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


# --- row encoding ----------------------------------------------------------------------

_ENTRY_HEADER = struct.Struct("<qqqqI")
_HARD_STATE_HEADER = struct.Struct("<qqI")
_SNAPSHOT_HEADER = struct.Struct("<qqII")


def _entry_checksum(
    index: int, term: int, kind: int, data: bytes, client: bytes, serial: int
) -> int:
    header = _ENTRY_HEADER.pack(index, term, kind, serial, len(client))
    return zlib.crc32(data, zlib.crc32(client, zlib.crc32(header)))


def _hard_state_checksum(term: int, vote: str, commit: int) -> int:
    vote_bytes = vote.encode()
    return zlib.crc32(
        vote_bytes, zlib.crc32(_HARD_STATE_HEADER.pack(term, commit, len(vote_bytes)))
    )


def _snapshot_checksum(index: int, term: int, configuration: bytes, data: bytes) -> int:
    header = _SNAPSHOT_HEADER.pack(index, term, len(configuration), len(data))
    return zlib.crc32(data, zlib.crc32(configuration, zlib.crc32(header)))


def _entry_rows(entries: Sequence[Entry]) -> list[tuple[int, int, int, bytes, str, int, int]]:
    rows = []
    for entry in entries:
        kind = int(entry.kind)
        client = entry.client_id.encode()
        checksum = _entry_checksum(entry.index, entry.term, kind, entry.data, client, entry.serial)
        rows.append(
            (entry.index, entry.term, kind, entry.data, entry.client_id, entry.serial, checksum)
        )
    return rows


_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE hard_state (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    term INTEGER NOT NULL, vote TEXT NOT NULL, commit_index INTEGER NOT NULL,
    checksum INTEGER NOT NULL);
CREATE TABLE snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    last_index INTEGER NOT NULL, last_term INTEGER NOT NULL,
    configuration BLOB NOT NULL, data BLOB NOT NULL, checksum INTEGER NOT NULL);
CREATE TABLE entries (
    idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, kind INTEGER NOT NULL,
    data BLOB NOT NULL, client_id TEXT NOT NULL, serial INTEGER NOT NULL,
    checksum INTEGER NOT NULL);
"""

_SCHEMA_V2 = """
CREATE TABLE merge_queue (
    position INTEGER PRIMARY KEY, message_id TEXT NOT NULL, data BLOB NOT NULL,
    checksum INTEGER NOT NULL);
"""
"""Added by version 2 (the rest of version 2 lives in meta)."""

_CLUSTER_KEYS = ("cluster_founded_ms", "cluster_id")
_PUBLIC_KEY_KEY = "public_key"
_LEGACY_ID_KEY = "legacy_node_id"
_MERGE_SOURCE_KEYS = ("merge_source_founded_ms", "merge_source_id")
_INCARNATION_KEY = "incarnation"


def _merge_item_checksum(position: int, message_id: str, data: bytes) -> int:
    header = struct.pack("<qI", position, len(message_id))
    return zlib.crc32(data, zlib.crc32(message_id.encode(), zlib.crc32(header)))


_INSERT_ENTRY = (
    "INSERT INTO entries (idx, term, kind, data, client_id, serial, checksum)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_ENTRIES = "SELECT idx, term, kind, data, client_id, serial, checksum FROM entries"


# --- storage ---------------------------------------------------------------------------


class Storage:
    """A node's durable state for one channel. Open with :meth:`open`; not for concurrent use
    from several threads at once (calls are serialized by an internal lock)."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        lock: _DirLock,
        directory: Path,
        channel: str,
        identity: NodeIdentity,
    ) -> None:
        self._conn = connection
        self._dir_lock = lock
        self._mutex = threading.Lock()
        self.directory = directory
        self.path = directory / DB_FILENAME
        self.channel = channel
        self.identity = identity
        "The node's key pair; proves :attr:`node_id` to peers and the signaling server."
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        self.node_id: str = meta.get("node_id", "")
        if node_id_problem(self.node_id) or self.node_id != identity.node_id:
            raise self._corrupt("the node id is missing, malformed or not the key's")
        self.legacy_node_id: str | None = meta.get(_LEGACY_ID_KEY)
        """The random id this node had before identity keys, while Raft state written under
        it remains (:mod:`raftchat.node.reidentify` settles it); None otherwise."""
        if meta.get("channel") != channel:
            raise StorageChannelError(
                f"data dir {directory} belongs to channel {meta.get('channel')!r},"
                f" not {channel!r}; use another --data-dir for this channel"
            )
        self._cluster = self._identity(meta, _CLUSTER_KEYS)
        self._closed = False
        self._refresh_cache()

    # -- opening and closing ------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        channel: str,
        options: StorageOptions | None = None,
    ) -> Storage:
        """Open (creating if needed) the node state in ``directory`` for ``channel``.

        ``directory`` is the per-channel directory itself (see :func:`channel_data_dir`).
        A new data dir gets a new identity key, whose node id it keeps from then on; one
        from before identity keys is re-identified (see the module docstring).
        """
        options = options or StorageOptions()
        validate_channel_name(channel)
        directory = Path(directory)
        _make_private_dir(directory)
        lock = _DirLock(directory)
        connection: sqlite3.Connection | None = None
        try:
            _make_files_private(directory)
            _create_private_file(directory / DB_FILENAME)
            connection = _connect(directory / DB_FILENAME, options)
            _ensure_schema(connection, directory / DB_FILENAME, channel)
            identity = _settle_identity(connection, directory)
            _make_files_private(directory)  # the WAL files SQLite made meanwhile
            storage = cls(connection, lock, directory, channel, identity)
        except BaseException:
            if connection is not None:
                connection.close()
            lock.release()
            raise
        logger.info("opened %s (node %s, channel %s)", storage.path, storage.node_id, channel)
        return storage

    @classmethod
    def open_channel(
        cls,
        channel: str,
        data_dir: str | os.PathLike[str] | None = None,
        options: StorageOptions | None = None,
    ) -> Storage:
        """Open ``<data_dir or the default data root>/<channel>/``."""
        return cls.open(channel_data_dir(channel, data_dir), channel, options)

    def close(self) -> None:
        """Close the database and release the data dir. Safe to call twice."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            finally:
                self._dir_lock.release()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSION

    @property
    def first_index(self) -> int:
        """Index of the first entry still in the log (the snapshot covers everything before)."""
        return self._snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self._last_index

    @property
    def last_term(self) -> int:
        return self._last_term

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    @property
    def cluster(self) -> ClusterIdentity | None:
        """The cluster this node's log belongs to; None before it founded or joined one."""
        return self._cluster

    # -- incarnation ---------------------------------------------------------------------

    def begin_incarnation(self, at_least: int) -> int:
        """Start a new incarnation of this node (durably, one transaction) and return it:
        larger than every earlier one of this data dir, and at least ``at_least``."""
        with self._mutex:
            self._check_open()

            def bump() -> int:
                row = self._conn.execute(
                    "SELECT value FROM meta WHERE key = ?", (_INCARNATION_KEY,)
                ).fetchone()
                stored = row[0] if row else "0"
                if (
                    type(stored) is not str
                    or not (stored.isascii() and stored.isdigit())
                    or int(stored) > MAX_INCARNATION
                ):
                    raise self._corrupt("the stored incarnation is malformed")
                incarnation = min(max(int(stored) + 1, at_least), MAX_INCARNATION)
                self._transaction(
                    lambda: self._conn.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        (_INCARNATION_KEY, str(incarnation)),
                    )
                )
                return incarnation

            return self._run(bump)

    # -- cluster identity and merging ---------------------------------------------------

    def set_cluster(self, cluster: ClusterIdentity | None) -> None:
        """Record which cluster the log belongs to (founded, joined, or left to merge)."""
        with self._mutex:
            self._check_open()
            self._run(
                lambda: self._transaction(lambda: self._write_identity(_CLUSTER_KEYS, cluster))
            )
            self._cluster = cluster

    def pending_merge(self) -> PendingMerge | None:
        """The merge this node has not finished, verified; None if there is none."""
        with self._mutex:
            self._check_open()
            return self._run(self._read_pending_merge)

    def begin_merge(self, source: ClusterIdentity, items: Sequence[MergeItem]) -> None:
        """Leave the cluster ``source`` to join another, in one transaction: the queue
        becomes ``items`` and the Raft state (hard state, log, snapshot, cluster) is gone,
        so the node starts over as a newcomer with the history it must merge."""
        with self._mutex:
            self._check_open()

            def write() -> None:
                self._conn.execute("DELETE FROM merge_queue")
                self._conn.executemany(
                    "INSERT INTO merge_queue (position, message_id, data, checksum)"
                    " VALUES (?, ?, ?, ?)",
                    [
                        (position, item.message_id, item.data,
                         _merge_item_checksum(position, item.message_id, item.data))
                        for position, item in enumerate(items)
                    ],
                )  # fmt: skip
                self._write_identity(_MERGE_SOURCE_KEYS, source)
                self._write_identity(_CLUSTER_KEYS, None)
                # No Raft state of an id from before identity keys is left.
                self._conn.execute("DELETE FROM meta WHERE key = ?", (_LEGACY_ID_KEY,))
                self._conn.execute("DELETE FROM entries")
                self._conn.execute("DELETE FROM snapshot")
                self._conn.execute("DELETE FROM hard_state")

            self._run(lambda: self._transaction(write))
            self._cluster = None
            self.legacy_node_id = None
            self._refresh_cache()

    def merged(self, message_ids: Iterable[str]) -> None:
        """These queued messages are committed in the survivor: drop them from the queue."""
        ids = [(message_id,) for message_id in message_ids]
        if not ids:
            return
        with self._mutex:
            self._check_open()
            self._run(
                lambda: self._transaction(
                    lambda: self._conn.executemany(
                        "DELETE FROM merge_queue WHERE message_id = ?", ids
                    )
                )
            )

    def finish_merge(self) -> None:
        """The survivor has committed everything: forget the merge."""
        with self._mutex:
            self._check_open()

            def write() -> None:
                self._conn.execute("DELETE FROM merge_queue")
                self._write_identity(_MERGE_SOURCE_KEYS, None)

            self._run(lambda: self._transaction(write))

    def _read_pending_merge(self) -> PendingMerge | None:
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        source = self._identity(meta, _MERGE_SOURCE_KEYS)
        if source is None:
            return None
        items = []
        rows = self._conn.execute(
            "SELECT position, message_id, data, checksum FROM merge_queue ORDER BY position"
        ).fetchall()
        for position, message_id, data, checksum in rows:
            try:
                valid = checksum == _merge_item_checksum(position, message_id, data)
            except (TypeError, AttributeError, struct.error):
                valid = False
            if not valid:
                raise self._corrupt(f"merge queue item {position} fails its checksum")
            items.append(MergeItem(message_id, data))
        return PendingMerge(source, items)

    def _write_identity(self, keys: tuple[str, str], cluster: ClusterIdentity | None) -> None:
        self._conn.executemany("DELETE FROM meta WHERE key = ?", [(key,) for key in keys])
        if cluster is not None:
            self._conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                list(zip(keys, (str(cluster.founded_ms), cluster.cluster_id), strict=True)),
            )

    def _identity(self, meta: dict[str, str], keys: tuple[str, str]) -> ClusterIdentity | None:
        founded, cluster_id = (meta.get(key) for key in keys)
        if founded is None and cluster_id is None:
            return None
        if founded is None or not founded.isdigit() or node_id_problem(cluster_id or ""):
            raise self._corrupt(f"the cluster identity ({keys[1]}) is malformed")
        return ClusterIdentity(int(founded), cluster_id or "")

    # -- reading ------------------------------------------------------------------------

    def load(self) -> PersistedState:
        """Read and verify everything: checksums, log continuity, hard state vs log."""
        with self._mutex:
            self._check_open()
            return self._run(self._load)

    def _load(self) -> PersistedState:
        hard_state = self._read_hard_state()
        snapshot = self._read_snapshot()
        snapshot_index = snapshot.meta.index if snapshot else 0
        snapshot_term = snapshot.meta.term if snapshot else 0
        rows = self._conn.execute(_SELECT_ENTRIES + " ORDER BY idx").fetchall()
        entries = self._rows_to_entries(rows, snapshot_index + 1, snapshot_term)
        last_index = entries[-1].index if entries else snapshot_index
        if hard_state.commit > last_index:
            raise self._corrupt(
                f"the commit index {hard_state.commit} is beyond the last log index {last_index}"
            )
        return PersistedState(hard_state=hard_state, snapshot=snapshot, entries=entries)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries with ``lo <= index < hi``, verified; all of them must still be in the log."""
        with self._mutex:
            self._check_open()
            if lo > hi:
                raise ValueError(f"entries({lo}, {hi}): lo must not exceed hi")
            if lo <= self._snapshot_index:
                raise EntriesUnavailableError(
                    f"entries before {self._snapshot_index + 1} were compacted into a snapshot"
                    f" (asked for {lo}..{hi - 1})"
                )
            if hi > self._last_index + 1:
                raise EntriesUnavailableError(
                    f"the log ends at {self._last_index} (asked for {lo}..{hi - 1})"
                )
            if lo == hi:
                return []

            def read() -> list[Entry]:
                rows = self._conn.execute(
                    _SELECT_ENTRIES + " WHERE idx >= ? AND idx < ? ORDER BY idx", (lo, hi)
                ).fetchall()
                previous_term = self._term_at(lo - 1) if lo > 1 else 0
                entries = self._rows_to_entries(rows, lo, previous_term)
                if len(entries) != hi - lo:
                    raise self._corrupt(f"log entries {lo}..{hi - 1} are missing")
                return entries

            return self._run(read)

    def snapshot(self) -> Snapshot | None:
        """The latest snapshot, verified, or None if the log was never compacted."""
        with self._mutex:
            self._check_open()
            return self._run(self._read_snapshot)

    # -- writing ------------------------------------------------------------------------

    def save(
        self,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        truncate_from: int | None = None,
        snapshot: Snapshot | None = None,
    ) -> None:
        """Persist one Raft ``Ready`` batch in a single transaction (one fsync).

        Applied in this order: ``snapshot`` (installed from the leader: entries up to its
        index go; the rest go too unless the log holds the snapshot's last entry with the
        same term), then truncation of entries ``>= truncate_from``, then ``entries``
        (contiguous; any stored entries at or after the first one are replaced), then
        ``hard_state``. Committed entries are never truncated or replaced. Either all of it
        is durable when this returns, or (on an exception) none of it.
        """
        with self._mutex:
            self._check_open()
            rows = _entry_rows(entries)
            stored = self._hard_state
            commit_only = (
                hard_state is not None
                and not entries
                and not truncate_from
                and snapshot is None
                and hard_state.term == stored.term
                and hard_state.vote == stored.vote
            )
            self._run(
                lambda: self._transaction(
                    lambda: self._save(hard_state, entries, rows, truncate_from, snapshot),
                    fsync=not commit_only,
                )
            )
            # The log bounds and snapshot position were kept up to date while writing (a
            # failed transaction reloads them all), so only the hard state is left to note:
            # no reading back after every save.
            if hard_state is not None:
                self._hard_state = hard_state

    def compact(self, snapshot: Snapshot) -> None:
        """Store a snapshot of the applied state and drop the log up to its index, atomically."""
        with self._mutex:
            self._check_open()
            self._run(lambda: self._transaction(lambda: self._compact(snapshot)))
            self._refresh_cache()

    def _save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        rows: list[tuple[int, int, int, bytes, str, int, int]],
        truncate_from: int | None,
        snapshot: Snapshot | None,
    ) -> None:
        commit = self._hard_state.commit
        if snapshot is not None:
            self._install_snapshot(snapshot)
        if truncate_from is not None:
            self._truncate(truncate_from, commit)
        if entries:
            self._append(entries, rows, commit)
        if hard_state is not None:
            self._write_hard_state(hard_state)

    def _install_snapshot(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        if meta.index <= self._snapshot_index:
            raise InvalidWriteError(
                f"snapshot at index {meta.index} is not newer than the stored one"
                f" at {self._snapshot_index}"
            )
        log_has_snapshot_entry = self._term_at_or_none(meta.index) == meta.term
        self._write_snapshot(snapshot)
        if log_has_snapshot_entry:
            self._conn.execute("DELETE FROM entries WHERE idx <= ?", (meta.index,))
        else:
            self._conn.execute("DELETE FROM entries")
        self._refresh_log_bounds()

    def _truncate(self, truncate_from: int, commit: int) -> None:
        if truncate_from <= max(commit, self._snapshot_index):
            raise InvalidWriteError(
                f"cannot truncate the log from {truncate_from}: entries up to"
                f" {max(commit, self._snapshot_index)} are committed or compacted"
            )
        self._conn.execute("DELETE FROM entries WHERE idx >= ?", (truncate_from,))
        self._refresh_log_bounds()

    def _append(
        self,
        entries: Sequence[Entry],
        rows: list[tuple[int, int, int, bytes, str, int, int]],
        commit: int,
    ) -> None:
        first = entries[0]
        if first.index <= max(commit, self._snapshot_index):
            raise InvalidWriteError(
                f"cannot write entry {first.index}: entries up to"
                f" {max(commit, self._snapshot_index)} are committed or compacted"
            )
        if first.index > self._last_index + 1:
            raise InvalidWriteError(
                f"entry {first.index} would leave a gap after the last index {self._last_index}"
            )
        previous_term = self._term_at(first.index - 1)
        previous_index = first.index - 1
        for entry in entries:
            if entry.index != previous_index + 1 or entry.term < previous_term:
                raise InvalidWriteError(
                    f"entry {entry.index} (term {entry.term}) does not follow entry"
                    f" {previous_index} (term {previous_term}): indices must be contiguous"
                    " and terms non-decreasing"
                )
            previous_index, previous_term = entry.index, entry.term
        if first.index <= self._last_index:
            self._conn.execute("DELETE FROM entries WHERE idx >= ?", (first.index,))
        self._conn.executemany(_INSERT_ENTRY, rows)
        self._last_index, self._last_term = previous_index, previous_term

    def _write_hard_state(self, hard_state: HardState) -> None:
        if hard_state.term < self._hard_state.term:
            raise InvalidWriteError(
                f"the term may not go back from {self._hard_state.term} to {hard_state.term}"
            )
        if hard_state.commit > self._last_index:
            raise InvalidWriteError(
                f"commit index {hard_state.commit} is beyond the last log index {self._last_index}"
            )
        checksum = _hard_state_checksum(hard_state.term, hard_state.vote, hard_state.commit)
        self._conn.execute(
            "INSERT OR REPLACE INTO hard_state (id, term, vote, commit_index, checksum)"
            " VALUES (0, ?, ?, ?, ?)",
            (hard_state.term, hard_state.vote, hard_state.commit, checksum),
        )

    def _compact(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        if meta.index <= self._snapshot_index:
            raise InvalidWriteError(
                f"snapshot at index {meta.index} is not newer than the stored one"
                f" at {self._snapshot_index}"
            )
        if meta.index > self._hard_state.commit:
            raise InvalidWriteError(
                f"cannot compact up to {meta.index}: only entries up to the commit index"
                f" {self._hard_state.commit} may be compacted"
            )
        stored_term = self._term_at_or_none(meta.index)
        if stored_term != meta.term:
            raise InvalidWriteError(
                f"snapshot says entry {meta.index} has term {meta.term}, the log says {stored_term}"
            )
        self._write_snapshot(snapshot)
        self._conn.execute("DELETE FROM entries WHERE idx <= ?", (meta.index,))

    def _write_snapshot(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        configuration = encode_configuration(meta.configuration)
        checksum = _snapshot_checksum(meta.index, meta.term, configuration, snapshot.data)
        self._conn.execute(
            "INSERT OR REPLACE INTO snapshot"
            " (id, last_index, last_term, configuration, data, checksum) VALUES (0, ?, ?, ?, ?, ?)",
            (meta.index, meta.term, configuration, snapshot.data, checksum),
        )
        self._snapshot_index, self._snapshot_term = meta.index, meta.term

    # -- helpers ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"{self.path} is closed")

    def _transaction(self, body: Callable[[], None], fsync: bool = True) -> None:
        if not fsync:
            self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL: commits without fsync
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            body()
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    logger.exception("rollback failed on %s", self.path)
            self._refresh_cache()
            raise
        finally:
            if not fsync:
                self._conn.execute("PRAGMA synchronous=FULL")

    def _run(self, operation: Callable[[], _T]) -> _T:
        """Run ``operation``, turning SQLite and OS errors into StorageError subclasses."""
        try:
            return operation()
        except (sqlite3.Error, OSError) as exc:
            raise _translate_error(exc, self.path) from exc

    def _refresh_cache(self) -> None:
        """Reload the few numbers kept in memory (they are what the database says)."""
        try:
            self._hard_state = self._read_hard_state()
            row = self._conn.execute("SELECT last_index, last_term FROM snapshot").fetchone()
            self._snapshot_index, self._snapshot_term = row if row else (0, 0)
            self._refresh_log_bounds()
        except (sqlite3.Error, OSError) as exc:
            raise _translate_error(exc, self.path) from exc

    def _refresh_log_bounds(self) -> None:
        row = self._conn.execute(
            "SELECT idx, term FROM entries ORDER BY idx DESC LIMIT 1"
        ).fetchone()
        if row is None:
            self._last_index, self._last_term = self._snapshot_index, self._snapshot_term
        else:
            self._last_index, self._last_term = row

    def _term_at_or_none(self, index: int) -> int | None:
        if index == self._snapshot_index:
            return self._snapshot_term
        if index == self._last_index:
            return self._last_term
        row = self._conn.execute("SELECT term FROM entries WHERE idx = ?", (index,)).fetchone()
        return row[0] if row else None

    def _term_at(self, index: int) -> int:
        term = self._term_at_or_none(index)
        if term is None:
            raise self._corrupt(f"log entry {index} is missing")
        return term

    def _read_hard_state(self) -> HardState:
        row = self._conn.execute(
            "SELECT term, vote, commit_index, checksum FROM hard_state"
        ).fetchone()
        if row is None:
            return HardState(term=0, vote=NO_NODE, commit=0)
        term, vote, commit, checksum = row
        try:
            valid = checksum == _hard_state_checksum(term, vote, commit)
        except (TypeError, struct.error, AttributeError):
            valid = False
        if not valid:
            raise self._corrupt("the hard state (term, vote, commit) fails its checksum")
        return HardState(term=term, vote=vote, commit=commit)

    def _read_snapshot(self) -> Snapshot | None:
        row = self._conn.execute(
            "SELECT last_index, last_term, configuration, data, checksum FROM snapshot"
        ).fetchone()
        if row is None:
            return None
        index, term, configuration_bytes, data, checksum = row
        try:
            valid = checksum == _snapshot_checksum(index, term, configuration_bytes, data)
            configuration = decode_configuration(configuration_bytes) if valid else None
        except (TypeError, struct.error, CodecError):
            valid, configuration = False, None
        if not valid or configuration is None:
            raise self._corrupt(f"the snapshot at index {index} fails its checksum")
        meta = SnapshotMeta(index=index, term=term, configuration=configuration)
        return Snapshot(meta=meta, data=data)

    def _rows_to_entries(
        self, rows: list[tuple], expected_first: int, previous_term: int
    ) -> list[Entry]:
        """Verify rows (checksum, contiguity, terms) and build Entry objects."""
        entries = []
        expected_index = expected_first
        kinds = {kind.value: kind for kind in EntryKind}
        for index, term, kind, data, client_id, serial, checksum in rows:
            try:
                client = client_id.encode()
                valid = checksum == _entry_checksum(index, term, kind, data, client, serial)
            except (TypeError, struct.error, AttributeError):
                valid = False
            if not valid or kind not in kinds:
                raise self._corrupt(f"log entry {index} fails its checksum")
            if index != expected_index:
                raise self._corrupt(
                    f"the log jumps from entry {expected_index - 1} to entry {index}"
                )
            if term < previous_term:
                raise self._corrupt(
                    f"log entry {index} has term {term}, lower than the {previous_term} before it"
                )
            entries.append(Entry(index, term, kinds[kind], data, client_id, serial))
            expected_index += 1
            previous_term = term
        return entries

    def _corrupt(self, what: str) -> StorageCorruptError:
        return StorageCorruptError(
            f"{self.path} is damaged: {what}. Restore it from a backup, or remove"
            f" {self.directory} to rejoin the channel as a new member"
        )


def _connect(path: Path, options: StorageOptions) -> sqlite3.Connection:
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _translate_error(exc, path) from exc
    try:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StorageAccessError(f"{path}: SQLite refused WAL mode (got {mode!r})")
        connection.execute("PRAGMA synchronous=FULL")
        if options.max_size_bytes is not None:
            page_size = connection.execute("PRAGMA page_size").fetchone()[0]
            connection.execute(f"PRAGMA max_page_count={options.max_size_bytes // page_size}")
    except BaseException as exc:
        connection.close()
        if isinstance(exc, sqlite3.Error):
            raise _translate_error(exc, path) from exc
        raise
    return connection


def _ensure_schema(connection: sqlite3.Connection, path: Path, channel: str) -> None:
    """Create the tables in a new database, or check an existing one can be read."""
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageVersionError(
                f"{path} was written by a newer raftchat (schema version {version}; this"
                f" version reads up to {SCHEMA_VERSION}); upgrade raftchat to use this data dir"
            )
        if version == SCHEMA_VERSION:
            return
        if version == 1:
            _migrate_from_1(connection, channel)
            return
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise StorageCorruptError(
                f"{path} is not a raftchat database (it has tables but no schema version);"
                " move it away or choose another --data-dir"
            )
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in (_SCHEMA + _SCHEMA_V2).split(";"):
                if statement.strip():
                    connection.execute(statement)
            # The node id comes with the identity key (_settle_identity).
            connection.execute("INSERT INTO meta (key, value) VALUES ('channel', ?)", (channel,))
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise _translate_error(exc, path) from exc


def _has_raft_state(connection: sqlite3.Connection) -> bool:
    return any(
        connection.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
        for table in ("hard_state", "entries", "snapshot")
    )


def _settle_identity(connection: sqlite3.Connection, directory: Path) -> NodeIdentity:
    """The node's identity: its key file checked against the public key the meta table
    recorded; or, for a data dir that has none recorded (new, or from before identity
    keys), a key made now (or one a crashed first start made) and recorded with its id."""
    meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
    path = directory / KEY_FILENAME
    recorded = meta.get(_PUBLIC_KEY_KEY)
    node_id = meta.get("node_id")
    if recorded is not None:
        try:
            identity = load_key_file(path)
        except IdentityError as error:
            raise StorageIdentityError(
                f"{error}; data dir {directory} belongs to node {node_id}, which only that key"
                f" proves. Restore {path} from a backup (mode 0600), or move {directory}"
                " away to join the channel as a new member"
            ) from None
        if identity.public_key.hex() != recorded:
            raise StorageIdentityError(
                f"{path} holds the key of node {identity.node_id}, not of node {node_id}"
                f" whose data dir {directory} is; restore its own key file from a backup,"
                f" or move {directory} away to join the channel as a new member"
            )
        return identity
    try:
        if path.exists() or path.is_symlink():
            identity = load_key_file(path)  # made by a first start that stopped right after
        else:
            identity = create_key_file(path)
    except IdentityError as error:
        raise StorageIdentityError(
            f"{error}; fix it, or move {path} away to make a new key for data dir {directory}"
        ) from None
    try:
        legacy = node_id if node_id and _has_raft_state(connection) else None
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("node_id", identity.node_id), (_PUBLIC_KEY_KEY, identity.public_key.hex())],
            )
            connection.execute("DELETE FROM meta WHERE key = 'reconnect_token'")
            if legacy is not None:
                connection.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (_LEGACY_ID_KEY, legacy),
                )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise _translate_error(exc, directory / DB_FILENAME) from exc
    if node_id:
        logger.warning(
            "data dir %s predates identity keys: this node joins the channel as a new member"
            " %s (its old id %s cannot be proven by any key)%s",
            directory,
            identity.node_id,
            node_id,
            "; its history is merged back in and the old id, now unreachable, is left behind"
            if legacy
            else "",
        )
    return identity


def _migrate_from_1(connection: sqlite3.Connection, channel: str) -> None:
    """Version 1 to 2, in one transaction: add the merge queue, and give a database that
    holds a cluster's state that cluster's identity (:func:`legacy_cluster_identity`)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA_V2.split(";"):
            if statement.strip():
                connection.execute(statement)
        if _has_raft_state(connection):
            legacy = legacy_cluster_identity(channel)
            connection.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                list(zip(_CLUSTER_KEYS, (str(legacy.founded_ms), legacy.cluster_id), strict=True)),
            )
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_ACCESS_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


def _translate_error(exc: BaseException, path: Path) -> StorageError:
    """Map an SQLite or OS error to the StorageError a user can act on."""
    if isinstance(exc, StorageError):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    os_errno = exc.errno if isinstance(exc, OSError) else None
    if primary == sqlite3.SQLITE_FULL or os_errno in _FULL_ERRNOS:
        return StorageFullError(
            f"cannot write {path}: the disk or the configured size limit is full ({exc});"
            " free some space and try again (data already saved is intact)"
        )
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StorageCorruptError(
            f"{path} is damaged or not a raftchat database ({exc}); restore it from a backup"
            " or move it away to rejoin as a new member"
        )
    if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM) or (
        os_errno in _ACCESS_ERRNOS
    ):
        return StorageAccessError(
            f"cannot open or write {path} ({exc}); fix the data dir's permissions"
            " or choose another with --data-dir"
        )
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StorageLockedError(f"{path} is locked by another program ({exc})")
    return StorageError(f"storage error on {path}: {exc}")
