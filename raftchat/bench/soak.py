"""A soak: one channel of local node processes chatting at a steady rate for a long time.

``python -m raftchat.bench.soak --minutes 30 --webrtc wrtc`` starts a signaling server
and ``--nodes`` headless nodes on loopback (the benchmark's harness), then sends
``--rate`` messages a second, round robin over the nodes, for ``--minutes``. Every
``--restart-every`` seconds one follower (in turn) is SIGKILLed and started again on its
data dir, so connections are torn down and set up again all along. Every ``--sample``
seconds it records each node's resident memory (RSS) and CPU time.

At the end it waits for every message to be shown by every node (each node's runs
together), then prints a summary: RSS of each node at the start (after a warm-up) and at
the end, messages sent, committed and missing, elections, restarts, and errors (``error``
events, ERROR lines and tracebacks in the nodes' stderr, processes that died). Exit
status 0 if nothing was missing and no error was seen, 1 otherwise. ``--json`` adds one
JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from raftchat.bench.cluster import Cluster, ClusterSettings
from raftchat.bench.errors import BenchError
from raftchat.bench.node_output import TOKEN_PREFIX
from raftchat.bench.process import NodeProcess
from raftchat.bench.report import machine_info
from raftchat.net.signaling.config import ServerConfig
from raftchat.net.signaling.server import start_server

WARM_UP_S = 10.0
"""Messages flow this long before the starting RSS is taken."""
DRAIN_TIMEOUT_S = 60.0
"""How long the end waits for the last messages to reach every node."""


@dataclass(frozen=True)
class SoakOptions:
    minutes: float = 30.0
    nodes: int = 3
    rate: float = 20.0
    """Messages per second, over all nodes."""
    restart_every_s: float = 300.0
    """A follower is killed and restarted this often (0: never)."""
    sample_s: float = 30.0
    webrtc: str = "wrtc"
    message_bytes: int = 100
    keep_data: bool = False


@dataclass
class NodeRecord:
    """What the soak knows of one node over all its runs."""

    shown: set[str] = field(default_factory=set)
    """Tokens shown by earlier runs (the current run's are in its events)."""
    errors: list[str] = field(default_factory=list)
    rss_kib: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since the start, RSS) of each sample of the current run."""
    first_rss_kib: int | None = None
    restarts: int = 0


def rss_kib(pid: int) -> int | None:
    """Resident memory of a process in KiB (``VmRSS`` of /proc/<pid>/status)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def stderr_problems(node: NodeProcess) -> list[str]:
    """ERROR lines and tracebacks in a node's stderr (all its runs)."""
    try:
        lines = node.stderr_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if " ERROR " in line or line.startswith("Traceback")]


