"""The witness checks every sender's role, as members do: it knows its configuration
(configuration entries keep their data on the way to it, snapshots name theirs) and
drops what the sender's role does not allow before looking at its term."""

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
from raftchat.raft.admission import STRANDED_ELECTION_TIMEOUTS
from raftchat.raft.witness import (
    UNKNOWN_CONFIGURATION,
    IndexedConfiguration,
    LogPosition,
    WitnessCore,
    WitnessError,
    WitnessHardState,
    WitnessSettings,
    WitnessState,
)

TIMEOUT = 5
"""The witness's election timeout in ticks (its leader lease)."""
PAIR = Configuration(
    voters=frozenset({"a", "b", "w"}), learners=frozenset({"l"}), witnesses=frozenset({"w"})
)
"""Members a and b, the witness w, a learner l."""
HUGE = 1_000_002


def config_entry(index: int, term: int, configuration: Configuration) -> Entry:
    return Entry(index, term, EntryKind.CONFIG, encode_configuration(configuration))


def following_a(term: int = 3) -> Witness:
    """A witness that learned ``PAIR`` from entry 1 and follows ``a`` in ``term``."""
    witness = Witness(election_timeout_ticks=TIMEOUT)
    entries = (config_entry(1, 1, PAIR), Entry(2, term, EntryKind.NOOP))
    [answer] = witness.step(AppendEntries("a", term, 0, 0, entries, 1))
    assert answer == AppendEntriesResponse("w", term, True, 2)
    assert witness.core.configuration == PAIR
    assert (witness.core.term, witness.core.leader) == (term, "a")
    return witness


def huge_append(sender: str, term: int = HUGE) -> AppendEntries:
    """Bogus positions in a huge term, following the witness's last one."""
    return append(term, 2, 3, [term, term, term], commit=5, sender=sender)


def unchanged(witness: Witness, term: int = 3, leader: str = "a") -> None:
    assert (witness.core.term, witness.core.leader, witness.core.vote) == (term, leader, "")
    assert witness.core.last_index == 2
    assert witness.storage.entries == positions(1, 3)
    assert witness.storage.hard_state == WitnessHardState(term)


# --- who is heard ----------------------------------------------------------------------


def test_a_non_member_cannot_make_the_witness_follow_it_or_adopt_its_term() -> None:
    witness = following_a()
    for message in (
        huge_append("mallory"),
        InstallSnapshot("mallory", HUGE, 99, HUGE, PAIR, 0, b"", True),
        vote("mallory", HUGE, 99, HUGE, leadership_transfer=True),
        RequestVoteResponse("mallory", HUGE, False),
        TimeoutNow("mallory", HUGE),
    ):
        assert witness.core.step(message) == "not a member"
        assert witness.process() == []
    unchanged(witness)
    assert witness.core.refused == {"not a member": 5}
    # The real leader still gets answers in its own term.
    assert witness.step(append(3, 2, 3, [3])) == [AppendEntriesResponse("w", 3, True, 3)]


def test_a_learner_cannot_lead_the_witness_in_any_term() -> None:
    witness = following_a()
    assert witness.core.step(huge_append("l", term=3)) == "only a voter can lead"
    assert witness.core.step(huge_append("l")) == "only a voter can lead"
    assert witness.process() == []
    unchanged(witness)


def test_another_voter_cannot_speak_for_the_leader_the_witness_follows() -> None:
    witness = following_a()
    assert witness.core.step(huge_append("b", term=3)) == "another voter leads this term"
    assert witness.process() == []
    unchanged(witness)
    assert witness.step(append(3, 2, 3, [3], sender="a")) == [
        AppendEntriesResponse("w", 3, True, 3)
    ]
    # A later term, while a's lease holds: refused; once it ran out, b may have won it.
    assert witness.core.step(append(4, 3, 3, [4], sender="b")) == (
        "the leader was heard from lately"
    )
    for _ in range(TIMEOUT):
        witness.core.tick()
    assert witness.step(append(4, 3, 3, [4], sender="b")) == [
        AppendEntriesResponse("w", 4, True, 4)
    ]
    assert witness.core.leader == "b"


