"""The chat TUI driven by a Pilot against the fake node."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC

import pytest
from fake_node import FakeChatNode, make_history
from support.clocks import ManualClock
from support.waiting import wait_until
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Static

from raftchat.limits import MAX_MESSAGE_CHARS
from raftchat.node.api import ChatMessageEvent, MemberInfo, NoticeEvent
from raftchat.tui.app import RaftChatApp, TuiConfig
from raftchat.tui.widgets.chat_input import ChatInput
from raftchat.tui.widgets.chat_log import ChatLog

SIZE = (110, 32)
TUI_CLOCK_START = 100.0


def make_app(
    node: FakeChatNode | list[FakeChatNode],
    clock: ManualClock | None = None,
    host: object = None,
    **config: object,
) -> RaftChatApp:
    clock = clock or ManualClock(TUI_CLOCK_START)
    return RaftChatApp(
        node,
        TuiConfig(
            tz=UTC,
            monotonic=clock,
            wall_clock=lambda: 1_700_000_000.0,
            cursor_blink=False,
            **config,  # type: ignore[arg-type]
        ),
        host,  # type: ignore[arg-type]
    )


def screen_lines(chat_log: ChatLog) -> list[str]:
    return [line.rstrip() for line in chat_log.visible_text()]


def widget_text(widget: Widget) -> str:
    width, height = widget.region.size  # the whole widget, borders included
    strips = widget.render_lines(Region(0, 0, width, height))
    return "\n".join(strip.text for strip in strips)


def shows(chat_log: ChatLog, fragment: str) -> bool:
    return any(fragment in line for line in chat_log.visible_text())


async def type_line(pilot: Pilot, text: str) -> None:
    chat_input = pilot.app.chat_input  # the input of the channel shown
    chat_input.value = text
    chat_input.cursor_position = len(text)
    await pilot.press("enter")
    await pilot.pause()


def input_error(app: RaftChatApp) -> str:
    error = app.view.query_one("#input-error", Static)
    return str(error.render()) if error.has_class("-visible") else ""


async def test_own_message_is_pending_until_committed() -> None:
    node = FakeChatNode()
    clock = ManualClock(TUI_CLOCK_START)
    app = make_app(node, clock)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"hello cluster", "enter")
        await wait_until(lambda: shows(app.chat_log, "hello cluster"), pilot=pilot)
        assert node.sent == [("hello cluster", False)]
        line = next(line for line in screen_lines(app.chat_log) if "hello cluster" in line)
        assert "alice \u2026 hello cluster" in line  # "…": proposed, not committed
        assert app.chat_input.value == ""

        clock.now += 0.042
        node.commit_next()
        await wait_until(lambda: not app.chat_log.pending, pilot=pilot)
        line = next(line for line in screen_lines(app.chat_log) if "hello cluster" in line)
        assert "alice \u2713 hello cluster" in line  # "✓": committed
        assert app.chat_log.records[-1].message_id == "n1:1"
        assert app.view._latencies[-1] == pytest.approx(42.0)
        label = app.query_one("#latency-label")
        await wait_until(lambda: "latency 42 ms" in widget_text(label), pilot=pilot)


async def test_pending_message_is_dimmed_then_normal() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "styled")
        pending = app.chat_log.pending[0]
        pending_strip = app.chat_log._render_record(pending)[0]
        body = [seg for seg in pending_strip if "styled" in seg.text]
        assert body and body[0].style.italic
        node.commit_next()
        await wait_until(lambda: not app.chat_log.pending, pilot=pilot)
        strip = app.chat_log._render_record(app.chat_log.records[-1])[0]
        body = [seg for seg in strip if "styled" in seg.text]
        assert body and not body[0].style.italic


async def test_input_history_recalls_lines_with_up_and_down() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "first")
        await type_line(pilot, "second")
        await pilot.press(*"draft")
        await pilot.press("up")
        assert app.chat_input.value == "second"
        await pilot.press("up")
        assert app.chat_input.value == "first"
        await pilot.press("up")
        assert app.chat_input.value == "first"
        await pilot.press("down")
        assert app.chat_input.value == "second"
        await pilot.press("down")
        assert app.chat_input.value == "draft"


async def test_tab_completes_commands_and_cycles_nicks() -> None:
    node = FakeChatNode()
    node.load_history(make_history(4, nicks=("carol", "cathy", "bob")))
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"/ni", "tab")
        assert app.chat_input.value == "/nick "
        app.chat_input.value = ""
        await pilot.press(*"ca", "tab")
        assert app.chat_input.value == "carol: "
        await pilot.press("tab")
        assert app.chat_input.value == "cathy: "
        await pilot.press("tab")
        assert app.chat_input.value == "carol: "
        app.chat_input.value = ""
        await pilot.press(*"hi BO", "tab")
        assert app.chat_input.value == "hi bob "
        assert app.focused is app.chat_input  # Tab completed instead of moving focus


async def test_help_lists_commands() -> None:
    app = make_app(FakeChatNode())
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "/help")
        shown = [record.text for record in app.chat_log.records]
        for command in ("/nick", "/me", "/members", "/stats", "/leave", "/forget", "/join"):
            assert any(text.startswith(command + " ") for text in shown), command


async def test_nick_command_changes_nick() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "/nick zed")
        await wait_until(lambda: shows(app.chat_log, "alice is now known as zed"), pilot=pilot)
        assert node.nick == "zed"
        await wait_until(lambda: "as zed" in widget_text(app.query_one("#status-bar")), pilot=pilot)


async def test_nick_command_rejects_bad_nick_inline() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "/nick two words")
        assert "spaces" in input_error(app)
        assert node.nick == "alice"
        assert app.chat_input.value == "/nick two words"


async def test_me_sends_an_action() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "/me waves")
        assert node.sent == [("waves", True)]
        node.commit_next()
        await wait_until(lambda: shows(app.chat_log, "* \u2713 alice waves"), pilot=pilot)


async def test_members_and_stats_commands_toggle_panes() -> None:
    app = make_app(FakeChatNode())
    async with app.run_test(size=SIZE) as pilot:
        stats, members = app.query_one("#stats"), app.query_one("#members")
        assert stats.display and not members.display
        await type_line(pilot, "/members")
        assert members.display
        await type_line(pilot, "/stats")
        assert not stats.display
        await type_line(pilot, "/members")
        assert not members.display
        assert not app.query_one("#side").display
        await pilot.press("f2")
        assert stats.display and app.query_one("#side").display


@pytest.mark.parametrize("command", ["/leave", "/quit"])
async def test_leave_and_quit_leave_the_channel_and_exit(command: str) -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, command)
        await wait_until(lambda: node.left and not app.is_running, pilot=pilot)
    assert node.left


async def test_unknown_command_is_an_inline_error_and_not_sent() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "/frobnicate now")
        assert "Unknown command /frobnicate" in input_error(app)
        assert node.sent == []
        assert app.chat_input.value == "/frobnicate now"
        await pilot.press("backspace")
        assert input_error(app) == ""


async def test_double_slash_sends_a_literal_slash() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "//etc/hosts is a file")
        assert node.sent == [("/etc/hosts is a file", False)]


async def test_over_long_message_is_an_inline_error_and_not_sent() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "x" * (MAX_MESSAGE_CHARS + 1))
        assert f"limit is {MAX_MESSAGE_CHARS}" in input_error(app)
        assert node.sent == []
        assert not app.chat_log.pending
        assert len(app.chat_input.value) == MAX_MESSAGE_CHARS + 1


async def test_scrolled_up_view_stays_put_and_counts_unread() -> None:
    node = FakeChatNode()
    node.load_history(make_history(300))
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        chat_log = app.chat_log
        await wait_until(lambda: shows(chat_log, "message number 300"), pilot=pilot)
        await pilot.press("pageup", "pageup")
        await wait_until(lambda: not chat_log.is_following, pilot=pilot)
        before = screen_lines(chat_log)
        scroll_y = chat_log.scroll_y

        node.receive("bob", "fresh news")
        node.receive("carol", "more news")
        unread = app.query_one("#unread", Static)
        await wait_until(lambda: unread.has_class("-visible"), pilot=pilot)
        assert "2 new messages" in str(unread.render())
        assert chat_log.scroll_y == scroll_y
        after = screen_lines(chat_log)  # the unread bar may take the bottom line
        assert after == before[: len(after)] and len(after) >= len(before) - 1

        await pilot.press("end")  # cursor already at the end of the empty input
        await wait_until(lambda: shows(chat_log, "more news"), pilot=pilot)
        assert chat_log.is_following
        await wait_until(lambda: not unread.has_class("-visible"), pilot=pilot)


async def test_scrolling_back_to_bottom_clears_unread() -> None:
    node = FakeChatNode()
    node.load_history(make_history(300))
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        chat_log = app.chat_log
        await pilot.press("pageup")
        await wait_until(lambda: not chat_log.is_following, pilot=pilot)
        node.receive("bob", "fresh news")
        await wait_until(lambda: chat_log.unread == 1, pilot=pilot)
        await pilot.press("pagedown", "pagedown")
        await wait_until(lambda: chat_log.unread == 0 and chat_log.is_following, pilot=pilot)


async def test_new_messages_follow_when_at_bottom() -> None:
    node = FakeChatNode()
    node.load_history(make_history(300))
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        node.receive("bob", "latest words")
        await wait_until(
            lambda: screen_lines(app.chat_log)[-1].endswith("latest words"), pilot=pilot
        )
        assert app.chat_log.unread == 0


async def test_stats_pane_follows_status_events() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        node.set_status(
            term=17,
            state="follower",
            leader="n2",
            voters=("n1", "n2", "n3"),
            learners=("n4",),
            snapshot_index=900,
            election_timeout_ms=456.0,
            counters={
                "requestvote_sent": 11,
                "requestvote_received": 12,
                "appendentries_sent": 13,
                "appendentries_received": 14,
                "proposals_forwarded": 15,
            },
        )
        table = app.query_one("#stats-table")
        await wait_until(lambda: "17" in widget_text(table), pilot=pilot)
        text = widget_text(table)
        for expected in (
            "follower",
            "3 voters, 1 learners",
            "900",
            "456 ms",
            "11 out, 12 in",
            "13 out, 14 in",
            "15",
        ):
            assert expected in text
        assert "term 17" in widget_text(app.query_one("#status-bar"))


async def test_rate_chart_samples_committed_messages() -> None:
    node = FakeChatNode()
    clock = ManualClock(TUI_CLOCK_START)
    app = make_app(node, clock)
    async with app.run_test(size=SIZE) as pilot:
        for number in range(6):
            node.receive("bob", f"m{number}")
        await wait_until(lambda: app.view._committed_since_sample == 6, pilot=pilot)
        clock.now += 2.0
        app.sample_rate()
        assert list(app.view._rates) == [3.0]
        await wait_until(
            lambda: "messages/s 3.0" in widget_text(app.query_one("#rate-label")), pilot=pilot
        )


async def test_members_pane_shows_role_link_and_rtt() -> None:
    node = FakeChatNode()
    app = make_app(node, show_members=True)
    async with app.run_test(size=SIZE) as pilot:
        node.set_members(
            [
                MemberInfo("n1", "alice", "voter", "self", None),
                MemberInfo("n2leader", "bob", "leader", "connected", 12.4),
                MemberInfo("n3", "carol", "learner", "disconnected", None),
            ]
        )
        pane = app.query_one("#members")
        await wait_until(lambda: "carol" in widget_text(pane), pilot=pilot)
        rows = widget_text(pane).splitlines()
        bob = next(row for row in rows if "bob" in row)
        assert "n2lead" in bob and "leader" in bob and " up " in bob and "12ms" in bob
        carol = next(row for row in rows if "carol" in row)
        assert "learner" in carol and " down" in carol
        assert rows.index(bob) < rows.index(carol)  # leader first


async def test_bell_on_mention_by_someone_else_only() -> None:
    node = FakeChatNode()
    app = make_app(node)
    bells = []
    async with app.run_test(size=SIZE) as pilot:
        app.bell = lambda: bells.append(1)  # type: ignore[method-assign]
        node.receive("bob", "hey Alice, look")
        await wait_until(lambda: shows(app.chat_log, "hey Alice"), pilot=pilot)
        assert bells == [1]
        assert app.chat_log.records[-1].mention
        node.receive("bob", "malice is not a mention")
        await type_line(pilot, "alice talking about alice")
        node.commit_next()
        await wait_until(lambda: not app.chat_log.pending, pilot=pilot)
        assert bells == [1]


async def test_no_bell_for_mentions_in_history() -> None:
    node = FakeChatNode()
    node.load_history(make_history(3))
    node.receive("bob", "alice said this before you opened the app")
    app = make_app(node)
    bells = []
    app.bell = lambda: bells.append(1)  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: shows(app.chat_log, "before you opened"), pilot=pilot)
        assert bells == []


async def test_a_history_with_times_out_of_range_and_invisible_nicks_is_shown() -> None:
    """What a snapshot from before the message time range may hold: the view opens, shows
    every message, and a later message still comes in (nothing raised, on open or after)."""
    node = FakeChatNode()
    node.load_history(
        [
            ChatMessageEvent(1, "m:1", "m", "mallory", "from the far future", (2**63 - 1) / 1000),
            ChatMessageEvent(2, "m:2", "m", "a\u3164", "from before time", -1e300),
            ChatMessageEvent(3, "m:3", "m", "mallory", "not a time at all", math.nan),
        ]
    )
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: shows(app.chat_log, "not a time at all"), pilot=pilot)
        assert shows(app.chat_log, "far future") and shows(app.chat_log, "before time")
        assert shows(app.chat_log, "January 2200") and shows(app.chat_log, "January 2000")
        assert shows(app.chat_log, "a\ufffd")  # the filler in the nick is shown, not hidden
        node.receive("bob", "still here", ts=math.inf)
        await wait_until(lambda: shows(app.chat_log, "still here"), pilot=pilot)


MARKUP_AND_ESCAPES = "[bold red]loud[/] \x1b[31mred\x1b[0m \x1b]0;pwned\x07 \u202eevil \x9b2J"


async def test_peer_markup_and_escapes_are_shown_literally() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=(160, 30)) as pilot:
        node.receive("[blink]mallory\x1b[5m", MARKUP_AND_ESCAPES)
        await wait_until(lambda: shows(app.chat_log, "loud"), pilot=pilot)
        record = app.chat_log.records[-1]
        strip = app.chat_log._render_record(record)[0]
        text = strip.text
        assert "[bold red]loud[/]" in text
        assert "\u241b[31mred\u241b[0m" in text  # ESC shown as the visible "␛"
        assert "\u241b]0;pwned\u2407" in text
        assert "\ufffdevil" in text and "\ufffd2J" in text
        assert "[blink]mall\u2026" in text  # nick column, cut to its width
        for segment in strip:
            assert not any(0 <= ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in segment.text)
            if "loud" in segment.text or "red" in segment.text:
                style = segment.style
                assert style is not None
                assert not style.bold and not style.blink and not style.reverse
                assert style.color is None or style.color == app.chat_log.rich_style.color


async def test_notices_are_shown() -> None:
    node = FakeChatNode()
    app = make_app(node, notices="all")
    async with app.run_test(size=SIZE) as pilot:
        node.publish(NoticeEvent("join", "erin joined", 1_700_000_000.0))
        node.publish(NoticeEvent("leader", "carol is the leader (term 5)", 1_700_000_000.0))
        await wait_until(lambda: shows(app.chat_log, "carol is the leader"), pilot=pilot)
        lines = screen_lines(app.chat_log)
        assert any("--> \u2502 erin joined" in line for line in lines)
        assert any("*** \u2502 carol is the leader (term 5)" in line for line in lines)


async def test_day_change_inserts_a_separator() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        node.receive("bob", "late night", ts=1_700_006_000.0)  # 2023-11-14 23:53 UTC
        node.receive("bob", "same night", ts=1_700_006_000.0 + 60)
        node.receive("bob", "early morning", ts=1_700_006_000.0 + 86_400)
        await wait_until(lambda: shows(app.chat_log, "early morning"), pilot=pilot)
        lines = [line for line in screen_lines(app.chat_log) if line]
        assert "Tuesday 14 November 2023" in lines[0]
        assert "late night" in lines[1] and "same night" in lines[2]
        assert "Wednesday 15 November 2023" in lines[3]
        assert "early morning" in lines[4]


async def test_long_message_wraps_and_rewraps_on_resize() -> None:
    node = FakeChatNode()
    app = make_app(node, show_stats=False)
    words = " ".join(f"word{number:02d}" for number in range(40))
    async with app.run_test(size=(80, 30)) as pilot:
        node.receive("bob", words)
        await wait_until(lambda: shows(app.chat_log, "word39"), pilot=pilot)

        def message_lines() -> list[str]:
            lines = screen_lines(app.chat_log)
            first = next(i for i, line in enumerate(lines) if "word00" in line)
            last = next(i for i, line in enumerate(lines) if "word39" in line)
            return lines[first : last + 1]

        narrow = message_lines()
        assert len(narrow) > 1
        assert " ".join(" ".join(line.split("\u2502", 1)[1].split()) for line in narrow) == words
        await pilot.resize_terminal(140, 30)
        await wait_until(lambda: len(message_lines()) < len(narrow), pilot=pilot)
        assert app.chat_log.total_lines == len(app.chat_log.records) - 1 + len(message_lines())


async def test_node_errors_are_shown_and_app_keeps_running() -> None:
    from raftchat.node.api import ErrorEvent

    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        node.publish(ErrorEvent("signaling server unreachable: retrying"))
        await wait_until(lambda: shows(app.chat_log, "signaling server unreachable"), pilot=pilot)
        await type_line(pilot, "still works")
        assert node.sent == [("still works", False)]


async def test_joining_with_100k_messages_renders_the_latest() -> None:
    node = FakeChatNode()
    node.load_history(make_history(100_000))
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(
            lambda: shows(app.chat_log, "message number 100000"), timeout=30, pilot=pilot
        )
        lines = screen_lines(app.chat_log)
        assert lines[-1].endswith("message number 100000")
        assert any("message number 99999" in line for line in lines)
        assert len(app.chat_log.records) >= 100_000
        # Typing and sending still works on top of the large scrollback.
        await pilot.press(*"still quick", "enter")
        await wait_until(lambda: shows(app.chat_log, "still quick"), pilot=pilot)
        # The oldest message is reachable.
        app.chat_log.scroll_home(animate=False, immediate=True)
        await wait_until(lambda: shows(app.chat_log, "message number 1 "), pilot=pilot)


async def test_status_bar_shows_signaling_channel_nick_and_leader() -> None:
    node = FakeChatNode(channel="raft-lab")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        node.set_members(
            [
                MemberInfo("n1", "alice", "voter", "self", None),
                MemberInfo("n2", "bob", "leader", "connected", 5.0),
            ]
        )
        node.set_status(signaling_state="reconnecting", leader="n2", term=9)
        bar = app.query_one("#status-bar")
        await wait_until(lambda: "reconnecting" in widget_text(bar), pilot=pilot)
        text = widget_text(bar)
        assert "#raft-lab" in text and "as alice" in text
        assert "leader bob" in text and "term 9" in text
        node.set_status(leader=None)
        await wait_until(lambda: "leader none" in widget_text(bar), pilot=pilot)


async def test_a_banner_above_the_input_says_why_messages_cannot_commit() -> None:
    node = FakeChatNode()
    node.set_status(voters=("n1", "n2"), state="follower", leader="n2")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        banner = app.query_one("#quorum-banner", Static)
        assert not banner.display, "no banner while commits are possible"
        await type_line(pilot, "anyone there?")
        node.lose_quorum([("n2", "bob", 6)], needed=2, reachable=1)
        await wait_until(lambda: banner.display, pilot=pilot, what="the quorum banner")
        text = " ".join(widget_text(banner).split())
        assert "no leader: waiting for bob \u2014 the channel needs 2 of 2 voters" in text
        assert "1 reachable (bob last heard 6 s ago)" in text
        assert "if bob is gone for good, type /forget bob" in text
        chat_input = app.query_one(ChatInput)
        assert banner.region.bottom <= chat_input.region.y, "just above the input"
        assert banner.region.height <= 2, "a line or two"
        # Styled as a warning by the stylesheet (app.tcss), not inline.
        warning = app.get_css_variables()
        assert banner.styles.background.hex == warning["warning-muted"].upper()[:7]
        assert banner.has_class("-visible") and not banner.styles.inline.get_rules()
        # The pending message stays pending; the banner follows the status.
        assert app.chat_log.pending
        node.lose_quorum([("n2", "[red]bob", None)], needed=2, reachable=1)
        await wait_until(
            lambda: "[red]bob never heard from" in " ".join(widget_text(banner).split()),
            pilot=pilot,
        )
        node.regain_quorum("n2")
        await wait_until(lambda: not banner.display, pilot=pilot, what="the banner gone")


class StuckLeaveNode(FakeChatNode):
    """A node whose leave() never finishes (e.g. the network is gone)."""

    async def leave(self) -> None:
        self.left = True
        await asyncio.Event().wait()


async def test_quit_does_not_hang_when_leaving_hangs() -> None:
    node = StuckLeaveNode()
    app = make_app(node, leave_timeout_s=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await wait_until(lambda: not app.is_running, pilot=pilot)
    assert node.left


class BrokenNode(FakeChatNode):
    """A node that fails unexpectedly (e.g. it is shutting down)."""

    def send_chat(self, text: str, action: bool = False) -> str:
        raise RuntimeError("node is stopped")


async def test_node_failure_on_send_is_an_inline_error() -> None:
    app = make_app(BrokenNode())
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "hello?")
        assert "node is stopped" in input_error(app)
        assert app.chat_input.value == "hello?"
        assert not app.chat_log.pending


async def test_ack_alone_marks_the_pending_message_committed() -> None:
    from raftchat.node.api import AckEvent

    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "acked only")
        message_id = app.chat_log.pending[0].message_id
        node.publish(AckEvent(message_id, 1))
        await wait_until(lambda: not app.chat_log.pending, pilot=pilot)
        assert shows(app.chat_log, "alice \u2713 acked only")


# --- /forget: a survivor carries on without a dead member ------------------------------


def two_members_one_gone() -> FakeChatNode:
    """alice's channel with bob, whose machine died: alice cannot commit."""
    node = FakeChatNode(node_id="n1", nick="alice")
    node.set_members(
        [
            MemberInfo("n1", "alice", "voter", "self", None),
            MemberInfo("n2", "bob", "voter", "disconnected", None),
        ]
    )
    node.lose_quorum([("n2", "bob", 12)], needed=2, reachable=1)
    return node


