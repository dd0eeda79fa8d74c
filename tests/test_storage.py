"""Storage: every operation, every error, and that failures leave committed data intact."""

from __future__ import annotations

import os
import random
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from raftchat.net.identity import derive_node_id
from raftchat.raft.messages import (
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Snapshot,
    SnapshotMeta,
)
from raftchat.storage import (
    DB_FILENAME,
    SCHEMA_VERSION,
    EntriesUnavailableError,
    InvalidWriteError,
    PersistedState,
    Storage,
    StorageAccessError,
    StorageChannelError,
    StorageCorruptError,
    StorageError,
    StorageFullError,
    StorageLockedError,
    StorageOptions,
    StorageVersionError,
    _entry_checksum,
    channel_data_dir,
)

CHANNEL = "general"


def make_entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [
        Entry(
            index=index,
            term=term,
            kind=EntryKind.NORMAL if index % 3 else EntryKind.NOOP,
            data=f"payload {index}".encode() * 3,
            client_id=f"client-{index % 4}",
            serial=index * 7,
        )
        for index in range(first, last + 1)
    ]


def snapshot_at(index: int, term: int, data: bytes = b"state") -> Snapshot:
    configuration = Configuration(voters=frozenset({"a", "b"}), learners=frozenset({"c"}))
    return Snapshot(
        meta=SnapshotMeta(index=index, term=term, configuration=configuration), data=data
    )


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    return tmp_path / "node" / CHANNEL


@pytest.fixture
def storage(node_dir: Path):
    store = Storage.open(node_dir, CHANNEL)
    yield store
    store.close()


def reopen(store: Storage) -> Storage:
    store.close()
    return Storage.open(store.directory, CHANNEL)


def tamper(store: Storage, sql: str, parameters: tuple = ()) -> Path:
    """Change the database behind the storage's back, as a disk fault or a bad tool would."""
    store.close()
    path = store.directory / DB_FILENAME
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(sql, parameters)
    connection.close()
    return path


# --- opening ------------------------------------------------------------------------------


def test_new_database_is_empty_with_a_stable_node_id(node_dir: Path) -> None:
    store = Storage.open(node_dir, CHANNEL)
    node_id, public_key = store.node_id, store.identity.public_key
    assert store.load() == PersistedState(HardState(), None, [])
    assert node_id == derive_node_id(public_key) and store.legacy_node_id is None
    assert stat.S_IMODE(node_dir.stat().st_mode) == 0o700
    store = reopen(store)
    assert (store.node_id, store.identity.public_key) == (node_id, public_key)
    assert store.schema_version == SCHEMA_VERSION
    store.close()
    other = Storage.open(node_dir.parent / "elsewhere", CHANNEL)
    assert other.node_id != node_id
    other.close()


def test_every_incarnation_is_larger_than_the_last_and_kept_across_reopen(
    storage: Storage,
) -> None:
    first = storage.begin_incarnation(at_least=1)
    assert first == 1
    assert storage.begin_incarnation(at_least=1) == 2
    assert storage.begin_incarnation(at_least=1_000) == 1_000, "at least the clock"
    assert storage.begin_incarnation(at_least=10) == 1_001, "a clock that stepped back"
    storage = reopen(storage)
    assert storage.begin_incarnation(at_least=1) == 1_002
    storage.close()


@pytest.mark.parametrize("stored", ["", "-3", "abc", "\u00b2", str(2**63), b"7"])
def test_a_malformed_stored_incarnation_is_reported_as_damage(
    storage: Storage, stored: str
) -> None:
    storage._conn.execute("INSERT INTO meta (key, value) VALUES ('incarnation', ?)", (stored,))
    with pytest.raises(StorageCorruptError, match="incarnation"):
        storage.begin_incarnation(at_least=1)


