"""``raftchat bench --compare``: the same scenarios on both WebRTC engines in one run, side
by side, with the ratio of each figure (wrtc / aiortc).

Each engine gets a run of its own (:func:`~raftchat.bench.runner.run_bench`: its own
signaling server, channels and node processes), one after the other on the same
machine and with the same sizes, so the two differ only in the engine. Below 1 is
better for a time or a CPU share, above 1 for a rate.
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
    runs: dict[str, dict[str, Any]], options: BenchOptions, duration_s: float
) -> dict[str, Any]:
    """The JSON object of a comparison: every figure per engine, the ratios, and each
    engine's whole result (``runs``, as ``raftchat bench --json`` prints one)."""
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
    return {
        "compare": list(COMPARED_ENGINES),
        "ratio": f"{engine} / {base_engine}",
        "figures": figures,
        "ratios": ratios,
        "engines_seen": {name: runs[name].get("webrtc") for name in COMPARED_ENGINES},
        "runs": runs,
        "params": params,
        "machine": machine_info(),
        "errors": {
            f"{name}: {scenario}": error
            for name in COMPARED_ENGINES
            for scenario, error in runs[name]["errors"].items()
        },
        "duration_s": round(duration_s, 1),
    }


def _cell(value: float | None, figure: Figure) -> str:
    return "-" if value is None else f"{value:,.{figure.digits}f} {figure.unit}"


def format_comparison(comparison: dict[str, Any]) -> str:
    """The comparison as a text table: one row per figure, one column per engine, and
    the ratio."""
    base_engine, engine = COMPARED_ENGINES
    header = ["measure", base_engine, engine, comparison["ratio"]]
    rows = [header]
    for figure in FIGURES:
        values = [comparison["figures"][name][figure.key] for name in COMPARED_ENGINES]
        if all(value is None for value in values):
            continue
        found = comparison["ratios"][figure.key]
        rows.append(
            [
                figure.label,
                *(_cell(value, figure) for value in values),
                "-" if found is None else f"{found:.2f}",
            ]
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        numbers = zip(row[1:], widths[1:], strict=True)
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in numbers)]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    machine = comparison["machine"]
    lines.append("")
    lines.append(
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}), Python {machine['python']}, "
        f"aiortc {machine.get('aiortc')}, wrtc {machine.get('wrtc')}; "
        f"{comparison['params']['nodes']} nodes; took {comparison['duration_s']:.0f} s"
    )
    for what, error in comparison["errors"].items():
        lines.append(f"FAILED {what}: {error}")
    return "\n".join(lines)


RunBench = Callable[[BenchOptions, Callable[[str], None]], Awaitable[dict[str, Any]]]


async def run_comparison(
    options: BenchOptions, progress: Callable[[str], None], run_bench: RunBench
) -> dict[str, Any]:
    """``options``' scenarios on each engine in turn, then :func:`build_comparison`.
    Profiles (``--profile DIR``) go to ``DIR/<engine>``."""
    started = time.perf_counter()
    runs: dict[str, dict[str, Any]] = {}
    for engine in COMPARED_ENGINES:
        progress(f"--- {engine} ---")
        profile_dir = options.profile_dir / engine if options.profile_dir else None
        engine_options = replace(options, webrtc=engine, profile_dir=profile_dir)
        runs[engine] = await run_bench(engine_options, progress)
    return build_comparison(runs, options, time.perf_counter() - started)
