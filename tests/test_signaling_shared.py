"""A shared WebSocket (``/ws``) carrying sessions in several channels: each session with
its own challenge, hello and errors; limits per session, per socket and per address; the
client's sessions over one socket, rejoining together after the server comes back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from signaling_utils import (
    FRAME_TIMEOUT,
    RawPeer,
    RecordingListener,
    SharedSocket,
    get_metrics,
    signed_hello,
)
from support.ports import free_port
from support.waiting import wait_until

from raftchat.net.identity import NodeIdentity
from raftchat.net.signaling.client import ClientConfig, SignalingConnection
from raftchat.net.signaling.server import RunningServer, ServerConfig, start_server

FAST = ClientConfig(
    connect_timeout=2.0,
    first_connect_attempts=2,
    first_connect_retry_delay=0.05,
    backoff_initial=0.05,
    backoff_max=0.4,
)


@pytest.fixture
async def shared(server: RunningServer) -> AsyncIterator[SharedSocket]:
    socket = await SharedSocket.connect(server.url)
    try:
        yield socket
    finally:
        await socket.close()


async def test_sessions_in_two_channels_share_one_socket(
    server: RunningServer, shared: SharedSocket
) -> None:
    red_peer, _ = await RawPeer.join(server.url, "red")
    blue_peer, _ = await RawPeer.join(server.url, "blue")
    try:
        red_welcome = await shared.join("red", role="voter")
        blue_welcome = await shared.join("blue")
        assert red_welcome["peers"] == [red_peer.peer_id]
        assert blue_welcome["peers"] == [blue_peer.peer_id]
        assert shared.nonces["red"] != shared.nonces["blue"], "a challenge per session"
        assert shared.peer_id("red") != shared.peer_id("blue")
        assert await red_peer.recv() == {
            "type": "peer_joined",
            "peer_id": shared.peer_id("red"),
            "role": "voter",
        }
        assert await blue_peer.recv() == {"type": "peer_joined", "peer_id": shared.peer_id("blue")}

        # Signals cross between a channel's own socket and a session, tagged on the latter.
        await red_peer.signal(shared.peer_id("red"), {"sdp": "to red session"})
        assert await shared.recv() == {
            "channel": "red",
            "type": "signal",
            "from": red_peer.peer_id,
            "payload": {"sdp": "to red session"},
        }
        await shared.signal("blue", blue_peer.peer_id, {"sdp": "from blue session"})
        assert await blue_peer.recv() == {
            "type": "signal",
            "from": shared.peer_id("blue"),
            "payload": {"sdp": "from blue session"},
        }
        # A session speaks only in its channel: the red peer is nobody in blue.
        await shared.signal("blue", red_peer.peer_id, {})
        frame = await shared.expect_error("unknown_peer", "blue")
        assert frame["fatal"] is False

        metrics = await get_metrics(server.url)
        assert metrics["raftchat_signaling_websockets"] == 3
        assert metrics["raftchat_signaling_shared_websockets"] == 1
        assert metrics["raftchat_signaling_sessions"] == 4
        assert metrics["raftchat_signaling_peers"] == 4

        await shared.leave("blue")
        assert await blue_peer.recv() == {"type": "peer_left", "peer_id": shared.peer_id("blue")}
        assert server.peers("blue") == {blue_peer.peer_id}
        await red_peer.signal(shared.peer_id("red"), {"still": "here"})
        assert (await shared.recv())["payload"] == {"still": "here"}
    finally:
        await red_peer.close()
        await blue_peer.close()


async def test_a_bad_hello_in_one_channel_ends_only_that_session(
    server: RunningServer, shared: SharedSocket
) -> None:
    await shared.join("red")
    nonce = await shared.open("blue")
    thief = NodeIdentity.generate()
    # Signed over the red session's nonce: no good for blue.
    await shared.send("blue", signed_hello(thief, shared.nonces["red"], "blue"))
    frame = await shared.expect_error("bad_signature", "blue")
    assert frame["fatal"] is True
    assert server.peers("blue") == set()
    # The red session is untouched; blue's frames now find no session.
    await shared.send("blue", {"type": "keepalive"})
    await shared.expect_error("no_session", "blue")
    watcher, _ = await RawPeer.join(server.url, "red")
    try:
        assert await shared.recv() == {
            "channel": "red",
            "type": "peer_joined",
            "peer_id": watcher.peer_id,
        }
        # And blue may be opened again, with a fresh challenge.
        welcome = await shared.join("blue", thief)
        assert welcome["peer_id"] == thief.node_id
        assert shared.nonces["blue"] != nonce
    finally:
        await watcher.close()


async def test_broken_frames_get_errors_naming_their_channel(
    server: RunningServer, shared: SharedSocket
) -> None:
    await shared.join("red")
    await shared.send("red", {"type": "dance"})
    frame = await shared.expect_error("unknown_type", "red")
    assert frame["fatal"] is False
    await shared.send(None, {"type": "signal", "to": "x" * 32, "payload": {}})
    await shared.expect_error("bad_field", None)
    await shared.send_json({"channel": "Red", "type": "keepalive"})
    frame = await shared.expect_error("bad_field", None)
    assert "lower case" in frame["message"]
    await shared.send("red", {"type": "open"})
    await shared.expect_error("already_joined", "red")
    await shared.send("red", signed_hello(NodeIdentity.generate(), shared.nonces["red"], "red"))
    await shared.expect_error("already_joined", "red")
    await shared.send(None, {"type": "keepalive"})
    await shared.send("red", {"type": "role", "role": "learner"})
    # The session is still there: a peer joining sees it with its role.
    watcher, welcome = await RawPeer.join(server.url, "red")
    await watcher.close()
    assert welcome["roles"] == {shared.peer_id("red"): "learner"}


async def test_sessions_per_socket_and_per_address_are_limited() -> None:
    config = ServerConfig(max_sessions_per_connection=2, max_sessions_per_address=3)
    server = await start_server("127.0.0.1", 0, config)
    first = await SharedSocket.connect(server.url)
    second = await SharedSocket.connect(server.url)
    try:
        await first.join("a")
        await first.join("b")
        await first.send("c", {"type": "open"})
        frame = await first.expect_error("too_many_sessions", "c")
        assert frame["fatal"] is True
        await second.join("c")
        # Three peers from this address already: a fourth session, on any socket, is one
        # too many, and only that session is refused.
        nonce = await second.open("d")
        await second.send("d", signed_hello(NodeIdentity.generate(), nonce, "d"))
        frame = await second.expect_error("too_many_sessions_from_address", "d")
        assert frame["fatal"] is True
        assert server.peers("c") == {second.peer_id("c")}
        await first.leave("b")
        await second.join("d")  # a place is free again
        metrics = server.server.metrics
        assert metrics.value("errors_total", "too_many_sessions") == 1
        assert metrics.value("errors_total", "too_many_sessions_from_address") == 1
    finally:
        await first.close()
        await second.close()
        await server.close()


async def test_a_flooding_session_is_ended_and_the_others_stay() -> None:
    config = ServerConfig(
        messages_per_second=1, burst_messages=5, max_rate_violations=2, exempt_addresses=()
    )
    server = await start_server("127.0.0.1", 0, config)
    shared = await SharedSocket.connect(server.url)
    try:
        await shared.join("calm")
        await shared.join("loud")
        for _ in range(12):
            await shared.send("loud", {"type": "keepalive"})
        frames = [await shared.recv() for _ in range(3)]
        assert [frame["code"] for frame in frames] == ["rate_limited"] * 2 + ["flooding"]
        assert all(frame["channel"] == "loud" for frame in frames)
        assert frames[-1]["fatal"] is True
        await wait_until(lambda: not server.peers("loud"), FRAME_TIMEOUT, "loud ended")
        assert server.peers("calm") == {shared.peer_id("calm")}
        # The calm session has a budget of its own.
        await shared.send("calm", {"type": "role", "role": "voter"})
        watcher, welcome = await RawPeer.join(server.url, "calm")
        await watcher.close()
        assert welcome["roles"] == {shared.peer_id("calm"): "voter"}
    finally:
        await shared.close()
        await server.close()


async def test_a_session_that_never_says_hello_times_out_alone() -> None:
    server = await start_server("127.0.0.1", 0, ServerConfig.one_machine(hello_timeout=0.3))
    shared = await SharedSocket.connect(server.url)
    try:
        await shared.join("talker")
        await shared.open("mute")
        frame = await shared.expect_error("hello_timeout", "mute")
        assert frame["fatal"] is True
        await shared.send("talker", {"type": "keepalive"})
        assert server.peers("talker") == {shared.peer_id("talker")}
        await shared.leave("talker")
        # With no session joined any more, the socket itself has hello_timeout to join one.
        frame = await shared.expect_error("hello_timeout", None)
        assert frame["fatal"] is True
    finally:
        await shared.close()
        await server.close()


# ------------------------------------------------------------------ the client


def session_in(
    connection: SignalingConnection, channel: str
) -> tuple[object, RecordingListener, NodeIdentity]:
    listener = RecordingListener()
    identity = NodeIdentity.generate()
    return connection.session(channel, identity, listener), listener, identity


async def test_client_sessions_share_a_socket_and_rejoin_together_after_a_restart() -> None:
    port = free_port()
    server = await start_server("127.0.0.1", port, ServerConfig.one_machine())
    connection = SignalingConnection(server.url, FAST)
    red, red_events, _ = session_in(connection, "red")
    blue, blue_events, _ = session_in(connection, "blue")
    try:
        await red.start()
        await blue.start()
        assert connection.sockets_opened == 1
        assert server.server.metrics.value("websockets") == 1
        assert server.peers("red") == {red.peer_id} and server.peers("blue") == {blue.peer_id}

        await server.close()
        for events in (red_events, blue_events):
            await events.wait_for(lambda e=events: "reconnecting" in e.states, what="lost")
        server = await start_server("127.0.0.1", port, ServerConfig.one_machine())
        for session, events in ((red, red_events), (blue, blue_events)):
            await events.wait_for(
                lambda s=session: s.state == "connected", what="rejoined after the restart"
            )
            assert events.states == ["connecting", "connected", "reconnecting", "connected"]
        assert server.peers("red") == {red.peer_id} and server.peers("blue") == {blue.peer_id}
        assert server.server.metrics.value("websockets") == 1, "both sessions on one socket"
        assert connection.sockets_opened == 2

        # Closing one session leaves the other on the socket.
        await blue.close()
        await wait_until(lambda: not server.peers("blue"), FRAME_TIMEOUT, "blue left")
        assert red.state == "connected" and server.peers("red") == {red.peer_id}
        peer, _ = await RawPeer.join(server.url, "red")
        try:
            await red_events.wait_for(lambda: red.peers == {peer.peer_id}, what="red sees peer")
            assert await red.send_signal(peer.peer_id, {"sdp": "still here"})
            assert (await peer.recv())["payload"] == {"sdp": "still here"}
        finally:
            await peer.close()
        await red.close()
        assert connection.socket is None, "the last session closed the socket"
    finally:
        await red.close()
        await blue.close()
        await server.close()


async def test_a_session_the_server_replaces_stops_and_the_other_stays(
    server: RunningServer,
) -> None:
    connection = SignalingConnection(server.url, FAST)
    red, red_events, red_identity = session_in(connection, "red")
    blue, _, _ = session_in(connection, "blue")
    try:
        await red.start()
        await blue.start()
        elsewhere, _ = await RawPeer.join(server.url, "red", red_identity)
        await red_events.wait_for(lambda: red.state == "closed", what="red replaced")
        assert blue.state == "connected"
        assert server.peers("blue") == {blue.peer_id}
        assert server.peers("red") == {elsewhere.peer_id}
        await elsewhere.close()
    finally:
        await red.close()
        await blue.close()
