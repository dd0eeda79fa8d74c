"""Raft-shaped traffic over reliable ordered versus unordered / partially reliable
DataChannels: the open question of the raft.js WebRTC paper (section 6).

Two aiortc peer connections on loopback (one process, real UDP and SCTP) replay
what a leader does with one follower: batches of 100-byte entries ("AppendEntries"),
at most ``inflight`` unacknowledged, each acknowledged with the follower's match
index, plus a small ping every ``ping_interval_s`` ("heartbeat") answered at once.
The follower behaves like Raft: it appends a batch only if it follows its log,
otherwise it rejects it with its last index; the leader rewinds to that index on a
reject (once per rewind generation) or when nothing was acknowledged for a
heartbeat interval. Packet loss is injected below SCTP by dropping outgoing UDP
datagrams of established ICE connections, so SCTP's own recovery is exercised.

Run: ``python -m raftchat.bench.channel_modes [--duration S] [--loss 0,0.01,0.05] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import aioice.ice
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection

from raftchat.bench.stats import summarize
from raftchat.net.ice import host_candidates

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_HEADER = struct.Struct("!BQI")
"""kind, sequence (batch number or ping nonce), rewind generation."""
BATCH, ACK, REJECT, PING, PONG = range(5)


@dataclass(frozen=True)
class ChannelMode:
    """How the DataChannel is created (``createDataChannel`` arguments)."""

    name: str
    ordered: bool
    max_retransmits: int | None = None
    max_packet_life_time_ms: int | None = None


MODES = (
    ChannelMode("reliable ordered", ordered=True),
    ChannelMode("reliable unordered", ordered=False),
    ChannelMode("unordered, maxRetransmits=0", ordered=False, max_retransmits=0),
    ChannelMode("unordered, maxPacketLifeTime=50ms", ordered=False, max_packet_life_time_ms=50),
)


@dataclass(frozen=True)
class TrafficShape:
    """The replayed Raft traffic."""

    entries_per_batch: int = 128
    """Entries per AppendEntries (128 x 100 B = 12.8 KB, well under one 64 KB frame)."""
    entry_bytes: int = 100
    inflight: int = 8
    """Unacknowledged batches allowed (the core's max_inflight)."""
    resend_after_s: float = 0.1
    """Rewind when nothing was acknowledged this long (one heartbeat interval)."""
    ping_interval_s: float = 0.05
    duration_s: float = 3.0


@dataclass
class RunResult:
    mode: str
    loss: float
    entries_per_s: float
    batch_latency_ms: dict = field(default_factory=dict)
    heartbeat_rtt_ms: dict = field(default_factory=dict)
    rewinds: int = 0
    batches_sent: int = 0
    batches_acked: int = 0


@contextlib.contextmanager
def udp_loss(probability: float, rng: random.Random) -> Iterator[None]:
    """Drop each outgoing data datagram of an established ICE pair with ``probability``
    (STUN checks are untouched, so connections still come up)."""
    original = aioice.ice.StunProtocol.send_data

    async def lossy_send_data(self: aioice.ice.StunProtocol, data: bytes, addr: tuple) -> None:
        if rng.random() < probability:
            return
        await original(self, data, addr)

    aioice.ice.StunProtocol.send_data = lossy_send_data  # type: ignore[method-assign]
    try:
        yield
    finally:
        aioice.ice.StunProtocol.send_data = original  # type: ignore[method-assign]


async def _connect(
    mode: ChannelMode,
) -> tuple[list[RTCPeerConnection], RTCDataChannel, RTCDataChannel]:
    config = RTCConfiguration(iceServers=[])
    with host_candidates([LOOPBACK]):
        leader_pc, follower_pc = RTCPeerConnection(config), RTCPeerConnection(config)
        leader_channel = leader_pc.createDataChannel(
            "raft",
            ordered=mode.ordered,
            maxRetransmits=mode.max_retransmits,
            maxPacketLifeTime=mode.max_packet_life_time_ms,
        )
        follower_channel: asyncio.Future[RTCDataChannel] = asyncio.Future()
        follower_pc.on("datachannel", follower_channel.set_result)
        await leader_pc.setLocalDescription(await leader_pc.createOffer())
        await follower_pc.setRemoteDescription(leader_pc.localDescription)
        await follower_pc.setLocalDescription(await follower_pc.createAnswer())
        await leader_pc.setRemoteDescription(follower_pc.localDescription)
    opened = asyncio.Event()
    if leader_channel.readyState == "open":
        opened.set()
    leader_channel.on("open", opened.set)
    await asyncio.wait_for(opened.wait(), 15)
    return [leader_pc, follower_pc], leader_channel, await asyncio.wait_for(follower_channel, 15)


def _attach_follower(channel: RTCDataChannel) -> None:
    last = 0

    def on_message(frame: bytes) -> None:
        nonlocal last
        kind, seq, generation = _HEADER.unpack_from(frame)
        if kind == PING:
            channel.send(_HEADER.pack(PONG, seq, 0))
        elif kind == BATCH:
            if seq == last + 1:
                last = seq
                channel.send(_HEADER.pack(ACK, last, generation))
            elif seq <= last:
                channel.send(_HEADER.pack(ACK, last, generation))
            else:  # a gap: Raft's log matching refuses it
                channel.send(_HEADER.pack(REJECT, last, generation))

    channel.on("message", on_message)


async def _replay(
    leader: RTCDataChannel, shape: TrafficShape, result: RunResult
) -> tuple[list[float], list[float]]:
    payload = b"e" * (shape.entries_per_batch * shape.entry_bytes)
    loop = asyncio.get_running_loop()
    next_seq, acked, generation = 1, 0, 0
    sent_at: dict[int, float] = {}
    last_progress = loop.time()
    latencies: list[float] = []
    pings: dict[int, float] = {}
    ping_rtts: list[float] = []
    wake = asyncio.Event()

    def send_window() -> None:
        nonlocal next_seq
        while next_seq <= acked + shape.inflight:
            leader.send(_HEADER.pack(BATCH, next_seq, generation) + payload)
            sent_at[next_seq] = time.perf_counter()
            result.batches_sent += 1
            next_seq += 1

    def rewind() -> None:
        nonlocal next_seq, generation
        generation += 1
        next_seq = acked + 1
        result.rewinds += 1
        send_window()

    def on_message(frame: bytes) -> None:
        nonlocal acked, last_progress
        kind, seq, frame_generation = _HEADER.unpack_from(frame)
        now = time.perf_counter()
        if kind == PONG:
            started = pings.pop(seq, None)
            if started is not None:
                ping_rtts.append((now - started) * 1000)
            return
        if seq > acked:
            for number in range(acked + 1, seq + 1):
                latencies.append((now - sent_at.pop(number)) * 1000)
            acked = seq
            last_progress = loop.time()
        if kind == REJECT and frame_generation == generation:
            rewind()
        else:
            send_window()
        wake.set()

    leader.on("message", on_message)
    started = loop.time()
    nonce = 0
    send_window()
    while loop.time() - started < shape.duration_s:
        nonce += 1
        pings[nonce] = time.perf_counter()
        leader.send(_HEADER.pack(PING, nonce, 0))
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), shape.ping_interval_s)
        if loop.time() - last_progress > shape.resend_after_s:
            last_progress = loop.time()
            rewind()
    elapsed = loop.time() - started
    result.batches_acked = acked
    result.entries_per_s = round(acked * shape.entries_per_batch / elapsed, 1)
    return latencies, ping_rtts


