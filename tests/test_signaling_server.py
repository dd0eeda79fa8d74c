"""Signaling server: presence, relay, HTTP endpoints and every error path, on loopback."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signaling_utils import RawPeer, assert_server_serves, get_metrics, new_peer_id, signed_hello
from support.clocks import ManualClock
from support.waiting import wait_until

from raftchat.limits import PEER_ID_PATTERN
from raftchat.net.identity import NodeIdentity
from raftchat.net.signaling.connection import Connection, QueueBudget
from raftchat.net.signaling.protocol import (
    ERROR_HEADER,
    ROLES,
    ErrorCode,
    Hello,
    ProtocolError,
    RoleUpdate,
    SignalRequest,
    new_token,
    normalize_channel,
    parse_client_frame,
)
from raftchat.net.signaling.server import RunningServer, ServerConfig, start_server

HELLO_FIELDS = {
    "type": "hello",
    "peer_id": "a" * 32,
    "public_key": "0" * 64,
    "signature": "0" * 128,
}
"""A hello that parses (its signature would not verify)."""


async def start_with(config: ServerConfig, clock: ManualClock | None = None) -> RunningServer:
    if clock is None:
        return await start_server("127.0.0.1", 0, config)
    return await start_server("127.0.0.1", 0, config, clock=clock)


# ------------------------------------------------------------------ presence and relay


async def test_presence_join_and_leave_reach_every_peer(server: RunningServer) -> None:
    alice, welcome_a = await RawPeer.join(server.url, "room")
    assert welcome_a["peers"] == []
    assert welcome_a["peer_id"] == alice.peer_id
    assert welcome_a["channel"] == "room"
    bob, welcome_b = await RawPeer.join(server.url, "room")
    assert welcome_b["peers"] == [alice.peer_id]
    assert await alice.recv() == {"type": "peer_joined", "peer_id": bob.peer_id}
    carol, welcome_c = await RawPeer.join(server.url, "room")
    assert sorted(welcome_c["peers"]) == sorted([alice.peer_id, bob.peer_id])
    for peer in (alice, bob):
        assert await peer.recv() == {"type": "peer_joined", "peer_id": carol.peer_id}

    await carol.close()
    for peer in (alice, bob):
        assert await peer.recv() == {"type": "peer_left", "peer_id": carol.peer_id}
    await bob.close()
    assert await alice.recv() == {"type": "peer_left", "peer_id": bob.peer_id}
    await alice.close()


async def test_channels_are_separate_and_names_case_insensitive(server: RunningServer) -> None:
    upper, welcome = await RawPeer.join(server.url, "Lobby")
    assert welcome["channel"] == "lobby"
    lower, welcome = await RawPeer.join(server.url, "lobby")
    assert welcome["peers"] == [upper.peer_id]
    other, welcome = await RawPeer.join(server.url, "elsewhere")
    assert welcome["peers"] == []
    # A signal into another channel is refused as an unknown peer.
    await other.signal(upper.peer_id, {"sdp": "x"})
    await other.expect_error("unknown_peer")
    for peer in (upper, lower, other):
        await peer.close()
    await assert_server_serves(server.url)


async def test_signal_is_relayed_with_stamped_sender(server: RunningServer) -> None:
    alice, _ = await RawPeer.join(server.url, "relay")
    bob, _ = await RawPeer.join(server.url, "relay")
    await alice.recv()  # peer_joined bob
    mallory_id = new_peer_id()
    payload = {"type": "offer", "sdp": "v=0\r\n", "nested": {"list": [1, 2.5, None, True]}}
    await bob.send_json(
        {"type": "signal", "to": alice.peer_id, "from": mallory_id, "payload": payload}
    )
    relayed = await alice.recv()
    assert relayed == {"type": "signal", "from": bob.peer_id, "payload": payload}
    await alice.close()
    await bob.close()


async def test_signal_to_self_or_unknown_peer_is_refused(server: RunningServer) -> None:
    alice, _ = await RawPeer.join(server.url, "lonely")
    await alice.signal(new_peer_id(), {})
    await alice.expect_error("unknown_peer")
    await alice.signal(alice.peer_id, {})
    await alice.expect_error("unknown_peer")
    await alice.close()
    await assert_server_serves(server.url)


# ------------------------------------------------------------------ malformed frames


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("{", "bad_json"),
        ('{"type": NaN}', "bad_json"),
        ("[" * 100_00 + "]" * 100_00, "bad_json"),
        ("[]", "not_object"),
        ("42", "not_object"),
        ('"hello"', "not_object"),
        ("{}", "bad_field"),
        ('{"type": 7}', "bad_field"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "signal", "payload": {}}', "bad_field"),
        ('{"type": "signal", "to": 5, "payload": {}}', "bad_field"),
        ('{"type": "signal", "to": "short", "payload": {}}', "bad_field"),
        ('{"type": "signal", "to": "%s", "payload": [1]}' % ("a" * 20), "bad_field"),
        ('{"type": "signal", "to": "%s"}' % ("a" * 20), "bad_field"),
        ('{"type": "hello", "peer_id": "%s"}' % ("a" * 20), "bad_field"),
        (json.dumps({**HELLO_FIELDS, "peer_id": "bad id with spaces!"}), "bad_field"),
        (json.dumps({**HELLO_FIELDS, "public_key": 12}), "bad_field"),
        (json.dumps({**HELLO_FIELDS, "public_key": "0" * 63}), "bad_field"),
        (json.dumps({**HELLO_FIELDS, "public_key": "A" * 64}), "bad_field"),
        (json.dumps({**HELLO_FIELDS, "signature": "0" * 130}), "bad_field"),
        (json.dumps({**HELLO_FIELDS, "signature": None}), "bad_field"),
        (json.dumps({"type": "hello", "peer_id": "a" * 20, "token": "t" * 20}), "bad_field"),
        ('{"type": "welcome", "peers": []}', "unknown_type"),
        ('{"type": "role"}', "bad_field"),
        ('{"type": "role", "role": "king"}', "bad_field"),
        ('{"type": "role", "role": null}', "bad_field"),
        ('{"type": "peer_role", "peer_id": "%s", "role": "voter"}' % ("a" * 20), "unknown_type"),
        (json.dumps({**HELLO_FIELDS, "role": "boss"}), "bad_field"),
    ],
)
async def test_malformed_frames_get_error_frames_after_hello(
    server: RunningServer, frame: str, code: str
) -> None:
    peer, _ = await RawPeer.join(server.url, "malformed")
    await peer.send_str(frame)
    await peer.expect_error(code)
    await peer.signal(new_peer_id(), {})  # the connection still works
    await peer.expect_error("unknown_peer")
    await peer.close()
    await assert_server_serves(server.url)


async def test_binary_frame_is_refused(server: RunningServer) -> None:
    peer, _ = await RawPeer.join(server.url, "binary")
    await peer.send_bytes(b'{"type": "signal"}')
    await peer.expect_error("binary_frame")
    await peer.close()
    await assert_server_serves(server.url)


async def test_signal_before_hello_is_refused_and_hello_still_accepted(
    server: RunningServer,
) -> None:
    peer = await RawPeer.connect(server.url, "early")
    await peer.signal(new_peer_id(), {"sdp": "x"})
    await peer.expect_error("hello_required")
    await peer.send_str("garbage")
    await peer.expect_error("bad_json")
    await peer.send_json(peer.hello())
    assert (await peer.recv())["type"] == "welcome"
    await peer.close()
    await assert_server_serves(server.url)


async def test_second_hello_is_refused(server: RunningServer) -> None:
    peer, _ = await RawPeer.join(server.url, "twice")
    await peer.send_json(peer.hello(identity=NodeIdentity.generate()))
    await peer.expect_error("already_joined")
    await peer.close()
    await assert_server_serves(server.url)


async def test_oversized_frame_is_dropped_and_connection_kept() -> None:
    server = await start_with(ServerConfig(max_frame_bytes=1000, hard_max_frame_bytes=4000))
    try:
        alice, _ = await RawPeer.join(server.url, "big")
        bob, _ = await RawPeer.join(server.url, "big")
        await alice.recv()
        await bob.signal(alice.peer_id, {"sdp": "x" * 2000})
        await bob.expect_error("frame_too_large")
        await bob.signal(alice.peer_id, {"sdp": "small"})
        assert (await alice.recv())["payload"] == {"sdp": "small"}
        # Beyond the hard limit the frame is not even read: the socket is closed (1009).
        await bob.signal(alice.peer_id, {"sdp": "x" * 5000})
        await bob.expect_closed()
        assert bob.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        assert await alice.recv() == {"type": "peer_left", "peer_id": bob.peer_id}
        await alice.close()
        await bob.close()
        await assert_server_serves(server.url)
    finally:
        await server.close()


async def test_deeply_nested_payload_is_refused() -> None:
    server = await start_with(ServerConfig(max_frame_bytes=200_000, hard_max_frame_bytes=200_000))
    try:
        alice, _ = await RawPeer.join(server.url, "deep")
        bob, _ = await RawPeer.join(server.url, "deep")
        await alice.recv()
        deep = "[" * 50_000 + "]" * 50_000
        await bob.send_str(f'{{"type":"signal","to":"{alice.peer_id}","payload":{{"x":{deep}}}}}')
        error = await bob.recv()
        assert error["type"] == "error" and error["code"] in {"bad_json", "bad_field"}
        await alice.close()
        await bob.close()
        await assert_server_serves(server.url)
    finally:
        await server.close()


# ------------------------------------------------------------------ limits


async def test_rate_limit_then_flooding_closes_only_the_flooder() -> None:
    clock = ManualClock()
    config = ServerConfig(messages_per_second=1, burst_messages=4, max_rate_violations=3)
    server = await start_with(config, clock)
    try:
        alice, _ = await RawPeer.join(server.url, "flood")
        bob, _ = await RawPeer.join(server.url, "flood")  # hello takes one token
        await alice.recv()
        for number in range(3):
            await bob.signal(alice.peer_id, {"n": number})
            assert (await alice.recv())["payload"] == {"n": number}
        await bob.signal(alice.peer_id, {"n": "dropped"})
        await bob.expect_error("rate_limited")
        clock.advance(1.0)  # one token back: the peer may speak again
        await bob.signal(alice.peer_id, {"n": "after refill"})
        assert (await alice.recv())["payload"] == {"n": "after refill"}
        for _ in range(4):
            await bob.signal(alice.peer_id, {"n": "dropped"})
        for _ in range(3):  # max_rate_violations are tolerated, the next one is not
            await bob.expect_error("rate_limited")
        await bob.expect_error("flooding")
        await bob.expect_closed()
        assert await alice.recv() == {"type": "peer_left", "peer_id": bob.peer_id}
        await alice.close()
        await bob.close()
        await assert_server_serves(server.url)
    finally:
        await server.close()


async def test_channel_full() -> None:
    server = await start_with(ServerConfig(max_peers_per_channel=2))
    try:
        first, _ = await RawPeer.join(server.url, "small")
        second, _ = await RawPeer.join(server.url, "small")
        third = await RawPeer.connect(server.url, "small")
        await third.send_json(third.hello())
        frame = await third.expect_error("channel_full")
        assert frame["fatal"] is True
        await third.expect_closed()
        await assert_server_serves(server.url, "another-channel")
        for peer in (first, second, third):
            await peer.close()
    finally:
        await server.close()


async def test_too_many_channels_and_connections() -> None:
    server = await start_with(ServerConfig(max_channels=1, max_connections=2))
    try:
        first, _ = await RawPeer.join(server.url, "one")
        other = await RawPeer.connect(server.url, "two")
        await other.send_json(other.hello())
        await other.expect_error("too_many_channels")
        await other.expect_closed()
        await other.close()
        second, _ = await RawPeer.join(server.url, "one")
        # The third socket is refused before it is a WebSocket: HTTP 503 naming the code.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await RawPeer.connect(server.url, "one")
        assert refused.value.status == 503
        assert refused.value.headers[ERROR_HEADER] == "server_full"
        await second.close()
        await wait_until(lambda: len(server.server.state.connections) == 1, what="second to go")
        await wait_until(lambda: len(server.server.guard.open) == 1, what="its socket to go")
        third, _ = await RawPeer.join(server.url, "one")
        for peer in (first, third):
            await peer.close()
    finally:
        await server.close()


@pytest.mark.parametrize("name", ["", "-leading-dash", "has space", "a" * 65, "émoji", "dot.ted"])
async def test_bad_channel_name_is_refused(server: RunningServer, name: str) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{server.url}/channels/{name}/ws"
        try:
            ws = await session.ws_connect(url)
        except aiohttp.WSServerHandshakeError as exc:
            assert name == "" and exc.status == 404  # no route for an empty name
            return
        msg = await ws.receive(timeout=5)
        frame = json.loads(msg.data)
        assert frame["code"] == "invalid_channel" and frame["fatal"] is True
        assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
        await ws.close()
    await assert_server_serves(server.url)


def test_channel_names_are_normalized_to_lower_case() -> None:
    assert normalize_channel("Team-Chat_1") == "team-chat_1"
    with pytest.raises(Exception, match="invalid channel name"):
        normalize_channel("no/slash")


async def test_hello_timeout() -> None:
    server = await start_with(ServerConfig(hello_timeout=0.2))
    try:
        silent = await RawPeer.connect(server.url, "quiet")
        await silent.expect_error("hello_timeout")
        await silent.expect_closed()
        await silent.close()
        await assert_server_serves(server.url)
    finally:
        await server.close()


class _StuckWebSocket:
    """A socket whose peer never reads: every send waits forever."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_str(self, text: str) -> None:
        self.sent.append(text)
        await asyncio.Event().wait()

    async def close(self, **kwargs: object) -> None:
        await asyncio.Event().wait()


