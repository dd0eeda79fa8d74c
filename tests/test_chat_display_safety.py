"""Nothing committed can crash a display, and lookalike nicks are told apart.

A message time out of range and a nick with an invisible character are applied as no-ops
that still use up their serial; a history restored from before those rules loads and
shows; nicks whose skeletons are equal are all shown with the start of their id.
"""

from __future__ import annotations

import io
import json
from datetime import UTC

import msgpack
import pytest
from rich.console import Console

from raftchat.chat import (
    ChatMessage,
    ChatState,
    InvalidCommand,
    MessageApplied,
    NickChange,
    NickChanged,
    encode_command,
)
from raftchat.chat.textsafety import REPLACEMENT_CHAR
from raftchat.frontends.headless import HeadlessPrinter
from raftchat.limits import MAX_MESSAGE_MS, MIN_MESSAGE_MS
from raftchat.node.events import NodeView
from raftchat.raft.messages import Entry, EntryKind
from raftchat.tui.chat_lines import (
    LineLayout,
    LineStyles,
    make_day_separator,
    make_message,
    render_record,
)

T0 = 1_700_000_000_000
"""A message time in range."""
CLUSTER = "0b" * 16


def entry(index: int, client_id: str, serial: int, data: bytes) -> Entry:
    return Entry(index, 1, EntryKind.NORMAL, data, client_id, serial)


def raw(*items: object) -> bytes:
    """A command as any member could get it committed, bypassing encode_command's checks."""
    return msgpack.packb(list(items), use_bin_type=True)


# --- message times --------------------------------------------------------------------------


@pytest.mark.parametrize("ts", [2**63 - 1, MAX_MESSAGE_MS + 1, MIN_MESSAGE_MS - 1, 0])
def test_a_message_time_out_of_range_is_a_counted_no_op_that_does_not_block_the_sender(
    ts: int,
) -> None:
    state = ChatState()
    state.apply(entry(1, "n1", 1, encode_command(ChatMessage("ada", "before", T0))))
    (refused,) = state.apply(entry(2, "n1", 2, raw(2, 1, 0, "ada", "boom", ts, False)))
    assert isinstance(refused, InvalidCommand)
    assert (refused.client_id, refused.serial) == ("n1", 2)
    assert "out of range" in refused.reason
    assert state.invalid_commands == 1
    assert state.last_serial("n1") == 2  # used up: the sender's next proposal follows it
    after = encode_command(ChatMessage("ada", "after", T0 + 1), prev_serial=2)
    (applied,) = state.apply(entry(3, "n1", 3, after))
    assert isinstance(applied, MessageApplied) and applied.text == "after"
    assert [m.text for m in state.history()] == ["before", "after"]


def test_a_merged_message_out_of_range_is_refused_too() -> None:
    state = ChatState()
    merged = raw(2, 0, 3, CLUSTER, "cyd", 5, "cyd", "boom", 2**63 - 1, False)
    (refused,) = state.apply(entry(1, "p1", 1, merged))
    assert isinstance(refused, InvalidCommand) and "out of range" in refused.reason
    assert not state.has_message("cyd:5") and state.history() == []


def test_a_nick_with_an_invisible_character_is_a_no_op_that_does_not_block_the_sender() -> None:
    state = ChatState()
    state.apply(entry(1, "n1", 1, encode_command(NickChange("ada"))))
    (refused,) = state.apply(entry(2, "n1", 2, raw(2, 1, 1, "\u3164")))
    assert isinstance(refused, InvalidCommand)
    assert "invisible character U+3164 (HANGUL FILLER)" in refused.reason
    (refused,) = state.apply(entry(3, "n1", 3, raw(2, 2, 0, "a\u200bda", "hi", T0, False)))
    assert "U+200B (ZERO WIDTH SPACE)" in refused.reason
    assert state.nick_of("n1") == "ada" and state.invalid_commands == 2
    events = state.apply(entry(4, "n1", 4, encode_command(NickChange("grace"), prev_serial=3)))
    assert events == [NickChanged(4, "n1", "ada", "grace")]