async def run_mode(mode: ChannelMode, loss: float, shape: TrafficShape, seed: int) -> RunResult:
    pcs, leader, follower = await _connect(mode)
    result = RunResult(mode.name, loss, 0.0)
    try:
        _attach_follower(follower)
        with udp_loss(loss, random.Random(seed)):
            latencies, pings = await _replay(leader, shape, result)
        result.batch_latency_ms = summarize(latencies, 2)
        result.heartbeat_rtt_ms = summarize(pings, 2)
    finally:
        for pc in pcs:
            await pc.close()
    return result


async def compare(losses: list[float], shape: TrafficShape, seed: int) -> list[RunResult]:
    results = []
    for loss in losses:
        for mode in MODES:
            result = await run_mode(mode, loss, shape, seed)
            print(
                f"loss {loss:.0%} {mode.name}: {result.entries_per_s:.0f} entries/s",
                file=sys.stderr,
                flush=True,
            )
            results.append(result)
    return results


def format_results(results: list[RunResult]) -> str:
    header = (
        "loss",
        "channel",
        "entries/s",
        "batch p50",
        "batch p99",
        "hb p50",
        "hb p99",
        "rewinds",
    )
    rows = [header]
    for result in results:
        batch, beat = result.batch_latency_ms, result.heartbeat_rtt_ms
        rows.append(
            (
                f"{result.loss:.0%}",
                result.mode,
                f"{result.entries_per_s:.0f}",
                f"{batch.get('p50', float('nan')):.1f} ms",
                f"{batch.get('p99', float('nan')):.1f} ms",
                f"{beat.get('p50', float('nan')):.1f} ms",
                f"{beat.get('p99', float('nan')):.1f} ms",
                str(result.rewinds),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raftchat.bench.channel_modes",
        description="Raft-shaped traffic over ordered vs unordered / partially reliable "
        "DataChannels on loopback, with injected packet loss.",
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--loss", default="0,0.01,0.05", help="datagram loss rates to try")
    parser.add_argument("--seed", type=int, default=1, help="seed of the loss pattern")
    parser.add_argument("--json", action="store_true", help="one JSON object as the last line")
    args = parser.parse_args(argv)
    losses = [float(part) for part in args.loss.split(",") if part.strip()]
    if any(not 0 <= loss < 1 for loss in losses):
        parser.error("--loss rates must be in [0, 1)")
    shape = TrafficShape(duration_s=args.duration)
    print(f"seed {args.seed}", file=sys.stderr)
    results = asyncio.run(compare(losses, shape, args.seed))
    print(format_results(results))
    if args.json:
        print(
            json.dumps(
                {
                    "shape": asdict(shape),
                    "seed": args.seed,
                    "results": [asdict(result) for result in results],
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