class _FakeTransport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _stuck_connection(config: ServerConfig, budget: QueueBudget | None = None):
    from types import SimpleNamespace

    ws = _StuckWebSocket()
    transport = _FakeTransport()
    request = SimpleNamespace(remote="127.0.0.1", transport=transport)
    conn = Connection(ws, request, config, now=0.0, budget=budget)  # type: ignore[arg-type]
    return conn, ws, transport


async def test_slow_consumer_is_disconnected_without_blocking_senders() -> None:
    config = ServerConfig(max_frame_bytes=1000, send_queue_bytes=3000, close_timeout=0.05)
    conn, ws, transport = _stuck_connection(config)
    for number in range(10):
        conn.send(f"frame {number} " + "x" * 990)  # never blocks, even though nothing is written
    assert conn.closing
    assert conn.queued_bytes < 200  # what it did not read is dropped, only the error is left
    await wait_until(lambda: transport.closed, what="stuck connection aborted")
    await conn.close()
    # The dropped frames were never written: the error is the first write (and it is stuck).
    assert [json.loads(text)["code"] for text in ws.sent] == ["slow_consumer"]
    assert conn.queued_bytes == 0 and conn.budget.total == 0


async def test_the_longest_queue_goes_when_all_queues_together_are_too_long() -> None:
    config = ServerConfig(
        max_frame_bytes=1000,
        send_queue_bytes=4000,
        max_queued_bytes_total=5000,
        close_timeout=0.05,
    )
    budget = QueueBudget(config.max_queued_bytes_total)
    small, _, _ = _stuck_connection(config, budget)
    large, _, large_transport = _stuck_connection(config, budget)
    frame = "y" * 1000
    for _ in range(2):
        small.send(frame)
    for _ in range(4):
        large.send(frame)
    assert budget.total <= 5000
    assert large.closing and not small.closing
    small.send(frame)  # the others keep being served
    assert not small.closing
    await wait_until(lambda: large_transport.closed, what="the longest queue closed")
    for conn in (small, large):
        conn._abort()
        await conn.close()
    assert budget.total == 0