# --- a history from before the rules ----------------------------------------------------------


def old_snapshot() -> bytes:
    """A snapshot as an earlier release could write it: a message time of 2^63-1 ms, one of
    0, and a nick of a letter and a Hangul filler."""
    state = ChatState()
    for serial in (1, 2, 3):
        message = ChatMessage("ada", f"m{serial}", T0 + serial)
        state.apply(entry(serial, "n1", serial, encode_command(message)))
    items = msgpack.unpackb(state.snapshot(), raw=False)
    history = items[7]
    history[0][5] = 2**63 - 1
    history[1][5] = 0
    history[2][3] = "a\u3164"
    items[6][0][1] = "a\u3164"  # the session's nick
    return msgpack.packb(items, use_bin_type=True)


def test_a_history_restored_from_before_the_rules_loads_and_every_front_end_shows_it() -> None:
    restored = ChatState.restore(old_snapshot())
    assert [m.ts for m in restored.history()] == [2**63 - 1, 0, T0 + 3]
    assert restored.nick_of("n1") == "a\u3164"
    assert ChatState.restore(restored.snapshot()).snapshot() == restored.snapshot()
    view = NodeView("me", "me")
    events = [view.message_event(restored, message) for message in restored.history()]

    console = Console(width=80)
    records = [make_message(ts=e.ts, nick=e.nick, text=e.text, tz=UTC) for e in events]
    assert [record.clock for record in records] == ["00:00", "00:00", "22:13"]
    assert make_day_separator(records[0].ts, UTC).text == " Wednesday 1 January 2200 "
    assert make_day_separator(records[1].ts, UTC).text == " Saturday 1 January 2000 "
    assert records[2].nick == f"a{REPLACEMENT_CHAR}"  # the filler is shown, not hidden
    for record in records:
        assert render_record(record, 80, LineLayout(), LineStyles(), console)

    out = io.StringIO()
    printer = HeadlessPrinter(out)
    for event in events:
        printer.print_event(event)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["ts"] for line in lines] == [
        MAX_MESSAGE_MS / 1000,
        MIN_MESSAGE_MS / 1000,
        (T0 + 3) / 1000,
    ]
    assert lines[2]["nick"] == "a\u3164"  # escaped in the JSON text: nothing hides


# --- lookalike nicks ----------------------------------------------------------------------------


def test_a_lookalike_nick_and_the_nick_it_imitates_are_both_shown_with_their_id() -> None:
    state = ChatState()
    state.apply(entry(1, "3f2a91", 1, encode_command(NickChange("alice"))))
    assert state.display_name("3f2a91") == "alice"
    state.apply(entry(2, "c0ffee", 1, encode_command(NickChange("\u0430lice"))))  # Cyrillic a
    assert state.display_name("3f2a91") == "alice#3f2a"
    assert state.display_name("c0ffee") == "\u0430lice#c0ff"

    view = NodeView("me0000", "me")
    assert view.name(state, "3f2a91") == "alice#3f2a"
    (message,) = state.apply(
        entry(3, "c0ffee", 2, encode_command(ChatMessage("\u0430lice", "hi", T0)))
    )
    assert isinstance(message, MessageApplied)
    assert view.message_event(state, message).nick == "\u0430lice#c0ff"

    events = state.apply(entry(4, "c0ffee", 3, encode_command(NickChange("mallory"))))
    assert state.display_name("3f2a91") == "alice"  # nobody imitates it any more
    (notice,) = [n for event in events for n in view.notices_for(state, event, now=1.0)]
    assert notice.text == "\u0430lice#c0ff is now known as mallory"  # which of the two
    events = state.apply(entry(5, "c0ffee", 4, encode_command(NickChange("a\u217cice"))))
    (notice,) = [n for event in events for n in view.notices_for(state, event, now=1.0)]
    assert notice.text == "mallory is now known as a\u217cice#c0ff"  # small roman fifty
    assert state.display_name("3f2a91") == "alice#3f2a"
