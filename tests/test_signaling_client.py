"""Signaling client against a real server on loopback: presence, relay, reconnect, errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMessage, WSMsgType, web
from signaling_utils import RawPeer, RecordingListener, new_peer_id
from support.ports import free_port
from support.waiting import wait_until

from raftchat.net.identity import NodeIdentity, signaling_hello_message, verify
from raftchat.net.signaling.client import (
    ClientConfig,
    IdentityRefusedError,
    InvalidChannelError,
    ServerRejectedError,
    ServerUnreachableError,
    SignalingClient,
    server_is_up,
    shared_websocket_url,
    websocket_url,
)
from raftchat.net.signaling.server import RunningServer, ServerConfig, start_server

FAST = ClientConfig(
    connect_timeout=2.0,
    first_connect_attempts=2,
    first_connect_retry_delay=0.05,
    backoff_initial=0.05,
    backoff_max=0.4,
)


def make_client(
    url: str, channel: str = "room", identity: NodeIdentity | None = None
) -> tuple[SignalingClient, RecordingListener]:
    listener = RecordingListener()
    client = SignalingClient(url, channel, identity or NodeIdentity.generate(), listener, FAST)
    return client, listener


async def test_two_clients_see_each_other_and_exchange_signals(server: RunningServer) -> None:
    alice, alice_events = make_client(server.url)
    bob, bob_events = make_client(server.url)
    await alice.start()
    assert alice.state == "connected"
    assert alice_events.states == ["connecting", "connected"]
    assert alice_events.peer_sets == [frozenset()]
    await bob.start()
    assert bob.peers == frozenset({alice.peer_id})
    await alice_events.wait_for(lambda: alice.peers == {bob.peer_id}, what="alice sees bob")
    assert alice_events.peers == frozenset({bob.peer_id})

    assert await alice.send_signal(bob.peer_id, {"type": "offer", "sdp": "v=0"})
    await bob_events.wait_for(lambda: bob_events.signals, what="offer at bob")
    assert bob_events.signals == [(alice.peer_id, {"type": "offer", "sdp": "v=0"})]
    assert await bob.send_signal(alice.peer_id, {"type": "answer"})
    await alice_events.wait_for(lambda: alice_events.signals, what="answer at alice")
    assert alice_events.signals == [(bob.peer_id, {"type": "answer"})]

    await bob.close()
    await alice_events.wait_for(lambda: alice.peers == frozenset(), what="bob gone")
    assert bob_events.states[-1] == "closed"
    assert await bob.send_signal(alice.peer_id, {}) is False
    await alice.close()


async def test_reconnects_after_server_restart_and_resyncs_presence() -> None:
    port = free_port()
    server = await start_server("127.0.0.1", port, ServerConfig())
    alice, alice_events = make_client(server.url)
    bob, bob_events = make_client(server.url)
    dave, _ = make_client(server.url)
    try:
        for client in (alice, bob, dave):
            await client.start()
        everyone = {alice.peer_id, bob.peer_id, dave.peer_id}
        await alice_events.wait_for(lambda: alice.peers == everyone - {alice.peer_id})

        await server.close()
        await dave.close()  # leaves while the server is away: only a fresh list can show it
        for client, events in ((alice, alice_events), (bob, bob_events)):
            await events.wait_for(lambda e=events: "reconnecting" in e.states, what="reconnecting")
            # The last known peers are kept while the server is away; sends just fail.
            assert client.peers == everyone - {client.peer_id}
            assert await client.send_signal(dave.peer_id, {}) is False
        # Let each client fail a couple of attempts against the closed port first.
        await wait_until(
            lambda: alice.failed_reconnects >= 2 and bob.failed_reconnects >= 2,
            what="failed reconnect attempts",
        )
        assert alice.state == bob.state == "reconnecting"

        server = await start_server("127.0.0.1", port, ServerConfig())
        for client, events, other in ((alice, alice_events, bob), (bob, bob_events, alice)):
            await events.wait_for(
                lambda c=client, o=other: c.state == "connected" and c.peers == {o.peer_id},
                what="reconnected with fresh presence",
            )
            assert events.states == ["connecting", "connected", "reconnecting", "connected"]
            assert events.peers == frozenset({other.peer_id})
        assert await alice.send_signal(bob.peer_id, {"after": "restart"})
        await bob_events.wait_for(lambda: bob_events.signals, what="signal after restart")
        assert bob_events.signals == [(alice.peer_id, {"after": "restart"})]
    finally:
        for client in (alice, bob, dave):
            await client.close()
        await server.close()


async def test_the_hello_signs_the_servers_challenge(server: RunningServer) -> None:
    hellos: list[tuple[bytes, dict[str, Any]]] = []

    async def server_side(ws: RoomSocket) -> None:
        nonce = random.randbytes(16)
        await ws.send_json({"type": "challenge", "nonce": nonce.hex()})
        hello = json.loads((await ws.receive()).data)
        hellos.append((nonce, hello))
        me = hello["peer_id"]
        await ws.send_json({"type": "welcome", "channel": "room", "peer_id": me, "peers": []})
        await ws.receive()  # until the client leaves

    identity = NodeIdentity.generate()
    async with fake_server(server_side) as url:
        client, _ = make_client(url, identity=identity)
        await client.start()
        await client.close()
    [(nonce, hello)] = hellos
    assert hello["peer_id"] == identity.node_id
    assert bytes.fromhex(hello["public_key"]) == identity.public_key
    message = signaling_hello_message(nonce, "room", identity.node_id)
    assert verify(identity.public_key, message, bytes.fromhex(hello["signature"]))


async def test_a_refused_proof_of_id_is_not_retried() -> None:
    async def server_side(ws: RoomSocket) -> None:
        await ws.send_json({"type": "challenge", "nonce": "00" * 16})
        await ws.receive()
        error = {"type": "error", "code": "bad_signature", "message": "no", "fatal": True}
        await ws.send_json(error)
        await ws.close()

    async with fake_server(server_side) as url:
        client, events = make_client(url)
        with pytest.raises(IdentityRefusedError, match="refused our proof of id") as info:
            await client.start()
        assert info.value.code == "bad_signature"
        assert events.states[-1] == "closed"


async def test_a_server_without_challenge_is_reported_as_incompatible() -> None:
    async def old_server(ws: RoomSocket) -> None:
        await ws.receive()  # waits for a hello, as servers of earlier releases did

    config = ClientConfig(connect_timeout=0.3, first_connect_attempts=1)
    async with fake_server(old_server) as url:
        client = SignalingClient(url, "room", NodeIdentity.generate(), RecordingListener(), config)
        with pytest.raises(ServerUnreachableError, match="both need a compatible raftchat"):
            await client.start()


async def test_unreachable_server_error_is_clear() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client, events = make_client(url)
    with pytest.raises(ServerUnreachableError, match="unreachable after 2 attempts") as info:
        await client.start()
    assert url in str(info.value)
    assert "raftchat serve" in str(info.value)
    assert events.states == ["connecting", "closed"]


async def test_channel_full_raises_server_rejected() -> None:
    server = await start_server("127.0.0.1", 0, ServerConfig(max_peers_per_channel=1))
    try:
        first, _ = make_client(server.url)
        await first.start()
        second, _ = make_client(server.url)
        with pytest.raises(ServerRejectedError, match="maximum of 1 peers") as info:
            await second.start()
        assert info.value.code == "channel_full"
        await first.close()
    finally:
        await server.close()


def test_invalid_channel_name_is_refused_before_connecting() -> None:
    with pytest.raises(InvalidChannelError, match="invalid channel name 'bad name'"):
        make_client("http://127.0.0.1:9", channel="bad name")
    with pytest.raises(ValueError, match="must look like http"):
        make_client("127.0.0.1:8765")


def test_websocket_url_is_derived_from_http_url() -> None:
    assert websocket_url("http://127.0.0.1:8765", "room") == "ws://127.0.0.1:8765/channels/room/ws"
    assert websocket_url("https://example.org/sig/", "a") == "wss://example.org/sig/channels/a/ws"
    assert shared_websocket_url("http://127.0.0.1:8765") == "ws://127.0.0.1:8765/ws"
    assert shared_websocket_url("https://example.org/sig/") == "wss://example.org/sig/ws"


async def test_replaced_client_goes_to_closed(server: RunningServer) -> None:
    identity = NodeIdentity.generate()
    old, old_events = make_client(server.url, identity=identity)
    await old.start()
    new, _ = make_client(server.url, identity=identity)
    await new.start()
    await old_events.wait_for(lambda: old.state == "closed", what="old client closed")
    assert new.state == "connected"
    await new.close()
    await old.close()


async def test_listener_errors_do_not_stop_the_client(server: RunningServer) -> None:
    class Exploding(RecordingListener):
        def on_peers(self, peers: frozenset[str]) -> None:
            super().on_peers(peers)
            raise RuntimeError("listener bug")

    listener = Exploding()
    alice = SignalingClient(server.url, "room", NodeIdentity.generate(), listener, FAST)
    await alice.start()
    bob, _ = make_client(server.url)
    await bob.start()
    await listener.wait_for(lambda: listener.peers == {bob.peer_id}, what="alice sees bob")
    assert await bob.send_signal(alice.peer_id, {"still": "working"})
    await listener.wait_for(lambda: listener.signals, what="signal after listener error")
    await alice.close()
    await bob.close()


async def test_oversized_payload_is_refused_locally(server: RunningServer) -> None:
    client, _ = make_client(server.url)
    await client.start()
    with pytest.raises(ValueError, match="too large"):
        await client.send_signal(new_peer_id(), {"sdp": "x" * FAST.max_frame_bytes})
    with pytest.raises(TypeError):
        await client.send_signal(new_peer_id(), ["not", "a", "dict"])  # type: ignore[arg-type]
    await client.close()


async def test_server_is_up(server: RunningServer) -> None:
    assert await server_is_up(server.url, timeout=2)
    assert not await server_is_up(f"http://127.0.0.1:{free_port()}", timeout=2)


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    config = ClientConfig(
        backoff_initial=1, backoff_multiplier=2, backoff_max=8, backoff_jitter=0.5
    )
    delays = [config.backoff_delay(attempt, rng) for attempt in range(6)]
    caps = [1, 2, 4, 8, 8, 8]
    for delay, cap in zip(delays, caps, strict=True):
        assert cap * 0.5 <= delay <= cap


# ------------------------------------------------------------------ role hints


async def test_set_role_before_and_after_connecting(server: RunningServer) -> None:
    alice, _ = make_client(server.url)
    with pytest.raises(ValueError, match="invalid role 'king'"):
        alice.set_role("king")
    assert alice.role is None
    alice.set_role("voter")
    await alice.start()
    bob, bob_events = make_client(server.url)
    await bob.start()
    assert bob.peer_roles == {alice.peer_id: "voter"}
    assert alice.peer_roles == {}

    calls = len(bob_events.peer_sets)
    alice.set_role("learner")
    await bob_events.wait_for(
        lambda: bob.peer_roles == {alice.peer_id: "learner"}, what="bob sees the new role"
    )
    assert bob_events.peer_sets[calls:] == [frozenset({alice.peer_id})]  # told once, same set
    with pytest.raises(ValueError, match="invalid role 'Voter'"):
        alice.set_role("Voter")
    assert alice.role == "learner"
    await alice.close()
    await bob.close()


async def test_peer_roles_follow_welcome_peer_role_and_peer_left(server: RunningServer) -> None:
    voter, _ = await RawPeer.join(server.url, "room", role="voter")
    quiet, _ = await RawPeer.join(server.url, "room")
    client, events = make_client(server.url)
    await client.start()
    assert client.peer_roles == {voter.peer_id: "voter"}
    assert events.peer_sets == [frozenset({voter.peer_id, quiet.peer_id})]
    snapshot = client.peer_roles

    await quiet.set_role("learner")
    await events.wait_for(lambda: len(events.peer_sets) == 2, what="on_peers after peer_role")
    assert events.peers == {voter.peer_id, quiet.peer_id}
    assert client.peer_roles == {voter.peer_id: "voter", quiet.peer_id: "learner"}
    assert snapshot == {voter.peer_id: "voter"}  # an earlier read does not change under us
    with pytest.raises(TypeError):
        client.peer_roles[quiet.peer_id] = "voter"  # type: ignore[index]

    newcomer, _ = await RawPeer.join(server.url, "room", role="none")
    await events.wait_for(lambda: newcomer.peer_id in client.peer_roles, what="newcomer's role")
    assert client.peer_roles[newcomer.peer_id] == "none"
    await voter.close()
    await events.wait_for(lambda: voter.peer_id not in client.peers, what="voter gone")
    assert client.peer_roles == {quiet.peer_id: "learner", newcomer.peer_id: "none"}
    for peer in (quiet, newcomer):
        await peer.close()
    await client.close()


async def test_role_survives_reconnect_and_changes_while_away_are_sent() -> None:
    port = free_port()
    server = await start_server("127.0.0.1", port, ServerConfig())
    client, events = make_client(server.url)
    try:
        client.set_role("none")
        await client.start()
        first, welcome = await RawPeer.join(server.url, "room")
        assert welcome["roles"] == {client.peer_id: "none"}
        await first.close()
        await server.close()
        await events.wait_for(lambda: client.state == "reconnecting", what="server gone")
        client.set_role("voter")  # while away: nothing to send it on, the next hello has it

        server = await start_server("127.0.0.1", port, ServerConfig())
        await events.wait_for(lambda: client.state == "connected", what="reconnected")
        watcher, welcome = await RawPeer.join(server.url, "room")
        assert welcome["roles"] == {client.peer_id: "voter"}
        client.set_role("learner")
        assert await watcher.recv() == {
            "type": "peer_role",
            "peer_id": client.peer_id,
            "role": "learner",
        }
        await watcher.close()
    finally:
        await client.close()
        await server.close()


class RoomSocket:
    """The session in channel ``room`` of a shared WebSocket, for a fake server written
    as if the socket were the channel's own: frames it sends are tagged, frames it
    receives untagged, and the client's ``open`` is taken care of."""

    def __init__(self, ws: RoomSocket) -> None:
        self.ws = ws

    async def send_json(self, frame: dict[str, Any]) -> None:
        await self.ws.send_json({"channel": "room", **frame})

    async def receive(self) -> WSMessage:
        while True:
            msg = await self.ws.receive()
            if msg.type != WSMsgType.TEXT:
                return msg
            frame = json.loads(msg.data)
            if frame.get("type") == "open":
                continue
            if frame.pop("channel", "room") != "room":
                continue
            return WSMessage(msg.type, json.dumps(frame), msg.extra)

    async def close(self) -> None:
        await self.ws.close()