# ------------------------------------------------------------------ identity


async def test_the_server_challenges_every_websocket_with_a_new_nonce(
    server: RunningServer,
) -> None:
    first = await RawPeer.connect(server.url, "ids")
    second = await RawPeer.connect(server.url, "ids")
    assert len(first.nonce) == len(second.nonce) == 16 and first.nonce != second.nonce
    for peer in (first, second):
        await peer.close()


async def test_a_hello_for_another_peers_id_is_refused(server: RunningServer) -> None:
    owner, _ = await RawPeer.join(server.url, "ids")
    thief = await RawPeer.connect(server.url, "ids")
    # Its own key, the owner's id: the id is not the key's.
    await thief.send_json(signed_hello(thief.identity, thief.nonce, "ids", peer_id=owner.peer_id))
    frame = await thief.expect_error("id_not_of_key")
    assert frame["fatal"] is True and owner.peer_id in frame["message"]
    await thief.expect_closed()
    await thief.close()
    # The owner's public key, signed with its own key: the signature fails.
    thief = await RawPeer.connect(server.url, "ids")
    forged = signed_hello(thief.identity, thief.nonce, "ids")
    forged.update(peer_id=owner.peer_id, public_key=owner.identity.public_key.hex())
    await thief.send_json(forged)
    assert (await thief.expect_error("bad_signature"))["fatal"] is True
    await thief.expect_closed()
    await thief.close()
    await owner.signal(new_peer_id(), {})
    await owner.expect_error("unknown_peer")  # the owner was not disturbed
    assert server.peers("ids") == {owner.peer_id}
    metrics = await get_metrics(server.url)
    assert metrics['raftchat_signaling_errors_total{code="id_not_of_key"}'] == 1
    assert metrics['raftchat_signaling_errors_total{code="bad_signature"}'] == 1
    await owner.close()
    await assert_server_serves(server.url)