def test_the_witness_votes_only_for_voters_that_may_lead() -> None:
    witness = following_a()
    for _ in range(TIMEOUT):  # the leader's lease runs out
        witness.core.tick()
    for sender, reason in (
        ("l", "only a voter can stand for election"),
        ("mallory", "not a member"),
    ):
        assert witness.core.step(vote(sender, 4, 2, 3, pre_vote=True)) == reason
        assert witness.core.step(vote(sender, 4, 2, 3)) == reason
    assert witness.process() == []
    assert (witness.core.term, witness.core.vote) == (3, "")
    assert witness.step(vote("b", 4, 2, 3)) == [RequestVoteResponse("w", 4, True)]


def test_another_witness_cannot_lead_nor_stand() -> None:
    two = Configuration(voters=frozenset({"a", "b", "w", "v"}), witnesses=frozenset({"w", "v"}))
    witness = Witness(election_timeout_ticks=TIMEOUT)
    witness.step(AppendEntries("a", 3, 0, 0, (config_entry(1, 3, two),), 1))
    for _ in range(TIMEOUT):
        witness.core.tick()
    assert witness.core.step(append(HUGE, 1, 3, [HUGE], sender="v")) == "only a voter can lead"
    assert witness.core.step(vote("v", 4, 1, 3)) == "only a voter can stand for election"
    assert witness.process() == [] and witness.core.term == 3


def test_a_new_witness_takes_its_first_leader_from_anyone() -> None:
    witness = Witness()
    assert witness.core.configuration == UNKNOWN_CONFIGURATION
    assert witness.step(append(3, 0, 0, [])) == [AppendEntriesResponse("w", 3, True, 0)]
    assert witness.core.leader == "a"


def test_a_witness_its_configuration_no_longer_lists_takes_a_leader_from_anyone() -> None:
    witness = following_a()
    removed = Configuration(voters=frozenset({"a", "b"}))
    witness.step(AppendEntries("a", 3, 2, 3, (config_entry(3, 3, removed),), 3))
    assert witness.step(append(9, 3, 3, [9], sender="c")) == [
        AppendEntriesResponse("w", 9, True, 4)
    ]
    assert witness.core.leader == "c"


def test_a_stranded_witness_takes_a_leader_its_stale_configuration_does_not_know() -> None:
    """``c`` became a voter while the witness heard nothing; its configuration lacks c."""
    witness = following_a()
    assert witness.core.step(huge_append("c", term=9)) == "not a member"
    for _ in range(STRANDED_ELECTION_TIMEOUTS * TIMEOUT - 1):  # a goes silent
        witness.core.tick()
    assert witness.core.step(huge_append("c", term=9)) == "not a member"
    witness.core.tick()
    [answer] = witness.step(huge_append("c", term=9))
    assert answer == AppendEntriesResponse("w", 9, True, 5)
    assert (witness.core.term, witness.core.leader) == (9, "c")
    # Stranded or not, a vote still needs a voter that may lead.
    assert witness.core.step(vote("c", 10, 5, 9)) == "not a member"


def test_a_witness_whose_leader_keeps_talking_is_never_stranded() -> None:
    witness = following_a()
    for _ in range(2 * STRANDED_ELECTION_TIMEOUTS):
        for _ in range(TIMEOUT):
            witness.core.tick()
        witness.step(append(3, 2, 3, []))
    assert witness.core.step(huge_append("c", term=9)) == "not a member"
    unchanged(witness)


# --- what it knows of its configuration ---------------------------------------------------


