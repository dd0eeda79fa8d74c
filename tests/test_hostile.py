"""Hostile input: peers that send garbage, oversized claims or floods; hostile signaling clients.

The honest peers must keep working, every drop must be counted, memory must stay bounded,
and a persistent offender is disconnected and kept away for a while.
Random inputs print their seed; set RAFTCHAT_TEST_SEED to replay one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random

import aiohttp
import pytest
from mesh_utils import (
    CLOSE_WAIT_S,
    FakeRelay,
    Peer,
    all_open,
    engine_of,
    ids,
    make_peer,
    pending_tasks,
    with_settings,
)
from signaling_utils import RawPeer, assert_server_serves
from support.waiting import wait_until

from raftchat.net import LinkState, MeshConfig, framing
from raftchat.net.auth import AuthErrorKind, AuthMode, encode_hello, encode_reject
from raftchat.net.link import Link
from raftchat.net.signaling.server import ServerConfig, start_server

HOSTILE_CONFIG = with_settings(
    max_offences=20,
    offences_forgiven_per_second=1.0,
    auth_retry_initial=30.0,  # an offender stays away for the whole test
    auth_retry_max=60.0,
    inbound_frames_per_second=200.0,
    inbound_frame_burst=400,
    max_messages_per_frame=64,
    inbound_messages_per_second=500.0,
    inbound_message_burst=1000,
    max_message_bytes=200_000,
    max_queued_bytes=1_000_000,
)


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("RAFTCHAT_TEST_SEED", random.randrange(2**32)))
    print(f"random seed {seed} (replay with RAFTCHAT_TEST_SEED={seed})")
    return random.Random(seed)


@pytest.fixture
async def trio(webrtc):
    """Honest peers b and c and the peer a that turns hostile, all linked, on the engines
    ``webrtc`` gives them (``mesh_utils.engine_of``)."""
    relay = FakeRelay()
    peers = [
        make_peer(relay, peer_id, HOSTILE_CONFIG, webrtc=engine_of(webrtc, index))
        for index, peer_id in enumerate((ids.a, ids.b, ids.c))
    ]
    await wait_until(lambda: all_open(peers), 10, "all links open")
    yield peers
    for peer in peers:
        await peer.mesh.close()
    await wait_until(lambda: not pending_tasks(), CLOSE_WAIT_S, "tasks to finish after close")


def link(peer: Peer, other: str) -> Link:
    return peer.mesh._links[other]


def raw_send(sender: Peer, to: str, frames: list[bytes | str]) -> None:
    """Put frames on the wire as they are, behind the sender's link's back."""
    channel = link(sender, to)._open_connection
    for frame in frames:
        channel.send(frame)


def garbage_frames(rng: random.Random, count: int) -> list[bytes | str]:
    """Frames that can never decode: a wrong version byte, unknown kinds, text."""
    frames: list[bytes | str] = []
    for _ in range(count):
        choice = rng.random()
        if choice < 0.5:
            version = rng.choice([0, 2, 255])
            frames.append(bytes([version]) + rng.randbytes(rng.randrange(0, 200)))
        elif choice < 0.8:
            kind = rng.choice([0, 6, 99, 255])
            frames.append(bytes([framing.FRAME_VERSION, kind]) + rng.randbytes(8))
        else:
            frames.append("text " + str(rng.random()))
    return frames


async def assert_still_talk(sender: Peer, receiver: Peer, text: bytes) -> None:
    assert sender.mesh.send(receiver.peer_id, text)
    await wait_until(lambda: text in receiver.received[sender.peer_id], 10, f"{text!r} delivered")


# --- peers ------------------------------------------------------------------------------


async def test_a_few_garbage_frames_are_dropped_and_counted(trio, rng):
    a, b, _c = trio
    raw_send(a, ids.b, garbage_frames(rng, 10))
    await assert_still_talk(a, b, b"after garbage")
    info = b.mesh.links()[ids.a]
    assert info.malformed_frames == 10
    assert info.state == LinkState.OPEN and info.abuse_disconnects == 0
    assert b.received[ids.a] == [b"after garbage"]


async def test_persistent_garbage_disconnects_the_offender_and_keeps_it_away(trio, rng):
    a, b, c = trio
    raw_send(a, ids.b, garbage_frames(rng, 200))
    await wait_until(lambda: b.mesh.links()[ids.a].abuse_disconnects == 1, 10, "a disconnected")
    info = b.mesh.links()[ids.a]
    assert info.state == LinkState.FAILED
    assert "misbehaved" in info.last_error
    assert info.malformed_frames >= HOSTILE_CONFIG.max_offences
    # a reconnects quickly on its side; b ignores its offers during the penalty.
    await wait_until(lambda: b.mesh.links()[ids.a].ignored_signals >= 1, 10, "a offer ignored")
    assert b.state_of(ids.a) == LinkState.FAILED
    await assert_still_talk(b, c, b"b and c unaffected")
    await assert_still_talk(c, b, b"both ways")
    assert b.mesh.links()[ids.c].connects == 1


async def test_oversized_chunk_claims_are_refused_and_memory_stays_bounded(trio):
    a, b, _c = trio
    limit = HOSTILE_CONFIG.max_message_bytes
    header = bytes([framing.FRAME_VERSION, framing.FrameKind.CHUNK])

    def chunk(message_id: int, total: int, offset: int, data: bytes) -> bytes:
        return header + framing._CHUNK_HEADER.pack(message_id, total, offset) + data

    raw_send(
        a,
        ids.b,
        [
            chunk(1, 2**32 - 1, 0, b"x" * 100),  # claims 4 GiB
            chunk(2, limit + 1, 0, b"x" * 100),  # just over the limit
            chunk(3, 10, 5, b"x" * 100),  # data overruns the claimed length
        ],
    )
    # A legal claim of the largest size, then silence: at most that much is held.
    raw_send(a, ids.b, [chunk(4, limit, 0, b"y" * 1000)])
    await wait_until(lambda: b.mesh.links()[ids.a].malformed_frames == 3, 10, "claims refused")
    await wait_until(lambda: link(b, ids.a)._reassembler.pending_bytes == 1000)
    # A real message (chunked) replaces the abandoned one.
    big = bytes(range(256)) * 400
    await assert_still_talk(a, b, big)
    assert link(b, ids.a)._reassembler.pending_bytes == 0
    assert b.mesh.links()[ids.a].malformed_frames == 4  # 3 refused + 1 interrupted
    assert b.received[ids.a] == [big]


async def test_frame_flood_is_rate_limited_and_the_flooder_disconnected(trio):
    a, b, c = trio
    flood = [framing.encode_batch([i.to_bytes(4, "big")]) for i in range(3000)]
    started = asyncio.get_running_loop().time()
    raw_send(a, ids.b, flood)
    await wait_until(lambda: b.mesh.links()[ids.a].abuse_disconnects == 1, 15, "flooder cut off")
    elapsed = asyncio.get_running_loop().time() - started
    info = b.mesh.links()[ids.a]
    assert info.rate_limited_frames >= HOSTILE_CONFIG.max_offences
    # Only what the token bucket allowed reached the application, in order, with gaps.
    delivered = [int.from_bytes(message, "big") for message in b.received[ids.a]]
    allowed = (
        HOSTILE_CONFIG.inbound_frame_burst + HOSTILE_CONFIG.inbound_frames_per_second * elapsed
    )
    assert 0 < len(delivered) <= allowed
    assert delivered == sorted(set(delivered))
    await assert_still_talk(c, b, b"c unaffected")


async def test_too_many_messages_in_one_frame_are_dropped(trio):
    a, b, _c = trio
    frame = framing.encode_batch([b""] * (HOSTILE_CONFIG.inbound_message_burst + 1))
    raw_send(a, ids.b, [frame])
    await assert_still_talk(a, b, b"next frame is fine")
    assert b.received[ids.a] == [b"next frame is fine"]
    assert b.mesh.links()[ids.a].rate_limited_frames == 1


async def test_handshake_messages_after_the_handshake_are_ignored(trio):
    a, b, _c = trio
    raw_send(
        a,
        ids.b,
        [
            framing.encode_auth(encode_reject(AuthErrorKind.WRONG_PASSPHRASE)),
            framing.encode_auth(encode_hello(AuthMode.OPEN, bytes(16))),
        ],
    )
    await assert_still_talk(a, b, b"still open")
    info = b.mesh.links()[ids.a]
    assert info.malformed_frames == 2 and info.state == LinkState.OPEN
    assert info.auth_error is None


async def test_frames_before_the_handshake_are_dropped(webrtc):
    relay = FakeRelay()
    a = make_peer(relay, ids.a, HOSTILE_CONFIG, join=False, webrtc=engine_of(webrtc, 0))
    b = make_peer(relay, ids.b, HOSTILE_CONFIG, join=False, webrtc=engine_of(webrtc, 1))
    relay.join(ids.a, a.mesh)
    relay.join(ids.b, b.mesh)
    offender = link(a, ids.b)
    original_on_open = offender.channel_open

    def on_open(connection):
        connection.send(framing.encode_batch([b"before the handshake"]))
        original_on_open(connection)

    offender.channel_open = on_open
    try:
        await wait_until(lambda: all_open([a, b]), 10, "link open after the handshake")
        await assert_still_talk(a, b, b"after the handshake")
        assert b.received[ids.a] == [b"after the handshake"]
        assert b.mesh.links()[ids.a].unauthenticated_frames == 1
    finally:
        await a.mesh.close()
        await b.mesh.close()


async def test_a_bug_in_the_receive_path_never_escapes(trio, monkeypatch, caplog):
    a, b, _c = trio

    def broken(frame):
        raise RuntimeError("decoder bug")

    monkeypatch.setattr(framing, "decode_frame", broken)
    raw_send(a, ids.b, [framing.encode_batch([b"lost"])])
    await wait_until(lambda: "receiving a frame failed" in caplog.text, 10, "bug logged")
    monkeypatch.undo()
    await assert_still_talk(a, b, b"recovered")
    assert b.state_of(ids.a) == LinkState.OPEN


@pytest.mark.parametrize("webrtc", ["aiortc", "wrtc"], indirect=True)
async def test_offers_from_invented_peers_are_bounded_by_max_links(webrtc):
    relay = FakeRelay()
    config = with_settings(HOSTILE_CONFIG, max_links=5)
    victim = make_peer(relay, ids.zz, config, join=False, webrtc=webrtc)
    try:
        for number in range(50):
            victim.mesh.handle_signal(
                f"fake{number:03d}", {"type": "offer", "session": "s1", "sdp": "v=0\r\n"}
            )
        assert len(victim.mesh.links()) == 5
        assert victim.mesh.refused_offers == 45
        await wait_until(
            lambda: all(i.state == LinkState.FAILED for i in victim.mesh.links().values()),
            10,
            "bad offers to fail",
        )
    finally:
        await victim.mesh.close()


def test_inbound_limits_are_validated():
    with pytest.raises(ValueError, match="inbound_message_burst"):
        MeshConfig(inbound_message_burst=10, max_messages_per_frame=100)
    with pytest.raises(ValueError, match="auth_retry_max"):
        MeshConfig(auth_retry_initial=10, auth_retry_max=5)
    with pytest.raises(ValueError, match="max_offences"):
        MeshConfig(max_offences=0)


# --- signaling server -------------------------------------------------------------------


@pytest.fixture
async def server():
    running = await start_server("127.0.0.1", 0, ServerConfig())
    yield running
    await running.close()


async def test_raw_tcp_garbage_does_not_hurt_the_server(server, rng):
    for _ in range(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(rng.randbytes(rng.randrange(1, 4096)))
        await writer.drain()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(reader.read(1024), 5)
        writer.close()
        await writer.wait_closed()
    await assert_server_serves(server.url)


async def test_unknown_channels_and_silent_sockets_leave_no_state(server, rng):
    async with aiohttp.ClientSession() as session:
        for _ in range(50):
            async with session.get(f"{server.url}/channels/{rng.randbytes(6).hex()}/peers") as r:
                assert r.status == 403  # peer lists are for the channel's peers only
    silent = [await RawPeer.connect(server.url, f"never-{n}") for n in range(20)]
    assert server.server.state.channels == {}
    for peer in silent:
        await peer.close()
    await wait_until(lambda: not server.server.state.connections, 5, "sockets to be forgotten")
    await assert_server_serves(server.url)
    assert server.server.state.channels == {}


async def test_peers_that_left_leave_no_state(server):
    for number in range(20):
        peer, _ = await RawPeer.join(server.url, f"churn-{number}")
        await peer.close()
        await wait_until(lambda: not server.server.state.channels, 5, "peer to leave")
    assert not server.server.state.connections
