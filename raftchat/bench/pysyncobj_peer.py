"""The PySyncObj peer of ``raftchat bench``: the throughput and latency scenarios run
on three PySyncObj processes over TCP on 127.0.0.1, measured as raftchat's are.

PySyncObj (a Python Raft over plain TCP) is the reference the project's targets are
stated against. Each node is :mod:`raftchat.bench.pysyncobj_node`: stdin lines are
messages, stdout lines say when each was acknowledged and applied; the times are read
here on this process's clock, as :mod:`raftchat.bench.scenarios` reads raftchat's
nodes. It runs twice, once per journal:

- ``fsync``: PySyncObj's file journal, synced before a node sends or acknowledges entries
  (raftchat fsyncs every entry before it is acknowledged: the fair comparison);
- ``memory``: PySyncObj's default, no journal at all.

Throughput runs on nodes with PySyncObj's default batching (``appendEntriesUseBatch``,
its setting for rate); latency on nodes without it (its setting for a single request:
with batching every command waits for the next 100 ms AppendEntries period).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from raftchat.bench.errors import BenchError
from raftchat.bench.options import BenchOptions
from raftchat.bench.report import machine_info
from raftchat.bench.stats import rate, summarize
from raftchat.bench.waiting import Waiters

PEER_NAME = "pysyncobj"
JOURNALS = ("fsync", "memory")
"""In run order; ``fsync`` is the one the comparison's ratios are taken against."""
PEER_SCENARIOS = ("throughput", "latency")
"""What the peer measures; the other scenarios are raftchat's own."""
LOOPBACK = "127.0.0.1"
WARMUP_MESSAGES = 200
LATENCY_WARMUP = 5
STOP_TIMEOUT_S = 5.0
MAX_OUTPUT_LINE = 1 << 16
READ_BYTES = 1 << 18


def pysyncobj_problem() -> str | None:
    """Why the PySyncObj peer cannot run here (None if it can)."""
    try:
        import pysyncobj  # noqa: F401
    except ImportError as error:
        return f"pysyncobj is not installed ({error}); pip install 'raftchat[bench]'"
    return None


def free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class PeerNode:
    """One PySyncObj node process and what it printed, time-stamped when read."""

    def __init__(self, name: str, port: int, partners: list[int], root: Path, waiters: Waiters):
        self.name = name
        self.port = port
        self.partners = partners
        self.root = root
        self.waiters = waiters
        self.stderr_path = root / f"{name}.stderr"
        self.state = "follower"
        self.ready = False
        self.acked: dict[str, float] = {}
        self.applied: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.unreadable = 0
        """Output lines that were not one of the node's line kinds (counted, ignored)."""
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    def command(self, journal: str, batch: bool) -> list[str]:
        command = [sys.executable, "-m", "raftchat.bench.pysyncobj_node"]
        command += ["--port", str(self.port), "--partners", ",".join(map(str, self.partners))]
        if journal == "fsync":
            command += ["--journal", str(self.root / f"{self.name}.journal")]
        if not batch:
            command.append("--no-batch")
        return command

    async def start(self, journal: str, batch: bool) -> None:
        with open(self.stderr_path, "ab") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                *self.command(journal, batch),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        self._reader = asyncio.create_task(self._read(self.process.stdout))

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def send_lines(self, lines: list[str]) -> float:
        """Write ``lines`` to the node at once; the time just before the write."""
        assert self.process is not None and self.process.stdin is not None
        data = "".join(line + "\n" for line in lines).encode()
        sent_at = time.perf_counter()
        self.process.stdin.write(data)
        await self.process.stdin.drain()
        return sent_at

    def read_line(self, line: bytes, now: float) -> None:
        kind, _, rest = line.decode("utf-8", "replace").strip().partition(" ")
        if kind == "applied" and rest:
            self.applied[rest] = now
        elif kind == "ack" and rest:
            self.acked[rest] = now
        elif kind == "state" and rest in ("leader", "follower", "candidate"):
            self.state = rest
        elif kind == "ready":
            self.ready = True
        elif kind == "fail" and rest:
            token, _, reason = rest.partition(" ")
            self.failed[token] = reason
        else:
            self.unreadable += 1

    async def _read(self, stdout: asyncio.StreamReader | None) -> None:
        """Reads whatever is available; every line of one read shares its time stamp, and
        waits are re-checked once per read (as :mod:`raftchat.bench.process` does)."""
        assert stdout is not None
        pending = b""
        try:
            while chunk := await stdout.read(READ_BYTES):
                now = time.perf_counter()
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self.read_line(line, now)
                if len(pending) > MAX_OUTPUT_LINE:
                    self.unreadable += 1
                    pending = b""
                self.waiters.wake(now)
        finally:
            if self.process is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
            self.waiters.wake(time.perf_counter())

    async def stop(self) -> None:
        """Stdin closed (the node leaves), then SIGKILL if it has not ended in time."""
        if self.process is None:
            return
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


