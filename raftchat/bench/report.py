"""The benchmark's output: the machine it ran on, the JSON object, and a text table."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

HEADLINE_KEYS = (
    "webrtc",
    "throughput_msgs_per_s",
    "commit_latency_ms",
    "delivery_latency_ms",
    "failover_s",
)
"""Always present in the JSON (null when their scenario did not run or failed)."""


def machine_info() -> dict[str, Any]:
    """CPU count and model, Python and the WebRTC stack versions."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for package in ("aiortc", "aioice", "wrtc"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        **versions,
    }


def build_result(
    results: dict[str, Any],
    params: dict[str, Any],
    errors: dict[str, str],
    duration_s: float,
) -> dict[str, Any]:
    """The JSON object: headline keys first, then every scenario's details."""
    output: dict[str, Any] = {key: results.get(key) for key in HEADLINE_KEYS}
    output.update(results)
    output["params"] = params
    output["machine"] = machine_info()
    output["errors"] = errors
    output["duration_s"] = round(duration_s, 1)
    return output


def _pct(summary: dict[str, Any] | None, unit: str, scale: float = 1.0, digits: int = 2) -> list:
    if not summary or not summary.get("n"):
        return ["-", "-", "-"]
    return [
        f"{summary['p50'] * scale:.{digits}f} {unit}",
        f"{summary['p99'] * scale:.{digits}f} {unit}",
        str(summary["n"]),
    ]


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows of (measure, p50 / value, p99, samples or detail)."""
    rows: list[list[str]] = []
    throughput = result.get("throughput")
    if throughput:
        for key, label in (("one_sender", "leader sending"), ("all_senders", "all sending")):
            burst = throughput[key]
            rows.append(
                [
                    f"throughput, {label} (committed)",
                    f"{burst['msgs_per_s']:.0f} msg/s",
                    "",
                    f"{burst['messages']} msgs"
                    + (f", {burst['acks_missing']} acks missing" if burst["acks_missing"] else "")
                    + (f", {burst['elections']} new terms" if burst.get("elections") else ""),
                ]
            )
            rows.append(
                [
                    f"throughput, {label} (shown on all)",
                    f"{burst['delivered_msgs_per_s']:.0f} msg/s",
                    "",
                    "",
                ]
            )
    if result.get("commit_latency_ms"):
        rows.append(["commit latency (send -> ack)", *_pct(result["commit_latency_ms"], "ms")])
        by_sender = result.get("commit_latency_ms_by_sender", {})
        for role in ("leader", "follower"):
            rows.append([f"  sent on the {role}", *_pct(by_sender.get(role), "ms")])
        rows.append(
            ["delivery latency (send -> last node)", *_pct(result["delivery_latency_ms"], "ms")]
        )
    idle = result.get("idle_cpu")
    if idle:
        rows.append(["idle CPU per node (% of a core)", *_pct(idle["per_node_percent"], "%")])
    if result.get("failover_s"):
        rows.append(["failover: SIGKILL leader -> commit", *_pct(result["failover_s"], "s", 1, 3)])
        rows.append(["  -> new leader", *_pct(result.get("failover_election_s"), "s", 1, 3)])
    graceful = result.get("graceful_quit")
    if graceful:
        rows.append(["graceful quit -> new leader", *_pct(graceful["leader_change_s"], "s", 1, 3)])
        rows.append(
            ["  longest commit wait meanwhile", *_pct(graceful["max_commit_wait_ms"], "ms", 1, 1)]
        )
    if result.get("restart_s"):
        rows.append(["crashed follower restarted -> current", *_pct(result["restart_s"], "s")])
    join = result.get("join")
    if join:
        for path in ("entries", "snapshot"):
            info = join[path]
            rows.append(
                [
                    f"join ({path}): start -> caught up",
                    f"{info['caught_up_s']:.2f} s",
                    "",
                    f"{info['history']} msgs, added {info['added_s']:.2f} s",
                ]
            )
    scale = result.get("scale")
    if scale:
        rows.append(
            [
                f"scale: {scale['members']} members formed",
                f"{scale['formation_s']:.2f} s",
                "",
                f"{scale['voters']} voters",
            ]
        )
        rows.append(
            [
                f"  idle CPU per node, {scale['members']} members",
                *_pct(scale["idle_cpu"]["per_node_percent"], "%"),
            ]
        )
    return rows


def _engine_line(result: dict[str, Any]) -> str:
    """``WebRTC: wrtc 0.1.0`` (what the nodes said they ran, with its version)."""
    machine = result["machine"]
    engines = (result.get("webrtc") or "").split(",")
    named = [f"{name} {machine.get(name) or '?'}" for name in engines if name]
    return "WebRTC: " + (", ".join(named) or f"unknown (aiortc {machine.get('aiortc')})")


def format_table(result: dict[str, Any]) -> str:
    header = ["measure", "p50 / value", "p99", "n / detail"]
    rows = [header, *table_rows(result)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    machine = result["machine"]
    lines.append("")
    lines.append(
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}), Python {machine['python']}, "
        f"{_engine_line(result)}; {result['params']['nodes']} nodes; "
        f"took {result['duration_s']:.0f} s"
    )
    for scenario, error in result["errors"].items():
        lines.append(f"FAILED {scenario}: {error}")
    return "\n".join(lines)