def log_text(app: RaftChatApp) -> str:
    """The chat view's text in one line: wrapped lines joined, the gutter left out."""
    return " ".join(" ".join(app.chat_log.visible_text()).replace("\u2502", " ").split())


async def test_forget_warns_first_and_carries_on_only_once_confirmed() -> None:
    node = two_members_one_gone()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        banner = app.query_one("#quorum-banner", Static)
        await wait_until(lambda: "type /forget bob" in " ".join(widget_text(banner).split()))
        await type_line(pilot, "/forget bob")
        await wait_until(lambda: "really gone" in log_text(app), pilot=pilot)
        text = log_text(app)
        assert "Only do this if bob's machine is really gone" in text
        assert "split histories and messages may be lost" in text
        assert "type /forget bob --yes" in text
        assert node.forget_calls == [(("bob",), False)]
        assert node.status().voters == ("n1", "n2") and banner.display, "nothing changed"
        assert app.chat_input.value == "" and not input_error(app)

        await type_line(pilot, "/forget bob --yes")
        await wait_until(
            lambda: "you carried on without bob (forgotten)" in log_text(app), pilot=pilot
        )
        await wait_until(lambda: not banner.display, pilot=pilot, what="the banner gone")
        assert node.forget_calls[-1] == (("bob",), True)
        assert node.status().voters == ("n1",)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("/forget alice", "You cannot forget yourself."),
        ("/forget zed --yes", "No member is called zed. The other voters are: bob."),
        ("/forget", "Empty /forget: type /forget NICK"),
        ("/forget bob --now", "Unknown option --now of /forget"),
    ],
)
async def test_forget_refusals_show_under_the_input_and_keep_the_line(line, error) -> None:
    node = two_members_one_gone()
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, line)
        assert input_error(app).startswith(error)
        assert app.chat_input.value == line
        assert node.status().voters == ("n1", "n2")


async def test_forget_is_refused_while_the_member_is_reachable() -> None:
    node = FakeChatNode(node_id="n1", nick="alice")
    node.set_members(
        [
            MemberInfo("n1", "alice", "voter", "self", None),
            MemberInfo("n2", "bob", "leader", "connected", 4.0),
        ]
    )
    node.set_status(voters=("n1", "n2"), state="follower", leader="n2")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "/forget bob --yes")
        assert "bob is reachable" in input_error(app)
        assert node.status().voters == ("n1", "n2")


def test_stats_pane_names_the_webrtc_engine() -> None:
    from dataclasses import replace

    from raftchat.tui.widgets.stats_pane import status_table

    def rows(status) -> dict[str, str]:
        labels, values = status_table(status).columns
        return {
            str(label): str(value)
            for label, value in zip(labels._cells, values._cells, strict=True)
        }

    status = FakeChatNode().status()
    assert "webrtc" not in rows(status)  # before the node started
    assert rows(replace(status, webrtc="wrtc"))["webrtc"] == "wrtc"