@dataclass
class PeerCluster:
    """Three (``--nodes``) PySyncObj nodes on free loopback ports, one journal and
    batching setting for all."""

    root: Path
    journal: str
    batch: bool
    waiters: Waiters = field(default_factory=Waiters)
    nodes: list[PeerNode] = field(default_factory=list)

    async def start(self, count: int, timeout_s: float) -> float:
        """Start the nodes; the time a leader is known and every follower is ready."""
        ports = free_loopback_ports(count)
        for number, port in enumerate(ports, 1):
            partners = [other for other in ports if other != port]
            node = PeerNode(f"pso{number}", port, partners, self.root, self.waiters)
            self.nodes.append(node)
            await node.start(self.journal, self.batch)
        return await self.wait_until(
            lambda: (
                sum(node.state == "leader" for node in self.nodes) == 1
                and all(node.ready for node in self.nodes if node.state != "leader")
            ),
            timeout_s,
            f"PySyncObj leader with every follower ready among {count} nodes",
        )

    def leader(self) -> PeerNode:
        leaders = [node for node in self.nodes if node.state == "leader"]
        if len(leaders) != 1:
            raise BenchError(f"{len(leaders)} PySyncObj leaders")
        return leaders[0]

    async def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        return await self.waiters.wait_until(condition, timeout, what, self.nodes)

    async def close(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes))


@dataclass
class Messages:
    """Fresh benchmark messages: a token, a space, then ``x`` up to ``size`` bytes."""

    size: int
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    _numbers: itertools.count = field(default_factory=lambda: itertools.count(1))

    def make(self, count: int) -> tuple[list[str], list[str]]:
        tokens = [f"bm{self.run_id}-{next(self._numbers)}" for _ in range(count)]
        return tokens, [(token + " " + "x" * self.size)[: self.size] for token in tokens]


async def burst(
    cluster: PeerCluster, messages: Messages, senders: dict[PeerNode, int], timeout: float
) -> dict[str, Any]:
    """Every sender writes its share at once: times until each sender has every ack of
    its own, and until every node has applied every message (as raftchat's burst)."""
    batches = {node: messages.make(count) for node, count in senders.items()}
    total = sum(senders.values())
    acked_before = {node: len(node.acked) for node in senders}
    failed_before = sum(len(node.failed) for node in senders)
    applied_before = {node: len(node.applied) for node in cluster.nodes}
    send_times = await asyncio.gather(
        *(node.send_lines(texts) for node, (_, texts) in batches.items())
    )
    started = min(send_times)

    def committed() -> bool:
        refused = sum(len(node.failed) for node in senders) > failed_before
        return refused or all(len(n.acked) >= acked_before[n] + c for n, c in senders.items())

    committed_at = await cluster.wait_until(committed, timeout, "commit of the PySyncObj burst")
    refused = sum(len(node.failed) for node in senders) - failed_before
    if refused:
        reasons = {reason for node in senders for reason in node.failed.values()}
        raise BenchError(f"PySyncObj refused {refused} commands (reasons {sorted(reasons)})")
    delivered_at = await cluster.wait_until(
        lambda: all(len(n.applied) >= applied_before[n] + total for n in cluster.nodes),
        timeout,
        "delivery of the PySyncObj burst",
    )
    commit_s, deliver_s = committed_at - started, delivered_at - started
    return {
        "messages": total,
        "senders": len(senders),
        "commit_s": round(commit_s, 3),
        "msgs_per_s": round(rate(total, commit_s), 1),
        "delivered_s": round(deliver_s, 3),
        "delivered_msgs_per_s": round(rate(total, deliver_s), 1),
    }