def test_a_configuration_entry_counts_once_appended_and_reverts_when_truncated() -> None:
    witness = following_a()
    with_c = Configuration(voters=frozenset({"a", "b", "c", "w"}), witnesses=frozenset({"w"}))
    witness.step(AppendEntries("a", 3, 2, 3, (config_entry(3, 3, with_c),), 2))
    assert witness.core.configuration == with_c
    assert witness.storage.configurations == [
        IndexedConfiguration(1, PAIR),
        IndexedConfiguration(3, with_c),
    ]
    # b wins term 4 without entry 3: it is replaced, and PAIR is in force again.
    for _ in range(TIMEOUT):
        witness.core.tick()
    witness.step(vote("b", 4, 2, 3))
    assert witness.step(append(4, 2, 3, [4], sender="b")) == [
        AppendEntriesResponse("w", 4, True, 3)
    ]
    assert witness.core.configuration == PAIR
    assert witness.storage.configurations == [IndexedConfiguration(1, PAIR)]
    witness.restart()
    assert witness.core.configuration == PAIR
    assert witness.core.step(append(4, 3, 4, [4], sender="c")) == "not a member"


def test_a_restarted_witness_still_knows_its_configuration() -> None:
    witness = following_a()
    witness.restart()
    assert witness.core.configuration == PAIR
    assert witness.core.leader == ""
    assert witness.core.step(huge_append("mallory")) == "not a member"
    assert witness.core.step(vote("l", HUGE, 2, 3)) == "only a voter can stand for election"
    assert witness.process() == []
    assert witness.core.term == 3


def test_a_metadata_snapshot_names_the_configuration_and_survives_a_restart() -> None:
    witness = following_a()
    later = Configuration(voters=frozenset({"a", "c", "w"}), witnesses=frozenset({"w"}))
    snapshot = InstallSnapshot("a", 3, 10, 3, later, 0, b"", True)
    assert witness.step(snapshot) == [InstallSnapshotResponse("w", 3, 10, 0, True)]
    assert witness.core.configuration == later
    assert witness.storage.snapshot_configuration == later
    assert witness.storage.configurations == []
    witness.restart()
    assert witness.core.configuration == later
    assert witness.core.step(append(HUGE, 10, 3, [HUGE], sender="b")) == "not a member"


def test_compaction_keeps_the_configuration_in_force() -> None:
    witness = Witness(compact_after=2)
    entries = (
        config_entry(1, 1, PAIR),
        Entry(2, 1, EntryKind.NORMAL),
        Entry(3, 1, EntryKind.NORMAL),
        Entry(4, 1, EntryKind.NORMAL),
    )
    witness.step(AppendEntries("a", 1, 0, 0, entries, 3))
    assert witness.storage.snapshot == LogPosition(3, 1)
    assert witness.storage.snapshot_configuration == PAIR
    assert witness.storage.configurations == []
    witness.restart()
    assert witness.core.configuration == PAIR
    assert witness.core.step(append(2, 4, 1, [2], sender="mallory")) == "not a member"


def test_a_configuration_entry_without_its_configuration_leaves_it_unknown() -> None:
    """A leader that strips configurations too: the witness takes a leader from anyone,
    as it did before it knew any."""
    witness = following_a()
    stripped = Entry(3, 3, EntryKind.CONFIG)
    witness.step(AppendEntries("a", 3, 2, 3, (stripped,), 2))
    assert witness.core.configuration == UNKNOWN_CONFIGURATION
    assert witness.step(append(4, 3, 3, [4], sender="c")) == [
        AppendEntriesResponse("w", 4, True, 4)
    ]


def test_stored_configurations_must_fit_the_positions() -> None:
    settings = WitnessSettings("w")
    beyond = WitnessState(entries=positions(1), configurations=[IndexedConfiguration(2, PAIR)])
    with pytest.raises(WitnessError, match="does not fit"):
        WitnessCore(settings, beyond)
    backwards = WitnessState(
        entries=positions(1, 1),
        configurations=[IndexedConfiguration(2, PAIR), IndexedConfiguration(1, PAIR)],
    )
    with pytest.raises(WitnessError, match="does not fit"):
        WitnessCore(settings, backwards)
    older = WitnessState(
        snapshot=LogPosition(1, 1),
        snapshot_configuration=PAIR,
        entries=positions(1, start=2),
        configurations=[IndexedConfiguration(1, UNKNOWN_CONFIGURATION)],
    )
    assert WitnessCore(settings, older).configuration == PAIR
