"""Client sessions in the chat state machine: each client's commands applied once, in order.

Serial ``s`` of a client applies only above the client's last applied serial (a
duplicate otherwise) and right after the serial its command names as its predecessor
(``prev_serial``), unless it names none (0, the first of a run): otherwise it is dropped
as out of order, naming the last applied serial so the client resends what follows it.
The consensus core appends whatever a leader is given; these are the same scenarios as
the leader once checked at append time, here at apply time.
"""

from __future__ import annotations

import msgpack

from raftchat.chat import (
    ChatLimits,
    ChatMessage,
    ChatState,
    Command,
    DuplicateDropped,
    InvalidCommand,
    Leave,
    LeaveRequested,
    MessageApplied,
    NickChange,
    OutOfOrderDropped,
    decode_command,
    encode_command,
)
from raftchat.raft.messages import Entry, EntryKind


class Log:
    """Consecutive log entries of client commands, each naming the serial it follows."""

    def __init__(self) -> None:
        self.index = 0

    def command(
        self, client_id: str, serial: int, prev_serial: int, command: Command | bytes | None = None
    ) -> Entry:
        """An entry of ``command`` (a message ``m<serial>`` by default; bytes as they are)."""
        if command is None:
            command = ChatMessage("ada", f"m{serial}", 1_700_000_000_000)
        if isinstance(command, bytes):
            data = command
        else:
            data = encode_command(command, prev_serial=prev_serial)
        self.index += 1
        return Entry(self.index, 1, EntryKind.NORMAL, data, client_id, serial)

    def noop(self) -> Entry:
        self.index += 1
        return Entry(self.index, 1, EntryKind.NOOP)


def texts(state: ChatState) -> list[str]:
    return [message.text for message in state.history()]


def test_commands_in_order_apply_and_a_gap_is_dropped_naming_the_last_applied_serial() -> None:
    state, log = ChatState(), Log()
    state.apply(log.command("c", 10, 0))
    state.apply(log.command("c", 11, 10))
    # 12 was lost on the way: 13 and 14 follow a serial the session never applied.
    assert state.apply(log.command("c", 13, 12)) == [OutOfOrderDropped(3, "c", 13, 11)]
    assert state.apply(log.command("c", 14, 13)) == [OutOfOrderDropped(4, "c", 14, 11)]
    assert state.last_serial("c") == 11
    for serial in (12, 13, 14):  # the client resends everything after 11, in order
        assert isinstance(state.apply(log.command("c", serial, serial - 1))[-1], MessageApplied)
    assert texts(state) == ["m10", "m11", "m12", "m13", "m14"]


def test_a_copy_the_core_appended_again_is_dropped_as_a_duplicate_of_its_original() -> None:
    state, log = ChatState(), Log()
    state.apply(log.command("c", 1, 0))
    state.apply(log.command("c", 2, 1))
    state.apply(log.noop())  # a new leader's no-op, then the retries it was given
    assert state.apply(log.command("c", 2, 1)) == [DuplicateDropped(4, "c", 2, 2)]
    assert state.apply(log.command("c", 1, 0)) == [DuplicateDropped(5, "c", 1, 1)]
    assert texts(state) == ["m1", "m2"]
    assert state.duplicates_dropped == 2


def test_an_unknown_client_starts_with_no_predecessor_and_a_new_run_may_jump() -> None:
    state, log = ChatState(), Log()
    # The client's first proposal never arrived: its second names it.
    assert state.apply(log.command("new", 2, 1)) == [OutOfOrderDropped(1, "new", 2, 0)]
    assert state.last_serial("new") == 0
    state.apply(log.command("new", 1, 0))
    state.apply(log.command("new", 2, 1))
    # A restarted client starts a new run far above: prev_serial 0 lets it jump.
    assert isinstance(state.apply(log.command("new", 1_000, 0))[-1], MessageApplied)
    assert isinstance(state.apply(log.command("new", 1_001, 1_000))[-1], MessageApplied)
    assert texts(state) == ["m1", "m2", "m1000", "m1001"]