async def test_a_hello_replayed_on_another_connection_is_refused(server: RunningServer) -> None:
    owner = await RawPeer.connect(server.url, "ids")
    recorded = owner.hello()  # signed over this connection's nonce
    await owner.send_json(recorded)
    assert (await owner.recv())["type"] == "welcome"
    watcher, _ = await RawPeer.join(server.url, "ids")
    await owner.recv()  # peer_joined watcher
    for owner_present in (True, False):
        thief = await RawPeer.connect(server.url, "ids")
        await thief.send_json(recorded)
        await thief.expect_error("bad_signature")
        await thief.expect_closed()
        await thief.close()
        if owner_present:
            await owner.close()  # gone: its id is still nobody else's
            assert await watcher.recv() == {"type": "peer_left", "peer_id": owner.identity.node_id}
    assert server.peers("ids") == {watcher.peer_id}
    # The owner comes back at once, with its key.
    back, welcome = await RawPeer.join(server.url, "ids", owner.identity)
    assert welcome["peers"] == [watcher.peer_id]
    assert await watcher.recv() == {"type": "peer_joined", "peer_id": back.peer_id}
    for peer in (back, watcher):
        await peer.close()


async def test_a_hello_signed_for_another_channel_is_refused(server: RunningServer) -> None:
    peer = await RawPeer.connect(server.url, "ids")
    await peer.send_json(signed_hello(peer.identity, peer.nonce, "other-ids"))
    await peer.expect_error("bad_signature")
    await peer.expect_closed()
    await peer.close()