WsHandler = Callable[[RoomSocket], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_server(handler: WsHandler) -> AsyncIterator[str]:
    """A loopback server whose shared socket runs ``handler`` on each WebSocket's session
    in channel ``room``."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await handler(RoomSocket(ws))
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_role_set_while_joining_is_sent_after_welcome() -> None:
    hello_seen, role_set = asyncio.Event(), asyncio.Event()
    received: list[dict[str, Any]] = []

    async def server(ws: RoomSocket) -> None:
        await ws.send_json({"type": "challenge", "nonce": "00" * 16})
        hello = json.loads((await ws.receive()).data)
        received.append(hello)
        hello_seen.set()
        await role_set.wait()
        me = hello["peer_id"]
        await ws.send_json({"type": "welcome", "channel": "room", "peer_id": me, "peers": []})
        received.append(json.loads((await ws.receive()).data))
        await ws.receive()  # until the client leaves

    async with fake_server(server) as url:
        client, _ = make_client(url)
        client.set_role("none")
        start = asyncio.create_task(client.start())
        await asyncio.wait_for(hello_seen.wait(), 5)
        client.set_role("voter")  # the hello already went out with "none"
        role_set.set()
        await start
        await wait_until(lambda: len(received) == 2, what="the role frame")
        assert received[0]["role"] == "none"
        assert received[1] == {"type": "role", "role": "voter"}
        await client.close()


async def test_invalid_role_hints_from_the_server_are_dropped() -> None:
    """A lying server's bad hints cost only those hints, never the connection."""
    good, bad, unknown = new_peer_id(), new_peer_id(), new_peer_id()
    frames = [
        {"type": "peer_role", "peer_id": good, "role": "emperor"},
        {"type": "peer_role", "peer_id": unknown, "role": "voter"},  # not present
        {"type": "peer_joined", "peer_id": unknown, "role": "king"},
        {"type": "peer_role", "peer_id": bad, "role": "learner"},  # the last one: a marker
    ]

    welcome_checked = asyncio.Event()

    async def lying_server(ws: RoomSocket) -> None:
        await ws.send_json({"type": "challenge", "nonce": "00" * 16})
        me = json.loads((await ws.receive()).data)["peer_id"]
        roles = {good: "voter", bad: "chief", me: "voter", "short": "voter"}
        welcome = {"type": "welcome", "channel": "room", "peer_id": me, "peers": [good, bad]}
        await ws.send_json({**welcome, "roles": roles})
        await welcome_checked.wait()
        for frame in frames:
            await ws.send_json(frame)
        await ws.receive()  # until the client leaves

    async with fake_server(lying_server) as url:
        client, events = make_client(url)
        await client.start()
        assert client.peer_roles == {good: "voter"}
        welcome_checked.set()
        await events.wait_for(lambda: bad in client.peer_roles, what="the marker hint")
        assert client.state == "connected"
        assert client.peers == {good, bad, unknown}
        assert client.peer_roles == {good: "voter", bad: "learner"}
        await client.close()
