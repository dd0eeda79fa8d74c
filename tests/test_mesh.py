"""The WebRTC mesh with real peers on loopback, signaled through an in-memory relay.

Tests that take the ``net`` fixture run on each engine and on a mix of both (the
``webrtc`` fixture, ``mesh_utils.WEBRTC_MODES``); those about one engine's own tuning or
internals are marked to run on it alone."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections import defaultdict
from pathlib import Path

import aioice.ice
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcsctptransport import USERDATA_MAX_LENGTH
from mesh_utils import (
    CLOSE_WAIT_S,
    TEST_CONFIG,
    FakeRelay,
    MeshSignalingListener,
    Peer,
    all_open,
    block,
    break_connection,
    engine_of,
    ids,
    make_peer,
    pending_tasks,
    signaled_host_addresses,
    unblock,
    with_settings,
)
from support.waiting import wait_until

from raftchat.net import LinkState, Mesh, MeshConfig
from raftchat.net.engines import aiortc_engine
from raftchat.net.engines.aiortc_engine import (
    build_rtc_configuration,
    enlarge_receive_buffer,
    flight_limit,
    selected_socket,
)
from raftchat.net.framing import encode_chunks
from raftchat.net.ice import IceServer, loopback_address_of
from raftchat.net.identity import NodeIdentity
from raftchat.net.link import Link
from raftchat.net.signaling.client import SignalingClient
from raftchat.net.signaling.server import start_server

AIORTC_ONLY = pytest.mark.parametrize("webrtc", ["aiortc"], indirect=True)
"""For tests of aiortc's own tuning or internals, and of mesh logic that makes no
connection (the engine plays no part)."""


@pytest.fixture
async def net(webrtc):
    """A relay and a factory of peers on it, each on the engine the ``webrtc`` mode gives
    it; every mesh is closed (cleanly) at the end."""
    relay = FakeRelay()
    peers: list[Peer] = []

    def add(peer_id: str, config: MeshConfig = TEST_CONFIG, join: bool = True) -> Peer:
        peer = make_peer(relay, peer_id, config, join, webrtc=engine_of(webrtc, len(peers)))
        peers.append(peer)
        return peer

    add.relay = relay  # type: ignore[attr-defined]
    add.mode = webrtc  # type: ignore[attr-defined]
    yield add
    for peer in peers:
        await peer.mesh.close()
    await wait_until(lambda: not pending_tasks(), CLOSE_WAIT_S, "tasks to finish after close")


async def connected(net, *ids: str, config: MeshConfig = TEST_CONFIG) -> list[Peer]:
    peers = [net(peer_id, config) for peer_id in ids]
    await wait_until(lambda: all_open(peers), 10, "all links open")
    return peers


def internal_link(peer: Peer, other: str) -> Link:
    return peer.mesh._links[other]


def local_candidate_addresses(peer: Peer, other: str) -> set[str]:
    gatherer = internal_link(peer, other)._connection.pc.sctp.transport.transport.iceGatherer
    return {candidate.ip for candidate in gatherer.getLocalCandidates()}


# --- ICE configuration ------------------------------------------------------------------


def test_rtc_configuration_has_only_configured_servers():
    assert build_rtc_configuration([], relay_only=False).iceServers == []
    turn = IceServer("turn:127.0.0.1:3478", username="u", credential="p")
    config = build_rtc_configuration([turn], relay_only=True)
    assert [server.urls for server in config.iceServers] == [["turn:127.0.0.1:3478"]]
    assert config.iceTransportPolicy.value == "relay"


@AIORTC_ONLY  # spies on aiortc; wrtc: test_wrtc_engine.py, the same check on its connections
async def test_mesh_passes_explicit_empty_ice_servers_to_every_connection(net, monkeypatch):
    configurations = []

    class SpyPeerConnection(RTCPeerConnection):
        def __init__(self, configuration=None):
            configurations.append(configuration)
            super().__init__(configuration)

    monkeypatch.setattr(aiortc_engine, "RTCPeerConnection", SpyPeerConnection)
    a, _b = await connected(net, ids.a, ids.b)
    assert len(configurations) == 2
    for configuration in configurations:
        # None would make aiortc add its public STUN server.
        assert configuration is not None and configuration.iceServers == []
    connection = internal_link(a, ids.b)._connection.pc.sctp.transport.transport._connection
    assert connection.stun_server is None and connection.turn_server is None


def test_ice_server_validation_gives_actionable_errors():
    with pytest.raises(ValueError, match="not valid"):
        IceServer("http://example.invalid")
    with pytest.raises(ValueError, match="needs a username"):
        IceServer("turn:127.0.0.1:3478")
    with pytest.raises(ValueError, match="relay_only needs a TURN server"):
        MeshConfig(relay_only=True, ice_servers=[IceServer("stun:127.0.0.1:3478")])


def test_loopback_detection_from_signaling_url():
    assert loopback_address_of("ws://127.0.0.1:8765/ws") == "127.0.0.1"
    assert loopback_address_of("http://localhost:8765") == "127.0.0.1"
    assert loopback_address_of("ws://[::1]:8765") == "::1"
    assert loopback_address_of("wss://chat.example.org") is None
    assert loopback_address_of("ws://192.0.2.1:8765") is None
    assert MeshConfig(signaling_url="ws://127.0.0.1:1").host_candidate_addresses() == ("127.0.0.1",)
    assert MeshConfig(signaling_url="ws://192.0.2.1:1").host_candidate_addresses() is None
    assert MeshConfig(
        ice_host="::1", signaling_url="ws://127.0.0.1:1"
    ).host_candidate_addresses() == ("::1",)


def test_host_candidate_adapter_is_scoped_to_its_block():
    with aiortc_engine.host_candidates(["127.0.0.1"]):
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)


async def test_host_candidates_are_loopback_only(net):
    a, b = await connected(net, ids.a, ids.b)
    for peer, other in ((a, ids.b), (b, ids.a)):
        assert signaled_host_addresses(peer) == {"127.0.0.1"}
        if peer.mesh.engine.name == "aiortc":
            assert local_candidate_addresses(peer, other) == {"127.0.0.1"}
    assert a.mesh.links()[ids.b].local_candidate_type == "host"


def test_mesh_config_rejects_inconsistent_settings():
    with pytest.raises(ValueError, match="send_buffer_low_bytes"):
        MeshConfig(send_buffer_low_bytes=10, send_buffer_high_bytes=10)
    with pytest.raises(ValueError, match="max_messages_per_frame"):
        MeshConfig(max_messages_per_frame=0)
    with pytest.raises(TypeError, match="IceServer"):
        MeshConfig(ice_servers=["stun:127.0.0.1:3478"])
    with pytest.raises(ValueError, match="dead_after"):
        MeshConfig(ping_interval=1.0, dead_after=1.5)
    with pytest.raises(ValueError, match="offer_in_flight"):
        MeshConfig(offer_wait=1.0, offer_in_flight=1.0)


@AIORTC_ONLY  # no connection is made
async def test_listener_replays_presence_seen_before_the_mesh_was_bound(net):
    states: list[str] = []
    listener = MeshSignalingListener(on_state=states.append)
    listener.on_state("connected")
    listener.on_peers(frozenset({ids.b}))
    a = net(ids.a, join=False)
    listener.bind(a.mesh)
    assert a.state_of(ids.b) == LinkState.CONNECTING
    assert states == ["connected"]


# --- messages ---------------------------------------------------------------------------


async def test_two_peers_exchange_messages(net):
    a, b = await connected(net, ids.a, ids.b)
    assert a.mesh.send(ids.b, b"hello b")
    assert b.mesh.send(ids.a, b"hello a")
    await wait_until(
        lambda: b.received[ids.a] == [b"hello b"] and a.received[ids.b] == [b"hello a"]
    )
    info = a.mesh.links()[ids.b]
    assert info.messages_sent == 1 and info.messages_received == 1
    assert info.bytes_sent == len(b"hello b")


async def test_five_peers_form_a_full_mesh(net):
    peers = await connected(net, ids.p1, ids.p2, ids.p3, ids.p4, ids.p5)
    for peer in peers:
        assert peer.mesh.broadcast(f"from {peer.peer_id}".encode()) == 4
    for peer in peers:
        others = [other for other in peers if other is not peer]
        await wait_until(
            lambda peer=peer, others=others: all(
                peer.received[o.peer_id] == [f"from {o.peer_id}".encode()] for o in others
            )
        )


async def test_send_without_open_link_returns_false(net):
    a = net(ids.a)
    assert not a.mesh.send("nobody", b"x")
    b = net(ids.b)
    assert a.state_of(ids.b) == LinkState.CONNECTING
    assert not a.mesh.send(ids.b, b"too early")
    await wait_until(lambda: all_open([a, b]))


async def test_megabyte_message_is_chunked_and_arrives_intact(net):
    a, b = await connected(net, ids.a, ids.b)
    big = bytes(range(256)) * 4096
    assert a.mesh.send(ids.b, big)
    assert a.mesh.send(ids.b, b"after")
    await wait_until(lambda: len(b.received[ids.a]) == 2)
    assert b.received[ids.a][0] == big and b.received[ids.a][1] == b"after"
    info = a.mesh.links()[ids.b]
    assert info.max_frame_bytes == TEST_CONFIG.max_frame_bytes
    assert info.frames_sent >= len(big) // info.max_frame_bytes


async def test_burst_of_small_messages_is_batched_in_order(net):
    a, b = await connected(net, ids.a, ids.b)
    frames_before = a.mesh.links()[ids.b].frames_sent
    messages = [i.to_bytes(4, "big") * 25 for i in range(5000)]
    for message in messages:
        assert a.mesh.send(ids.b, message)
    await wait_until(lambda: len(b.received[ids.a]) == len(messages))
    assert b.received[ids.a] == messages
    data_frames = a.mesh.links()[ids.b].frames_sent - frames_before
    # 5000 messages of 100 B fit in a handful of 64 KiB frames (plus a few pings).
    assert data_frames < 50


async def test_oversized_message_is_refused_with_a_clear_error(net):
    a, _ = await connected(
        net,
        ids.a,
        ids.b,
        config=MeshConfig(
            **{**vars(TEST_CONFIG), "max_message_bytes": 1000, "max_queued_bytes": 1000}
        ),
    )
    with pytest.raises(ValueError, match="max_message_bytes"):
        a.mesh.send(ids.b, b"x" * 1001)


async def test_full_send_queue_drops_the_newest_messages(net):
    config = MeshConfig(**{**vars(TEST_CONFIG), "max_queued_messages": 10})
    a, b = await connected(net, ids.a, ids.b, config=config)
    results = [a.mesh.send(ids.b, bytes([i])) for i in range(15)]
    assert results == [True] * 10 + [False] * 5
    assert a.mesh.links()[ids.b].dropped_overflow == 5
    await wait_until(lambda: len(b.received[ids.a]) == 10)
    assert b.received[ids.a] == [bytes([i]) for i in range(10)]


async def test_send_buffer_is_bounded_by_backpressure(net):
    config = MeshConfig(
        **{
            **vars(TEST_CONFIG),
            "send_buffer_high_bytes": 128 * 1024,
            "send_buffer_low_bytes": 32 * 1024,
        }
    )
    a, b = await connected(net, ids.a, ids.b, config=config)
    message = b"m" * 1000
    count = 2000
    link = internal_link(a, ids.b)
    peak = 0

    def watch(sender, data):
        nonlocal peak
        peak = max(peak, link._open_connection.buffered_amount)

    b.mesh._on_message = watch
    for _ in range(count):
        assert a.mesh.send(ids.b, message)
    assert a.mesh.links()[ids.b].queued_messages == count
    await wait_until(lambda: b.mesh.links()[ids.a].messages_received == count, 20)
    assert 0 < peak <= config.send_buffer_high_bytes + config.max_frame_bytes


async def test_urgent_messages_overtake_queued_bulk_messages_and_keep_their_order(net):
    config = MeshConfig(
        **{
            **vars(TEST_CONFIG),
            "send_buffer_high_bytes": 64 * 1024,
            "send_buffer_low_bytes": 16 * 1024,
        }
    )
    a, b = await connected(net, ids.a, ids.b, config=config)
    bulk = [b"b" + i.to_bytes(4, "big") * 250 for i in range(500)]
    urgent = [b"u" + bytes([i]) for i in range(3)]
    too_big_for_a_frame = b"U" * (2 * config.max_frame_bytes)
    for message in bulk[:250]:
        assert a.mesh.send(ids.b, message)
    assert a.mesh.send(ids.b, urgent[0], urgent=True)
    assert a.mesh.send(ids.b, too_big_for_a_frame, urgent=True)
    for message in bulk[250:]:
        assert a.mesh.send(ids.b, message)
    assert a.mesh.send(ids.b, urgent[1], urgent=True)
    assert a.mesh.send(ids.b, urgent[2], urgent=True)
    assert a.mesh.links()[ids.b].queued_messages == len(bulk) + len(urgent) + 1
    await wait_until(lambda: len(b.received[ids.a]) == len(bulk) + len(urgent) + 1, 20)
    received = b.received[ids.a]
    # Everything was queued before the first flush: the urgent lane went out first.
    assert received[: len(urgent)] == urgent
    # A message too large for one frame cannot jump the queue: it keeps its place.
    assert received[len(urgent) :] == [*bulk[:250], too_big_for_a_frame, *bulk[250:]]


@AIORTC_ONLY  # aiortc's tuning: libwebrtc sizes its own sockets
async def test_open_link_enlarges_its_udp_receive_buffer(net):
    wanted = 1024 * 1024
    config = MeshConfig(**{**vars(TEST_CONFIG), "udp_receive_buffer_bytes": wanted})
    a, _ = await connected(net, ids.a, ids.b, config=config)
    ice_connection = internal_link(a, ids.b)._connection.pc.sctp.transport.transport._connection
    sock = selected_socket(ice_connection)
    assert sock is not None
    try:
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    except OSError:
        pytest.skip("net.core.rmem_max is not readable here")
    # Linux grants min(asked, rmem_max) and reports twice that.
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 2 * min(wanted, rmem_max)


@AIORTC_ONLY  # aiortc's tuning: libwebrtc's SCTP honours the receiver's window
async def test_sctp_flight_is_limited_on_mesh_connections_only(net):
    cap = 16 * 1024
    config = MeshConfig(**{**vars(TEST_CONFIG), "sctp_max_flight_bytes": cap})
    a, b = await connected(net, ids.a, ids.b, config=config)
    sctp = internal_link(a, ids.b)._connection.pc.sctp
    assert flight_limit(sctp) == cap
    peak = 0

    def watch(sender, data):
        nonlocal peak
        peak = max(peak, sctp._flight_size)

    b.mesh._on_message = watch
    count = 200
    for _ in range(count):
        assert a.mesh.send(ids.b, b"f" * 10_000)
    await wait_until(lambda: b.mesh.links()[ids.a].messages_received == count, 20)
    # The window may overshoot by the one packet that crossed it.
    assert 0 < peak <= cap + USERDATA_MAX_LENGTH
    unlimited = MeshConfig(**{**vars(TEST_CONFIG), "sctp_max_flight_bytes": 0})
    c, _ = await connected(net, ids.c, ids.d, config=unlimited)
    assert flight_limit(internal_link(c, ids.d)._connection.pc.sctp) is None


def test_receive_buffer_of_a_connection_without_a_socket_is_left_alone():
    assert enlarge_receive_buffer(object(), 1 << 20) is None


async def test_failing_message_handler_does_not_break_the_link(net, caplog):
    a, b = await connected(net, ids.a, ids.b)
    calls = []

    def explode(sender, data):
        calls.append(data)
        raise RuntimeError("handler bug")

    b.mesh._on_message = explode
    with caplog.at_level(logging.ERROR):
        a.mesh.send(ids.b, b"one")
        a.mesh.send(ids.b, b"two")
        await wait_until(lambda: len(calls) == 2)
    assert b.state_of(ids.a) == LinkState.OPEN
    assert "message handler failed" in caplog.text


# --- RTT, malformed input ---------------------------------------------------------------


async def test_rtt_is_measured_by_ping(net):
    a, b = await connected(net, ids.a, ids.b)
    await wait_until(lambda: a.mesh.links()[ids.b].rtt_ms is not None)
    await wait_until(lambda: b.mesh.links()[ids.a].rtt_ms is not None)
    assert 0 < a.mesh.links()[ids.b].rtt_ms < 5000


async def test_malformed_frames_are_counted_and_dropped(net):
    a, b = await connected(net, ids.a, ids.b)
    channel = internal_link(a, ids.b)._open_connection
    channel.send(b"\x07garbage")
    channel.send("a text frame")
    channel.send(encode_chunks(99, b"z" * 3000, 1000)[1])  # continuation without a start
    assert a.mesh.send(ids.b, b"still fine")
    await wait_until(lambda: b.received[ids.a] == [b"still fine"])
    assert b.mesh.links()[ids.a].malformed_frames == 3
    assert b.state_of(ids.a) == LinkState.OPEN


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "offer",
        {},
        {"type": "dance"},
        {"type": "offer", "session": "s1"},
        {"type": "answer", "session": 5, "sdp": "v=0"},
        {"type": "offer", "session": "x" * 65, "sdp": "v=0"},
    ],
)
@AIORTC_ONLY  # no connection is made
async def test_malformed_signals_are_counted_and_dropped(net, payload):
    b = net(ids.b)
    b.mesh.handle_signal(ids.a, payload)
    assert b.mesh.malformed_signals == 1
    assert b.mesh.links() == {}


@AIORTC_ONLY  # no connection is made
async def test_offer_breaking_the_glare_rule_is_refused(net):
    a = net(ids.a)
    a.mesh.handle_signal(ids.z, {"type": "offer", "session": "s1", "sdp": "v=0\r\n"})
    assert a.mesh.malformed_signals == 1


async def test_garbage_sdp_fails_the_attempt_without_crashing(net):
    b = net(ids.b, join=False)
    b.mesh.handle_signal(ids.a, {"type": "offer", "session": "s1", "sdp": "not sdp at all"})
    await wait_until(lambda: b.state_of(ids.a) == LinkState.FAILED)
    a = net(ids.a)
    net.relay.join(ids.b, b.mesh)
    await wait_until(lambda: all_open([a, b]))


# --- presence, failures, reconnection ---------------------------------------------------


async def test_peer_leaving_closes_the_link_and_reports_it(net):
    a, b, c = await connected(net, ids.a, ids.b, ids.c)
    net.relay.leave(ids.b)
    await b.mesh.close()
    await wait_until(lambda: ids.b not in a.mesh.links() and ids.b not in c.mesh.links())
    await wait_until(lambda: any(p == ids.b and i.state == LinkState.CLOSED for p, i in a.changes))
    states = [info.state for peer, info in a.changes if peer == ids.b]
    assert states[0] == LinkState.CONNECTING and LinkState.OPEN in states
    assert a.mesh.send(ids.c, b"still here")
    await wait_until(lambda: c.received[ids.a] == [b"still here"])


async def test_failed_link_reconnects_while_peer_is_present(net):
    a, b = await connected(net, ids.a, ids.b)
    # Kill b's side of the connection behind the mesh's back: a sees its channel close.
    await break_connection(b, ids.a)
    await wait_until(lambda: any(i.state == LinkState.FAILED for p, i in a.changes if p == ids.b))
    await wait_until(lambda: all_open([a, b]) and a.mesh.links()[ids.b].connects == 2)
    assert a.mesh.send(ids.b, b"after reconnect")
    await wait_until(lambda: b.received[ids.a] == [b"after reconnect"])


@pytest.mark.parametrize("resetter", [ids.a, ids.b])
async def test_reset_link_reconnects_from_either_side(net, resetter):
    peers = {p.peer_id: p for p in await connected(net, ids.a, ids.b)}
    other = ids.b if resetter == ids.a else ids.a
    assert peers[resetter].mesh.reset_link(other)
    await wait_until(
        lambda: (
            all_open(list(peers.values()))
            and peers[ids.a].mesh.links()[ids.b].connects == 2
            and peers[ids.b].mesh.links()[ids.a].connects == 2
        )
    )
    assert peers[ids.b].mesh.send(ids.a, b"new link")
    await wait_until(lambda: peers[ids.a].received[ids.b] == [b"new link"])
    assert not peers[ids.a].mesh.reset_link("nobody")


async def test_lost_offer_is_retried_after_the_connect_timeout(net):
    config = MeshConfig(**{**vars(TEST_CONFIG), "connect_timeout": 0.5})
    net.relay.drop_signals = True
    a = net(ids.a, config)
    b = net(ids.b, config)
    await wait_until(lambda: any(i.state == LinkState.FAILED for p, i in a.changes if p == ids.b))
    net.relay.drop_signals = False
    await wait_until(lambda: all_open([a, b]))


# --- fault injection --------------------------------------------------------------------

# A link that hears nothing for dead_after fails (tests/test_link_recovery.py); these tests
# are about what is dropped, so the link must outlive them even on a loaded machine.
LONG_SILENCE_CONFIG = MeshConfig(**{**vars(TEST_CONFIG), "dead_after": 60.0})


async def test_block_drops_traffic_silently(net):
    a, b = await connected(net, ids.a, ids.b, config=LONG_SILENCE_CONFIG)
    block(a.mesh, ids.b)
    assert a.mesh.send(ids.b, b"lost")
    b.mesh.send(ids.a, b"also lost")
    await wait_until(lambda: a.mesh.links()[ids.b].dropped_by_fault >= 2)
    assert a.state_of(ids.b) == LinkState.OPEN
    unblock(a.mesh, ids.b)
    assert a.mesh.send(ids.b, b"delivered")
    await wait_until(lambda: b.received[ids.a] == [b"delivered"])
    assert a.received[ids.b] == []


async def test_fault_filter_can_drop_one_direction(net):
    a, b = await connected(net, ids.a, ids.b, config=LONG_SILENCE_CONFIG)
    a.mesh.engine.frame_filter = lambda peer, direction: direction == "recv"
    assert a.mesh.send(ids.b, b"a to b")
    b.mesh.send(ids.a, b"b to a")
    await wait_until(lambda: b.received[ids.a] == [b"a to b"])
    await wait_until(lambda: a.mesh.links()[ids.b].dropped_by_fault >= 1)
    assert a.received[ids.b] == []
    a.mesh.engine.frame_filter = None
    b.mesh.send(ids.a, b"again")
    await wait_until(lambda: a.received[ids.b] == [b"again"])


# --- shutdown hygiene -------------------------------------------------------------------


async def test_close_leaves_no_pending_tasks_or_warnings(net, recwarn, caplog):
    a, b, c = await connected(net, ids.a, ids.b, ids.c)
    a.mesh.send(ids.b, b"x" * 200_000)
    b.mesh.reset_link(ids.c)  # close while a reconnection is in flight
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        await a.mesh.close()
        # b's link to a fails and starts tearing down; close b while that is in flight.
        await wait_until(lambda: b.state_of(ids.a) == LinkState.FAILED)
        await b.mesh.close()
        await c.mesh.close()
        await wait_until(
            lambda: not pending_tasks(),
            5,
            "no pending tasks",
            details=lambda: "\n".join(repr(t) for t in pending_tasks()),
        )
        gc.collect()
        await asyncio.sleep(0)
    assert "Task was destroyed" not in caplog.text
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]
    assert a.mesh.links() == {}
    assert not a.mesh.send(ids.b, b"after close")


# --- with the real signaling server and client ------------------------------------------


@pytest.fixture
async def signaling_server():
    server = await start_server("127.0.0.1", port=0)
    yield server
    await server.close()


class RecordingClient(SignalingClient):
    """A SignalingClient that keeps every signal it sends."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[dict] = []

    async def send_signal(self, to: str, payload: dict) -> bool:
        self.sent.append(payload)
        return await super().send_signal(to, payload)