async def test_the_same_key_may_be_in_several_channels(server: RunningServer) -> None:
    here, _ = await RawPeer.join(server.url, "ids")
    there, _ = await RawPeer.join(server.url, "other-ids", here.identity)
    assert here.peer_id == there.peer_id
    await here.signal(new_peer_id(), {})
    await here.expect_error("unknown_peer")  # not replaced: another channel
    for peer in (here, there):
        await peer.close()


async def test_reconnect_with_the_key_replaces_half_dead_socket(server: RunningServer) -> None:
    old, _ = await RawPeer.join(server.url, "replace")
    watcher, _ = await RawPeer.join(server.url, "replace")
    await old.recv()  # peer_joined watcher
    new, welcome = await RawPeer.join(server.url, "replace", old.identity)
    assert welcome["peers"] == [watcher.peer_id]
    frame = await old.expect_error("replaced")
    assert frame["fatal"] is True
    await old.expect_closed()
    # The watcher saw no churn: the next frame it gets is the relayed signal.
    await new.signal(watcher.peer_id, {"hi": 1})
    assert await watcher.recv() == {"type": "signal", "from": new.peer_id, "payload": {"hi": 1}}
    assert server.peers("replace") == {old.peer_id, watcher.peer_id}
    # Only the new socket's token lists the channel.
    assert (await peer_list(server.url, "replace", f"{new.peer_id}:{new.token}"))[0] == 200
    assert (await peer_list(server.url, "replace", f"{old.peer_id}:{old.token}"))[0] == 403
    for peer in (old, new, watcher):
        await peer.close()
    await assert_server_serves(server.url)


