"""Keys, panes and lines that once broke: Ctrl+C, /help's keys, the members pane's
columns and round-trip times, replayed history's times, the charts' scale, Screenshot."""

from __future__ import annotations

from pathlib import Path

from fake_node import FakeChatNode, make_history
from support.waiting import wait_until
from test_tui_app import SIZE, make_app, screen_lines, shows, type_line, widget_text

from raftchat.node.api import ChatMessageEvent, MemberInfo, NoticeEvent
from raftchat.tui.widgets.chart import BLOCKS, chart_lines, nice_ceiling

YESTERDAY_EVENING = 1_700_006_000.0  # Tuesday 14 November 2023, 23:53 UTC


async def test_ctrl_c_leaves_the_channel_and_quits() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "")  # focus in the input, where Ctrl+C would copy
        await pilot.press("ctrl+c")
        await wait_until(lambda: node.left and not app.is_running, pilot=pilot)
    assert node.left


async def test_help_lists_the_keys() -> None:
    app = make_app(FakeChatNode())
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "/help")
        shown = [record.text for record in app.chat_log.records]
        for key in ("F2", "F3", "PgUp", "Ctrl+Q", "Ctrl+C", "Tab", "F1", "Ctrl+N", "Alt+1\u20269"):
            assert any(text.startswith(key + " ") for text in shown), key


async def test_members_pane_shows_rtt_of_up_links_in_aligned_columns() -> None:
    node = FakeChatNode()
    app = make_app(node, show_members=True)
    async with app.run_test(size=SIZE) as pilot:
        node.set_members(
            [
                MemberInfo("n1aaaaaaaaaaaaaa", "alice", "voter", "self", None),
                MemberInfo("n2bbbbbbbbbbbbbb", "bob", "leader", "connected", 0.42),
                MemberInfo("n3cccccccccccccc", "caroline", "learner", "connected", 187.3),
                MemberInfo("n4dddddddddddddd", "d", "learner", "disconnected", 55.0),
            ]
        )
        pane = app.query_one("#members")
        await wait_until(lambda: "caroline" in widget_text(pane), pilot=pilot)
        rows = {row.split()[0]: row for row in widget_text(pane).splitlines() if row.strip()}
        bob, caroline, dave = rows["bob"], rows["caroline"], rows["d"]
        assert bob.rstrip().endswith("0.4ms") and caroline.rstrip().endswith("187ms")
        assert "55" not in dave, "no round-trip time for a link that is down"
        assert len(bob.rstrip()) == len(caroline.rstrip()), "rtt column right-aligned"
        for column in ("n2bbbb", "leader"):
            assert bob.index(column[:2]) == caroline.index(
                ("n3cccc", "learner")[column == "leader"][:2]
            ), column
        assert bob.index(" up") == caroline.index(" up")


async def test_replayed_history_shows_when_each_message_was_sent() -> None:
    """A rejoining member's history comes in long after it was written: each line shows
    its sender's time, a date line where the day changes, and today's notices that come
    in between do not move the dates."""
    node = FakeChatNode(clock=lambda: YESTERDAY_EVENING + 2 * 86_400)
    node.load_history(make_history(2, start_ts=YESTERDAY_EVENING - 14, step_s=7))
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        node.publish(NoticeEvent("info", "caught up from a snapshot", node.clock()))
        node.publish(
            ChatMessageEvent(
                3, "peer-bob:3", "peer-bob", "bob", "sent at midnight", YESTERDAY_EVENING + 7 * 60
            )
        )
        await wait_until(lambda: shows(app.chat_log, "sent at midnight"), pilot=pilot)
        lines = [line for line in screen_lines(app.chat_log) if line.strip()]
        assert "Tuesday 14 November 2023" in lines[0]
        assert lines[1].startswith("23:53") and lines[2].startswith("23:53")
        assert "Thursday 16 November 2023" in lines[3]
        assert "caught up from a snapshot" in lines[4]
        assert "Wednesday 15 November 2023" in lines[5]
        assert lines[6].startswith("00:00") and "sent at midnight" in lines[6]


def test_one_sample_is_one_bar_under_a_labelled_scale() -> None:
    lines = chart_lines([40.0], width=30, height=3, unit=" ms")
    assert [len(line) for line in lines] == [30, 30, 30]
    assert lines[0].startswith("50 ms\u2524") and lines[2].startswith("    0\u2524")
    bars = [line[6:] for line in lines]
    assert all(bar[:-1].strip() == "" for bar in bars), "one sample, one column"
    assert bars[2][-1] == BLOCKS[8] and bars[0][-1] not in (BLOCKS[8], " ")


def test_chart_scale_is_a_round_number_at_or_above_the_largest_sample() -> None:
    assert [nice_ceiling(v) for v in (0.0, 0.3, 1.0, 1.2, 40.0, 50.0, 51.0, 7300.0)] == [
        1.0,
        0.5,
        1.0,
        2.0,
        50.0,
        50.0,
        100.0,
        10_000.0,
    ]
    lines = chart_lines([1.0, 2.0, 3.0, 4.0], width=12, height=2)
    assert lines[0].startswith("5\u2524") and lines[0].endswith(
        BLOCKS[0] + BLOCKS[0] + BLOCKS[2] + BLOCKS[5]
    )


async def test_latency_chart_shows_its_scale_in_the_stats_pane() -> None:
    node = FakeChatNode()
    app = make_app(node, show_stats=True)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "hello")
        node.commit_next()
        chart = app.query_one("#latency-chart")
        await wait_until(lambda: "ms\u2524" in widget_text(chart), pilot=pilot)


async def test_screenshot_from_the_palette_saves_a_file_and_says_where(tmp_path: Path) -> None:
    app = make_app(FakeChatNode(), screenshot_dir=tmp_path / "shots")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        await pilot.press(*"screenshot")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(lambda: list((tmp_path / "shots").glob("*.svg")), pilot=pilot)
        (saved,) = (tmp_path / "shots").glob("*.svg")
        assert "<svg" in saved.read_text()
        await wait_until(
            lambda: any(str(saved) in note.message for note in app._notifications), pilot=pilot
        )