async def measure_throughput(
    cluster: PeerCluster, options: BenchOptions, progress: Callable[[str], None]
) -> dict[str, Any]:
    messages = Messages(options.message_bytes)
    count = options.messages
    timeout = max(options.timeout_s / 2, count / 250)
    leader = cluster.leader()
    await burst(cluster, messages, {leader: min(WARMUP_MESSAGES, count)}, timeout)
    one = await burst(cluster, messages, {leader: count}, timeout)
    one["sender"] = "leader"
    progress(f"  leader sending: {one['msgs_per_s']:.0f} msg/s committed")
    share = max(1, count // len(cluster.nodes))
    every = await burst(cluster, messages, dict.fromkeys(cluster.nodes, share), timeout)
    every["sender"] = "all"
    progress(f"  all sending: {every['msgs_per_s']:.0f} msg/s committed")
    return {
        "throughput_msgs_per_s": every["msgs_per_s"],
        "throughput": {"one_sender": one, "all_senders": every},
    }


async def _send_one(
    cluster: PeerCluster, messages: Messages, sender: PeerNode, timeout: float
) -> tuple[float, float]:
    """(send -> ack on the sender, send -> applied on the last node), in seconds."""
    (token,), texts = messages.make(1)
    sent_at = await sender.send_lines(texts)
    acked_at = await cluster.wait_until(
        lambda: token in sender.acked or token in sender.failed, timeout, f"ack of {token}"
    )
    if token in sender.failed:
        raise BenchError(f"PySyncObj refused {token} (reason {sender.failed[token]})")
    await cluster.wait_until(
        lambda: all(token in node.applied for node in cluster.nodes), timeout, f"{token} applied"
    )
    delivered_at = max(node.applied[token] for node in cluster.nodes)
    return acked_at - sent_at, delivered_at - sent_at


async def measure_latency(
    cluster: PeerCluster, options: BenchOptions, progress: Callable[[str], None]
) -> dict[str, Any]:
    messages = Messages(options.message_bytes)
    nodes = cluster.nodes
    timeout = options.timeout_s
    for index in range(LATENCY_WARMUP):
        await _send_one(cluster, messages, nodes[index % len(nodes)], timeout)
    commit: dict[str, list[float]] = {"leader": [], "follower": []}
    delivery: list[float] = []
    for index in range(options.latency_samples):
        sender = nodes[index % len(nodes)]
        role = "leader" if sender.state == "leader" else "follower"
        commit_s, delivery_s = await _send_one(cluster, messages, sender, timeout)
        commit[role].append(commit_s * 1000)
        delivery.append(delivery_s * 1000)
    result = {
        "commit_latency_ms": summarize(commit["leader"] + commit["follower"]),
        "commit_latency_ms_by_sender": {role: summarize(values) for role, values in commit.items()},
        "delivery_latency_ms": summarize(delivery),
    }
    progress(
        f"  commit p50 {result['commit_latency_ms']['p50']:.2f} ms, "
        f"delivery p50 {result['delivery_latency_ms']['p50']:.2f} ms"
    )
    return result


MEASURES = {"throughput": (True, measure_throughput), "latency": (False, measure_latency)}
"""Scenario -> (PySyncObj batching on, how it is measured)."""


def settings_of(journal: str) -> dict[str, Any]:
    """What a run's JSON says about how PySyncObj was set up."""
    return {
        "transport": "TCP on 127.0.0.1",
        "journal": (
            "file journal, msync before sending or acknowledging entries; term and vote fsync'd"
            if journal == "fsync"
            else "none (in memory, PySyncObj's default)"
        ),
        "append_entries_use_batch": {"throughput": True, "latency": False},
        "dynamic_membership_change": False,
        "other": "PySyncObj defaults (autoTickPeriod 0.05 s, appendEntriesPeriod 0.1 s)",
    }


async def run_peer_journal(
    journal: str, options: BenchOptions, root: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """The peer's scenarios (those among ``options.only``) with one journal."""
    started = time.perf_counter()
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for scenario in (name for name in PEER_SCENARIOS if name in options.only):
        batch, measure = MEASURES[scenario]
        directory = root / f"{journal}-{scenario}"
        directory.mkdir()
        cluster = PeerCluster(directory, journal, batch)
        try:
            progress(f"{PEER_NAME} ({journal} journal): {scenario}, {options.nodes} nodes")
            await cluster.start(options.nodes, options.timeout_s)
            results.update(await measure(cluster, options, progress))
        except BenchError as error:
            errors[scenario] = str(error)
            progress(f"{PEER_NAME} {scenario} FAILED: {error}")
        finally:
            await cluster.close()
    return {
        "peer": PEER_NAME,
        "journal": journal,
        "settings": settings_of(journal),
        **results,
        "errors": errors,
        "duration_s": round(time.perf_counter() - started, 1),
    }


async def run_peer(options: BenchOptions, progress: Callable[[str], None]) -> dict[str, Any]:
    """The PySyncObj peer with each journal of :data:`JOURNALS`: ``{"runs": {journal:
    result}}`` plus the version, parameters, machine and errors (``JOURNAL: SCENARIO``)."""
    problem = pysyncobj_problem()
    if problem is not None:
        raise BenchError(problem)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="raftchat-bench-pysyncobj-"))
    runs: dict[str, dict[str, Any]] = {}
    try:
        for journal in JOURNALS:
            runs[journal] = await run_peer_journal(journal, options, root, progress)
    finally:
        if options.keep_data:
            progress(f"PySyncObj logs and journals kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    params = options.as_params()
    params.pop("webrtc", None)
    return {
        "peer": PEER_NAME,
        "version": metadata.version("pysyncobj"),
        "runs": runs,
        "params": params,
        "machine": machine_info(),
        "errors": {
            f"{journal}: {scenario}": error
            for journal, run in runs.items()
            for scenario, error in run["errors"].items()
        },
        "duration_s": round(time.perf_counter() - started, 1),
    }
