"""Tests for the chat state machine: commands, sessions, nicks, history, snapshots."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftchat.chat import (
    ChatLimits,
    ChatMessage,
    ChatSnapshotError,
    ChatState,
    DuplicateDropped,
    InvalidCommand,
    InvalidCommandError,
    MemberJoined,
    MemberLeft,
    MemberRoleChanged,
    MessageApplied,
    NickChange,
    NickChanged,
    decode_command,
    encode_command,
    nick_problem,
    text_problem,
)
from raftchat.raft.messages import Entry, EntryKind


class Log:
    """Builds consecutive log entries for a state."""

    def __init__(self) -> None:
        self.index = 0

    def normal(self, client_id: str, serial: int, command: object) -> Entry:
        data = command if isinstance(command, bytes) else encode_command(command)
        self.index += 1
        return Entry(self.index, 1, EntryKind.NORMAL, data, client_id, serial)

    def other(self, kind: EntryKind) -> Entry:
        self.index += 1
        return Entry(self.index, 1, kind, b"\x01\x02")


def message(text: str = "hello", nick: str = "ada", ts: int = 1_700_000_000_000) -> ChatMessage:
    return ChatMessage(nick=nick, text=text, ts=ts)


# --- commands ---------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ChatMessage("ada", "hello there", 1_700_000_000_000),
        ChatMessage("grace", "waves\tand\nsmiles 🌊", 946_684_800_000, action=True),
        NickChange("ada_2"),
    ],
)
def test_command_round_trip(command: ChatMessage | NickChange) -> None:
    assert decode_command(encode_command(command)) == (command, 0)
    assert decode_command(encode_command(command, prev_serial=41)) == (command, 41)


def test_encode_rejects_a_bad_prev_serial() -> None:
    with pytest.raises(InvalidCommandError, match="previous serial"):
        encode_command(NickChange("ada"), prev_serial=-1)


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        (ChatMessage("", "x", 1), "nick must not be empty"),
        (ChatMessage("a b", "x", 1), "without spaces"),
        (ChatMessage("a\x1b", "x", 1), "printable"),
        (ChatMessage("a#b", "x", 1), "'#'"),
        (ChatMessage("a" * 33, "x", 1), "at most 32"),
        (ChatMessage("ada", "", 1), "text must not be empty"),
        (ChatMessage("ada", "   ", 1), "text must not be empty"),
        (ChatMessage("ada", "x" * 4001, 1), "at most 4000"),
        (ChatMessage("ada", "red\x1b[31m", 1), "U+001B"),
        (ChatMessage("ada", "x", -1), "timestamp"),
        (ChatMessage("ada", "x", 1.5), "timestamp"),  # type: ignore[arg-type]
        (ChatMessage("ada", "x", 1_700_000_000_000, action=1), "action"),  # type: ignore[arg-type]
        (NickChange("\u200b"), "invisible character U+200B (ZERO WIDTH SPACE)"),
    ],
)
def test_encode_rejects_invalid_command(command: object, fragment: str) -> None:
    with pytest.raises(InvalidCommandError) as info:
        encode_command(command)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_limits_are_configurable() -> None:
    limits = ChatLimits(max_text_chars=5, max_nick_chars=3)
    assert nick_problem("abcd", limits) is not None
    assert nick_problem("abc", limits) is None
    assert text_problem("123456", limits) is not None
    assert text_problem("12345", limits) is None
    with pytest.raises(ValueError, match="max_sessions"):
        ChatLimits(max_sessions=0)


def pack(*items: object) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "not valid msgpack"),
        (b"\xc1", "not valid msgpack"),
        (pack(1, 0, "ada", "hi", 1, False) + b"\x00", "not valid msgpack"),
        (msgpack.packb({"nick": "ada"}), "array"),
        (pack(1), "array"),
        (pack(2, 0), "array"),
        (pack(4, 0, 0, "ada", "hi", 1, False), "version"),
        (pack(True, 0, "ada", "hi", 1, False), "version"),
        (pack(2, -1, 0, "ada", "hi", 1, False), "previous serial"),
        (pack(2, "1", 0, "ada", "hi", 1, False), "previous serial"),
        (pack(2, 0, 0, "ada", "hi", 1), "4 fields"),
        (pack(1, 9, "ada"), "unknown command tag"),
        (pack(1, 0, "ada", "hi", 1), "4 fields"),
        (pack(1, 1, "ada", "extra"), "1 field"),
        (pack(2, 0, 2, 5, 6), "at most 1 field"),
        (pack(2, 0, 2, 0), "incarnation"),
        (pack(2, 0, 2, -5), "incarnation"),
        (pack(2, 0, 2, True), "incarnation"),
        (pack(2, 0, 2, "5"), "incarnation"),
        (pack(2, 0, 2, 2**63), "incarnation"),
        (pack(2, 0, 2, None), "incarnation"),
        (pack(1, 0, b"ada", "hi", 1, False), "nick must be text"),
        (pack(1, 0, "ada", "hi", True, False), "timestamp"),
        (pack(1, 0, "ada", "hi", 1_700_000_000_000, 0), "action"),
        (b"\x94\x01\x00\xa3ada\xa2\xff\xfe", "not valid msgpack"),
        (b"\x00" * 20_000, "bytes; at most"),
    ],
)
def test_decode_rejects_malformed_bytes(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidCommandError) as info:
        decode_command(data)
    assert fragment in str(info.value)


@settings(max_examples=300, deadline=None, print_blob=True)
@given(st.binary(max_size=64))
def test_decode_arbitrary_bytes_only_raises_invalid_command(data: bytes) -> None:
    try:
        command, prev_serial = decode_command(data)
    except InvalidCommandError:
        return
    again = encode_command(command, prev_serial=prev_serial)
    assert decode_command(again) == (command, prev_serial)


# --- applying -----------------------------------------------------------------


def test_message_is_applied_with_id_and_nick() -> None:
    state, log = ChatState(), Log()
    events = state.apply(
        log.normal("n1", 1, ChatMessage("ada", "hi", 1_700_000_000_042, action=True))
    )
    assert events == [
        NickChanged(1, "n1", "", "ada"),
        MessageApplied(1, "n1:1", "n1", 1, "ada", "hi", 1_700_000_000_042, True),
    ]
    assert state.last_applied_index == 1
    assert state.nick_of("n1") == "ada"
    assert state.last_serial("n1") == 1
    assert state.history() == [events[1]]


def test_retry_after_leader_change_is_applied_once() -> None:
    """The same (client, serial) committed twice, e.g. once by the old leader and once
    retried through the new one, shows one message; the retry points at the original."""
    state, log = ChatState(), Log()
    state.apply(log.normal("n1", 1, message("first")))
    state.apply(log.other(EntryKind.NOOP))  # the new leader's no-op
    events = state.apply(log.normal("n1", 1, message("first")))
    assert events == [DuplicateDropped(3, "n1", 1, original_index=1)]
    assert [m.text for m in state.history()] == ["first"]
    assert state.duplicates_dropped == 1
    assert state.apply(log.normal("n1", 2, message("second")))[-1].text == "second"


def test_older_serial_out_of_order_is_a_duplicate() -> None:
    state, log = ChatState(), Log()
    for serial in (1, 2, 3):
        state.apply(log.normal("n1", serial, message(f"m{serial}")))
    assert state.apply(log.normal("n1", 2, message("m2"))) == [DuplicateDropped(4, "n1", 2, 2)]
    # Serial 5 skipped 4: a late 4 is older than the last applied, hence dropped.
    state.apply(log.normal("n1", 5, message("m5")))
    assert state.apply(log.normal("n1", 4, message("m4"))) == [DuplicateDropped(6, "n1", 4, 0)]
    assert [m.text for m in state.history()] == ["m1", "m2", "m3", "m5"]


def test_duplicate_beyond_remembered_serials_has_unknown_original() -> None:
    state, log = ChatState(limits=ChatLimits(serials_remembered=2)), Log()
    for serial in (1, 2, 3):
        state.apply(log.normal("n1", serial, message()))
    assert state.apply(log.normal("n1", 2, message())) == [DuplicateDropped(4, "n1", 2, 2)]
    assert state.apply(log.normal("n1", 1, message())) == [DuplicateDropped(5, "n1", 1, 0)]


def test_serials_are_per_client() -> None:
    state, log = ChatState(), Log()
    state.apply(log.normal("n1", 7, message()))
    events = state.apply(log.normal("n2", 1, message(nick="bob")))
    assert isinstance(events[-1], MessageApplied)


@pytest.mark.parametrize(
    ("client_id", "serial", "data", "fragment"),
    [
        ("n1", 1, b"\xc1", "not valid msgpack"),
        ("n1", 1, pack(1, 0, "ada", "x" * 4001, 1, False), "at most 4000"),
        ("", 1, None, "missing client id"),
        ("n 1", 1, None, "client id"),
        ("n" * 65, 1, None, "client id"),
        ("n1", 0, None, "serial"),
    ],
)
def test_invalid_command_is_a_counted_no_op(
    client_id: str, serial: int, data: bytes | None, fragment: str
) -> None:
    state, log = ChatState(), Log()
    state.apply(log.normal("n0", 1, message("before")))
    before = state.snapshot()
    entry = log.normal(client_id, serial, data if data is not None else message())
    (event,) = state.apply(entry)
    assert isinstance(event, InvalidCommand)
    assert event.index == 2
    assert fragment in event.reason
    assert state.invalid_commands == 1
    assert state.last_applied_index == 2
    assert [m.text for m in state.history()] == ["before"]
    assert state.snapshot() != before  # index and counter moved on, deterministically


def test_invalid_command_uses_up_its_serial() -> None:
    state, log = ChatState(), Log()
    state.apply(log.normal("n1", 1, b"junk"))
    assert state.apply(log.normal("n1", 1, message())) == [DuplicateDropped(2, "n1", 1, 1)]
    assert state.nick_of("n1") == ""


def test_noop_and_config_entries_change_only_the_index() -> None:
    state, log = ChatState(), Log()
    state.apply(log.normal("n1", 1, message()))
    before = state.history(), state.nicks()
    assert state.apply(log.other(EntryKind.NOOP)) == []
    assert state.apply(log.other(EntryKind.CONFIG)) == []
    assert (state.history(), state.nicks()) == before
    assert state.last_applied_index == 3


def test_entries_must_come_in_order() -> None:
    state = ChatState()
    with pytest.raises(ValueError, match="out of order"):
        state.apply(Entry(2, 1, EntryKind.NOOP))
    state.apply(Entry(1, 1, EntryKind.NOOP))
    with pytest.raises(ValueError, match="out of order"):
        state.apply(Entry(1, 1, EntryKind.NOOP))


# --- nicks ----------------------------------------------------------------------


def test_nick_changes() -> None:
    state, log = ChatState(), Log()
    assert state.apply(log.normal("n1", 1, NickChange("ada"))) == [NickChanged(1, "n1", "", "ada")]
    assert state.apply(log.normal("n1", 2, NickChange("ada"))) == []
    assert state.apply(log.normal("n1", 3, NickChange("lovelace"))) == [
        NickChanged(3, "n1", "ada", "lovelace")
    ]
    # A message under another nick (e.g. after a restart with --nick) renames too.
    events = state.apply(log.normal("n1", 4, message(nick="countess")))
    assert events[0] == NickChanged(4, "n1", "lovelace", "countess")
    assert state.nicks() == {"n1": "countess"}


def test_display_name_disambiguates_collisions() -> None:
    state, log = ChatState(), Log()
    state.apply(log.normal("3f2a91", 1, NickChange("ada")))
    assert state.display_name("3f2a91") == "ada"
    state.apply(log.normal("3f2b07", 1, NickChange("ada")))
    state.apply(log.normal("c0ffee", 1, NickChange("ada")))
    assert state.display_name("3f2a91") == "ada#3f2a"
    assert state.display_name("c0ffee") == "ada#c0ff"
    state.apply(log.normal("3f2a91", 2, NickChange("grace")))
    assert state.display_name("3f2a91") == "grace"
    assert state.display_name("3f2a91", nick="ada") == "ada#3f2a"
    # Prefixes longer than four characters when needed to tell ids apart.
    state.apply(log.normal("3f2b08", 1, NickChange("ada")))
    assert state.display_name("3f2b07") == "ada#3f2b07"
    assert state.display_name("unknown-node") == "unknown-"


# --- bounds ---------------------------------------------------------------------


def test_history_keeps_latest_messages_in_log_order() -> None:
    state, log = ChatState(history_limit=3), Log()
    for serial in range(1, 6):
        state.apply(log.normal("n1", serial, message(f"m{serial}")))
    assert [(m.index, m.text) for m in state.history()] == [(3, "m3"), (4, "m4"), (5, "m5")]


def test_sessions_evict_least_recently_active() -> None:
    state, log = ChatState(limits=ChatLimits(max_sessions=2)), Log()
    state.apply(log.normal("a", 1, message(nick="ann")))
    state.apply(log.normal("b", 1, message(nick="bob")))
    state.apply(log.normal("a", 2, message(nick="ann")))  # a is now the most recent
    state.apply(log.normal("c", 1, message(nick="cy")))
    assert state.session_count == 2
    assert state.nicks() == {"a": "ann", "c": "cy"}
    assert state.last_serial("b") == 0
    # A forgotten client's old serial is still dropped while its message is in the
    # history window (by message id); beyond it, it would be applied again.
    assert isinstance(state.apply(log.normal("b", 1, message(nick="bob")))[-1], DuplicateDropped)
    assert isinstance(state.apply(log.normal("c", 1, message()))[0], DuplicateDropped)


def test_session_recency_survives_snapshot() -> None:
    limits = ChatLimits(max_sessions=2)
    state, log = ChatState(limits=limits), Log()
    state.apply(log.normal("z", 1, message(nick="zed")))
    state.apply(log.normal("a", 1, message(nick="ann")))
    state.apply(log.normal("z", 2, message(nick="zed")))  # z is now the most recent
    restored = ChatState.restore(state.snapshot(), limits=limits)
    restored.apply(log.normal("c", 1, message(nick="cy")))
    assert restored.nicks() == {"z": "zed", "c": "cy"}


# --- membership -----------------------------------------------------------------


def test_membership_notices() -> None:
    state = ChatState()
    assert state.apply_membership(1, ["n1"], []) == [MemberJoined(1, "n1", True)]
    assert state.apply_membership(4, ["n1"], ["n2", "n3"]) == [
        MemberJoined(4, "n2", False),
        MemberJoined(4, "n3", False),
    ]
    assert state.apply_membership(6, ["n1", "n2"], ["n3"]) == [MemberRoleChanged(6, "n2", True)]
    assert state.apply_membership(8, ["n2"], ["n3"]) == [MemberLeft(8, "n1")]
    assert state.apply_membership(9, ["n2"], ["n3"]) == []
    assert (state.voters, state.learners) == ({"n2"}, {"n3"})
    restored = ChatState.restore(state.snapshot())
    assert restored.apply_membership(12, ["n2"], ["n3"]) == []


# --- snapshots ------------------------------------------------------------------


def busy_state() -> ChatState:
    state, log = ChatState(history_limit=4), Log()
    state.apply_membership(0, ["n1"], ["n2"])
    for serial in range(1, 7):
        state.apply(log.normal(f"n{serial % 3}", serial, message(f"m{serial}", nick=f"u{serial}")))
    state.apply(log.normal("n1", 2, message()))
    state.apply(log.normal("n1", 9, b"junk"))
    state.apply(log.other(EntryKind.NOOP))
    return state


def test_snapshot_round_trip() -> None:
    state = busy_state()
    restored = ChatState.restore(state.snapshot(), history_limit=4)
    assert restored.snapshot() == state.snapshot()
    assert restored.history() == state.history()
    assert restored.nicks() == state.nicks()
    assert restored.last_applied_index == 9
    assert (restored.invalid_commands, restored.duplicates_dropped) == (1, 1)
    assert (restored.voters, restored.learners) == ({"n1"}, {"n2"})
    next_entry = Entry(10, 2, EntryKind.NORMAL, encode_command(message()), "n1", 9)
    assert restored.apply(next_entry) == state.apply(next_entry)


def test_restore_trims_history_to_the_local_limit() -> None:
    restored = ChatState.restore(busy_state().snapshot(), history_limit=2)
    assert [m.text for m in restored.history()] == ["m5", "m6"]


def snapshot_items() -> list:
    return msgpack.unpackb(busy_state().snapshot(), raw=False)


def corrupt(edit) -> bytes:  # type: ignore[no-untyped-def]
    items = snapshot_items()
    edit(items)
    return msgpack.packb(items, use_bin_type=True)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "not valid msgpack"),
        (busy_state().snapshot()[:-3], "not valid msgpack"),
        (msgpack.packb({"v": 1}), "non-empty array"),
        (corrupt(lambda s: s.__setitem__(0, 99)), "version"),
        (corrupt(lambda s: s.pop()), "9 fields"),
        (corrupt(lambda s: s.__setitem__(1, -1)), "last applied index"),
        (corrupt(lambda s: s.__setitem__(2, "1")), "invalid command count"),
        (corrupt(lambda s: s.__setitem__(4, ["n2", "n1"])), "sorted"),
        (corrupt(lambda s: s.__setitem__(5, ["n1"])), "both voter and learner"),
        (corrupt(lambda s: s[6].append(list(s[6][0]))), "twice"),
        (corrupt(lambda s: s[6][0].__setitem__(1, "a b")), "bad nick"),
        (corrupt(lambda s: s[6][0].__setitem__(2, [])), "pairs"),
        (corrupt(lambda s: s[6][0][2].append([1, 1])), "must increase"),
        (corrupt(lambda s: s[6][0][2][0].__setitem__(1, 99)), "index in 1..9"),
        (corrupt(lambda s: s[7].reverse()), "history indexes must increase"),
        (corrupt(lambda s: s[7][0].__setitem__(4, "\x07bell")), "control character"),
        (corrupt(lambda s: s[7][0].__setitem__(5, 1.0)), "timestamp"),
        (corrupt(lambda s: s[7][0].pop()), "9 fields"),
        (corrupt(lambda s: s.__setitem__(8, [["c1", -1]])), "merge count"),
        (corrupt(lambda s: s.__setitem__(7, {})), "history must be a list"),
    ],
)
def test_corrupt_snapshot_raises_clear_error(data: bytes, fragment: str) -> None:
    with pytest.raises(ChatSnapshotError) as info:
        ChatState.restore(data)
    assert fragment in str(info.value)


@settings(max_examples=200, deadline=None, print_blob=True)
@given(st.binary(max_size=200))
def test_restore_arbitrary_bytes_only_raises_snapshot_error(data: bytes) -> None:
    try:
        restored = ChatState.restore(data)
    except ChatSnapshotError:
        return
    assert ChatState.restore(restored.snapshot()).snapshot() == restored.snapshot()


# --- determinism (property-based) -----------------------------------------------

SMALL_LIMITS = ChatLimits(max_sessions=3, serials_remembered=3)
CLIENTS = ["a1", "b2", "c3", "d4", "e5"]

entry_specs = st.lists(
    st.tuples(
        st.sampled_from(["message", "nick", "junk", "noop", "config", "membership"]),
        st.sampled_from(CLIENTS),
        st.integers(min_value=-1, max_value=3),  # serial step relative to the client's last
        st.sampled_from(["ada", "bob", "cy"]),
        st.text(alphabet="ab\n\x1b ", min_size=0, max_size=6),
        st.sampled_from([None, "none", "last", "behind"]),
        # The serial a command follows: None writes the first version (no prev_serial);
        # otherwise no predecessor, the client's last drawn serial, or one behind it.
    ),
    max_size=60,
)


def build_log(specs: list) -> list[tuple[Entry, tuple[list[str], list[str]] | None]]:
    """Turn drawn specs into log entries, with a configuration for membership entries."""
    serials: dict[str, int] = {}
    log: list[tuple[Entry, tuple[list[str], list[str]] | None]] = []
    for position, (kind, client, step, nick, text, follows) in enumerate(specs, start=1):
        if kind in ("noop", "config", "membership"):
            entry_kind = EntryKind.NOOP if kind == "noop" else EntryKind.CONFIG
            members = None
            if kind == "membership":
                members = (CLIENTS[: 1 + step % 3], CLIENTS[3 : 3 + step % 2])
            log.append((Entry(position, 1, entry_kind), members))
            continue
        last = serials.get(client, 0)
        serial = max(0, last + step)
        serials[client] = max(last, serial)
        header = [1]
        if follows is not None:
            header = [2, {"none": 0, "last": last, "behind": max(0, last - 1)}[follows]]
        if kind == "message":
            data = msgpack.packb([*header, 0, nick, text, 1_700_000_000_000 + position, False])
        elif kind == "nick":
            data = msgpack.packb([*header, 1, nick])
        else:
            data = text.encode()
        log.append((Entry(position, 1, EntryKind.NORMAL, data, client, serial), None))
    return log


def run(state: ChatState, log: list) -> list:
    events = []
    for entry, members in log:
        events.extend(state.apply(entry))
        if members is not None:
            events.extend(state.apply_membership(entry.index, *members))
    return events


@settings(max_examples=150, deadline=None, print_blob=True)
@given(entry_specs, st.data())
def test_apply_and_snapshot_are_deterministic(specs: list, data: st.DataObject) -> None:
    log = build_log(specs)
    first = ChatState(history_limit=5, limits=SMALL_LIMITS)
    second = ChatState(history_limit=5, limits=SMALL_LIMITS)
    assert run(first, log) == run(second, log)
    assert first.snapshot() == second.snapshot()

    # Snapshot at any point, restore, continue: same events and the same final bytes.
    cut = data.draw(st.integers(min_value=0, max_value=len(log)), label="cut")
    straight = ChatState(history_limit=5, limits=SMALL_LIMITS)
    resumed = ChatState(history_limit=5, limits=SMALL_LIMITS)
    run(straight, log[:cut])
    run(resumed, log[:cut])
    resumed = ChatState.restore(resumed.snapshot(), history_limit=5, limits=SMALL_LIMITS)
    assert run(resumed, log[cut:]) == run(straight, log[cut:])
    assert resumed.snapshot() == straight.snapshot() == first.snapshot()
    assert resumed.nicks() == first.nicks()
    for client in CLIENTS:
        assert resumed.display_name(client) == first.display_name(client)


def test_leave_request_names_the_incarnation_that_asks() -> None:
    from raftchat.chat import Leave, LeaveRequested

    leave = encode_command(Leave(1_796_538_847_446_513))
    assert decode_command(leave) == (Leave(1_796_538_847_446_513), 0)
    state = ChatState()
    applied = state.apply(Entry(index=1, term=1, data=leave, client_id="node-a", serial=1))
    assert applied == [LeaveRequested(1, "node-a", 1_796_538_847_446_513)]


def test_leave_request_of_an_earlier_release_has_no_incarnation() -> None:
    from raftchat.chat import Leave, LeaveRequested

    for legacy in (pack(1, 2), pack(2, 0, 2)):
        assert decode_command(legacy)[0] == Leave(None)
    assert encode_command(Leave()) == pack(3, 0, 2, None), "no incarnation, no signature"
    state = ChatState()
    applied = state.apply(Entry(index=1, term=1, data=pack(1, 2), client_id="node-a", serial=1))
    assert applied == [LeaveRequested(1, "node-a", None)]


def test_leave_request_with_a_bad_incarnation_is_refused_before_the_log() -> None:
    from raftchat.chat import Leave

    for bad in (0, -1, 2**63, True):
        with pytest.raises(InvalidCommandError, match="incarnation"):
            encode_command(Leave(bad))


def test_leave_request_round_trips_and_is_applied_once() -> None:
    from raftchat.chat import Leave, LeaveRequested

    assert decode_command(encode_command(Leave())) == (Leave(), 0)
    state = ChatState()
    leave = encode_command(Leave())
    first = state.apply(Entry(index=1, term=1, data=leave, client_id="node-a", serial=1))
    again = state.apply(Entry(index=2, term=1, data=leave, client_id="node-a", serial=1))
    assert first == [LeaveRequested(1, "node-a")]
    assert [type(event).__name__ for event in again] == ["DuplicateDropped"]
