"""Signaling server limits against abuse: each one is hit, answered with its code, counted
in /metrics, and an honest client (from another address) is still served.

Loopback only. Client addresses are played with source addresses 127.0.0.x: the server
counts 127.0.0.2 and 127.0.0.3 as two clients.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest
from signaling_utils import (
    RawPeer,
    RecordingListener,
    StuckPeer,
    assert_server_serves,
    get_metrics,
)
from support.clocks import ManualClock
from support.waiting import wait_until

from raftchat.net.identity import NodeIdentity
from raftchat.net.signaling.addresses import Addresses, address_key
from raftchat.net.signaling.client import ClientConfig, ServerRejectedError, SignalingClient
from raftchat.net.signaling.config import ServerConfig
from raftchat.net.signaling.protocol import ERROR_HEADER
from raftchat.net.signaling.server import RunningServer, start_server

ATTACKER = "127.0.0.2"
HONEST = "127.0.0.3"


@contextlib.asynccontextmanager
async def running(config: ServerConfig, clock: ManualClock | None = None):
    server = (
        await start_server("127.0.0.1", 0, config)
        if clock is None
        else await start_server("127.0.0.1", 0, config, clock=clock)
    )
    try:
        yield server
    finally:
        await server.close()


async def hello(peer: RawPeer) -> dict:
    await peer.send_json(peer.hello())
    return await peer.recv()


async def refused_with(server: RunningServer, channel: str, code: str) -> None:
    """A hello from the attacker's address is refused with ``code`` and closed."""
    peer = await RawPeer.connect(server.url, channel, source=ATTACKER)
    try:
        frame = await hello(peer)
        assert frame["type"] == "error" and frame["code"] == code, frame
        assert frame["fatal"] is True
        await peer.expect_closed()
    finally:
        await peer.close()


async def open_sockets(source: str, port: int, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        writers.append(writer)
    return writers


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def test_addresses_are_counted_per_ipv4_address_and_ipv6_64() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")


# ------------------------------------------------------------------ connections


async def test_connections_per_address_are_capped_with_a_503() -> None:
    async with running(ServerConfig(max_connections_per_address=3)) as server:
        held = await open_sockets(ATTACKER, server.port, 3)
        await wait_until(lambda: len(server.server.guard.open) == 3, what="3 sockets held")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await RawPeer.connect(server.url, "room", source=ATTACKER)
        assert refused.value.status == 503
        assert refused.value.headers[ERROR_HEADER] == "too_many_connections"
        await assert_server_serves(server.url, source=HONEST)
        metrics = await get_metrics(server.url)
        assert metrics['raftchat_signaling_errors_total{code="too_many_connections"}'] == 1
        await close_all(held)
        await wait_until(lambda: not server.server.guard.open, what="sockets released")
        await assert_server_serves(server.url, source=ATTACKER)  # its share is back


async def test_a_client_refused_for_connections_gets_a_clear_error() -> None:
    async with running(ServerConfig(max_connections=2)) as server:
        held = await open_sockets(ATTACKER, server.port, 2)
        await wait_until(lambda: len(server.server.guard.open) == 2, what="2 sockets held")
        listener = RecordingListener()
        client = SignalingClient(server.url, "room", NodeIdentity.generate(), listener)
        with pytest.raises(ServerRejectedError) as caught:
            await client.start()
        assert caught.value.code == "server_full"
        assert "server_full" in str(caught.value)
        await close_all(held)
        await wait_until(lambda: not server.server.guard.open, what="sockets released")
        await assert_server_serves(server.url, source=HONEST)


async def test_half_sent_requests_are_closed_and_counted() -> None:
    """Slowloris: requests whose headers never end hold no socket past header_timeout."""
    config = ServerConfig(header_timeout=0.5, max_connections_per_address=64)
    async with running(config) as server:
        writers = await open_sockets(ATTACKER, server.port, 40)
        for writer in writers:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.url}/healthz") as response,
        ):
            health = await response.json()
        assert health["sockets"] >= 40  # they are counted while they are open
        await assert_server_serves(server.url, source=HONEST)  # and do not stop the others

        async def closed_by_server(writer: asyncio.StreamWriter) -> None:
            reader = writer.transport.get_protocol()._stream_reader  # type: ignore[attr-defined]
            with contextlib.suppress(ConnectionError):
                assert await asyncio.wait_for(reader.read(), 5) == b""

        await asyncio.gather(*(closed_by_server(writer) for writer in writers))
        await close_all(writers)
        metrics = await get_metrics(server.url)
        assert metrics['raftchat_signaling_http_timeouts_total{phase="header"}'] == 40
        await wait_until(lambda: not server.server.guard.open, what="all sockets gone")


