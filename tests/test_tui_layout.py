"""Any terminal size: side panes give way on narrow screens, nothing is cut mid-word."""

from __future__ import annotations

from fake_node import FakeChatNode, demo_app
from support.waiting import wait_until
from test_tui_app import make_app, widget_text

from raftchat.node.api import StatusEvent
from raftchat.tui.widgets.stats_pane import compact_count, short_id
from raftchat.tui.widgets.status_bar import status_line


async def test_below_100_columns_the_side_panes_close_and_f2_opens_stats_in_place() -> None:
    app = demo_app(show_stats=True, show_members=True)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.view
        assert not view.query_one("#side").display
        assert app.chat_log.size.width >= 75, "the chat gets the whole width"
        await pilot.press("f2")
        stats = view.query_one("#stats")
        assert stats.display and not view.query_one("#chat-column").display
        assert stats.size.width >= 75
        table = view.query_one("#stats-table")
        await wait_until(lambda: "AppendEntries" in widget_text(table), pilot=pilot)
        assert "\u2026" not in widget_text(table)
        await pilot.press("f2")
        assert view.query_one("#chat-column").display and not view.query_one("#side").display


async def test_wide_screens_keep_the_side_pane_next_to_the_chat() -> None:
    app = demo_app(show_stats=True, show_members=False)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        view = app.view
        assert view.query_one("#side").display and view.query_one("#chat-column").display
        assert app.chat_log.size.width > 150


async def test_stats_pane_abbreviates_large_values_instead_of_cutting_them() -> None:
    node = FakeChatNode(node_id="8e53f1e9ec16addd")
    app = make_app(node, show_stats=True)
    async with app.run_test(size=(120, 40)) as pilot:
        node.set_status(
            term=123_456_789,
            leader="c04d5a9ec16addd0",
            last_index=9_876_543,
            commit_index=9_876_540,
            counters={"appendentries_sent": 12_345_678, "appendentries_received": 2_500_000},
        )
        table = app.query_one("#stats-table")
        await wait_until(lambda: "123M" in widget_text(table), pilot=pilot)
        text = widget_text(table)
        assert "12.3M out, 2.5M in" in text and "9.9M" in text
        assert "8e53f1e9ec16addd" in text and "\u2026" not in text


def test_compact_counts() -> None:
    assert [compact_count(n) for n in (0, 1874, 99_999, 100_000, 340_500, 1_234_567)] == [
        "0", "1874", "99999", "100k", "340k", "1.2M",
    ]  # fmt: skip


def test_the_status_line_fits_80_columns() -> None:
    status = StatusEvent(
        node_id="a1f3c9", state="follower", term=4, leader="c04d5a", voters=("a1f3c9",),
        learners=(), commit_index=1, applied_index=1, last_index=1, snapshot_index=0,
        election_timeout_ms=400.0, signaling_state="reconnecting",
    )  # fmt: skip
    line = status_line("raft-lab", "alice", status, "carol")
    assert line.cell_len <= 80, line.plain


def test_a_long_node_id_is_abbreviated_with_an_ellipsis() -> None:
    assert short_id("8e53f1e9ec16addd") == "8e53f1e9ec16addd"
    assert short_id("d25eb0b4b47f249bf6aeeeaab96c5d3e") == "d25eb0b4b47f249\u2026"
