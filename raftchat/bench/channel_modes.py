"""Raft-shaped traffic over reliable ordered versus unordered / partially reliable
DataChannels: the open question of the raft.js WebRTC paper (section 6).

A leader process and a follower process (each with its own aiortc peer connection
and event loop; real UDP and SCTP on loopback; the SDP offer/answer travels over
the follower's stdin/stdout) replay what a Raft leader does with one follower:
batches of 100-byte entries ("AppendEntries"), at most ``inflight`` of them
unacknowledged, each acknowledged with the follower's match index, plus a small
ping every ``ping_interval_s`` ("heartbeat") answered at once.

The follower behaves like Raft: it appends a batch only if it follows its log,
otherwise it rejects it with its last index. The leader rewinds to that index on
a reject (once per rewind generation) or when nothing was acknowledged for a
heartbeat interval. Packet loss is injected below SCTP, in both processes, by
dropping outgoing UDP datagrams of established ICE connections, so SCTP's own
recovery is exercised. Each (loss, mode) pair runs ``--repeat`` times; the table
gives the median rate and percentiles over the pooled samples.

With ``--followers 2`` the leader process replicates to two follower processes at
once, as a leader of three nodes does: the rate is then entries per second that
reached every follower. With no Raft, storage or chat work at all, that is the
ceiling the WebRTC stack puts on a three-node channel on the machine.

Run: ``python -m raftchat.bench.channel_modes [--duration S] [--loss 0,0.01,0.05]
[--repeat N] [--followers N] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import statistics
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

import aioice.ice
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from raftchat.bench.stats import summarize
from raftchat.net.engines.aiortc_engine import host_candidates

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
    """Unacknowledged batches allowed (the core's max_inflight); 0: heartbeats only."""
    resend_after_s: float = 0.1
    """Rewind when nothing was acknowledged this long (one heartbeat interval)."""
    ping_interval_s: float = 0.05
    duration_s: float = 3.0


@dataclass
class RunResult:
    mode: str
    loss: float
    entries_per_s: float
    workload: str = "load"
    """"load": AppendEntries batches plus heartbeats; "idle": heartbeats only."""
    heartbeats_sent: int = 0
    heartbeats_lost: int = 0
    batch_latency_ms: dict = field(default_factory=dict)
    heartbeat_rtt_ms: dict = field(default_factory=dict)
    rewinds: int = 0
    batches_sent: int = 0
    batches_acked: int = 0
    entries_per_s_runs: list[float] = field(default_factory=list)
    followers: int = 1
    """Follower processes replicated to at once; ``entries_per_s`` counts an entry once
    every one of them acknowledged it."""
    entries_per_s_by_follower: list[float] = field(default_factory=list)
    batch_latencies: list[float] = field(default_factory=list, repr=False)
    heartbeat_rtts: list[float] = field(default_factory=list, repr=False)

    def as_json(self) -> dict:
        data = asdict(self)
        del data["batch_latencies"], data["heartbeat_rtts"]
        return data


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


def _new_peer_connection() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def _open_leader(
    mode: ChannelMode, follower: asyncio.subprocess.Process
) -> tuple[RTCPeerConnection, RTCDataChannel]:
    """Offer to the follower process over its stdin; its answer comes on its stdout."""
    assert follower.stdin is not None and follower.stdout is not None
    with host_candidates([LOOPBACK]):
        pc = _new_peer_connection()
        channel = pc.createDataChannel(
            "raft",
            ordered=mode.ordered,
            maxRetransmits=mode.max_retransmits,
            maxPacketLifeTime=mode.max_packet_life_time_ms,
        )
        await pc.setLocalDescription(await pc.createOffer())
    follower.stdin.write(json.dumps({"sdp": pc.localDescription.sdp}).encode() + b"\n")
    await follower.stdin.drain()
    answer = json.loads(await asyncio.wait_for(follower.stdout.readline(), 15))
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    opened = asyncio.Event()
    if channel.readyState == "open":
        opened.set()
    channel.on("open", opened.set)
    await asyncio.wait_for(opened.wait(), 15)
    return pc, channel


async def _run_follower(loss: float, seed: int) -> None:
    """The follower process: answer one offer from stdin, then echo Raft-style until
    stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    offer = json.loads(await reader.readline())
    with host_candidates([LOOPBACK]):
        pc = _new_peer_connection()
        pc.on("datachannel", _attach_follower)
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    sys.stdout.write(json.dumps({"sdp": pc.localDescription.sdp}) + "\n")
    sys.stdout.flush()
    with udp_loss(loss, random.Random(seed + 1)):
        while await reader.readline():
            pass
    await pc.close()


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
        while shape.inflight and next_seq <= acked + shape.inflight:
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
            sent = pings.pop(seq, None)
            if sent is not None:
                ping_rtts.append((now - sent) * 1000)
            wake.set()
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

    leader.on("message", on_message)
    started = loop.time()
    nonce = 0
    send_window()
    while loop.time() - started < shape.duration_s:
        # Heartbeats at a fixed pace; acks drive the batches from on_message.
        nonce += 1
        pings[nonce] = time.perf_counter()
        leader.send(_HEADER.pack(PING, nonce, 0))
        await asyncio.sleep(shape.ping_interval_s)
        if shape.inflight and loop.time() - last_progress > shape.resend_after_s:
            last_progress = loop.time()
            rewind()
    elapsed = loop.time() - started
    result.batches_acked = acked
    result.entries_per_s = round(acked * shape.entries_per_batch / elapsed, 1)
    # Heartbeats still unanswered a second after the run count as lost.
    deadline = loop.time() + 1.0
    while pings and loop.time() < deadline:
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), deadline - loop.time())
    result.heartbeats_sent = nonce
    result.heartbeats_lost = len(pings)
    return latencies, ping_rtts


async def _spawn_follower(loss: float, seed: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "raftchat.bench.channel_modes",
        "--follower",
        "--loss",
        str(loss),
        "--seed",
        str(seed),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def _stop_follower(follower: asyncio.subprocess.Process) -> None:
    if follower.stdin is not None:
        follower.stdin.close()
    try:
        await asyncio.wait_for(follower.wait(), 10)
    except TimeoutError:
        follower.kill()
        await follower.wait()


async def run_mode(
    mode: ChannelMode, loss: float, shape: TrafficShape, seed: int, followers: int = 1
) -> RunResult:
    """One run: this process leads ``followers`` follower processes at once."""
    processes = [await _spawn_follower(loss, seed + 1000 * number) for number in range(followers)]
    connections: list[RTCPeerConnection] = []
    result = RunResult(mode.name, loss, 0.0, followers=followers)
    try:
        channels = []
        for process in processes:
            pc, channel = await _open_leader(mode, process)
            connections.append(pc)
            channels.append(channel)
        parts = [RunResult(mode.name, loss, 0.0) for _ in channels]
        with udp_loss(loss, random.Random(seed)):
            pairs = zip(channels, parts, strict=True)
            replays = await asyncio.gather(*(_replay(ch, shape, part) for ch, part in pairs))
        # An entry is replicated once every follower has it: the slowest one counts.
        result.entries_per_s_by_follower = [part.entries_per_s for part in parts]
        result.entries_per_s = min(result.entries_per_s_by_follower)
        for part, (latencies, pings) in zip(parts, replays, strict=True):
            result.batch_latencies += latencies
            result.heartbeat_rtts += pings
            result.batches_sent += part.batches_sent
            result.batches_acked += part.batches_acked
            result.rewinds += part.rewinds
            result.heartbeats_sent += part.heartbeats_sent
            result.heartbeats_lost += part.heartbeats_lost
    finally:
        for pc in connections:
            await pc.close()
        for process in processes:
            await _stop_follower(process)
    return result


async def compare(
    losses: list[float], shape: TrafficShape, seed: int, repeat: int, followers: int = 1
) -> list[RunResult]:
    """Every mode at every loss rate, under load and idle, ``repeat`` times each; one
    merged result per combination."""
    merged = []
    workloads = {"load": shape, "idle": replace(shape, inflight=0)}
    for workload, workload_shape in workloads.items():
        for loss in losses:
            for mode in MODES:
                runs = [
                    await run_mode(mode, loss, workload_shape, seed + number, followers)
                    for number in range(repeat)
                ]
                result = _merge(mode, loss, workload, runs)
                result.followers = followers
                print(
                    f"{workload} loss {loss:.0%} {mode.name}: {result.entries_per_s:.0f} "
                    f"entries/s, heartbeat p99 {result.heartbeat_rtt_ms.get('p99', 0):.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )
                merged.append(result)
    return merged


def _merge(mode: ChannelMode, loss: float, workload: str, runs: list[RunResult]) -> RunResult:
    result = RunResult(mode.name, loss, statistics.median(r.entries_per_s for r in runs))
    result.workload = workload
    result.entries_per_s_runs = [r.entries_per_s for r in runs]
    result.rewinds = sum(r.rewinds for r in runs)
    result.batches_sent = sum(r.batches_sent for r in runs)
    result.batches_acked = sum(r.batches_acked for r in runs)
    result.heartbeats_sent = sum(r.heartbeats_sent for r in runs)
    result.heartbeats_lost = sum(r.heartbeats_lost for r in runs)
    result.batch_latency_ms = summarize([x for r in runs for x in r.batch_latencies], 2)
    result.heartbeat_rtt_ms = summarize([x for r in runs for x in r.heartbeat_rtts], 2)
    return result


def format_results(results: list[RunResult]) -> str:
    header = ("workload", "loss", "channel", "entries/s", "batch p50", "batch p99")
    header += ("hb p50", "hb p99", "hb lost", "rewinds")
    rows = [header]

    def ms(summary: dict, key: str) -> str:
        return f"{summary[key]:.1f} ms" if summary.get("n") else "-"

    for result in results:
        batch, beat = result.batch_latency_ms, result.heartbeat_rtt_ms
        rows.append(
            (
                result.workload,
                f"{result.loss:.0%}",
                result.mode,
                f"{result.entries_per_s:.0f}",
                ms(batch, "p50"),
                ms(batch, "p99"),
                ms(beat, "p50"),
                ms(beat, "p99"),
                f"{result.heartbeats_lost}/{result.heartbeats_sent}",
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
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode and loss rate")
    parser.add_argument(
        "--followers", type=int, default=1, help="follower processes led at once (1)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object as the last line")
    parser.add_argument("--follower", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.follower:
        asyncio.run(_run_follower(float(args.loss), args.seed))
        return 0
    losses = [float(part) for part in args.loss.split(",") if part.strip()]
    if any(not 0 <= loss < 1 for loss in losses):
        parser.error("--loss rates must be in [0, 1)")
    if args.repeat < 1 or args.duration <= 0 or not 1 <= args.followers <= 8:
        parser.error("--repeat and --duration must be positive, --followers 1 to 8")
    shape = TrafficShape(duration_s=args.duration)
    print(f"seed {args.seed}", file=sys.stderr)
    results = asyncio.run(compare(losses, shape, args.seed, args.repeat, args.followers))
    print(format_results(results))
    if args.json:
        print(
            json.dumps(
                {
                    "shape": asdict(shape),
                    "seed": args.seed,
                    "followers": args.followers,
                    "results": [result.as_json() for result in results],
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
