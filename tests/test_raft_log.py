"""The in-memory log, configuration history and settings validation."""

from __future__ import annotations

import msgpack
import pytest

from raftchat.raft import (
    Configuration,
    Entry,
    EntryKind,
    RaftSettings,
    Snapshot,
    SnapshotMeta,
    decode_configuration,
    encode_configuration,
)
from raftchat.raft.configuration import ConfigurationHistory
from raftchat.raft.log import ENTRY_OVERHEAD_BYTES, LogError, RaftLog


def make_log(terms: list[int], snapshot_index: int = 0, snapshot_term: int = 0) -> RaftLog:
    snapshot = Snapshot(SnapshotMeta(snapshot_index, snapshot_term))
    entries = [Entry(snapshot_index + 1 + i, t) for i, t in enumerate(terms)]
    return RaftLog(snapshot, entries, commit=0)


def test_terms_by_index_arithmetic_with_a_snapshot_offset():
    log = make_log([3, 3, 4], snapshot_index=10, snapshot_term=2)
    assert (log.first_index, log.last_index, log.last_term) == (11, 13, 4)
    assert log.term(10) == 2
    assert log.term(12) == 3
    assert log.term(9) is None
    assert log.term(14) is None
    assert log.term(0) == 0


def test_restored_log_must_be_contiguous():
    with pytest.raises(LogError, match="not contiguous"):
        RaftLog(Snapshot(), [Entry(1, 1), Entry(3, 1)], commit=0)


def test_slice_respects_the_byte_bound_but_always_returns_one_entry():
    log = RaftLog(Snapshot(), [Entry(i, 1, data=b"x" * 100) for i in range(1, 11)], 0)
    per_entry = ENTRY_OVERHEAD_BYTES + 100
    assert len(log.slice(1, 11, 3 * per_entry)) == 3
    assert len(log.slice(1, 11, 1)) == 1
    assert len(log.slice(4, 6, 10**9)) == 2
    with pytest.raises(LogError):
        make_log([1], snapshot_index=5, snapshot_term=1).slice(3, 6, 100)


def test_find_conflict_and_truncate():
    log = make_log([1, 1, 2, 2])
    assert log.find_conflict([Entry(2, 1), Entry(3, 2)]) == 0
    assert log.find_conflict([Entry(3, 3), Entry(4, 3)]) == 3
    assert log.find_conflict([Entry(4, 2), Entry(5, 2)]) == 5
    log.stable_index = 4
    log.truncate_and_append([Entry(3, 3)])
    assert (log.last_index, log.last_term, log.stable_index) == (3, 3, 2)
    log.commit_to(2)
    with pytest.raises(LogError, match="committed"):
        log.truncate_and_append([Entry(2, 5)])


def test_term_searches_for_fast_back_off():
    log = make_log([1, 1, 2, 2, 2, 5, 5])
    assert log.first_index_of_term(2, upto=7) == 3
    assert log.first_index_of_term(5, upto=7) == 6
    assert log.last_index_of_term(2) == 5
    assert log.last_index_of_term(3) == 0


def test_election_restriction_compares_last_term_then_length():
    log = make_log([1, 2, 2])
    assert log.is_up_to_date(1, 3)
    assert log.is_up_to_date(3, 2)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(10, 1)


def test_configuration_round_trip_and_bad_data():
    configuration = Configuration(frozenset({"a", "b"}), frozenset({"c"}))
    assert decode_configuration(encode_configuration(configuration)) == configuration
    for bad in (
        b"",
        msgpack.packb({}),
        msgpack.packb([[1], []]),
        msgpack.packb([["a"], ["a"]]),
    ):
        with pytest.raises(ValueError, match="configuration"):
            decode_configuration(bad)


def test_configuration_history_reverts_on_truncation():
    base = Configuration(frozenset({"a"}))
    history = ConfigurationHistory(0, base)
    grown = Configuration(frozenset({"a"}), frozenset({"b"}))
    entry = Entry(5, 2, EntryKind.CONFIG, encode_configuration(grown))
    assert history.observe([Entry(4, 2), entry])
    assert (history.current, history.current_index) == (grown, 5)
    assert history.at(4) == base
    assert history.truncate_from(5)
    assert history.current == base
    history.observe([entry])
    history.compact_to(6)
    assert history.current == grown and history.at(3) == grown


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("node_id", "", "node_id"),
        ("election_timeout_ticks", 0, "election_timeout_ticks"),
        ("heartbeat_ticks", 10, "smaller than"),
        ("max_inflight", -1, "max_inflight"),
        ("request_timeout_ticks", -1, "request_timeout_ticks"),
    ],
)
def test_settings_validation_names_the_bad_field(field, value, message):
    settings = {"node_id": "a", field: value}
    with pytest.raises(ValueError, match=message):
        RaftSettings(**settings)