def test_database_is_in_wal_mode_with_full_sync(storage: Storage) -> None:
    connection = sqlite3.connect(storage.path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()
    assert storage._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_channel_data_dir_is_per_channel_and_private(tmp_path: Path, monkeypatch) -> None:
    assert channel_data_dir("room-1", tmp_path) == tmp_path / "room-1"
    assert stat.S_IMODE((tmp_path / "room-1").stat().st_mode) == 0o700
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    default = channel_data_dir("room-2")
    assert default == tmp_path / "xdg" / "raftchat" / "room-2"
    assert default.is_dir()
    with Storage.open_channel("room-3", tmp_path) as store:
        assert store.directory == tmp_path / "room-3"


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "x" * 200, "sp ace"])
def test_bad_channel_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(StorageChannelError, match="invalid channel name"):
        channel_data_dir(name, tmp_path)
    with pytest.raises(StorageChannelError):
        Storage.open(tmp_path / "x", name)


def test_data_dir_of_another_channel_is_refused(storage: Storage) -> None:
    storage.close()
    with pytest.raises(StorageChannelError, match="belongs to channel 'general'"):
        Storage.open(storage.directory, "random")


def test_second_opener_in_another_process_is_told_who_holds_the_dir(storage: Storage) -> None:
    script = (
        "import sys\n"
        "from raftchat.storage import Storage, StorageLockedError\n"
        "try:\n"
        f"    Storage.open(sys.argv[1], {CHANNEL!r})\n"
        "except StorageLockedError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(storage.directory)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3, result.stderr
    assert f"in use by another raftchat process (pid {os.getpid()})" in result.stdout
    assert str(storage.directory) in result.stdout
    storage.save(HardState(term=1))  # the holder is unaffected


def test_lock_is_released_on_close(storage: Storage) -> None:
    with pytest.raises(StorageLockedError):
        Storage.open(storage.directory, CHANNEL)
    storage.close()
    storage.close()  # closing twice is harmless
    Storage.open(storage.directory, CHANNEL).close()


def test_closed_storage_refuses_work(storage: Storage) -> None:
    storage.close()
    with pytest.raises(StorageError, match="is closed"):
        storage.load()
    with pytest.raises(StorageError, match="is closed"):
        storage.save(HardState(term=1))


def test_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageAccessError, match="cannot create data dir"):
        Storage.open(blocker / CHANNEL, CHANNEL)
    with pytest.raises(StorageAccessError, match="cannot create data dir"):
        channel_data_dir(CHANNEL, blocker)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_everything_is_private_even_with_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        root = tmp_path / "data"
        store = Storage.open_channel(CHANNEL, root)
        store.save(HardState(term=1, commit=0), [])
    finally:
        os.umask(old)
    assert mode_of(root) == 0o700 and mode_of(store.directory) == 0o700
    files = sorted(p.name for p in store.directory.iterdir())
    assert DB_FILENAME in files and "raftchat.lock" in files
    assert {p.name: mode_of(p) for p in store.directory.iterdir()} == dict.fromkeys(files, 0o600)
    store.close()


def test_wider_modes_are_fixed_on_every_start_with_a_warning(tmp_path: Path, caplog) -> None:
    root = tmp_path / "data"
    store = Storage.open_channel(CHANNEL, root)
    store.close()
    root.chmod(0o755)
    store.directory.chmod(0o755)
    database = store.directory / DB_FILENAME
    database.chmod(0o644)
    with caplog.at_level("WARNING", logger="raftchat.storage"):
        store = Storage.open_channel(CHANNEL, root)
    store.close()
    assert (mode_of(root), mode_of(store.directory), mode_of(database)) == (0o700, 0o700, 0o600)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for path, mode in ((root, "755"), (store.directory, "755"), (database, "644")):
        assert any(
            m.startswith(f"{path} could be read by other users (mode {mode})") for m in warnings
        )
    caplog.clear()
    with caplog.at_level("WARNING", logger="raftchat.storage"):
        Storage.open_channel(CHANNEL, root).close()
    assert not caplog.records  # nothing to fix the second time