# ------------------------------------------------------------------ role hints


async def test_role_from_hello_reaches_later_joiners_and_peer_joined(server: RunningServer) -> None:
    alice, welcome = await RawPeer.join(server.url, "roles", role="voter")
    assert welcome["roles"] == {}
    bob, welcome = await RawPeer.join(server.url, "roles", role="learner")
    assert welcome["roles"] == {alice.peer_id: "voter"}
    assert await alice.recv() == {"type": "peer_joined", "peer_id": bob.peer_id, "role": "learner"}
    carol, welcome = await RawPeer.join(server.url, "roles")  # announces nothing
    assert welcome["roles"] == {alice.peer_id: "voter", bob.peer_id: "learner"}
    for peer in (alice, bob):
        assert await peer.recv() == {"type": "peer_joined", "peer_id": carol.peer_id}
    _, welcome = await RawPeer.join(server.url, "other-roles")
    assert welcome["roles"] == {}  # roles stay in their channel
    for peer in (alice, bob, carol):
        await peer.close()


async def test_role_change_is_broadcast_to_the_others_once(server: RunningServer) -> None:
    alice, _ = await RawPeer.join(server.url, "roles")
    bob, _ = await RawPeer.join(server.url, "roles")
    await alice.recv()  # peer_joined bob
    await alice.set_role("none")
    assert await bob.recv() == {"type": "peer_role", "peer_id": alice.peer_id, "role": "none"}
    await alice.set_role("none")  # unchanged: not passed on
    await alice.set_role("voter")
    assert await bob.recv() == {"type": "peer_role", "peer_id": alice.peer_id, "role": "voter"}
    # The sender got nothing back: its next frame is the answer to this bad one.
    await alice.send_str("{}")
    await alice.expect_error("bad_field")
    carol, welcome = await RawPeer.join(server.url, "roles")
    assert welcome["roles"] == {alice.peer_id: "voter"}
    for peer in (alice, bob, carol):
        await peer.close()


async def test_invalid_role_is_refused_and_keeps_the_old_one(server: RunningServer) -> None:
    early = await RawPeer.connect(server.url, "roles")
    await early.set_role("voter")
    await early.expect_error("hello_required")
    await early.close()
    alice, _ = await RawPeer.join(server.url, "roles", role="learner")
    for bad in ("king", "VOTER", 1, None):
        await alice.set_role(bad)
        await alice.expect_error("bad_field")
    bob, welcome = await RawPeer.join(server.url, "roles")
    assert welcome["roles"] == {alice.peer_id: "learner"}
    await alice.recv()  # peer_joined bob
    await alice.signal(bob.peer_id, {"still": "connected"})
    assert (await bob.recv())["payload"] == {"still": "connected"}
    await alice.close()
    await bob.close()


async def test_role_is_forgotten_when_the_peer_leaves(server: RunningServer) -> None:
    watcher, _ = await RawPeer.join(server.url, "roles")
    alice, _ = await RawPeer.join(server.url, "roles", role="voter")
    await watcher.recv()  # peer_joined alice
    await alice.close()
    assert await watcher.recv() == {"type": "peer_left", "peer_id": alice.peer_id}
    back, welcome = await RawPeer.join(server.url, "roles", alice.identity)
    assert welcome["roles"] == {}
    assert await watcher.recv() == {"type": "peer_joined", "peer_id": alice.peer_id}
    newcomer, welcome = await RawPeer.join(server.url, "roles")
    assert welcome["roles"] == {}
    for peer in (watcher, back, newcomer):
        await peer.close()


