"""Alt+1 … Alt+9 as a real terminal sends them (ESC, then the digit) switch channels:
the bytes go through Textual's own terminal parser, as the driver feeds it."""

from __future__ import annotations

import pytest
from fake_node import FakeChatNode
from test_tui_app import SIZE, make_app
from textual import _parser, constants, events
from textual._ansi_sequences import ANSI_SEQUENCES_KEYS
from textual._xterm_parser import XTermParser

from raftchat.tui.terminal_keys import ALT_DIGIT_SEQUENCES, report_alt_digits

OPTION_DIGITS = "¡™£¢∞§¶•ª"
"""What Textual maps ESC 1 … ESC 9 to (macOS Option with the digits)."""


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The parser's clock, so the ESC timeout passes without waiting for it; each test
    starts from Textual's own table (the app changes it)."""
    for sequence, character in zip(ALT_DIGIT_SEQUENCES, OPTION_DIGITS, strict=True):
        monkeypatch.setitem(ANSI_SEQUENCES_KEYS, sequence, character)  # type: ignore[arg-type]
    clock = FakeClock()
    monkeypatch.setattr(_parser, "get_time", clock)
    return clock


def parse_keys(data: str, clock: FakeClock) -> list[events.Key]:
    """The key events the driver's parser makes of ``data`` once the ESC timeout passed."""
    parser = XTermParser()
    parsed = list(parser.feed(data))
    clock.now += constants.ESCAPE_DELAY * 2
    parsed += list(parser.tick())
    return [event for event in parsed if isinstance(event, events.Key)]


def test_the_parser_reports_esc_and_a_digit_as_alt_digit(clock: FakeClock) -> None:
    assert [key.character for key in parse_keys("\x1b1", clock)] == ["¡"]  # Textual's own
    report_alt_digits()
    for digit in range(1, 10):
        assert [key.key for key in parse_keys(f"\x1b{digit}", clock)] == [f"alt+{digit}"]


def test_other_keys_parse_as_before(clock: FakeClock) -> None:
    report_alt_digits()
    assert [key.key for key in parse_keys("\x1ba", clock)] == ["alt+a"]
    assert [key.key for key in parse_keys("\x1b", clock)] == ["escape"]
    assert [key.character for key in parse_keys("¡", clock)] == ["¡"]  # Option+1 on macOS
    assert [key.key for key in parse_keys("\x1b[A", clock)] == ["up"]


async def test_alt_digit_from_the_terminal_switches_channel(clock: FakeClock) -> None:
    lobby, ops = FakeChatNode(channel="lobby"), FakeChatNode(node_id="n2", channel="ops")
    app = make_app([lobby, ops])
    async with app.run_test(size=SIZE) as pilot:
        for key in parse_keys("\x1b2", clock):
            app.post_message(key)  # what the driver does with each parsed event
        await pilot.pause()
        assert app.node is ops
        assert app.chat_input.value == ""  # nothing typed into the input
        for key in parse_keys("\x1b1", clock):
            app.post_message(key)
        await pilot.pause()
        assert app.node is lobby
        assert app.chat_input.value == ""