def test_a_readable_folder_of_another_user_is_refused(tmp_path: Path, monkeypatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    monkeypatch.setattr(os, "geteuid", lambda: shared.stat().st_uid + 1)
    with pytest.raises(StorageAccessError, match="belongs to another user and others can read it"):
        channel_data_dir(CHANNEL, shared)
    assert mode_of(shared) == 0o755  # not ours to change


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_data_dir(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(StorageAccessError, match="not writable"):
            Storage.open(locked, CHANNEL)
    finally:
        locked.chmod(0o700)


def test_newer_schema_version_is_refused(storage: Storage) -> None:
    path = tamper(storage, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageVersionError, match="newer raftchat") as caught:
        Storage.open(storage.directory, CHANNEL)
    assert str(path) in str(caught.value)


def test_foreign_database_is_refused(node_dir: Path) -> None:
    node_dir.mkdir(parents=True)
    connection = sqlite3.connect(node_dir / DB_FILENAME)
    connection.execute("CREATE TABLE something (x)")
    connection.commit()
    connection.close()
    with pytest.raises(StorageCorruptError, match="not a raftchat database"):
        Storage.open(node_dir, CHANNEL)


def test_garbage_file_is_reported_as_damaged(node_dir: Path) -> None:
    node_dir.mkdir(parents=True)
    (node_dir / DB_FILENAME).write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(StorageCorruptError, match="damaged or not a raftchat database"):
        Storage.open(node_dir, CHANNEL)
    # the failed open released the lock
    (node_dir / DB_FILENAME).unlink()
    Storage.open(node_dir, CHANNEL).close()


# --- saving and loading -------------------------------------------------------------------


def test_save_and_load_round_trip_across_reopen(storage: Storage) -> None:
    entries = make_entries(1, 50, term=2)
    storage.save(HardState(term=2, vote="peer-b", commit=40), entries)
    expected = PersistedState(HardState(term=2, vote="peer-b", commit=40), None, entries)
    assert storage.load() == expected
    assert (storage.first_index, storage.last_index, storage.last_term) == (1, 50, 2)
    storage = reopen(storage)
    assert storage.load() == expected
    assert storage.hard_state == HardState(term=2, vote="peer-b", commit=40)
    storage.close()


def test_hard_state_alone(storage: Storage) -> None:
    storage.save(HardState(term=5, vote="x"))
    storage.save(HardState(term=6, vote=""))
    assert reopen(storage).load().hard_state == HardState(term=6, vote="", commit=0)


def test_large_batch_is_one_transaction(storage: Storage) -> None:
    statements: list[str] = []
    storage._conn.set_trace_callback(statements.append)
    storage.save(HardState(term=1, commit=0), make_entries(1, 1000))
    commits = [sql for sql in statements if sql.strip().upper() == "COMMIT"]
    assert len(commits) == 1
    assert storage.last_index == 1000


def test_only_a_commit_index_move_skips_the_fsync_and_is_still_stored(
    storage: Storage,
) -> None:
    statements: list[str] = []
    storage._conn.set_trace_callback(statements.append)

    def synchronous_modes(save) -> list[str]:
        statements.clear()
        save()
        return [sql.split("=")[1] for sql in statements if "synchronous" in sql]

    entries = make_entries(1, 5)
    assert synchronous_modes(lambda: storage.save(HardState(term=1, commit=1), entries)) == []
    assert synchronous_modes(lambda: storage.save(HardState(term=1, commit=4))) == [
        "NORMAL",
        "FULL",
    ]
    assert synchronous_modes(lambda: storage.save(HardState(term=2, commit=4))) == []
    assert synchronous_modes(lambda: storage.save(HardState(term=2, vote="b", commit=4))) == []
    assert storage._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert reopen(storage).load().hard_state == HardState(term=2, vote="b", commit=4)


def test_failed_save_keeps_nothing(storage: Storage) -> None:
    storage.save(HardState(term=1, commit=5), make_entries(1, 10))
    # the hard state at the end is invalid, so the entries before it must not stay either
    with pytest.raises(InvalidWriteError, match="beyond the last log index"):
        storage.save(HardState(term=1, commit=500), make_entries(11, 20))
    assert storage.last_index == 10
    assert reopen(storage).load().entries == make_entries(1, 10)


def test_truncate_and_append_in_one_save(storage: Storage) -> None:
    storage.save(HardState(term=1, commit=3), make_entries(1, 10, term=1))
    storage.save(HardState(term=2, commit=3), make_entries(6, 8, term=2), truncate_from=6)
    state = storage.load()
    assert state.entries == make_entries(1, 5, term=1) + make_entries(6, 8, term=2)
    assert (storage.last_index, storage.last_term) == (8, 2)


def test_truncate_only(storage: Storage) -> None:
    storage.save(HardState(term=1, commit=2), make_entries(1, 10))
    storage.save(truncate_from=4)
    assert [entry.index for entry in storage.load().entries] == [1, 2, 3]
    assert storage.last_index == 3


def test_overlapping_append_replaces_the_conflicting_suffix(storage: Storage) -> None:
    storage.save(HardState(term=1), make_entries(1, 10, term=1))
    storage.save(entries=make_entries(4, 5, term=3))
    assert storage.load().entries == make_entries(1, 3, term=1) + make_entries(4, 5, term=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"truncate_from": 3}, "committed or compacted"),
        ({"entries": make_entries(4, 6)}, "committed or compacted"),
        ({"entries": make_entries(12, 13)}, "gap"),
        ({"entries": [*make_entries(11, 12), *make_entries(14, 14)]}, "contiguous"),
        ({"entries": make_entries(11, 12, term=1)}, "non-decreasing"),
        ({"hard_state": HardState(term=1)}, "may not go back"),
        ({"hard_state": HardState(term=3, commit=11)}, "beyond the last log index"),
    ],
)
def test_writes_that_break_the_log_rules_are_refused(
    storage: Storage, kwargs: dict, message: str
) -> None:
    storage.save(HardState(term=2, commit=5), make_entries(1, 10, term=2))
    with pytest.raises(InvalidWriteError, match=message):
        storage.save(**kwargs)
    assert storage.load() == PersistedState(
        HardState(term=2, commit=5), None, make_entries(1, 10, term=2)
    )


