"""Peer text is made inert and visible before any terminal sees it."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from raftchat.chat.textsafety import (
    REPLACEMENT_CHAR,
    is_safe,
    sanitize_nick,
    sanitize_text,
)
from raftchat.limits import MAX_NICK_CHARS


def test_plain_text_is_unchanged() -> None:
    for text in ("hello", "[bold]not markup[/bold]", "naïve café", "中文 テキスト", "👍🏽 👨‍👩‍👧"):
        assert sanitize_text(text) == text


def test_escape_sequences_become_visible_pictures() -> None:
    assert sanitize_text("\x1b[31mred\x1b[0m") == "\u241b[31mred\u241b[0m"
    assert sanitize_text("\x1b]0;title\x07") == "\u241b]0;title\u2407"
    assert sanitize_text("a\x00b\x7fc") == "a\u2400b\u2421c"


def test_c1_controls_are_replaced() -> None:
    assert (
        sanitize_text("\x9b2J\x9d0;x\x9c")
        == f"{REPLACEMENT_CHAR}2J{REPLACEMENT_CHAR}0;x{REPLACEMENT_CHAR}"
    )


def test_bidi_overrides_and_isolates_are_replaced() -> None:
    for control in ("\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u200f"):
        assert sanitize_text(f"a{control}b") == f"a{REPLACEMENT_CHAR}b"


def test_line_breaks_and_tabs_keep_one_line() -> None:
    assert sanitize_text("one\ntwo\r\nthree\u2028four") == "one\u21b5two\u21b5\u21b5three\u21b5four"
    assert sanitize_text("a\tb") == "a b"


def test_lone_surrogates_are_replaced() -> None:
    assert sanitize_text("a\ud800b") == f"a{REPLACEMENT_CHAR}b"


def test_nick_is_one_short_word_run() -> None:
    assert sanitize_nick("  bob \n smith ") == "bob \u21b5 smith"
    assert sanitize_nick("") == "?"
    long_nick = sanitize_nick("x" * 100)
    assert len(long_nick) == MAX_NICK_CHARS and long_nick.endswith("\u2026")


@given(st.text())
def test_output_never_contains_controls_or_reordering(text: str) -> None:
    result = sanitize_text(text)
    for char in result:
        assert unicodedata.category(char) not in ("Cc", "Cs", "Zl", "Zp")
        assert not (0x202A <= ord(char) <= 0x202E or 0x2066 <= ord(char) <= 0x2069)
    assert is_safe(result)
    result.encode("utf-8")  # always encodable for the terminal (raises if not)
