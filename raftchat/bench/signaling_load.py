"""Load and abuse test of the signaling server, on loopback.

Run it with ``python -m raftchat.bench.signaling_load`` (``--help`` for the sizes).

A ``raftchat serve`` process is started with short timers, then, all at once:

- honest clients (each address 127.0.0.N holds a few) join channels, send keepalives,
  relay signals to each other (what peers do while they link up), leave and join again;
- squatters say hello and then nothing (their library answers pings);
- slowloris sockets send half a request and stop;
- stuck readers join and never read, while honest clients keep signalling them;
- flooders send frames far over the rate limit;
- hoarders try to open many channels from one address;
- join spammers say hello again and again from one address.

It reports what the server held (connections, peers, bytes queued), how fast honest
clients joined, whether every honest signal arrived, the server's RSS (from /proc), and
the server's error counters. ``run_load`` is what the load test calls with small sizes.
Linux only (source addresses 127.0.0.N and /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from raftchat.net.identity import NodeIdentity, signaling_hello_message
from raftchat.net.signaling.protocol import encode_hello

HONEST_PER_ADDRESS = 8
"""Honest clients sharing one source address (as behind one NAT)."""


@dataclass(frozen=True)
class LoadOptions:
    honest: int = 300
    """Honest clients, spread over ``channels``."""
    channels: int = 20
    squatters: int = 300
    slowloris: int = 1000
    stuck: int = 20
    flooders: int = 10
    hoarders: int = 2
    hoard_attempts: int = 100
    """Channels each hoarder tries to open."""
    join_spam: int = 300
    """Hellos the join spammer sends (each on a new connection, one address)."""
    duration: float = 10.0
    """Seconds of chatter while the attacks go on."""
    idle_timeout: float = 4.0
    """The server's idle timeout (short, so squatters are dropped during the run, yet
    several keepalive intervals, as this process's own loop may lag under the load)."""
    keepalive_interval: float = 0.5
    seed: int = 0
    """Random seed (0: pick one; it is reported)."""


@dataclass
class LoadReport:
    seed: int = 0
    honest_joined: int = 0
    honest_rejoined: int = 0
    join_seconds: float = 0.0
    joins_per_second: float = 0.0
    join_p50_ms: float = 0.0
    join_p99_ms: float = 0.0
    signals_sent: int = 0
    signals_delivered: int = 0
    honest_errors: list[str] = field(default_factory=list)
    peak_connections: float = 0.0
    peak_websockets: float = 0.0
    peak_peers: float = 0.0
    peak_queued_bytes: float = 0.0
    rss_start_mib: float | None = None
    rss_peak_mib: float | None = None
    rss_end_mib: float | None = None
    errors: dict[str, float] = field(default_factory=dict)
    http_timeouts: dict[str, float] = field(default_factory=dict)
    refused_sockets: int = 0

    def ok(self) -> bool:
        return (
            self.honest_joined > 0
            and not self.honest_errors
            and self.signals_delivered == self.signals_sent
        )


def _signed_hello(channel: str, challenge: bytes | str) -> tuple[str, str]:
    """A hello answering ``challenge`` (the server's first frame) with a new identity, and
    that identity's peer id."""
    frame = json.loads(challenge)
    if not isinstance(frame, dict) or frame.get("type") != "challenge":
        raise RuntimeError(f"expected the server's challenge, got {frame!r}")
    identity = NodeIdentity.generate()
    message = signaling_hello_message(bytes.fromhex(frame["nonce"]), channel, identity.node_id)
    hello = encode_hello(identity.node_id, identity.public_key, identity.sign(message))
    return hello, identity.node_id


async def _hello_on(ws: aiohttp.ClientWebSocketResponse, channel: str) -> str:
    """Read the challenge on ``ws``, answer it with a signed hello; return the peer id."""
    msg = await ws.receive(timeout=30)
    if msg.type != aiohttp.WSMsgType.TEXT:
        raise RuntimeError(f"no challenge from the server ({msg.type.name})")
    hello, peer_id = _signed_hello(channel, msg.data)
    await ws.send_str(hello)
    return peer_id