def host_addresses_in(signals: list[dict]) -> set[str]:
    addresses = set()
    for payload in signals:
        for line in str(payload.get("sdp", "")).splitlines():
            fields = line.split()
            if line.startswith("a=candidate:") and len(fields) > 7 and fields[7] == "host":
                addresses.add(fields[4])
    return addresses


async def real_peers(
    server, count: int, mode: str = "aiortc"
) -> list[tuple[Peer, SignalingClient]]:
    """``count`` meshes, each joined to one channel through a real SignalingClient, made
    in the order of their ids (so that in ``mixed`` mode each engine offers to the other)."""
    result = []
    identities = sorted((NodeIdentity.generate() for _ in range(count)), key=lambda i: i.node_id)
    for index, identity in enumerate(identities):
        peer_id = identity.node_id
        received: dict[str, list[bytes]] = defaultdict(list)
        listener = MeshSignalingListener()
        client = RecordingClient(server.url, "mesh-test", identity, listener)
        # The signaling server is on loopback, so ICE host candidates are restricted to it.
        config = with_settings(
            TEST_CONFIG,
            ice_host=None,
            signaling_url=server.url,
            webrtc=engine_of(mode, index),
        )
        mesh = Mesh(
            identity,
            client,
            config,
            on_message=lambda sender, data, received=received: received[sender].append(data),
        )
        listener.bind(mesh)
        await client.start()
        result.append((Peer(peer_id, mesh, received), client))
    return result


