"""Unit tests of the witness: WitnessCore on its own, and what a leader sends it."""

from __future__ import annotations

import pytest
from raft_utils import Witness, append, positions, vote

from raftchat.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Configuration,
    Entry,
    EntryKind,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVoteResponse,
    TimeoutNow,
    encode_configuration,
)
from raftchat.raft.progress import Progress
from raftchat.raft.witness import (
    LogPosition,
    WitnessCore,
    WitnessError,
    WitnessHardState,
    WitnessSettings,
    WitnessState,
)
from raftchat.raft.witness_feed import metadata_snapshot, strip_payloads, witness_send_limit

# --- voting ---------------------------------------------------------------------------


def test_grants_an_up_to_date_candidate_and_stores_the_vote_before_answering():
    witness = Witness(WitnessState(WitnessHardState(2), entries=positions(1, 2)))
    witness.core.step(vote("b", 3, 2, 2))
    ready = witness.core.ready()
    assert ready.hard_state == WitnessHardState(3, "b")
    assert ready.messages == [("b", RequestVoteResponse("w", 3, True))]


def test_refuses_a_candidate_whose_log_is_behind_its_positions():
    witness = Witness(WitnessState(WitnessHardState(2), entries=positions(1, 2, 2)))
    assert witness.step(vote("b", 3, 5, 1)) == [RequestVoteResponse("w", 3, False)]
    assert witness.step(vote("c", 4, 2, 2)) == [RequestVoteResponse("w", 4, False)]
    assert witness.core.vote == ""
    assert witness.step(vote("b", 5, 3, 2)) == [RequestVoteResponse("w", 5, True)]


def test_votes_once_per_term_even_across_a_restart():
    witness = Witness()
    assert witness.step(vote("a", 1, 0, 0)) == [RequestVoteResponse("w", 1, True)]
    witness.restart()
    assert witness.step(vote("b", 1, 0, 0)) == [RequestVoteResponse("w", 1, False)]
    assert witness.step(vote("a", 1, 0, 0)) == [RequestVoteResponse("w", 1, True)]


def test_a_pre_vote_changes_neither_term_nor_vote():
    witness = Witness(WitnessState(WitnessHardState(2, "a")))
    granted = witness.step(vote("b", 3, 0, 0, pre_vote=True))
    assert granted == [RequestVoteResponse("w", 3, True, True)]
    assert (witness.core.term, witness.core.vote) == (2, "a")
    assert all(ready.hard_state is None for ready in witness.readies)


def test_honours_a_live_leader_for_an_election_timeout_unless_it_hands_over():
    witness = Witness(election_timeout_ticks=5)
    witness.step(append(1, 0, 0, [1]))
    assert witness.step(vote("b", 2, 1, 1, pre_vote=True)) == []
    assert witness.step(vote("b", 2, 1, 1)) == []
    assert witness.step(vote("b", 2, 1, 1, leadership_transfer=True)) == [
        RequestVoteResponse("w", 2, True)
    ]
    witness.step(append(2, 1, 1, [], sender="b"))
    for _ in range(5):
        witness.core.tick()
    assert witness.step(vote("a", 3, 1, 1)) == [RequestVoteResponse("w", 3, True)]


def test_never_campaigns_nor_takes_over():
    witness = Witness(WitnessState(WitnessHardState(1), entries=positions(1)))
    for _ in range(100):
        witness.core.tick()
    assert not witness.core.has_ready()
    assert witness.step(TimeoutNow("a", 1)) == []
    assert witness.core.term == 1


# --- the log of positions -------------------------------------------------------------


def test_stores_positions_only_and_answers_with_its_match_index():
    witness = Witness()
    message = AppendEntries("a", 1, 0, 0, (Entry(1, 1, EntryKind.NORMAL, b"secret", "c", 7),), 0)
    assert witness.step(message) == [AppendEntriesResponse("w", 1, True, 1)]
    assert witness.storage.entries == positions(1)
    assert witness.storage.hard_state == WitnessHardState(1)


def test_refuses_entries_that_do_not_follow_its_log_with_a_back_off_hint():
    witness = Witness(WitnessState(WitnessHardState(3), entries=positions(1, 1, 2, 2)))
    [beyond] = witness.step(append(3, 9, 3, [3]))
    assert (beyond.success, beyond.conflict_index, beyond.conflict_term) == (False, 5, 0)
    [mismatch] = witness.step(append(3, 4, 3, [3]))
    assert (mismatch.success, mismatch.conflict_index, mismatch.conflict_term) == (False, 3, 2)
    assert mismatch.reject_index == 4


def test_replaces_a_conflicting_suffix():
    witness = Witness(WitnessState(WitnessHardState(2), entries=positions(1, 2, 2, 2)))
    [answer] = witness.step(append(3, 2, 2, [3]))
    assert answer == AppendEntriesResponse("w", 3, True, 3)
    assert witness.readies[0].truncate_from == 3
    assert witness.storage.entries == positions(1, 2, 3)


def test_keeps_a_longer_matching_log_on_a_stale_append():
    witness = Witness(WitnessState(WitnessHardState(2), entries=positions(1, 2, 2)))
    assert witness.step(append(2, 1, 1, [2])) == [AppendEntriesResponse("w", 2, True, 2)]
    assert witness.storage.entries == positions(1, 2, 2)


def test_never_overwrites_what_it_knows_committed():
    witness = Witness()
    witness.step(append(1, 0, 0, [1, 1], commit=2))
    assert witness.step(append(2, 1, 1, [2])) == [AppendEntriesResponse("w", 2, True, 2)]
    assert witness.storage.entries == positions(1, 1)


