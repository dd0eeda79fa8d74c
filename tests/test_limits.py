"""The naming and size rules every layer shares: channel names, node ids, message times and
nicks."""

from __future__ import annotations

import math
import secrets
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftchat.limits import (
    MAX_CHANNEL_NAME_CHARS,
    MAX_MESSAGE_MS,
    MAX_NODE_ID_CHARS,
    MIN_MESSAGE_MS,
    PEER_ID_PATTERN,
    channel_name_problem,
    clamp_message_ms,
    clamp_message_seconds,
    message_time_problem,
    nick_problem,
    node_id_problem,
    replace_invisible,
    stored_nick_problem,
)


@pytest.mark.parametrize("name", ["general", "room-1", "a", "x_y", "9" * MAX_CHANNEL_NAME_CHARS])
def test_canonical_channel_names_are_accepted(name: str) -> None:
    assert channel_name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    ["", "Upper", "a.b", "-lead", "_lead", "a/b", "sp ace", "x" * (MAX_CHANNEL_NAME_CHARS + 1), 7],
)
def test_other_channel_names_are_refused_with_the_rule_in_words(name: object) -> None:
    problem = channel_name_problem(name)
    assert problem is not None
    assert problem.startswith("invalid channel name") and "a-z, 0-9" in problem


def test_a_minted_node_id_is_a_node_id_and_a_peer_id() -> None:
    node_id = secrets.token_hex(8)  # what a new data dir gets
    assert node_id_problem(node_id) is None
    assert PEER_ID_PATTERN.fullmatch(node_id)


@pytest.mark.parametrize(
    ("node_id", "fragment"),
    [
        ("", "missing node id"),
        (None, "missing node id"),
        ("n" * (MAX_NODE_ID_CHARS + 1), "longer than 64"),
        ("n 1", "only the characters"),
        ("né", "only the characters"),
        ("a:b", "only the characters"),
    ],
)
def test_malformed_node_ids_are_refused(node_id: object, fragment: str) -> None:
    problem = node_id_problem(node_id)
    assert problem is not None and fragment in problem


def test_short_ids_are_node_ids_but_not_signaling_peer_ids() -> None:
    assert node_id_problem("n1") is None
    assert not PEER_ID_PATTERN.fullmatch("n1")


# --- message times ----------------------------------------------------------------------


def test_the_message_time_range_is_2000_to_2200() -> None:
    assert datetime.fromtimestamp(MIN_MESSAGE_MS / 1000, UTC) == datetime(2000, 1, 1, tzinfo=UTC)
    assert datetime.fromtimestamp(MAX_MESSAGE_MS / 1000, UTC) == datetime(2200, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("ts", [MIN_MESSAGE_MS, 1_700_000_000_000, MAX_MESSAGE_MS])
def test_message_times_in_range_are_accepted(ts: int) -> None:
    assert message_time_problem(ts) is None


@pytest.mark.parametrize(
    ("ts", "fragment"),
    [
        (MIN_MESSAGE_MS - 1, "out of range"),
        (MAX_MESSAGE_MS + 1, "out of range"),
        (2**63 - 1, "out of range"),
        (0, "out of range"),
        (-1, "out of range"),
        (1_700_000_000_000.0, "integer"),
        (True, "integer"),
        ("1700000000000", "integer"),
    ],
)
def test_message_times_out_of_range_or_not_integers_are_refused(ts: object, fragment: str) -> None:
    problem = message_time_problem(ts)
    assert problem is not None and fragment in problem


def test_a_clock_far_off_is_clamped_into_the_range() -> None:
    assert clamp_message_ms(0) == MIN_MESSAGE_MS
    assert clamp_message_ms(2**63 - 1) == MAX_MESSAGE_MS
    assert clamp_message_ms(1_700_000_000_000) == 1_700_000_000_000


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (1_700_000_000.5, 1_700_000_000.5),
        ((2**63 - 1) / 1000, MAX_MESSAGE_MS / 1000),
        (2**200, MAX_MESSAGE_MS / 1000),
        (-1e300, MIN_MESSAGE_MS / 1000),
        (math.inf, MAX_MESSAGE_MS / 1000),
        (-math.inf, MIN_MESSAGE_MS / 1000),
        (math.nan, MIN_MESSAGE_MS / 1000),
        (None, MIN_MESSAGE_MS / 1000),
        (True, MIN_MESSAGE_MS / 1000),
    ],
)
def test_any_time_to_show_is_clamped_to_a_float_in_range(ts: object, expected: float) -> None:
    shown = clamp_message_seconds(ts)
    assert type(shown) is float and shown == expected