def _addresses(first: int) -> Iterator[str]:
    n = first
    while True:
        yield f"127.0.{n // 250}.{n % 250 + 2}"
        n += 1


def _rss_mib(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else None


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class _Server:
    """A ``raftchat serve`` child process on a free loopback port."""

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])

    @classmethod
    async def start(cls, settings: dict[str, object]) -> _Server:
        args = [sys.executable, "-m", "raftchat", "serve", "--port", "0"]
        for key, value in settings.items():
            args += ["--set", f"{key}={json.dumps(value)}"]
        process = await asyncio.create_subprocess_exec(
            *args, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
        )
        assert process.stderr is not None
        async with asyncio.timeout(30):
            while line := await process.stderr.readline():
                found = re.search(rb"listening on (http://\S+)", line)
                if found:
                    server = cls(process, found.group(1).decode())
                    server._drain = asyncio.create_task(server._drain_stderr())
                    return server
        raise RuntimeError("raftchat serve did not start")

    async def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        while await self.process.stderr.readline():
            pass

    async def metrics(self, session: aiohttp.ClientSession) -> dict[str, float]:
        async with session.get(f"{self.url}/metrics") as response:
            text = await response.text()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._drain


class _Honest:
    """One well-behaved client: joins, keeps alive, relays signals, counts what arrives."""

    def __init__(self, load: _Load, channel: str, source: str) -> None:
        self.load = load
        self.channel = channel
        self.source = source
        self.peer_id = ""
        "Set by each join (a new identity each time)."
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.peers: set[str] = set()
        self.received = 0
        self._reader: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None

    async def join(self) -> float:
        started = time.perf_counter()
        session = self.load.session_for(self.source)
        self.ws = await session.ws_connect(f"{self.load.server.url}/channels/{self.channel}/ws")
        self.peer_id = await _hello_on(self.ws, self.channel)
        msg = await self.ws.receive(timeout=30)
        frame = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else {}
        if frame.get("type") != "welcome":
            raise RuntimeError(f"honest join refused: {frame or msg.type}")
        self.peers = set(frame["peers"])
        self._reader = asyncio.create_task(self._read())
        self._keepalive = asyncio.create_task(self._keep_alive())
        return time.perf_counter() - started

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            kind = frame.get("type")
            if kind == "peer_joined":
                self.peers.add(frame["peer_id"])
            elif kind == "peer_left":
                self.peers.discard(frame["peer_id"])
            elif kind == "signal":
                if frame["payload"].get("honest"):
                    self.received += 1
            elif kind == "error" and (frame.get("fatal") or frame["code"] == "rate_limited"):
                # (unknown_peer is expected: a stuck reader it signals may be gone already)
                self.load.report.honest_errors.append(f"{self.peer_id}: {frame['code']}")

    async def _keep_alive(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not self.ws.closed:
                await asyncio.sleep(self.load.options.keepalive_interval)
                await self.ws.send_str('{"type":"keepalive"}')

    async def signal(self, to: str, honest: bool) -> bool:
        """An offer-sized signal to a peer; a larger one to a stuck reader, to fill it."""
        assert self.ws is not None
        lines = 400 if honest else 6000
        payload = {"type": "offer", "honest": honest, "sdp": "v=0\r\n" + "a=x\r\n" * lines}
        try:
            await self.ws.send_str(json.dumps({"type": "signal", "to": to, "payload": payload}))
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def leave(self) -> None:
        for task in (self._keepalive, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.ws is not None:
            await self.ws.close()


class _Load:
    def __init__(self, options: LoadOptions, server: _Server) -> None:
        self.options = options
        self.server = server
        self.report = LoadReport()
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self.attack_tasks: list[asyncio.Task[Any]] = []
        self.sockets: list[socket.socket | asyncio.StreamWriter] = []
        self.stop = asyncio.Event()

    def session_for(self, source: str) -> aiohttp.ClientSession:
        session = self._sessions.get(source)
        if session is None:
            connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=0)
            session = self._sessions[source] = aiohttp.ClientSession(connector=connector)
        return session

    async def close(self) -> None:
        self.stop.set()
        for task in self.attack_tasks:
            task.cancel()
        await asyncio.gather(*self.attack_tasks, return_exceptions=True)
        for sock in self.sockets:
            with contextlib.suppress(Exception):
                sock.close()
        for session in self._sessions.values():
            await session.close()

    # --- attackers ----------------------------------------------------------------------

    async def squat(self, source: str) -> None:
        """Hello, then silence (the library keeps answering pings)."""
        with contextlib.suppress(Exception):
            session = self.session_for(source)
            ws = await session.ws_connect(
                f"{self.server.url}/channels/ch-0/ws", heartbeat=0.5, autoping=True
            )
            await _hello_on(ws, "ch-0")
            async for _ in ws:
                pass

    async def slowloris(self, source: str) -> None:
        """Half a request, then nothing; when the server closes it, again."""
        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.server.port, local_addr=(source, 0)
                )
                self.sockets.append(writer)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                while data := await reader.read(65536):
                    if data.startswith(b"HTTP/1.1 503"):
                        self.report.refused_sockets += 1
                writer.close()
            await asyncio.sleep(1.0)

    async def stuck_reader(self, source: str, channel: str) -> str | None:
        """Joins with a tiny receive buffer and never reads again, though it sends its
        keepalives; returns its id."""
        with contextlib.suppress(Exception):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.bind((source, 0))
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.server.port))
            reader, writer = await asyncio.open_connection(sock=sock)
            self.sockets.append(writer)
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                f"GET /channels/{channel}/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            await reader.readuntil(b"\r\n\r\n")
            head = await reader.readexactly(2)  # the challenge: a short unmasked text frame
            hello, peer_id = _signed_hello(channel, await reader.readexactly(head[1] & 0x7F))
            writer.write(_masked_text_frame(hello.encode()))
            self.attack_tasks.append(asyncio.create_task(self._keep_stuck_alive(writer)))
            return peer_id
        return None

    async def _keep_stuck_alive(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while not writer.is_closing():
                writer.write(_masked_text_frame(b'{"type":"keepalive"}'))
                await asyncio.sleep(self.options.keepalive_interval)

    async def flood(self, source: str) -> None:
        with contextlib.suppress(Exception):
            session = self.session_for(source)
            ws = await session.ws_connect(f"{self.server.url}/channels/flood/ws")
            await _hello_on(ws, "flood")
            while not ws.closed and not self.stop.is_set():
                await ws.send_str('{"type":"keepalive"}')
                await asyncio.sleep(0)

    async def hoard(self, source: str) -> None:
        session = self.session_for(source)
        held = []
        for n in range(self.options.hoard_attempts):
            with contextlib.suppress(Exception):
                name = f"hoard-{source.replace('.', '-')}-{n}"
                ws = await session.ws_connect(f"{self.server.url}/channels/{name}/ws")
                await _hello_on(ws, name)
                held.append(ws)
        await self.stop.wait()

    async def spam_joins(self, source: str) -> None:
        """Hello after hello from one address, 20 connections at a time."""
        session = self.session_for(source)

        async def one() -> None:
            with contextlib.suppress(Exception):
                async with session.ws_connect(f"{self.server.url}/channels/spam/ws") as ws:
                    await _hello_on(ws, "spam")
                    await ws.receive(timeout=5)

        for start in range(0, self.options.join_spam, 20):
            if self.stop.is_set():
                return
            await asyncio.gather(*(one() for _ in range(min(20, self.options.join_spam - start))))


def _masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    if len(payload) < 126:
        head = bytes([0x81, 0x80 | len(payload)])
    else:
        head = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def run_load(options: LoadOptions, progress: bool = False) -> LoadReport:
    """Run the load against a fresh ``raftchat serve`` process and report."""
    seed = options.seed or random.SystemRandom().randrange(1, 2**31)
    rng = random.Random(seed)
    server = await _Server.start(
        {
            "idle_timeout": options.idle_timeout,
            "hello_timeout": options.idle_timeout,
            "header_timeout": 1.0,
            "body_timeout": 1.0,
            "max_channels": max(100, options.channels * 4),
        }
    )
    load = _Load(options, server)
    report = load.report
    report.seed = seed
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if progress else (lambda _: None)
    sampler_stop = asyncio.Event()
    monitor = aiohttp.ClientSession()

    async def sample() -> None:
        while not sampler_stop.is_set():
            with contextlib.suppress(Exception):
                m = await server.metrics(monitor)
                report.peak_connections = max(
                    report.peak_connections, m["raftchat_signaling_open_connections"]
                )
                report.peak_websockets = max(
                    report.peak_websockets, m["raftchat_signaling_websockets"]
                )
                report.peak_peers = max(report.peak_peers, m["raftchat_signaling_peers"])
                report.peak_queued_bytes = max(
                    report.peak_queued_bytes, m["raftchat_signaling_queued_bytes"]
                )
            rss = _rss_mib(server.process.pid)
            if rss is not None:
                report.rss_peak_mib = max(report.rss_peak_mib or 0.0, rss)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sampler_stop.wait(), 0.25)

    honest: list[_Honest] = []
    try:
        report.rss_start_mib = _rss_mib(server.process.pid)
        sampler = asyncio.create_task(sample())
        attackers = _addresses(1000)
        say(f"seed {seed}; server {server.url}; starting the attacks")
        tasks = load.attack_tasks
        slow_sources = [next(attackers) for _ in range(max(1, options.slowloris // 100))]
        tasks += [
            asyncio.create_task(load.slowloris(slow_sources[n % len(slow_sources)]))
            for n in range(options.slowloris)
        ]
        squat_sources = [next(attackers) for _ in range(2)]  # (more could fill a channel)
        tasks += [
            asyncio.create_task(load.squat(squat_sources[n % len(squat_sources)]))
            for n in range(options.squatters)
        ]
        tasks += [asyncio.create_task(load.flood(next(attackers))) for _ in range(options.flooders)]
        tasks += [asyncio.create_task(load.hoard(next(attackers))) for _ in range(options.hoarders)]
        tasks.append(asyncio.create_task(load.spam_joins(next(attackers))))

        # Honest clients join while all of that goes on.
        sources = _addresses(0)
        source = next(sources)
        for n in range(options.honest):
            if n and n % HONEST_PER_ADDRESS == 0:
                source = next(sources)
            honest.append(_Honest(load, f"ch-{n % options.channels}", source))
        started = time.perf_counter()
        latencies = await asyncio.gather(*(client.join() for client in honest))
        report.join_seconds = time.perf_counter() - started
        report.honest_joined = len(honest)
        report.joins_per_second = len(honest) / report.join_seconds
        report.join_p50_ms = 1000 * _percentile(list(latencies), 0.5)
        report.join_p99_ms = 1000 * _percentile(list(latencies), 0.99)
        say(f"{len(honest)} honest clients joined in {report.join_seconds:.2f} s")

        stuck_by_channel: dict[str, list[str]] = {}
        channels = [f"ch-{n % options.channels}" for n in range(options.stuck)]
        stuck_ids = await asyncio.gather(
            *(load.stuck_reader(next(attackers), channel) for channel in channels)
        )
        for channel, peer in zip(channels, stuck_ids, strict=True):
            if peer is not None:
                stuck_by_channel.setdefault(channel, []).append(peer)

        # Chatter: every honest client signals a random honest peer of its channel and a
        # stuck reader, again and again; half of them leave and come back midway.
        by_channel: dict[str, list[_Honest]] = {}
        for client in honest:
            by_channel.setdefault(client.channel, []).append(client)
        sent_to: dict[str, int] = {}
        deadline = time.perf_counter() + options.duration
        churned = False
        while time.perf_counter() < deadline:
            for client in honest:
                mates = [c for c in by_channel[client.channel] if c is not client]
                if mates:
                    target = rng.choice(mates)
                    if await client.signal(target.peer_id, honest=True):
                        sent_to[target.peer_id] = sent_to.get(target.peer_id, 0) + 1
                        report.signals_sent += 1
                if stuck := stuck_by_channel.get(client.channel):
                    await client.signal(rng.choice(stuck), honest=False)
            if not churned and time.perf_counter() > deadline - options.duration / 2:
                churned = True
                leaving = honest[::2]
                # Wait until every signal to them arrived, then let them go and return.
                await _wait_delivered(leaving, sent_to, 30)
                for client in leaving:
                    report.signals_delivered += client.received
                    sent_to.pop(client.peer_id, None)
                await asyncio.gather(*(client.leave() for client in leaving))
                for client in leaving:
                    client.received = 0
                await asyncio.gather(*(client.join() for client in leaving))
                report.honest_rejoined = len(leaving)
                say(f"{len(leaving)} honest clients left and joined again")
            await asyncio.sleep(0.1)  # each client sends about 20 frames/s, below the limit
        await _wait_delivered(honest, sent_to, 30)
        report.signals_delivered += sum(client.received for client in honest)
        say(f"{report.signals_delivered} of {report.signals_sent} honest signals delivered")
        report.rss_end_mib = _rss_mib(server.process.pid)
        final = await server.metrics(monitor)
        for name, value in final.items():
            code = re.fullmatch(r'raftchat_signaling_errors_total\{code="(\w+)"\}', name)
            if code and value:
                report.errors[code.group(1)] = value
            phase = re.fullmatch(r'raftchat_signaling_http_timeouts_total\{phase="(\w+)"\}', name)
            if phase and value:
                report.http_timeouts[phase.group(1)] = value
        sampler_stop.set()
        await sampler
    finally:
        sampler_stop.set()
        for client in honest:
            with contextlib.suppress(Exception):
                await client.leave()
        await load.close()
        await monitor.close()
        await server.stop()
    return report


async def _wait_delivered(clients: list[_Honest], sent_to: dict[str, int], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if all(client.received >= sent_to.get(client.peer_id, 0) for client in clients):
            return
        await asyncio.sleep(0.05)


def format_report(report: LoadReport) -> str:
    rss = (
        f"{report.rss_start_mib:.0f} MiB at start, {report.rss_peak_mib:.0f} MiB peak, "
        f"{report.rss_end_mib:.0f} MiB at the end"
        if report.rss_start_mib is not None
        and report.rss_peak_mib is not None
        and report.rss_end_mib is not None
        else "unknown (no /proc)"
    )
    lines = [
        f"seed                     {report.seed}",
        f"honest clients joined    {report.honest_joined} (+{report.honest_rejoined} rejoined)",
        f"joins                    {report.joins_per_second:.0f}/s "
        f"(p50 {report.join_p50_ms:.0f} ms, p99 {report.join_p99_ms:.0f} ms)",
        f"honest signals           {report.signals_delivered} of {report.signals_sent} delivered",
        f"honest clients' errors   {len(report.honest_errors)}"
        + (
            " (" + ", ".join(sorted({e.rpartition(" ")[2] for e in report.honest_errors})) + ")"
            if report.honest_errors
            else ""
        ),
        f"connections held (peak)  {report.peak_connections:.0f} sockets, "
        f"{report.peak_websockets:.0f} WebSockets, {report.peak_peers:.0f} peers",
        f"bytes queued (peak)      {report.peak_queued_bytes / 1024:.0f} KiB",
        f"server RSS               {rss}",
        f"503 before HTTP          {report.refused_sockets} slowloris sockets refused",
        "errors answered          "
        + ", ".join(f"{code} {count:.0f}" for code, count in sorted(report.errors.items())),
        "requests timed out       "
        + ", ".join(f"{phase} {n:.0f}" for phase, n in sorted(report.http_timeouts.items())),
        f"verdict                  {'OK' if report.ok() else 'FAILED'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raftchat.bench.signaling_load",
        description="Load and abuse test of the signaling server on loopback (Linux).",
    )
    defaults = LoadOptions()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = vars(parser.parse_args(argv))
    as_json = args.pop("json")
    options = LoadOptions(**{key: value for key, value in args.items()})
    report = asyncio.run(run_load(options, progress=True))
    print(json.dumps(asdict(report)) if as_json else format_report(report))
    return 0 if report.ok() else 1


if __name__ == "__main__":
    raise SystemExit(main())
