"""The per-message work of nodes, without any network: what is left once the wire is fast.

Real :class:`~raftchat.node.Node` objects with real SQLite storage (every entry fsync'd
before it is acknowledged) and the real headless front end, in one process, linked by an
in-memory transport instead of the WebRTC mesh: a node's ``send(peer, bytes)`` becomes the
peer's ``_on_frame(sender, bytes)`` on the next loop turn. So every byte still goes through
the wire codec, the Raft core, storage, the chat state machine (signatures checked), the
events and the JSON lines, and nothing else is measured.

A trial founds a channel of ``--nodes`` (1: a one-voter channel; 3: three voters that
elect a leader), then pipes ``--messages`` lines of ``--text-bytes`` characters into the
leader's headless front end at once (a script piping a burst) and waits until the leader
printed an ``ack`` for each (committed) and every node printed each ``message``
(delivered). It reports messages per second and the process's CPU time per message (all
nodes together, so with three nodes it is the cost summed over the three), as medians of
``--trials`` fresh channels.

Run: ``python -m raftchat.bench.pipeline [--nodes 1|3] [--messages N] [--trials N]
[--json] [--profile FILE]``; ``--profile`` records one more trial under cProfile and
writes the stats (``python -m pstats FILE``, snakeviz) and prints the hottest functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import logging
import os
import platform
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from raftchat.bench.stats import summarize
from raftchat.frontends.headless import run_headless
from raftchat.frontends.launch import event_loop_factory
from raftchat.net import LinkInfo, LinkState
from raftchat.node import Node
from raftchat.node.cluster import new_cluster_identity
from raftchat.raft import (
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Role,
    encode_configuration,
)
from raftchat.settings import Settings
from raftchat.storage import Storage

logger = logging.getLogger(__name__)

CHANNEL = "pipeline"
SETUP_TIMEOUT_S = 30.0
"""How long a channel may take to elect its leader."""
RUN_TIMEOUT_S = 600.0
"""How long one burst may take before the trial is given up."""
TOP_FUNCTIONS = 25


@dataclass(frozen=True)
class PipelineOptions:
    nodes: int = 1
    messages: int = 20_000
    trials: int = 5
    text_bytes: int = 100
    warmup: int = 500
    """Messages sent (and delivered) before the measured burst, in each trial."""
    samples: int = 100
    """Messages sent one at a time after the burst, in each trial: latency."""
    idle_s: float = 2.0
    """Seconds the channel then stays idle, in each trial: the nodes' own idle CPU
    (heartbeats, timers, housekeeping), without any network's."""
    uvloop: bool = True
    """The event loop ``raftchat join --headless`` runs on (uvloop when installed)."""


@dataclass
class Trial:
    messages: int
    committed_s: float
    delivered_s: float
    cpu_s: float
    commit_latencies_s: list[float] = field(default_factory=list)
    delivery_latencies_s: list[float] = field(default_factory=list)
    idle_cpu_percent: float | None = None
    """CPU of the idle channel per node, in % of a core."""

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.delivered_s

    @property
    def cpu_us_per_msg(self) -> float:
        return 1e6 * self.cpu_s / self.messages


@dataclass
class PipelineResult:
    options: PipelineOptions
    trials: list[Trial] = field(default_factory=list)
    profile: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        def median(values: list[float]) -> float:
            return round(statistics.median(values), 1) if values else 0.0

        commit = [s for t in self.trials for s in t.commit_latencies_s]
        delivery = [s for t in self.trials for s in t.delivery_latencies_s]
        return {
            "tool": "pipeline",
            **asdict(self.options),
            "msgs_per_s": median([t.msgs_per_s for t in self.trials]),
            "commits_per_s": median([t.messages / t.committed_s for t in self.trials]),
            "cpu_us_per_msg": median([t.cpu_us_per_msg for t in self.trials]),
            "cpu_us_per_msg_min": round(min(t.cpu_us_per_msg for t in self.trials), 1),
            "trials_msgs_per_s": [round(t.msgs_per_s) for t in self.trials],
            "trials_cpu_us_per_msg": [round(t.cpu_us_per_msg, 1) for t in self.trials],
            "commit_latency_ms": summarize([1000 * s for s in commit]),
            "delivery_latency_ms": summarize([1000 * s for s in delivery]),
            "idle_cpu_percent_per_node": median(
                [t.idle_cpu_percent for t in self.trials if t.idle_cpu_percent is not None]
            )
            if self.options.idle_s
            else None,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            **({"profile": self.profile} if self.profile else {}),
        }


# --- the in-memory transport ----------------------------------------------------------