async def test_a_body_that_never_ends_is_closed_and_counted() -> None:
    async with running(ServerConfig(body_timeout=0.3)) as server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, local_addr=(ATTACKER, 0)
        )
        writer.write(b"POST /channels HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nab")
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(reader.read(), 5)  # the answer, then the close
        writer.close()
        metrics = await get_metrics(server.url)
        assert metrics['raftchat_signaling_http_timeouts_total{phase="body"}'] == 1
        await assert_server_serves(server.url, source=HONEST)


async def test_endless_headers_are_cut_off() -> None:
    async with running(ServerConfig(max_header_bytes=4096)) as server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, local_addr=(ATTACKER, 0)
        )
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        with contextlib.suppress(ConnectionError):
            for number in range(200):
                writer.write(f"X-Filler-{number}: {'z' * 100}\r\n".encode())
                await writer.drain()
            await asyncio.wait_for(reader.read(), 5)
        writer.close()
        metrics = await get_metrics(server.url)
        assert metrics['raftchat_signaling_errors_total{code="headers_too_large"}'] == 1
        await assert_server_serves(server.url, source=HONEST)


# ------------------------------------------------------------------ channels and joins


async def test_channels_per_address_and_slots_come_back_when_the_last_peer_leaves() -> None:
    config = ServerConfig(max_channels_per_address=2, max_channels=3)
    async with running(config) as server:
        first, _ = await RawPeer.join(server.url, "a-1", source=ATTACKER)
        second, _ = await RawPeer.join(server.url, "a-2", source=ATTACKER)
        await refused_with(server, "a-3", "too_many_channels_from_address")
        # Others may still open channels (up to the global maximum) ...
        honest, _ = await RawPeer.join(server.url, "h-1", source=HONEST)
        # ... and join the attacker's channels: a channel is not its opener's.
        guest, _ = await RawPeer.join(server.url, "a-1", source=HONEST)
        await RawPeer.connect(server.url, "h-2", source=HONEST)
        late = await RawPeer.connect(server.url, "h-2", source=HONEST)
        assert (await hello(late))["code"] == "too_many_channels"  # 3 channels exist
        await late.close()
        await second.close()  # a-2's last peer leaves: its slot is free again
        await wait_until(lambda: "a-2" not in server.server.state.channels, what="a-2 gone")
        third, _ = await RawPeer.join(server.url, "a-3", source=ATTACKER)
        metrics = await get_metrics(server.url)
        errors = 'raftchat_signaling_errors_total{code="%s"}'
        assert metrics[errors % "too_many_channels_from_address"] == 1
        assert metrics[errors % "too_many_channels"] == 1
        for peer in (first, third, honest, guest):
            await peer.close()


async def test_one_address_cannot_fill_a_channel() -> None:
    config = ServerConfig(max_peers_per_channel=6, max_peers_per_channel_per_address=2)
    async with running(config) as server:
        squatters = [(await RawPeer.join(server.url, "room", source=ATTACKER))[0] for _ in range(2)]
        await refused_with(server, "room", "too_many_peers_from_address")
        newcomer, welcome = await RawPeer.join(server.url, "room", source=HONEST)
        assert sorted(welcome["peers"]) == sorted(peer.peer_id for peer in squatters)
        for peer in [*squatters, newcomer]:
            await peer.close()


