"""Several channels in one window: a buffer each, the channel list, switching, /join and
/part through a channel host, and quitting leaves every channel."""

from __future__ import annotations

import asyncio

from fake_node import FakeChatNode
from support.waiting import wait_until
from test_tui_app import SIZE, input_error, make_app, shows, type_line, widget_text

from raftchat.frontends.channels import ChannelOpenError
from raftchat.node.api import ChatNode


class FakeHost:
    """Opens fake nodes; records what it was asked to open and close."""

    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.refuse = refuse or {}
        self.opened: dict[str, FakeChatNode] = {}
        self.closed: list[str] = []

    async def open(self, name: str) -> ChatNode:
        await asyncio.sleep(0)  # a real host awaits the network here
        if name in self.refuse:
            raise ChannelOpenError(self.refuse[name])
        node = FakeChatNode(node_id=f"n-{name}", channel=name)
        self.opened[name] = node
        return node

    async def close(self, channel: str) -> None:
        self.closed.append(channel)


def two_nodes() -> tuple[FakeChatNode, FakeChatNode]:
    return FakeChatNode(channel="lobby"), FakeChatNode(node_id="n2", channel="ops")


def channel_list(app) -> str:
    return widget_text(app.query_one("#channel-list"))


async def test_each_channel_has_its_own_buffer_and_the_list_counts_unread() -> None:
    lobby, ops = two_nodes()
    app = make_app([lobby, ops])
    async with app.run_test(size=SIZE) as pilot:
        assert app.node is lobby
        assert "1 #lobby" in channel_list(app) and "2 #ops" in channel_list(app)
        ops.receive("bob", "deploy is done")
        ops.receive("bob", "anyone there?")
        lobby.receive("carol", "hello lobby")
        await wait_until(lambda: "#ops 2" in channel_list(app), pilot=pilot)
        assert shows(app.chat_log, "hello lobby") and not shows(app.chat_log, "deploy")
        assert "!" not in channel_list(app)
        ops.receive("bob", "alice: please look at this")
        await wait_until(lambda: "#ops 3!" in channel_list(app), pilot=pilot)
        await pilot.press("alt+2")
        assert app.node is ops and shows(app.chat_log, "alice: please look at this")
        assert "#ops 3" not in channel_list(app) and "!" not in channel_list(app)
        assert "term" in widget_text(app.query_one("#status-bar"))
        assert "#ops" in widget_text(app.query_one("#status-bar"))


async def test_ctrl_n_and_ctrl_p_cycle_through_the_channels() -> None:
    nodes = [FakeChatNode(node_id=f"n{n}", channel=f"c{n}") for n in range(3)]
    app = make_app(nodes)
    async with app.run_test(size=SIZE) as pilot:
        seen = []
        for key in ("ctrl+n", "ctrl+n", "ctrl+n", "ctrl+p"):
            await pilot.press(key)
            seen.append(app.node.channel)
        assert seen == ["c1", "c2", "c0", "c2"]
        assert app.focused is app.chat_input, "typing goes to the channel shown"


async def test_messages_and_input_history_stay_in_their_channel() -> None:
    lobby, ops = two_nodes()
    app = make_app([lobby, ops])
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "for the lobby")
        await pilot.press("alt+2")
        await type_line(pilot, "for ops")
        assert lobby.sent == [("for the lobby", False)] and ops.sent == [("for ops", False)]
        await pilot.press("up")
        assert app.chat_input.value == "for ops"
        await pilot.press("up")
        assert app.chat_input.value == "for ops", "the lobby's lines are not recalled here"
        await pilot.press("alt+1")
        await pilot.press("up")
        assert app.chat_input.value == "for the lobby"


async def test_join_opens_a_buffer_through_the_host_and_part_closes_it() -> None:
    host = FakeHost()
    lobby = FakeChatNode(channel="lobby")
    app = make_app([lobby], host=host)
    async with app.run_test(size=SIZE) as pilot:
        assert not app.query_one("#channel-list").display, "no list for one channel"
        await type_line(pilot, "/join MyRoom")
        await wait_until(lambda: app.node.channel == "MyRoom", pilot=pilot)
        assert "2 #MyRoom" in channel_list(app)
        host.opened["MyRoom"].receive("bob", "welcome")
        await wait_until(lambda: shows(app.chat_log, "welcome"), pilot=pilot)
        await type_line(pilot, "/join lobby")  # open already: shown, not opened again
        assert app.node is lobby and list(host.opened) == ["MyRoom"]
        await pilot.press("alt+2")
        await type_line(pilot, "/part")
        await wait_until(lambda: len(app.views) == 1, pilot=pilot)
        assert host.closed == ["MyRoom"] and app.node is lobby and app.is_running
        assert not app.query_one("#channel-list").display


async def test_a_channel_that_cannot_be_opened_says_why() -> None:
    host = FakeHost(refuse={"bad": "the signaling server at 127.0.0.1:1 does not answer"})
    app = make_app([FakeChatNode()], host=host)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "/join bad")
        await wait_until(lambda: shows(app.chat_log, "does not answer"), pilot=pilot)
        assert len(app.views) == 1 and app.is_running


async def test_join_without_a_host_says_this_window_shows_one_channel() -> None:
    app = make_app(FakeChatNode())
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "/join other")
        assert "This window shows one channel" in input_error(app)


async def test_quitting_leaves_every_channel() -> None:
    lobby, ops = two_nodes()
    app = make_app([lobby, ops])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await wait_until(lambda: not app.is_running, pilot=pilot)
    assert lobby.left and ops.left


async def test_quitting_with_a_host_closes_every_channel_through_it() -> None:
    host = FakeHost()
    app = make_app([FakeChatNode(channel="lobby")], host=host)
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "/join ops")
        await wait_until(lambda: len(app.views) == 2, pilot=pilot)
        await type_line(pilot, "/quit")
        await wait_until(lambda: not app.is_running, pilot=pilot)
    assert sorted(host.closed) == ["lobby", "ops"]


async def test_leave_in_one_of_several_channels_parts_only_that_one() -> None:
    lobby, ops = two_nodes()
    app = make_app([lobby, ops])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("alt+2")
        await type_line(pilot, "/leave")
        await wait_until(lambda: len(app.views) == 1, pilot=pilot)
        assert ops.left and not lobby.left and app.is_running and app.node is lobby