# --- nicks: invisible characters ------------------------------------------------------------

INVISIBLE = {
    "\u3164": "HANGUL FILLER",
    "\u2800": "BRAILLE PATTERN BLANK",
    "\u115f": "HANGUL CHOSEONG FILLER",
    "\u1160": "HANGUL JUNGSEONG FILLER",
    "\uffa0": "HALFWIDTH HANGUL FILLER",
    "\u200b": "ZERO WIDTH SPACE",
    "\u200c": "ZERO WIDTH NON-JOINER",
    "\u200d": "ZERO WIDTH JOINER",
    "\u2060": "WORD JOINER",
    "\ufeff": "ZERO WIDTH NO-BREAK SPACE",
    "\u180e": "MONGOLIAN VOWEL SEPARATOR",
    "\u034f": "COMBINING GRAPHEME JOINER",
    "\u00ad": "SOFT HYPHEN",
    "\u202e": "RIGHT-TO-LEFT OVERRIDE",
    "\u2067": "RIGHT-TO-LEFT ISOLATE",
    "\u200f": "RIGHT-TO-LEFT MARK",
    "\u061c": "ARABIC LETTER MARK",
    "\u17b4": "KHMER VOWEL INHERENT AQ",
    "\U0001d159": "MUSICAL SYMBOL NULL NOTEHEAD",
    "\U000e0041": "TAG LATIN CAPITAL LETTER A",
    "\ufe0f": "VARIATION SELECTOR-16",
}


@pytest.mark.parametrize("char", sorted(INVISIBLE))
@pytest.mark.parametrize("where", ["alone", "inside", "after", "twice"])
def test_nicks_with_invisible_characters_are_refused_naming_the_character(
    char: str, where: str
) -> None:
    nick = {"alone": char, "inside": f"a{char}b", "after": f"ab{char}", "twice": char * 2}[where]
    if where in ("inside", "after") and char == "\ufe0f":
        nick = f"a{char}{char}"  # a variation selector after a letter is fine; two are not
    problem = nick_problem(nick)
    assert problem == (
        f"nick must not contain the invisible character U+{ord(char):04X} ({INVISIBLE[char]})"
    )


@pytest.mark.parametrize(
    "nick",
    [
        "alice",
        "\u2764\ufe0f",  # a red heart: VS16 right after the character it styles
        "\u270c\ufe0e",
        "a\U000e0100",  # an ideographic variation selector after a character
        "caf\u00e9",
        "cafe\u0301",  # a combining accent is visible
        "\u540d\u524d",
        "\u0430lice",  # a Cyrillic a: allowed, shown with its id next to an alice
        "\U0001f30a",
    ],
)
def test_visible_nicks_are_accepted(nick: str) -> None:
    assert nick_problem(nick) is None


def test_the_stored_rule_still_reads_nicks_committed_before_invisible_ones_were_refused() -> None:
    assert stored_nick_problem("a\u3164b") is None
    assert stored_nick_problem("a b") is not None  # the rest of the rule is the same
    assert nick_problem("a\u3164b") is not None


def test_invisible_characters_can_be_replaced() -> None:
    assert replace_invisible("a\u3164b\u2800", "\ufffd") == "a\ufffdb\ufffd"
    assert replace_invisible("\u2764\ufe0f\ufe0f", "") == "\u2764\ufe0f"
    assert replace_invisible("alice", "") == "alice"


@given(st.text(max_size=40))
def test_a_nick_with_its_invisible_characters_replaced_has_none_left(nick: str) -> None:
    cleaned = replace_invisible(nick, "?")
    problem = nick_problem(cleaned)
    assert problem is None or "invisible" not in problem
