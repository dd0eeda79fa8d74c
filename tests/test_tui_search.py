"""/search and Ctrl+F find earlier messages of the channel shown and jump to them."""

from __future__ import annotations

from fake_node import FakeChatNode, make_history
from support.waiting import wait_until
from test_tui_app import SIZE, input_error, make_app, screen_lines, type_line, widget_text


def found_text(app) -> list[str]:
    return [record.text for record in app.chat_log.records if record.found]


async def test_search_jumps_to_the_newest_match_then_older_and_newer() -> None:
    node = FakeChatNode()
    history = make_history(400)
    node.load_history(history)
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "/search NUMBER 1")  # any case: 1, 10-19, 100-199
        matches = [m.text for m in history if "number 1" in m.text]
        assert found_text(app) == [matches[-1]]
        assert any(line.endswith(matches[-1]) for line in screen_lines(app.chat_log))
        status = widget_text(app.view.query_one("#search-status"))
        assert f"match {len(matches)} of {len(matches)}" in status
        await pilot.press("ctrl+f", "ctrl+f")
        assert found_text(app) == [matches[-3]]
        shown = screen_lines(app.chat_log)
        assert any(matches[-3] in line for line in shown), "scrolled to the match"
        assert not any("message number 400" in line for line in shown)
        await pilot.press("ctrl+g")
        assert found_text(app) == [matches[-2]]
        await pilot.press("escape")
        assert found_text(app) == []
        await wait_until(
            lambda: screen_lines(app.chat_log)[-1].endswith("message number 400"), pilot=pilot
        )
        assert not app.view.query_one("#search-status").display


async def test_search_finds_a_sender_and_says_when_nothing_matches() -> None:
    node = FakeChatNode()
    node.receive("bob", "first")
    node.receive("zed", "second")
    node.receive("bob", "third")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "/search zed")
        assert found_text(app) == ["second"]
        await type_line(pilot, "/search nothing like this")
        assert found_text(app) == []
        status = widget_text(app.view.query_one("#search-status"))
        assert "no message contains 'nothing like this'" in status


async def test_ctrl_f_starts_a_search_and_an_empty_one_is_refused() -> None:
    app = make_app(FakeChatNode())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+f")
        assert app.chat_input.value == "/search "
        await pilot.press("enter")
        assert "type /search TEXT" in input_error(app)