def test_tells_a_stale_leader_the_newer_term():
    witness = Witness(WitnessState(WitnessHardState(5)))
    [answer] = witness.step(append(4, 0, 0, [4]))
    assert (answer.term, answer.success) == (5, False)
    assert witness.storage.entries == []


def test_compacts_committed_positions_once_it_holds_many():
    witness = Witness(compact_after=3)
    witness.step(append(1, 0, 0, [1, 1, 1, 1], commit=3))
    witness.process()
    assert witness.storage.snapshot == LogPosition(3, 1)
    assert witness.storage.entries == positions(1, start=4)
    assert witness.step(append(1, 2, 1, [1])) == [AppendEntriesResponse("w", 1, True, 3)]
    assert witness.step(append(1, 4, 1, [1])) == [AppendEntriesResponse("w", 1, True, 5)]


def test_a_metadata_snapshot_replaces_a_log_that_does_not_hold_it():
    witness = Witness(WitnessState(WitnessHardState(1), entries=positions(1, 1)))
    configuration = Configuration(frozenset({"a", "w"}), witnesses=frozenset({"w"}))
    snapshot = InstallSnapshot("a", 2, 10, 2, configuration, 0, b"", True)
    assert witness.step(snapshot) == [InstallSnapshotResponse("w", 2, 10, 0, True)]
    assert witness.storage.snapshot == LogPosition(10, 2)
    assert witness.storage.entries == []
    assert witness.step(append(2, 10, 2, [2])) == [AppendEntriesResponse("w", 2, True, 11)]


def test_a_snapshot_it_already_holds_only_moves_its_commit():
    witness = Witness(WitnessState(WitnessHardState(1), entries=positions(1, 1, 1)))
    snapshot = InstallSnapshot("a", 1, 2, 1, Configuration(), 0, b"", True)
    assert witness.step(snapshot) == [InstallSnapshotResponse("w", 1, 2, 0, True)]
    assert witness.storage.entries == positions(1, 1, 1)
    assert witness.core.commit == 2


def test_restart_restores_term_vote_and_positions():
    witness = Witness()
    witness.step(vote("a", 2, 0, 0))
    witness.step(append(2, 0, 0, [2, 2]))
    witness.restart()
    expected = WitnessState(WitnessHardState(2, "a"), LogPosition(0, 0), tuple(positions(2, 2)))
    assert witness.core.state() == expected


def test_restart_rejects_positions_with_a_gap():
    with pytest.raises(WitnessError, match="not contiguous"):
        WitnessCore(WitnessSettings("w"), WitnessState(entries=[LogPosition(1, 1), (3, 1)]))


def test_ready_twice_without_advance_is_refused():
    witness = Witness()
    witness.core.step(vote("a", 1, 0, 0))
    witness.core.ready()
    with pytest.raises(WitnessError):
        witness.core.ready()


# --- the leader's side, as pure functions ---------------------------------------------


def test_strip_payloads_keeps_kind_index_and_term_and_only_a_configurations_data():
    configuration = encode_configuration(PAIR)
    entries = [
        Entry(4, 2, EntryKind.NORMAL, b"hi", "c1", 9),
        Entry(5, 2, EntryKind.NOOP),
        Entry(6, 2, EntryKind.CONFIG, configuration),
        Entry(7, 2, EntryKind.NORMAL, b"secret"),
    ]
    stripped = [
        Entry(4, 2, EntryKind.NORMAL),
        Entry(5, 2, EntryKind.NOOP),
        Entry(6, 2, EntryKind.CONFIG, configuration),
        Entry(7, 2, EntryKind.NORMAL),
    ]
    assert strip_payloads(entries) == stripped


def test_a_metadata_snapshot_is_one_message_without_data():
    from raftchat.raft import SnapshotMeta

    meta = SnapshotMeta(7, 3, Configuration(frozenset({"a"})))
    message = metadata_snapshot("a", 4, meta)
    assert (message.last_included_index, message.last_included_term) == (7, 3)
    assert (message.offset, message.data, message.done) == (0, b"", True)


PAIR = Configuration(frozenset({"a", "b", "w"}), witnesses=frozenset({"w"}))


def progress(match: int, active: bool) -> Progress:
    return Progress(match=match, recent_active=active, was_active=active)


def test_send_limit_is_the_best_match_of_members_heard_from_lately():
    four = Configuration(frozenset({"a", "b", "c", "d", "w"}), witnesses=frozenset({"w"}))
    followers = {
        "b": progress(7, True),
        "c": progress(9, True),
        "d": progress(12, False),
        "w": progress(3, True),
    }
    assert witness_send_limit("a", 20, four, followers) == 9


def test_send_limit_is_the_leaders_stored_log_when_no_member_is_heard_from():
    followers = {"b": progress(7, False), "w": progress(3, True)}
    assert witness_send_limit("a", 20, PAIR, followers) == 20


def test_a_member_heard_from_in_the_previous_round_still_counts():
    follower = progress(7, True)
    follower.end_round()
    assert witness_send_limit("a", 20, PAIR, {"b": follower}) == 7
    follower.end_round()
    assert witness_send_limit("a", 20, PAIR, {"b": follower}) == 20


def test_a_new_follower_counts_as_alive_for_a_round():
    assert witness_send_limit("a", 20, PAIR, {"b": Progress()}) == 0


def test_a_leader_leaving_the_configuration_never_lets_the_witness_pass_a_member():
    leaving = Configuration(frozenset({"b", "w"}), witnesses=frozenset({"w"}))
    followers = {"b": progress(7, False), "w": progress(3, True)}
    assert witness_send_limit("a", 20, leaving, followers) == 7