# --- snapshots and compaction -------------------------------------------------------------


def test_compact_stores_snapshot_and_drops_prefix(storage: Storage) -> None:
    storage.save(HardState(term=1, commit=15), make_entries(1, 20))
    storage.compact(snapshot_at(12, 1, b"chat state"))
    state = reopen(storage).load()
    assert state.snapshot == snapshot_at(12, 1, b"chat state")
    assert state.entries == make_entries(13, 20)
    assert state.last_index == 20


def test_compact_refuses_bad_snapshots(storage: Storage) -> None:
    storage.save(HardState(term=1, commit=15), make_entries(1, 20))
    with pytest.raises(InvalidWriteError, match="commit index"):
        storage.compact(snapshot_at(16, 1))
    with pytest.raises(InvalidWriteError, match="the log says 1"):
        storage.compact(snapshot_at(10, 7))
    storage.compact(snapshot_at(10, 1))
    with pytest.raises(InvalidWriteError, match="not newer"):
        storage.compact(snapshot_at(10, 1))
    assert storage.snapshot() == snapshot_at(10, 1)


def test_installed_snapshot_matching_the_log_keeps_the_suffix(storage: Storage) -> None:
    storage.save(HardState(term=1, commit=2), make_entries(1, 10))
    storage.save(HardState(term=1, commit=6), snapshot=snapshot_at(6, 1))
    state = storage.load()
    assert state.snapshot == snapshot_at(6, 1)
    assert state.entries == make_entries(7, 10)