async def test_joins_per_minute_per_address() -> None:
    clock = ManualClock()
    config = ServerConfig(joins_per_minute_per_address=60, join_burst_per_address=3)
    async with running(config, clock) as server:
        joined = [(await RawPeer.join(server.url, f"j-{n}", source=ATTACKER))[0] for n in range(3)]
        await refused_with(server, "j-4", "join_rate_limited")
        await assert_server_serves(server.url, source=HONEST)
        clock.advance(1.0)  # one join per second comes back
        again, _ = await RawPeer.join(server.url, "j-4", source=ATTACKER)
        await refused_with(server, "j-5", "join_rate_limited")
        metrics = await get_metrics(server.url)
        assert metrics['raftchat_signaling_errors_total{code="join_rate_limited"}'] == 2
        for peer in [*joined, again]:
            await peer.close()


async def test_exempt_addresses_meet_only_the_global_limits() -> None:
    config = ServerConfig(
        max_peers_per_channel_per_address=1, max_peers_per_channel=3, exempt_addresses=[ATTACKER]
    )
    async with running(config) as server:
        peers = [(await RawPeer.join(server.url, "proxy", source=ATTACKER))[0] for _ in range(3)]
        await refused_with(server, "proxy", "channel_full")
        for peer in peers:
            await peer.close()


# ------------------------------------------------------------------ liveness


async def test_idle_squatters_are_dropped_and_a_keepalive_client_stays() -> None:
    """A squatter says hello and then nothing, though its library answers (and sends)
    pings; the real client sends keepalive frames and stays."""
    async with running(ServerConfig(idle_timeout=0.6)) as server:
        listener = RecordingListener()
        honest = SignalingClient(
            server.url,
            "room",
            NodeIdentity.generate(),
            listener,
            ClientConfig(keepalive_interval=0.1),
        )
        await honest.start()
        first, _ = await RawPeer.join(server.url, "room", source=ATTACKER, heartbeat=0.05)
        await listener.wait_for(lambda: listener.peers == {first.peer_id}, what="squatter seen")
        frame = await first.expect_error("idle_timeout")
        assert frame["fatal"] is True
        await first.expect_closed()
        await listener.wait_for(lambda: listener.peers == frozenset(), what="squatter gone")
        # A second squatter, joined after the first was dropped, is dropped a full idle
        # timeout later: by then the honest client has been quiet but for keepalives for
        # two timeouts, and is still there.
        second, _ = await RawPeer.join(server.url, "room", source=ATTACKER, heartbeat=0.05)
        await second.expect_error("idle_timeout")
        assert server.peers("room") == {honest.peer_id}
        assert honest.state == "connected" and honest.failed_reconnects == 0
        metrics = await get_metrics(server.url)
        assert metrics['raftchat_signaling_errors_total{code="idle_timeout"}'] == 2
        for peer in (first, second):
            await peer.close()
        await honest.close()


async def test_a_peer_that_sends_keepalives_is_not_idle() -> None:
    async with running(ServerConfig(idle_timeout=0.4)) as server:
        peer, _ = await RawPeer.join(server.url, "room", source=HONEST)
        watcher, _ = await RawPeer.join(server.url, "room", source=ATTACKER)
        await peer.recv()  # peer_joined watcher
        # The watcher (silent) is dropped; the peer keeps talking meanwhile.
        done = asyncio.Event()

        async def keep_talking() -> None:
            while not done.is_set():
                await peer.keepalive()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.1)

        talker = asyncio.create_task(keep_talking())
        await watcher.expect_error("idle_timeout")
        assert await peer.recv() == {"type": "peer_left", "peer_id": watcher.peer_id}
        done.set()
        await talker
        assert server.peers("room") == {peer.peer_id}
        await peer.close()
        await watcher.close()


