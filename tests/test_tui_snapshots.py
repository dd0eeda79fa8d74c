"""What the chat screen looks like (SVG snapshots; update with --snapshot-update)."""

from __future__ import annotations

from fake_node import demo_app, play_demo_traffic
from support.clocks import ManualClock
from textual.pilot import Pilot

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