def test_installed_snapshot_not_matching_the_log_replaces_it(storage: Storage) -> None:
    storage.save(HardState(term=1, commit=2), make_entries(1, 10))
    storage.save(HardState(term=3, commit=30), snapshot=snapshot_at(30, 3))
    state = reopen(storage).load()
    assert state.snapshot == snapshot_at(30, 3)
    assert state.entries == []
    assert state.last_index == 30


def test_snapshot_then_entries_in_one_save(storage: Storage) -> None:
    storage.save(HardState(term=1), make_entries(1, 3))
    storage.save(
        HardState(term=2, commit=8), make_entries(6, 8, term=2), snapshot=snapshot_at(5, 2)
    )
    assert storage.load().entries == make_entries(6, 8, term=2)
    assert storage.first_index == 6


def test_entries_range(storage: Storage) -> None:
    storage.save(HardState(term=1, commit=10), make_entries(1, 20))
    storage.compact(snapshot_at(5, 1))
    assert storage.entries(6, 9) == make_entries(6, 8)
    assert storage.entries(21, 21) == []
    with pytest.raises(EntriesUnavailableError, match="compacted"):
        storage.entries(5, 8)
    with pytest.raises(EntriesUnavailableError, match="ends at 20"):
        storage.entries(18, 22)


# --- corruption --------------------------------------------------------------------------


def test_flipped_entry_data_is_reported_with_file_and_index(storage: Storage) -> None:
    storage.save(HardState(term=1), make_entries(1, 10))
    path = tamper(storage, "UPDATE entries SET data = X'00ff' WHERE idx = 7")
    store = Storage.open(storage.directory, CHANNEL)
    with pytest.raises(StorageCorruptError, match="log entry 7 fails its checksum") as caught:
        store.load()
    assert str(path) in str(caught.value)
    with pytest.raises(StorageCorruptError, match="entry 7"):
        store.entries(5, 9)
    assert store.entries(1, 7) == make_entries(1, 6)
    store.close()


def test_changed_term_is_caught_by_the_checksum(storage: Storage) -> None:
    storage.save(HardState(term=3), make_entries(1, 5, term=3))
    tamper(storage, "UPDATE entries SET term = 2 WHERE idx = 4")
    with (
        Storage.open(storage.directory, CHANNEL) as store,
        pytest.raises(StorageCorruptError, match="entry 4"),
    ):
        store.load()


def test_gap_in_the_log_is_reported(storage: Storage) -> None:
    storage.save(HardState(term=1), make_entries(1, 10))
    tamper(storage, "DELETE FROM entries WHERE idx = 4")
    with (
        Storage.open(storage.directory, CHANNEL) as store,
        pytest.raises(StorageCorruptError, match="jumps from entry 3 to entry 5"),
    ):
        store.load()


def test_decreasing_terms_are_reported(storage: Storage) -> None:
    storage.save(HardState(term=4), make_entries(1, 5, term=4))
    data, client_id, serial = b"forged", "c", 1
    checksum = _entry_checksum(3, 2, 0, data, client_id.encode(), serial)
    tamper(
        storage,
        "UPDATE entries SET term = 2, kind = 0, data = ?, client_id = ?, serial = ?, checksum = ?"
        " WHERE idx = 3",
        (data, client_id, serial, checksum),
    )
    with (
        Storage.open(storage.directory, CHANNEL) as store,
        pytest.raises(
            StorageCorruptError,
            match="log entry 3 has term 2, lower than the 4 before it",
        ),
    ):
        store.load()


def test_commit_beyond_the_log_is_reported(storage: Storage) -> None:
    storage.save(HardState(term=1, commit=8), make_entries(1, 10))
    tamper(storage, "DELETE FROM entries WHERE idx > 5")
    with (
        Storage.open(storage.directory, CHANNEL) as store,
        pytest.raises(StorageCorruptError, match="commit index 8 is beyond the last log index 5"),
    ):
        store.load()