async def test_pings_do_not_stretch_the_hello_timeout() -> None:
    async with running(ServerConfig(hello_timeout=0.3)) as server:
        silent = await RawPeer.connect(server.url, "quiet", source=ATTACKER, heartbeat=0.05)
        await silent.expect_error("hello_timeout")
        await silent.expect_closed()
        await silent.close()
        metrics = await get_metrics(server.url)
        assert metrics['raftchat_signaling_errors_total{code="hello_timeout"}'] == 1
        await assert_server_serves(server.url, source=HONEST)


# ------------------------------------------------------------------ slow readers


async def test_a_peer_that_stops_reading_is_cut_off_at_its_byte_budget() -> None:
    """The stuck peer's frames pile up in its queue (the kernel's buffers fill first);
    at send_queue_bytes it is disconnected and its queue dropped."""
    config = ServerConfig(
        send_queue_bytes=256 * 1024, burst_messages=100_000, messages_per_second=100_000
    )
    async with running(config) as server:
        stuck = await StuckPeer.join(server.port, "room", source=ATTACKER)
        sender, _ = await RawPeer.join(server.url, "room", source=HONEST)
        payload = {"sdp": "s" * 60_000}
        peak = 0.0

        async def flood() -> None:
            nonlocal peak
            while stuck.peer_id in server.peers("room"):
                await sender.signal(stuck.peer_id, payload)
                peak = max(peak, server.server.budget.total)
                await asyncio.sleep(0)  # let the server read it: a yield, not a wait

        await asyncio.wait_for(flood(), 60)
        assert peak <= config.send_queue_bytes
        metrics = await get_metrics(server.url)
        assert metrics['raftchat_signaling_errors_total{code="slow_consumer"}'] == 1
        assert server.server.budget.total < 1000
        # The sender was not slowed down or dropped: it still talks to a newcomer.
        newcomer, _ = await RawPeer.join(server.url, "room", source=HONEST)
        await sender.signal(newcomer.peer_id, {"sdp": "hi"})
        while (frame := await newcomer.recv())["type"] != "signal":
            pass
        assert frame["payload"] == {"sdp": "hi"}
        for peer in (stuck, sender, newcomer):
            await peer.close()


# ------------------------------------------------------------------ metrics


async def test_metrics_are_prometheus_text_without_names() -> None:
    async with running(ServerConfig()) as server:
        peer, _ = await RawPeer.join(server.url, "secret-channel-name")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.url}/metrics") as response,
        ):
            text = await response.text()
        assert "secret-channel-name" not in text and peer.peer_id not in text
        for line in text.splitlines():
            assert line.startswith(("# HELP raftchat_", "# TYPE raftchat_", "raftchat_")), line
        metrics = await get_metrics(server.url)
        assert metrics["raftchat_signaling_peers"] == 1
        assert metrics["raftchat_signaling_channels"] == 1
        assert metrics["raftchat_signaling_joins_total"] == 1
        assert metrics["raftchat_signaling_websockets"] == 1
        assert metrics["raftchat_signaling_open_connections"] >= 1
        await peer.close()


def test_remembered_join_budgets_are_bounded() -> None:
    """An address that leaves with its join budget spent is remembered (so leaving does
    not refill it), but only the most recent max_tracked_addresses of them."""
    config = ServerConfig(max_tracked_addresses=100, join_burst_per_address=1)
    addresses = Addresses(config)
    for n in range(1000):
        usage = addresses.of(f"10.0.{n // 250}.{n % 250}", now=0.0)
        assert usage.joins.take(0.0)
        addresses.release(usage, now=0.0)
    assert len(addresses) == 100
    recent = addresses.of("10.0.3.249", now=0.0)  # the last one: still spent
    assert not recent.joins.take(0.0)
    # One whose budget refilled is forgotten at once: nothing is kept for free.
    addresses.release(recent, now=3600.0)
    assert len(addresses) == 99
