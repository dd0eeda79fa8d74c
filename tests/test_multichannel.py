"""One process in two channels (``ProcessChannels``, as ``raftchat join red blue`` runs
them), next to node processes that are each in one of them: every message reaches exactly
its channel's members, the process holds one WebSocket to the server for both, and closing
one channel leaves the other chatting."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.nodes import Cluster
from support.waiting import wait_until

from raftchat.frontends.channels import ProcessChannels
from raftchat.frontends.launch import JoinOptions
from raftchat.net.signaling.server import RunningServer
from raftchat.node import Node

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TIMEOUT = 40.0


def texts_of(node: Node) -> list[str]:
    return [message.text for message in node.history()]


def is_voter(node: Node) -> bool:
    status = node.status()
    return node.node_id in status.voters and status.leader is not None


async def test_one_process_in_two_channels_over_one_websocket(
    tmp_path: Path, server: RunningServer
) -> None:
    red = Cluster(tmp_path / "red", server.url, channel="red")
    blue = Cluster(tmp_path / "blue", server.url, channel="blue")
    host = ProcessChannels(
        JoinOptions(
            channels=("red", "Blue"),
            server_url=server.url,
            nick="host",
            data_dir=tmp_path / "host",
            config_path=red.config_path,
        )
    )
    try:
        [ann] = await red.grow(1)
        [bob] = await blue.grow(1)
        in_red = await host.open("red")
        in_blue = await host.open("Blue")
        assert (in_red.channel, in_blue.channel) == ("red", "blue")
        assert in_red.node_id != in_blue.node_id, "a channel must not learn the other's id"
        await wait_until(lambda: is_voter(in_red), TIMEOUT, "the host a voter of red")
        await wait_until(lambda: is_voter(in_blue), TIMEOUT, "the host a voter of blue")

        metrics = server.server.metrics
        assert metrics.value("peers") == 4
        assert metrics.value("websockets") == 3, "the host shares one WebSocket"
        connection = host.connection(server.url)
        assert connection is not None and connection.sockets_opened == 1

        ann.send("ann in red")
        bob.send("bob in blue")
        in_red.send_chat("host in red")
        in_blue.send_chat("host in blue")
        await ann.wait_for(lambda n: {"ann in red", "host in red"} <= set(n.texts()), TIMEOUT)
        await bob.wait_for(lambda n: {"bob in blue", "host in blue"} <= set(n.texts()), TIMEOUT)
        await wait_until(
            lambda: {"ann in red", "host in red"} <= set(texts_of(in_red)), TIMEOUT, "red"
        )
        await wait_until(
            lambda: {"bob in blue", "host in blue"} <= set(texts_of(in_blue)), TIMEOUT, "blue"
        )
        # Each side's committed history is its channel's: nothing of the other leaked in.
        assert sorted(ann.texts()) == sorted(texts_of(in_red)) == ["ann in red", "host in red"]
        assert sorted(bob.texts()) == sorted(texts_of(in_blue)) == ["bob in blue", "host in blue"]

        await host.close("blue")
        assert host.channels == ("red",)
        await bob.wait_for(lambda n: in_blue.node_id not in n.members(), TIMEOUT, "host left")
        await wait_until(lambda: server.peers("blue") == {bob.node_id}, TIMEOUT, "blue: bob")
        assert server.peers("red") == {ann.node_id, in_red.node_id}
        assert metrics.value("websockets") == 3, "the host's socket stays for red"

        ann.send("red goes on")
        in_red.send_chat("host still in red")
        await ann.wait_for(lambda n: "host still in red" in n.texts(), TIMEOUT)
        await wait_until(lambda: "red goes on" in texts_of(in_red), TIMEOUT, "red goes on")
        assert "red goes on" not in bob.texts()
    finally:
        await host.shutdown()
        await red.close()
        await blue.close()
    assert connection.socket is None


async def test_a_channel_typed_in_upper_case_is_joined_in_lower_case_with_a_notice(
    tmp_path: Path, server: RunningServer
) -> None:
    red = Cluster(tmp_path / "red", server.url, channel="red")
    host = ProcessChannels(
        JoinOptions(
            channels=("MyRoom",),
            server_url=server.url,
            data_dir=tmp_path / "host",
            config_path=red.config_path,
        )
    )
    try:
        node = await host.open("MyRoom")
        assert node.channel == "myroom"
        notices = []
        queue = node.subscribe()
        while not queue.empty():
            notices.append(queue.get_nowait())
        assert any(
            getattr(event, "kind", None) == "info" and "'MyRoom' is channel 'myroom'" in event.text
            for event in notices
        ), notices
        assert (tmp_path / "host" / "myroom").is_dir()
    finally:
        await host.shutdown()


async def test_closing_leaves_only_that_channel_and_a_second_open_is_refused(
    tmp_path: Path, server: RunningServer
) -> None:
    from raftchat.frontends.channels import ChannelOpenError

    red = Cluster(tmp_path / "red", server.url, channel="red")
    host = ProcessChannels(
        JoinOptions(
            channels=("one",),
            server_url=server.url,
            data_dir=tmp_path / "host",
            config_path=red.config_path,
        )
    )
    try:
        await host.open("one")
        with pytest.raises(ChannelOpenError, match="channel one is open already"):
            await host.open("ONE")
        with pytest.raises(ChannelOpenError, match="invalid channel name"):
            await host.open("no spaces")
        await host.open("two")
        assert server.peers("one") and server.peers("two")
        await host.close("one")
        await wait_until(lambda: not server.peers("one"), TIMEOUT, "left channel one")
        assert len(server.peers("two")) == 1
        assert server.server.metrics.value("websockets") == 1
    finally:
        await host.shutdown()


async def test_a_private_channel_opened_from_the_ui_is_never_prompted_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raftchat.frontends.channels import ChannelOpenError

    monkeypatch.delenv("RAFTCHAT_PASSPHRASE", raising=False)
    monkeypatch.setattr("getpass.getpass", lambda prompt: pytest.fail(f"prompted: {prompt}"))
    config = tmp_path / "config.toml"
    config.write_text("")
    host = ProcessChannels(
        JoinOptions(
            channels=(), ask_passphrase=True, data_dir=tmp_path / "host", config_path=config
        )
    )
    try:
        with pytest.raises(ChannelOpenError) as info:
            await host.open("secret")
        assert "cannot ask for the passphrase of channel secret here" in str(info.value)
        assert "RAFTCHAT_PASSPHRASE" in str(info.value)
        assert host.channels == ()
    finally:
        await host.shutdown()