class Soak:
    def __init__(self, options: SoakOptions, root: Path, server_url: str) -> None:
        self.options = options
        self.cluster = Cluster(
            root / "soak",
            server_url,
            "soak",
            ClusterSettings(webrtc=options.webrtc, own_sessions=True),
        )
        self.records: dict[str, NodeRecord] = {}
        self.sent: list[str] = []
        self.sent_by: dict[str, list[str]] = {}
        """node name -> tokens it was given."""
        self.lost_to_kills: set[str] = set()
        """Tokens a node was given but had not acknowledged when it was killed: a crash
        may lose them (nobody was told they were committed)."""
        self._tokens = itertools.count(1)
        self._started = 0.0
        self.died: list[str] = []

    def progress(self, text: str) -> None:
        elapsed = time.perf_counter() - self._started if self._started else 0.0
        sys.stderr.write(f"[{elapsed:7.1f} s] {text}\n")
        sys.stderr.flush()

    def message(self) -> tuple[str, str]:
        token = f"{TOKEN_PREFIX}soak-{next(self._tokens)}"
        return token, (token + " " + "x" * self.options.message_bytes)[: self.options.message_bytes]

    def sample(self) -> None:
        now = time.perf_counter() - self._started
        for node in self.cluster.running():
            rss = rss_kib(node.pid)
            if rss is not None:
                self.records[node.name].rss_kib.append((now, rss))

    async def restart(self, node: NodeProcess) -> None:
        record = self.records[node.name]
        node.kill()
        await node.wait_exit(30)
        record.shown |= set(node.events.shown)
        record.errors += node.events.errors
        acked = set(node.events.acked)
        self.lost_to_kills |= {t for t in self.sent_by.get(node.name, ()) if t not in acked}
        self.sent_by[node.name] = []
        record.restarts += 1
        record.rss_kib.clear()
        await node.start()
        self.progress(f"restarted {node.name}")

    async def run(self) -> dict[str, Any]:
        options = self.options
        self._started = time.perf_counter()
        self.progress(f"starting {options.nodes} nodes ({options.webrtc})")
        await self.cluster.start(options.nodes, 60)
        nodes = list(self.cluster.nodes)
        self.records = {node.name: NodeRecord() for node in nodes}
        engines = self.cluster.engines()
        self.progress(f"channel formed; engine {', '.join(sorted(engines))}")
        first_term = max(node.term for node in nodes)
        deadline = time.perf_counter() + options.minutes * 60
        next_sample = time.perf_counter() + WARM_UP_S
        next_restart = (
            time.perf_counter() + options.restart_every_s if options.restart_every_s else None
        )
        warm = False
        senders = itertools.cycle(nodes)
        interval = 1.0 / options.rate
        next_send = time.perf_counter()
        restarted = 0
        while time.perf_counter() < deadline:
            now = time.perf_counter()
            if now >= next_send:
                sender = next(senders)
                if sender.running:
                    token, text = self.message()
                    sender.send(text)
                    self.sent.append(token)
                    self.sent_by.setdefault(sender.name, []).append(token)
                next_send += interval
            if now >= next_sample:
                self.sample()
                if not warm:
                    warm = True
                    for node in nodes:
                        samples = self.records[node.name].rss_kib
                        self.records[node.name].first_rss_kib = samples[-1][1] if samples else None
                    self.progress("RSS after warm-up: " + self._rss_line())
                next_sample += options.sample_s
            if next_restart is not None and now >= next_restart:
                followers = self.cluster.followers()
                if followers:
                    await self.restart(followers[restarted % len(followers)])
                    restarted += 1
                next_restart += options.restart_every_s
            for node in nodes:
                if not node.running and node.name not in self.died:
                    self.died.append(node.name)
                    self.progress(f"node {node.name} died: see {node.stderr_path}")
            await asyncio.sleep(max(0.0, min(next_send, next_sample) - time.perf_counter()))
        self.sample()
        self.progress("RSS at the end: " + self._rss_line())
        self.progress(f"sent {len(self.sent)} messages; waiting for every node to show them")
        missing = await self._drain(nodes)
        last_term = max(node.term for node in nodes)
        return self._summary(nodes, engines, missing, last_term - first_term)

    def _rss_line(self) -> str:
        parts = []
        for name, record in self.records.items():
            if record.rss_kib:
                parts.append(f"{name} {record.rss_kib[-1][1] / 1024:.1f} MiB")
        return ", ".join(parts)

    async def _drain(self, nodes: list[NodeProcess]) -> dict[str, int]:
        wanted = set(self.sent) - self.lost_to_kills

        def missing_of(node: NodeProcess) -> int:
            return len(wanted - self.records[node.name].shown - set(node.events.shown))

        deadline = time.perf_counter() + DRAIN_TIMEOUT_S
        while time.perf_counter() < deadline:
            if all(missing_of(node) == 0 for node in nodes if node.running):
                break
            await asyncio.sleep(0.5)
        return {node.name: missing_of(node) for node in nodes}

    def _summary(
        self, nodes: list[NodeProcess], engines: set[str], missing: dict[str, int], terms: int
    ) -> dict[str, Any]:
        per_node = {}
        errors: list[str] = [f"{name} died" for name in self.died]
        for node in nodes:
            record = self.records[node.name]
            node_errors = record.errors + node.events.errors
            problems = stderr_problems(node)
            errors += [f"{node.name}: {error}" for error in node_errors]
            errors += [f"{node.name} stderr: {line}" for line in problems]
            samples = [rss for _, rss in record.rss_kib]
            per_node[node.name] = {
                "node_id": node.node_id,
                "restarts": record.restarts,
                "rss_start_mib": round(record.first_rss_kib / 1024, 1)
                if record.first_rss_kib and not record.restarts
                else None,
                "rss_end_mib": round(samples[-1] / 1024, 1) if samples else None,
                "rss_max_mib": round(max(samples) / 1024, 1) if samples else None,
                "rss_samples_mib": [
                    [round(seconds, 1), round(rss / 1024, 1)] for seconds, rss in record.rss_kib
                ],
                "missing": missing[node.name],
                "cpu_s": round(node.cpu_seconds(), 1) if node.running else None,
            }
        return {
            "webrtc": ",".join(sorted(engines)) or None,
            "minutes": self.options.minutes,
            "rate": self.options.rate,
            "sent": len(self.sent),
            "lost_to_kills": len(self.lost_to_kills),
            "missing": sum(missing.values()),
            "terms": terms,
            "nodes": per_node,
            "errors": errors,
            "options": asdict(self.options),
            "machine": machine_info(),
        }


