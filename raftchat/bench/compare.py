"""``raftchat bench --compare``: the same scenarios on both WebRTC engines in one run, side
by side, with the ratio of each figure (wrtc / aiortc), and beside them the PySyncObj peer
(:mod:`~raftchat.bench.pysyncobj_peer`) with the ratios engine / PySyncObj when it is
installed.

Each engine gets a run of its own (:func:`~raftchat.bench.runner.run_bench`: its own
signaling server, channels and node processes), one after the other on the same
machine and with the same sizes, so the two differ only in the engine. Below 1 is
better for a time or a CPU share, above 1 for a rate. The peer runs last, with the same
sizes; its ratios are taken against its run with a synced journal (raftchat fsyncs every
entry), and its run without a journal is shown beside it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from raftchat.bench.options import BenchOptions
from raftchat.bench.report import machine_info

COMPARED_ENGINES = ("aiortc", "wrtc")
"""In run order; the ratios are the second over the first."""
PEER_BASE_JOURNAL = "fsync"
"""The peer's run the ratios engine / peer are taken against (every entry on disk, as in
raftchat)."""


@dataclass(frozen=True)
class Figure:
    """One figure read out of a benchmark result for the comparison."""

    key: str
    "Its key in the comparison's JSON."
    label: str
    "Its row in the table."
    unit: str
    path: tuple[str, ...]
    "Where it is in one engine's result (as ``raftchat bench --json`` prints it)."
    digits: int = 2


FIGURES = (
    Figure(
        "throughput_leader_msgs_per_s",
        "throughput, leader sending (committed)",
        "msg/s",
        ("throughput", "one_sender", "msgs_per_s"),
        0,
    ),
    Figure(
        "throughput_all_msgs_per_s",
        "throughput, all sending (committed)",
        "msg/s",
        ("throughput", "all_senders", "msgs_per_s"),
        0,
    ),
    Figure("commit_latency_p50_ms", "commit latency p50", "ms", ("commit_latency_ms", "p50")),
    Figure("commit_latency_p99_ms", "commit latency p99", "ms", ("commit_latency_ms", "p99")),
    Figure(
        "commit_latency_leader_p50_ms",
        "  sent on the leader, p50",
        "ms",
        ("commit_latency_ms_by_sender", "leader", "p50"),
    ),
    Figure(
        "commit_latency_follower_p50_ms",
        "  sent on a follower, p50",
        "ms",
        ("commit_latency_ms_by_sender", "follower", "p50"),
    ),
    Figure("delivery_latency_p50_ms", "delivery latency p50", "ms", ("delivery_latency_ms", "p50")),
    Figure(
        "leader_cpu_percent",
        "leader's CPU during the bursts",
        "%",
        ("throughput", "cpu_percent", "leader"),
        0,
    ),
    Figure(
        "idle_cpu_p50_percent",
        "idle CPU per node p50",
        "%",
        ("idle_cpu", "per_node_percent", "p50"),
    ),
    Figure(
        "failover_p50_s", "failover: SIGKILL leader -> commit, p50", "s", ("failover_s", "p50"), 3
    ),
    Figure(
        "graceful_quit_p50_s",
        "graceful quit -> new leader, p50",
        "s",
        ("graceful_quit", "leader_change_s", "p50"),
        3,
    ),
    Figure("restart_p50_s", "crashed follower restarted -> current", "s", ("restart_s", "p50")),
    Figure(
        "join_entries_s", "join (entries) -> caught up", "s", ("join", "entries", "caught_up_s")
    ),
    Figure(
        "join_snapshot_s", "join (snapshot) -> caught up", "s", ("join", "snapshot", "caught_up_s")
    ),
    Figure("scale_formation_s", "scale: channel formed", "s", ("scale", "formation_s")),
)
"""What the comparison shows, in table order."""


def figure_of(result: dict[str, Any], figure: Figure) -> float | None:
    """The figure's value in one engine's result; None if its scenario did not run."""
    value: Any = result
    for step in figure.path:
        if not isinstance(value, dict) or value.get(step) is None:
            return None
        value = value[step]
    return float(value) if isinstance(value, int | float) else None


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base`` rounded to 3 digits; None where either is missing or base is 0."""
    if value is None or base is None or base == 0:
        return None
    return round(value / base, 3)


