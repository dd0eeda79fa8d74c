"""What the chat screen looks like (SVG snapshots; update with --snapshot-update)."""

from __future__ import annotations

from fake_node import demo_app, demo_side_channels, play_demo_traffic
from support.clocks import ManualClock
from textual.pilot import Pilot

from raftchat.node.api import NoticeEvent

SIZE = (110, 32)


async def type_pending_message(pilot: Pilot) -> None:
    """An own message that is not committed yet: shown dimmed with "…"."""
    pilot.app.chat_input.value = "sounds good, shipping it"
    await pilot.press("enter")
    pilot.app.chat_input.value = "/me is "
    await pilot.pause()


def test_chat_screen(snap_compare) -> None:
    app = demo_app(show_stats=False, show_members=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=type_pending_message)


def test_chat_with_stats_pane(snap_compare) -> None:
    clock = ManualClock()
    app = demo_app(clock, show_stats=True, show_members=False)

    async def traffic(pilot: Pilot) -> None:
        await play_demo_traffic(pilot, clock, rounds=10)
        await type_pending_message(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=traffic)


def test_chat_with_members_pane(snap_compare) -> None:
    app = demo_app(show_stats=False, show_members=True)
    assert snap_compare(app, terminal_size=SIZE, run_before=type_pending_message)


def test_chat_when_the_channel_cannot_commit(snap_compare) -> None:
    """A crashed voter: the message stays pending and a banner above the input says why."""
    app = demo_app(show_stats=False, show_members=False)

    async def lose_quorum(pilot: Pilot) -> None:
        await type_pending_message(pilot)
        pilot.app.node.lose_quorum(
            [("b7e210", "bob", 9), ("c04d5a", "carol", 14)], needed=2, reachable=1
        )
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=lose_quorum)


def test_chat_at_80x24_gives_the_chat_the_whole_width(snap_compare) -> None:
    app = demo_app(show_stats=True, show_members=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=type_pending_message)


def test_stats_at_80x24_take_the_chats_place(snap_compare) -> None:
    clock = ManualClock()
    app = demo_app(clock, show_stats=True, show_members=False)

    async def traffic_then_stats(pilot: Pilot) -> None:
        await play_demo_traffic(pilot, clock, rounds=10)
        await pilot.press("f2")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=traffic_then_stats)


def test_chat_at_200x50_with_both_panes(snap_compare) -> None:
    clock = ManualClock()
    app = demo_app(clock, show_stats=True, show_members=True)

    async def traffic(pilot: Pilot) -> None:
        await play_demo_traffic(pilot, clock, rounds=10)
        await type_pending_message(pilot)

    assert snap_compare(app, terminal_size=(200, 50), run_before=traffic)


def test_several_channels_with_unread_and_a_mention(snap_compare) -> None:
    ops, random = demo_side_channels()
    app = demo_app(show_stats=False, show_members=False, channels=[ops, random])

    async def activity(pilot: Pilot) -> None:
        ops.receive("frank", "alice: the witness moved, can you check?")
        random.receive("grace", "lunch?")
        random.receive("heidi", "yes")
        await pilot.pause()
        await type_pending_message(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=activity)


def test_a_burst_of_membership_notices_is_one_dim_line(snap_compare) -> None:
    app = demo_app(show_stats=False, show_members=False)

    async def burst(pilot: Pilot) -> None:
        node = pilot.app.node
        now = node.clock()
        node.publish(NoticeEvent("join", "frank joined as learner", now, member="f7a"))
        node.publish(NoticeEvent("info", "frank is now a voter", now + 1, member="f7a"))
        node.publish(
            NoticeEvent("leave", "dave was removed: not heard from for 31 s", now + 2, "d9a7b3")
        )
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=burst)