async def test_replacing_socket_keeps_or_updates_the_role(server: RunningServer) -> None:
    watcher, _ = await RawPeer.join(server.url, "roles")
    old, _ = await RawPeer.join(server.url, "roles", role="none")
    await watcher.recv()  # peer_joined old
    same, _ = await RawPeer.join(server.url, "roles", old.identity)  # no role said
    await old.expect_error("replaced")
    newcomer, welcome = await RawPeer.join(server.url, "roles")
    assert welcome["roles"] == {old.peer_id: "none"}
    for peer in (watcher, same):  # only the newcomer's join: the replacement made no churn
        assert await peer.recv() == {"type": "peer_joined", "peer_id": newcomer.peer_id}
    promoted, _ = await RawPeer.join(server.url, "roles", old.identity, role="voter")
    await same.expect_error("replaced")
    change = {"type": "peer_role", "peer_id": old.peer_id, "role": "voter"}
    assert await watcher.recv() == change
    assert await newcomer.recv() == change
    for peer in (watcher, old, same, newcomer, promoted):
        await peer.close()


async def test_role_frames_count_against_the_rate_limit() -> None:
    clock = ManualClock()
    server = await start_with(ServerConfig(messages_per_second=1, burst_messages=3), clock)
    try:
        watcher, _ = await RawPeer.join(server.url, "roles")
        flooder, _ = await RawPeer.join(server.url, "roles")  # hello takes one token
        assert (await watcher.recv())["type"] == "peer_joined"
        for role in ("voter", "learner"):
            await flooder.set_role(role)
            assert await watcher.recv() == {
                "type": "peer_role",
                "peer_id": flooder.peer_id,
                "role": role,
            }
        await flooder.set_role("none")
        await flooder.expect_error("rate_limited")
        _, welcome = await RawPeer.join(server.url, "roles")
        assert welcome["roles"] == {flooder.peer_id: "learner"}  # the dropped frame changed nothing
        await flooder.close()
        await watcher.close()
    finally:
        await server.close()


# ------------------------------------------------------------------ HTTP


async def test_http_endpoints(server: RunningServer) -> None:
    alice, _ = await RawPeer.join(server.url, "web")
    bob, _ = await RawPeer.join(server.url, "web")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/healthz") as response:
            health = await response.json()
            assert health == {"ok": True, "channels": 1, "peers": 2, "connections": 2, "sockets": 3}
            assert response.headers["Connection"] == "close"  # one request per connection
        names = set()
        for _ in range(3):
            async with session.post(f"{server.url}/channels") as response:
                name = (await response.json())["channel"]
                assert normalize_channel(name) == name
                names.add(name)
        assert len(names) == 3
    await alice.close()
    await bob.close()


async def peer_list(base_url: str, channel: str, credentials: str | None) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {credentials}"} if credentials is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base_url}/channels/{channel}/peers", headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_peer_list_only_for_peers_of_the_channel(server: RunningServer) -> None:
    alice, _ = await RawPeer.join(server.url, "web")
    bob, _ = await RawPeer.join(server.url, "web")
    outsider, _ = await RawPeer.join(server.url, "elsewhere")
    status, body = await peer_list(server.url, "WEB", f"{alice.peer_id}:{alice.token}")
    assert status == 200 and sorted(body) == sorted([alice.peer_id, bob.peer_id])
    refusals = [
        ("web", None),  # anonymous
        ("web", f"{alice.peer_id}:{new_token()}"),  # a wrong token
        ("web", f"{outsider.peer_id}:{outsider.token}"),  # a peer of another channel
        ("empty", f"{alice.peer_id}:{alice.token}"),  # a channel that does not exist
        ("web", "garbage"),
    ]
    answers = [await peer_list(server.url, channel, cred) for channel, cred in refusals]
    assert {status for status, _ in answers} == {403}
    assert len({str(body) for _, body in answers}) == 1  # nothing tells them apart
    assert (await peer_list(server.url, "bad.name", None))[0] == 400
    await alice.close()
    await bob.close()
    await outsider.close()