class MemoryMesh:
    """Stands in for a node's mesh: frames go to the peer node on the next loop turn,
    the way a link hands them to its DataChannel (no batching into frames, no chunking:
    nothing of the network is measured)."""

    def __init__(self, node_id: str, nodes: dict[str, Node]) -> None:
        self._node_id = node_id
        self._nodes = nodes
        self._loop = asyncio.get_running_loop()

    def send(self, to: str, data: bytes, urgent: bool = False) -> bool:
        peer = self._nodes.get(to)
        if peer is None:
            return False
        self._loop.call_soon(peer._on_frame, self._node_id, data)
        return True

    def set_peers(self, peers: frozenset[str]) -> None:
        """Every peer is linked from the start."""

    def links(self) -> dict[str, LinkInfo]:
        return {}

    def reset_link(self, peer: str) -> bool:
        return False

    async def close(self) -> None:
        """Nothing to close."""


def open_link(peer: str) -> LinkInfo:
    return LinkInfo(
        peer, LinkState.OPEN, 0.1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, 1, "host", "host",
        authenticated=True,
    )  # fmt: skip


# --- output that counts what it is given ---------------------------------------------


class CountingSink(io.RawIOBase):
    """Where a node's headless output goes: counted, then dropped. Wrapped in a
    :class:`io.TextIOWrapper` as stdout is, so the front end pays what it pays for a
    pipe; only the buffer's flushes reach this, once per batch of lines."""

    def __init__(self, on_write: Callable[[], None]) -> None:
        self.messages = 0
        self.acks = 0
        self._on_write = on_write

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.messages += chunk.count(b'"event":"message"')
        self.acks += chunk.count(b'"event":"ack"')
        self._on_write()
        return len(chunk)


class BurstInput:
    """A pipe for a node's stdin: ``feed`` writes lines (from a thread: a full pipe
    blocks the writer, never the loop); ``close`` ends the input."""

    def __init__(self) -> None:
        read_fd, self._write_fd = os.pipe()
        self.reader = open(read_fd, encoding="utf-8", closefd=True)  # noqa: SIM115
        self._writers: list[threading.Thread] = []

    def feed(self, data: bytes) -> None:
        def write() -> None:
            view = memoryview(data)
            with contextlib.suppress(OSError):
                while view:
                    view = view[os.write(self._write_fd, view) :]

        writer = threading.Thread(target=write, name="pipeline-input", daemon=True)
        writer.start()
        self._writers.append(writer)

    def close(self) -> None:
        for writer in self._writers:
            writer.join()
        with contextlib.suppress(OSError):
            os.close(self._write_fd)


def burst_lines(count: int, text_bytes: int, start: int = 0) -> bytes:
    """``count`` distinct lines of ``text_bytes`` printable ASCII characters each."""
    filler = "x" * text_bytes
    lines = (f"m{start + i} {filler}"[:text_bytes] for i in range(count))
    return ("\n".join(lines) + "\n").encode()


# --- one channel of nodes in this process ---------------------------------------------