async def close_real_peers(peers: list[tuple[Peer, SignalingClient]]) -> None:
    for peer, client in peers:
        await peer.mesh.close()
        await client.close()


@pytest.mark.parametrize("count", [2, 5])
async def test_real_signaling_server_connects_a_full_mesh(signaling_server, count, webrtc):
    peers = await real_peers(signaling_server, count, webrtc)
    meshes = [peer for peer, _ in peers]
    try:
        await wait_until(lambda: all_open(meshes), 20, "all links open via the real server")
        for _peer, client in peers:
            assert host_addresses_in(client.sent) == {"127.0.0.1"}
        first, second = meshes[0], meshes[1]
        if first.mesh.engine.name == "aiortc":
            assert local_candidate_addresses(first, second.peer_id) == {"127.0.0.1"}
        for peer in meshes:
            assert peer.mesh.broadcast(peer.peer_id.encode()) == count - 1
        for peer in meshes:
            others = [other.peer_id for other in meshes if other is not peer]
            await wait_until(
                lambda peer=peer, others=others: all(
                    peer.received[o] == [o.encode()] for o in others
                )
            )
        # A peer leaving the channel: the others close their link to it.
        leaving, leaving_client = peers[-1]
        await leaving.mesh.close()
        await leaving_client.close()
        for peer in meshes[:-1]:
            await wait_until(lambda peer=peer: leaving.peer_id not in peer.mesh.links())
    finally:
        await close_real_peers(peers)
    await wait_until(lambda: not pending_tasks(), CLOSE_WAIT_S, "tasks to finish after close")


async def test_a_connection_closed_while_it_connected_starts_no_consent_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aioice starts consent checks when connect() resumes, even on a connection closed
    meanwhile; they would never end. The aiortc engine stops them."""
    import aioice.ice

    from raftchat.net.engines import aiortc_engine

    async def connect_that_completes(self: aioice.ice.Connection) -> None:
        self._query_consent_task = asyncio.create_task(asyncio.Event().wait())

    monkeypatch.setattr(aiortc_engine, "_original_connect", connect_that_completes)
    connection = aioice.ice.Connection(ice_controlling=True)
    connection._closing = True  # close() ran while the checks completed
    await aioice.ice.Connection.connect(connection)
    task = connection._query_consent_task
    assert task is not None
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