def build_comparison(
    runs: dict[str, dict[str, Any]],
    options: BenchOptions,
    duration_s: float,
    peer: dict[str, Any] | None = None,
    peer_missing: str | None = None,
) -> dict[str, Any]:
    """The JSON object of a comparison: every figure per engine, the ratios, and each
    engine's whole result (``runs``, as ``raftchat bench --json`` prints one); with
    ``peer`` (what :func:`~raftchat.bench.pysyncobj_peer.run_peer` returned) its figures
    per journal and the ratios engine / peer, or why it did not run (``peer_missing``)."""
    base_engine, engine = COMPARED_ENGINES
    figures = {
        name: {figure.key: figure_of(runs[name], figure) for figure in FIGURES}
        for name in COMPARED_ENGINES
    }
    ratios = {
        figure.key: ratio(figures[engine][figure.key], figures[base_engine][figure.key])
        for figure in FIGURES
    }
    params = options.as_params()
    params.pop("webrtc", None)
    errors = {
        f"{name}: {scenario}": error
        for name in COMPARED_ENGINES
        for scenario, error in runs[name]["errors"].items()
    }
    comparison: dict[str, Any] = {
        "compare": list(COMPARED_ENGINES),
        "ratio": f"{engine} / {base_engine}",
        "figures": figures,
        "ratios": ratios,
        "engines_seen": {name: runs[name].get("webrtc") for name in COMPARED_ENGINES},
        "runs": runs,
        "params": params,
        "machine": machine_info(),
        "errors": errors,
        "duration_s": round(duration_s, 1),
    }
    if peer is not None:
        comparison.update(peer_comparison(figures, peer))
        errors.update({f"{peer['peer']}: {what}": error for what, error in peer["errors"].items()})
    else:
        comparison["peer_missing"] = peer_missing
    return comparison