class Channel:
    """``size`` nodes with their storage under ``root``, linked in memory, each with its
    headless front end running."""

    def __init__(self, root: Path, size: int) -> None:
        self.root = root
        self.size = size
        self.nodes: dict[str, Node] = {}
        self.sinks: dict[str, CountingSink] = {}
        self.inputs: dict[str, BurstInput] = {}
        self._fronts: list[asyncio.Task[int]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._progress = asyncio.Event()

    async def start(self) -> None:
        storages = [Storage.open_channel(CHANNEL, self.root / f"n{i}") for i in range(self.size)]
        cluster = new_cluster_identity(time.time_ns() // 1_000_000)
        if self.size > 1:
            configuration = Configuration(frozenset(s.node_id for s in storages), cluster=cluster)
            first = Entry(1, 1, EntryKind.CONFIG, encode_configuration(configuration))
            for storage in storages:
                storage.set_cluster(cluster)
                storage.save(HardState(term=1, commit=1), [first])
        loop = asyncio.get_running_loop()
        settings = Settings(data_dir=self.root)
        for number, storage in enumerate(storages):
            node = Node(storage, settings, nick=f"n{number}")
            self.nodes[node.node_id] = node
        for node_id, node in self.nodes.items():
            node._loop = loop
            node._mesh = MemoryMesh(node_id, self.nodes)  # type: ignore[assignment]
        if self.size == 1:
            (node,) = self.nodes.values()
            node._join_cluster(cluster)
            node.core.bootstrap(cluster)
        for node_id, node in self.nodes.items():
            for peer in self.nodes.keys() - {node_id}:
                node._on_link_change(peer, open_link(peer))
            # What Node.start does once signaling and mesh are up.
            self._tasks.append(asyncio.create_task(node.ticker.run()))
            self._tasks.append(asyncio.create_task(node._housekeeping_loop()))
            node._schedule_drain()
            sink = CountingSink(self._progress.set)
            self.sinks[node_id] = sink
            self.inputs[node_id] = burst = BurstInput()
            out = io.TextIOWrapper(io.BufferedWriter(sink), encoding="utf-8")
            self._fronts.append(
                asyncio.create_task(run_headless(node, burst.reader, out))  # type: ignore[arg-type]
            )
        await self._until(self._leader_ready, SETUP_TIMEOUT_S, "a leader")

    def leader(self) -> Node | None:
        for node in self.nodes.values():
            if node.core.role is Role.LEADER and node.core.status().commit_index >= 2:
                return node
        return None

    def _leader_ready(self) -> bool:
        leader = self.leader()
        return leader is not None and all(
            n.core.status().commit_index >= leader.core.status().last_index
            for n in self.nodes.values()
        )

    async def burst(self, sender: Node, lines: bytes, count: int) -> tuple[float, float]:
        """Pipe ``lines`` (``count`` messages) into ``sender``; seconds until all were
        acknowledged on ``sender`` and until all were printed on every node."""
        sink = self.sinks[sender.node_id]
        acks_wanted = sink.acks + count
        shown_wanted = {node_id: s.messages + count for node_id, s in self.sinks.items()}
        start = time.perf_counter()
        self.inputs[sender.node_id].feed(lines)
        await self._until(lambda: sink.acks >= acks_wanted, RUN_TIMEOUT_S, "the acks")
        committed = time.perf_counter() - start
        await self._until(
            lambda: all(s.messages >= shown_wanted[i] for i, s in self.sinks.items()),
            RUN_TIMEOUT_S,
            "every node's messages",
        )
        return committed, time.perf_counter() - start

    async def _until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``done()``, looking again whenever a node printed something (and
        every 50 ms for what printing does not show)."""
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    self._progress.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._progress.wait(), 0.05)
        except TimeoutError:
            raise RuntimeError(f"pipeline: no {what} within {timeout:g} s") from None

    async def stop(self) -> None:
        for node in self.nodes.values():
            await node.stop()
        for burst in self.inputs.values():
            burst.close()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._fronts, *self._tasks, return_exceptions=True)


async def run_trial(
    options: PipelineOptions, root: Path, profiler: cProfile.Profile | None = None
) -> Trial:
    channel = Channel(root, options.nodes)
    await channel.start()
    try:
        leader = channel.leader()
        assert leader is not None
        if options.warmup:
            await channel.burst(
                leader, burst_lines(options.warmup, options.text_bytes), options.warmup
            )
        lines = burst_lines(options.messages, options.text_bytes, start=options.warmup)
        gc.collect()
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        committed_s, delivered_s = await channel.burst(leader, lines, options.messages)
        if profiler is not None:
            profiler.disable()
        cpu_s = time.process_time() - cpu
        trial = Trial(options.messages, committed_s, delivered_s, cpu_s)
        start = options.warmup + options.messages
        for number in range(options.samples):
            line = burst_lines(1, options.text_bytes, start=start + number)
            committed_s, delivered_s = await channel.burst(leader, line, 1)
            trial.commit_latencies_s.append(committed_s)
            trial.delivery_latencies_s.append(delivered_s)
        if options.idle_s:
            await asyncio.sleep(0.5)  # the burst's last answers and status lines settle
            cpu = time.process_time()
            await asyncio.sleep(options.idle_s)  # measuring idleness: nothing to wait for
            idle_cpu_s = time.process_time() - cpu
            trial.idle_cpu_percent = 100 * idle_cpu_s / options.idle_s / options.nodes
    finally:
        await channel.stop()
    return trial


def run_trials(options: PipelineOptions, profile_path: Path | None = None) -> PipelineResult:
    result = PipelineResult(options)
    loop_factory = event_loop_factory(headless=options.uvloop)
    for number in range(options.trials + (1 if profile_path else 0)):
        profiler = cProfile.Profile() if profile_path and number == options.trials else None
        with (
            tempfile.TemporaryDirectory(prefix="raftchat-pipeline-") as tmp,
            asyncio.Runner(loop_factory=loop_factory) as runner,
        ):
            trial = runner.run(run_trial(options, Path(tmp), profiler))
        if profiler is None:
            result.trials.append(trial)
            print(
                f"trial {number + 1}: {trial.msgs_per_s:,.0f} msg/s delivered"
                f" ({options.messages / trial.committed_s:,.0f} committed/s),"
                f" {trial.cpu_us_per_msg:.1f} us CPU per message",
                file=sys.stderr,
            )
        else:
            assert profile_path is not None
            profiler.dump_stats(profile_path)
            result.profile = {"file": str(profile_path), **top_functions(profiler)}
    return result


def top_functions(profiler: cProfile.Profile, count: int = TOP_FUNCTIONS) -> dict[str, Any]:
    """The functions with the most time of their own (tottime) and in all (cumtime), in
    % of the profiled burst."""
    stats = pstats.Stats(profiler)
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = stats.total_tt or 1.0  # type: ignore[attr-defined]

    def name(key: tuple[str, int, str]) -> str:
        filename, line, function = key
        for marker in ("site-packages/", "lib/python3", "raftchat/"):
            if marker in filename:
                filename = filename.split(marker, 1)[1]
                if marker == "raftchat/":
                    filename = marker + filename
                break
        return f"{filename}:{line}:{function}" if line else function

    def share(column: int) -> list[list[Any]]:
        ranked = sorted(table.items(), key=lambda item: item[1][column], reverse=True)
        return [
            [name(key), round(100 * row[column] / total, 1), row[1]] for key, row in ranked[:count]
        ]

    return {
        "total_s": round(total, 3),
        "top_self_percent_calls": share(2),
        "top_total_percent_calls": share(3),
    }


def _print_table(summary: dict[str, Any]) -> None:
    print(
        f"{summary['nodes']} node(s), {summary['messages']:,} messages of"
        f" {summary['text_bytes']} bytes, median of {summary['trials']} trials:"
    )
    print(f"  delivered on every node  {summary['msgs_per_s']:>10,.0f} msg/s")
    print(f"  committed (acks)         {summary['commits_per_s']:>10,.0f} msg/s")
    print(
        f"  CPU per message          {summary['cpu_us_per_msg']:>10.1f} us (all nodes;"
        f" least {summary['cpu_us_per_msg_min']:.1f})"
    )
    idle = summary.get("idle_cpu_percent_per_node")
    if idle is not None:
        print(f"  idle CPU per node        {idle:>10.2f} % of a core (no network)")
    for label, key in (("commit", "commit_latency_ms"), ("delivery", "delivery_latency_ms")):
        latency = summary.get(key)
        if latency and latency["n"]:
            print(
                f"  {label} latency, one at a time  p50 {latency['p50']:.2f} ms,"
                f" p99 {latency['p99']:.2f} ms ({latency['n']} messages)"
            )
    profile = summary.get("profile")
    if profile:
        print(f"profile: {profile['file']} (python -m pstats); own time, % of the burst:")
        for function, percent, calls in profile["top_self_percent_calls"]:
            print(f"  {percent:5.1f} %  {calls:>9}  {function}")


def _parse(argv: list[str] | None) -> tuple[PipelineOptions, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m raftchat.bench.pipeline",
        description="The per-message work of nodes in one process, without a network.",
    )
    defaults = PipelineOptions()
    parser.add_argument("--nodes", type=int, choices=(1, 3), default=defaults.nodes)
    parser.add_argument("--messages", type=int, default=defaults.messages)
    parser.add_argument("--trials", type=int, default=defaults.trials)
    parser.add_argument("--text-bytes", type=int, default=defaults.text_bytes)
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument(
        "--samples", type=int, default=defaults.samples, help="one-at-a-time messages per trial"
    )
    parser.add_argument(
        "--asyncio", action="store_true", help="asyncio's own event loop instead of uvloop"
    )
    parser.add_argument(
        "--idle", type=float, default=defaults.idle_s, help="idle seconds measured per trial"
    )
    parser.add_argument("--json", action="store_true", help="a JSON object as the last line")
    parser.add_argument("--profile", type=Path, help="write a cProfile of one more trial here")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.trials < 1 or not 1 <= args.text_bytes <= 1000:
        parser.error("--messages and --trials must be positive, --text-bytes 1 to 1000")
    options = PipelineOptions(
        nodes=args.nodes,
        messages=args.messages,
        trials=args.trials,
        text_bytes=args.text_bytes,
        warmup=max(0, args.warmup),
        samples=max(0, args.samples),
        idle_s=max(0.0, args.idle),
        uvloop=not args.asyncio,
    )
    return options, args


def main(argv: list[str] | None = None) -> int:
    options, args = _parse(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = run_trials(options, args.profile)
    summary = result.summary()
    _print_table(summary)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