def test_a_run_starting_below_the_last_applied_serial_is_dropped_as_duplicates() -> None:
    """A restart whose clock stepped back: its first serials are at or below what the
    previous run left in the log. The session drops them (original unknown), and the
    sender proposes them again above the last applied serial."""
    state, log = ChatState(), Log()
    state.apply(log.command("c", 500, 0))  # the previous run
    assert state.apply(log.command("c", 300, 0)) == [DuplicateDropped(2, "c", 300, 0)]
    assert state.apply(log.command("c", 301, 300)) == [DuplicateDropped(3, "c", 301, 0)]
    assert isinstance(state.apply(log.command("c", 501, 0))[-1], MessageApplied)


def test_order_survives_a_snapshot() -> None:
    state, log = ChatState(), Log()
    for serial in range(1, 4):
        state.apply(log.command("c", serial, serial - 1))
    restored = ChatState.restore(state.snapshot())
    assert restored.apply(log.command("c", 5, 4)) == [OutOfOrderDropped(4, "c", 5, 3)]
    assert restored.apply(log.command("c", 3, 2)) == [DuplicateDropped(5, "c", 3, 3)]
    assert isinstance(restored.apply(log.command("c", 4, 3))[-1], MessageApplied)


def test_a_forgotten_client_goes_on_once_it_names_no_predecessor() -> None:
    state, log = ChatState(limits=ChatLimits(max_sessions=1)), Log()
    state.apply(log.command("a", 1, 0))
    state.apply(log.command("b", 1, 0))  # "a" is forgotten
    assert state.apply(log.command("a", 3, 2)) == [OutOfOrderDropped(3, "a", 3, 0)]
    # Its runtime names no predecessor once the previous one is known applied.
    assert isinstance(state.apply(log.command("a", 2, 0))[-1], MessageApplied)
    assert isinstance(state.apply(log.command("a", 3, 2))[-1], MessageApplied)


def test_an_out_of_order_drop_changes_nothing_but_the_applied_index() -> None:
    state, log, other = ChatState(limits=ChatLimits(max_sessions=2)), Log(), Log()
    twin = ChatState(limits=ChatLimits(max_sessions=2))
    for entry in (log.command("a", 1, 0), log.command("b", 1, 0)):
        state.apply(entry)
        twin.apply(entry)
        other.index += 1
    dropped = state.apply(log.command("a", 3, 2, NickChange("renamed")))
    assert dropped == [OutOfOrderDropped(3, "a", 3, 1)]
    twin.apply(other.noop())
    assert state.snapshot() == twin.snapshot()  # nick, recency, counters: all untouched
    assert state.nick_of("a") == "ada"


def test_nick_changes_and_leave_requests_keep_their_order_too() -> None:
    state, log = ChatState(), Log()
    state.apply(log.command("c", 1, 0, NickChange("ada")))
    assert state.apply(log.command("c", 3, 2, Leave())) == [OutOfOrderDropped(2, "c", 3, 1)]
    state.apply(log.command("c", 2, 1, NickChange("grace")))
    assert state.apply(log.command("c", 3, 2, Leave())) == [LeaveRequested(4, "c")]
    assert state.nick_of("c") == "grace"


def test_a_command_that_does_not_decode_uses_up_its_serial_wherever_it_is() -> None:
    """It cannot say which serial it follows, so the order rule cannot hold it back."""
    state, log = ChatState(), Log()
    state.apply(log.command("c", 1, 0))
    (invalid,) = state.apply(log.command("c", 3, 2, b"junk"))
    assert isinstance(invalid, InvalidCommand) and state.last_serial("c") == 3


def test_commands_of_the_first_version_apply_as_they_always_did() -> None:
    """Entries already in users' logs: no prev_serial, read as 0, so no order check."""
    version_1 = msgpack.packb([1, 0, "ada", "old", 1_600_000_000_000, False])
    assert decode_command(version_1) == (ChatMessage("ada", "old", 1_600_000_000_000), 0)
    state, log = ChatState(), Log()
    state.apply(log.command("c", 1, 0, version_1))
    events = state.apply(log.command("c", 7, 0, version_1))  # a gap, as before: applied
    assert isinstance(events[-1], MessageApplied) and events[-1].serial == 7
    assert state.apply(log.command("c", 5, 0, version_1)) == [DuplicateDropped(3, "c", 5, 0)]