def peer_figures(peer: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """The peer's figures per journal (None for every scenario it does not measure)."""
    return {
        journal: {figure.key: figure_of(run, figure) for figure in FIGURES}
        for journal, run in peer["runs"].items()
    }


def peer_comparison(
    figures: dict[str, dict[str, float | None]], peer: dict[str, Any]
) -> dict[str, Any]:
    """The peer's part of a comparison: its figures, and each engine's over the peer's
    with the journal the comparison is fair against."""
    by_journal = peer_figures(peer)
    base = by_journal[PEER_BASE_JOURNAL]
    return {
        "peer": peer["peer"],
        "peer_base_journal": PEER_BASE_JOURNAL,
        "peer_figures": by_journal,
        "peer_ratios": {
            name: {
                figure.key: ratio(figures[name][figure.key], base[figure.key]) for figure in FIGURES
            }
            for name in COMPARED_ENGINES
        },
        "peer_run": peer,
    }


def _cell(value: float | None, figure: Figure) -> str:
    return "-" if value is None else f"{value:,.{figure.digits}f} {figure.unit}"


def _ratio_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Text columns: the first left-aligned, the rest right-aligned, a rule under the header."""
    rows = [header, *rows]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        numbers = zip(row[1:], widths[1:], strict=True)
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in numbers)]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return lines


def _peer_label(peer: str, journal: str) -> str:
    return f"{peer} ({journal})"


def format_comparison(comparison: dict[str, Any]) -> str:
    """The comparison as a text table: one row per figure, one column per engine, and
    the ratio; with the peer, its columns and the ratios engine / peer."""
    base_engine, engine = COMPARED_ENGINES
    peer = comparison.get("peer")
    header = ["measure", base_engine, engine, comparison["ratio"]]
    journals: list[str] = []
    if peer:
        base_journal = comparison["peer_base_journal"]
        journals = [base_journal, *(j for j in comparison["peer_figures"] if j != base_journal)]
        header += [_peer_label(peer, base_journal)]
        header += [f"{name} / {peer}" for name in COMPARED_ENGINES]
        header += [_peer_label(peer, journal) for journal in journals[1:]]
    rows = []
    for figure in FIGURES:
        values = [comparison["figures"][name][figure.key] for name in COMPARED_ENGINES]
        if all(value is None for value in values):
            continue
        row = [
            figure.label,
            *(_cell(value, figure) for value in values),
            _ratio_cell(comparison["ratios"][figure.key]),
        ]
        if peer:
            peer_values = [comparison["peer_figures"][j][figure.key] for j in journals]
            row += [_cell(peer_values[0], figure)]
            row += [_ratio_cell(comparison["peer_ratios"][n][figure.key]) for n in COMPARED_ENGINES]
            row += [_cell(value, figure) for value in peer_values[1:]]
        rows.append(row)
    lines = _table(header, rows)
    machine = comparison["machine"]
    lines.append("")
    versions = f"aiortc {machine.get('aiortc')}, wrtc {machine.get('wrtc')}"
    if peer:
        versions += f", {peer} {comparison['peer_run']['version']} (TCP)"
    lines.append(
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}), Python {machine['python']}, "
        f"{versions}; {comparison['params']['nodes']} nodes; "
        f"took {comparison['duration_s']:.0f} s"
    )
    if comparison.get("peer_missing"):
        lines.append(f"no PySyncObj column: {comparison['peer_missing']}")
    for what, error in comparison["errors"].items():
        lines.append(f"FAILED {what}: {error}")
    return "\n".join(lines)


def format_peer(peer: dict[str, Any]) -> str:
    """``raftchat bench --peer``: the peer's figures, one column per journal."""
    by_journal = peer_figures(peer)
    journals = list(by_journal)
    rows = []
    for figure in FIGURES:
        values = [by_journal[journal][figure.key] for journal in journals]
        if any(value is not None for value in values):
            rows.append([figure.label, *(_cell(value, figure) for value in values)])
    lines = _table(["measure", *(_peer_label(peer["peer"], j) for j in journals)], rows)
    machine = peer["machine"]
    lines.append("")
    lines.append(
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}), Python {machine['python']}, "
        f"{peer['peer']} {peer['version']} over TCP on 127.0.0.1; {peer['params']['nodes']} "
        f"nodes; took {peer['duration_s']:.0f} s"
    )
    for what, error in peer["errors"].items():
        lines.append(f"FAILED {what}: {error}")
    return "\n".join(lines)


RunBench = Callable[[BenchOptions, Callable[[str], None]], Awaitable[dict[str, Any]]]
RunPeer = Callable[[BenchOptions, Callable[[str], None]], Awaitable[dict[str, Any]]]


async def run_comparison(
    options: BenchOptions,
    progress: Callable[[str], None],
    run_bench: RunBench,
    run_peer: RunPeer | None = None,
    peer_missing: str | None = None,
) -> dict[str, Any]:
    """``options``' scenarios on each engine in turn, then on the peer if ``run_peer`` is
    given, then :func:`build_comparison`. Profiles (``--profile DIR``) go to
    ``DIR/<engine>``."""
    started = time.perf_counter()
    runs: dict[str, dict[str, Any]] = {}
    for engine in COMPARED_ENGINES:
        progress(f"--- {engine} ---")
        profile_dir = options.profile_dir / engine if options.profile_dir else None
        engine_options = replace(options, webrtc=engine, profile_dir=profile_dir)
        runs[engine] = await run_bench(engine_options, progress)
    peer = None
    if run_peer is not None:
        progress("--- PySyncObj ---")
        peer = await run_peer(options, progress)
    elif peer_missing:
        progress(f"no PySyncObj column: {peer_missing}")
    duration_s = time.perf_counter() - started
    return build_comparison(runs, options, duration_s, peer, peer_missing)