async def run_soak(options: SoakOptions) -> dict[str, Any]:
    server = await start_server("127.0.0.1", 0, ServerConfig.one_machine())
    root = Path(tempfile.mkdtemp(prefix="raftchat-soak-"))
    soak = Soak(options, root, server.url)
    try:
        return await soak.run()
    finally:
        await soak.cluster.close()
        await server.close()
        if options.keep_data:
            soak.progress(f"node data dirs and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _start_rss(node: dict[str, Any]) -> str:
    """The RSS after the warm-up; a restarted node has none to compare with."""
    start = node["rss_start_mib"]
    return "- (restarted)" if start is None else f"{start} MiB"


def summary_text(result: dict[str, Any]) -> str:
    lines = [
        f"soak: {result['minutes']:g} min on {result['webrtc']}, {result['sent']} messages "
        f"({result['rate']:g}/s; {result['lost_to_kills']} unacknowledged when their sender "
        f"was killed), {result['missing']} missing, {result['terms']} new terms",
    ]
    for name, node in result["nodes"].items():
        lines.append(
            f"  {name}: RSS start {_start_rss(node)}, end {node['rss_end_mib']} MiB, "
            f"max {node['rss_max_mib']} MiB; restarts {node['restarts']}; "
            f"missing {node['missing']}; CPU {node['cpu_s']} s"
        )
    lines.append(f"errors: {len(result['errors'])}")
    lines += [f"  {error}" for error in result["errors"][:20]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raftchat.bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=SoakOptions.minutes)
    parser.add_argument("--nodes", type=int, default=SoakOptions.nodes)
    parser.add_argument("--rate", type=float, default=SoakOptions.rate, help="messages/s")
    parser.add_argument(
        "--restart-every",
        type=float,
        default=SoakOptions.restart_every_s,
        metavar="SECONDS",
        help="kill and restart a follower this often (0: never)",
    )
    parser.add_argument("--sample", type=float, default=SoakOptions.sample_s, metavar="SECONDS")
    parser.add_argument("--webrtc", choices=("auto", "wrtc", "aiortc"), default="wrtc")
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.sample <= 0 or not 1 <= args.nodes <= 9:
        parser.error("--minutes, --rate and --sample must be positive, --nodes 1 to 9")
    options = SoakOptions(
        minutes=args.minutes,
        nodes=args.nodes,
        rate=args.rate,
        restart_every_s=args.restart_every,
        sample_s=args.sample,
        webrtc=args.webrtc,
        keep_data=args.keep_data,
    )
    try:
        result = asyncio.run(run_soak(options))
    except BenchError as error:
        print(f"soak failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(summary_text(result))
    if args.json:
        print(json.dumps(result, separators=(",", ":"), default=str))
    return 0 if not result["errors"] and not result["missing"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