def test_damaged_hard_state_and_snapshot_are_reported(storage: Storage) -> None:
    storage.save(HardState(term=1, commit=8), make_entries(1, 10))
    storage.compact(snapshot_at(4, 1))
    tamper(storage, "UPDATE snapshot SET data = X'01'")
    with (
        Storage.open(storage.directory, CHANNEL) as store,
        pytest.raises(StorageCorruptError, match="snapshot at index 4"),
    ):
        store.load()
    tamper(storage, "UPDATE hard_state SET vote = 'mallory'")
    with pytest.raises(StorageCorruptError, match="hard state"):
        Storage.open(storage.directory, CHANNEL)


# --- full disk ----------------------------------------------------------------------------


def test_full_disk_keeps_committed_data_and_stays_readable(node_dir: Path) -> None:
    store = Storage.open(node_dir, CHANNEL, StorageOptions(max_size_bytes=256 * 1024))
    store.save(HardState(term=1, commit=3), make_entries(1, 10))
    big = [Entry(index, 1, EntryKind.NORMAL, os.urandom(4000)) for index in range(11, 200)]
    with pytest.raises(StorageFullError, match="full") as caught:
        store.save(HardState(term=1, commit=10), big)
    assert str(store.path) in str(caught.value)
    assert store.last_index == 10
    assert store.load() == PersistedState(HardState(term=1, commit=3), None, make_entries(1, 10))
    assert store.entries(2, 4) == make_entries(2, 3)
    store.save(HardState(term=1, commit=4), make_entries(11, 12))  # small writes still fit
    store.close()
    with Storage.open(node_dir, CHANNEL) as reopened:
        assert reopened.load().entries == make_entries(1, 12)
        assert reopened.hard_state.commit == 4


def test_storage_options_are_validated() -> None:
    with pytest.raises(ValueError, match="max_size_bytes"):
        StorageOptions(max_size_bytes=10)


def test_positions_kept_in_memory_match_the_database_after_random_writes(
    storage: Storage,
) -> None:
    seed = int(os.environ.get("RAFTCHAT_TEST_SEED", random.randrange(2**32)))
    print(f"seed {seed} (replay with RAFTCHAT_TEST_SEED={seed})")
    rng = random.Random(seed)
    term = commit = 0
    for _ in range(150):
        state = storage.load()
        last, snap = state.last_index, state.snapshot.meta.index if state.snapshot else 0
        terms = {entry.index: entry.term for entry in state.entries}
        if state.snapshot:
            terms[snap] = state.snapshot.meta.term
        last_term = terms.get(last, 0)
        move = rng.choice(["append", "append", "truncate", "hard_state", "compact", "install"])
        if move == "append":
            first = rng.randint(max(commit, snap) + 1, last + 1)
            term = max(term, terms.get(first - 1, 0)) + rng.randint(0, 1)
            storage.save(
                HardState(term, "", commit), make_entries(first, first + rng.randint(0, 4), term)
            )
        elif move == "truncate" and last > max(commit, snap):
            storage.save(truncate_from=rng.randint(max(commit, snap) + 1, last))
        elif move == "hard_state":
            commit = rng.randint(commit, last)
            storage.save(HardState(term, rng.choice(["", "peer-a"]), commit))
        elif move == "compact" and commit > snap:
            index = rng.randint(snap + 1, commit)
            storage.compact(snapshot_at(index, terms[index]))
        elif move == "install":
            index = rng.randint(max(commit, snap) + 1, last + 2)
            matching = index in terms and rng.random() < 0.5
            term = max(term, last_term) if matching else max(term, last_term) + 1
            storage.save(snapshot=snapshot_at(index, terms[index] if matching else term))
        state = storage.load()
        snap = state.snapshot.meta.index if state.snapshot else 0
        last_entry_term = state.entries[-1].term if state.entries else None
        snap_term = state.snapshot.meta.term if state.snapshot else 0
        assert storage.hard_state == state.hard_state
        assert storage.first_index == snap + 1
        assert storage.last_index == state.last_index
        assert storage.last_term == (last_entry_term if state.entries else snap_term)
