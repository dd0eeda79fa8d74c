"""Layout of chat records into terminal lines: wrapping, heights, nick colours."""

from __future__ import annotations

import random
from datetime import UTC

from rich.console import Console
from rich.text import Text

from raftchat.tui.chat_lines import (
    NICK_PALETTE,
    LineLayout,
    LineStyles,
    make_message,
    make_notice,
    nick_color,
    record_height,
    render_record,
    wrap_offsets,
)

CONSOLE = Console(width=200)


def lines_of(text: str, width: int) -> list[str]:
    return [line.plain.rstrip(" ") for line in Text(text).divide(wrap_offsets(text, width))]


def test_wrap_breaks_between_words_and_folds_long_words() -> None:
    assert lines_of("hello big world", 9) == ["hello big", "world"]
    assert lines_of("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]
    assert wrap_offsets("fits exactly", 12) == []


def test_wrap_properties_random() -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for _ in range(2000):
        words = ["x" * rng.choice([1, 2, 5, 9, 30]) for _ in range(rng.randint(1, 15))]
        text = "".join(word + " " * rng.choice([0, 1, 1, 2]) for word in words)
        width = rng.randint(3, 40)
        offsets = wrap_offsets(text, width)
        pieces = [piece.plain for piece in Text(text).divide(offsets)]
        assert "".join(pieces) == text, seed
        assert all(len(piece.rstrip(" ")) <= width for piece in pieces), seed
        for piece in pieces[1:]:
            assert not piece.startswith(" "), seed


def test_wide_characters_wrap_by_cells() -> None:
    offsets = wrap_offsets("中文中文中文", 4)
    assert [p.plain for p in Text("中文中文中文").divide(offsets)] == ["中文", "中文", "中文"]


def test_height_matches_rendered_lines() -> None:
    layout = LineLayout()
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for _ in range(200):
        text = " ".join("w" * rng.randint(1, 12) for _ in range(rng.randint(1, 40)))
        record = make_message(ts=0, nick="bob", text=text, tz=UTC, action=rng.random() < 0.3)
        width = rng.randint(25, 120)
        strips = render_record(record, width, layout, LineStyles(), CONSOLE)
        assert record_height(record, width, layout) == len(strips), seed
        assert all(strip.cell_length == width for strip in strips), seed


def test_message_line_layout() -> None:
    record = make_message(ts=1_700_000_000, nick="bob", text="hi there", tz=UTC)
    (strip,) = render_record(record, 40, LineLayout(), LineStyles(), CONSOLE)
    assert strip.text.rstrip() == "22:13          bob \u2502 hi there"


def test_notice_layout() -> None:
    record = make_notice(ts=1_700_000_000, text="erin joined", kind="join", tz=UTC)
    (strip,) = render_record(record, 40, LineLayout(), LineStyles(), CONSOLE)
    assert strip.text.rstrip() == "22:13          --> \u2502 erin joined"


def test_nick_colour_is_stable_and_from_palette() -> None:
    assert nick_color("alice") == nick_color("alice")
    assert nick_color("alice") in NICK_PALETTE
    assert len({nick_color(f"user{n}") for n in range(200)}) == len(NICK_PALETTE)