async def test_close_tells_peers_the_server_is_going_away() -> None:
    server = await start_with(ServerConfig())
    peer, _ = await RawPeer.join(server.url, "bye")
    await server.close()
    await peer.expect_error("shutting_down")
    await peer.expect_closed()
    await peer.close()


# ------------------------------------------------------------------ fuzz

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "to", "payload", "peer_id", "public_key", "signature", "x"])
            | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
peer_ids = st.from_regex(PEER_ID_PATTERN, fullmatch=True)
frames = st.one_of(
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["hello", "role", "signal", "welcome", "error"])},
        optional={
            "role": st.sampled_from(sorted(ROLES)) | json_values,
            "to": peer_ids | json_values,
            "payload": json_values,
            "peer_id": peer_ids | json_values,
            "public_key": st.from_regex(r"[0-9a-f]{64}", fullmatch=True) | json_values,
            "signature": st.from_regex(r"[0-9a-f]{128}", fullmatch=True) | json_values,
        },
    ).map(json.dumps),
    st.text(max_size=50),
    st.binary(max_size=50),
)


def _parse(frame: str | bytes) -> Hello | RoleUpdate | SignalRequest | None:
    """The frame as the server will read it, or None if it is invalid."""
    if isinstance(frame, bytes):
        return None
    try:
        return parse_client_frame(frame)
    except ProtocolError:
        return None


async def _send_frame(peer: RawPeer, frame: str | bytes) -> None:
    if isinstance(frame, bytes):
        await peer.send_bytes(frame)
    else:
        await peer.send_str(frame)


async def _expect_non_fatal_error(peer: RawPeer) -> None:
    reply = await peer.recv()
    assert reply["type"] == "error", reply
    assert reply["code"] in set(ErrorCode), reply
    assert reply["fatal"] is False, reply


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=8))
def test_random_frames_get_error_frames_and_server_stays_up(batch: list[str | bytes]) -> None:
    """Joined or not, every frame but a first valid hello or a role change after hello is
    answered with an error; a role change reaches the other peer once."""

    async def scenario() -> None:
        server = await start_with(ServerConfig(burst_messages=1000))
        try:
            member, _ = await RawPeer.join(server.url, "fuzz")
            member_role: str | None = None
            stranger = await RawPeer.connect(server.url, "fuzz")
            stranger_id: str | None = None
            stranger_role: str | None = None
            for frame in batch:
                parsed = _parse(frame)
                await _send_frame(member, frame)
                if isinstance(parsed, SignalRequest) and parsed.to == stranger_id:
                    relayed = await stranger.recv()  # the one valid relay a batch can hold
                    assert relayed == {
                        "type": "signal",
                        "from": member.peer_id,
                        "payload": parsed.payload,
                    }
                elif isinstance(parsed, RoleUpdate):  # no answer to the member itself
                    if parsed.role != member_role and stranger_id is not None:
                        assert await stranger.recv() == {
                            "type": "peer_role",
                            "peer_id": member.peer_id,
                            "role": parsed.role,
                        }
                    member_role = parsed.role
                else:
                    await _expect_non_fatal_error(member)  # already joined, unknown peer, ...
                await _send_frame(stranger, frame)
                if isinstance(parsed, Hello) and stranger_id is None:
                    welcome = await stranger.recv()
                    assert welcome["type"] == "welcome"
                    assert welcome["roles"] == (
                        {member.peer_id: member_role} if member_role else {}
                    )
                    stranger_id, stranger_role = parsed.peer_id, parsed.role
                    joined = await member.recv()
                    assert joined["type"] == "peer_joined"
                    assert joined.get("role") == parsed.role
                elif isinstance(parsed, RoleUpdate) and stranger_id is not None:
                    if parsed.role != stranger_role:
                        assert await member.recv() == {
                            "type": "peer_role",
                            "peer_id": stranger_id,
                            "role": parsed.role,
                        }
                    stranger_role = parsed.role
                else:
                    await _expect_non_fatal_error(stranger)
            await member.close()
            await stranger.close()
            await assert_server_serves(server.url)
        finally:
            await server.close()

    asyncio.run(scenario())
