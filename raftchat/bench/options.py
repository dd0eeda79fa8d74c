"""What one benchmark run measures and with which sizes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

SCENARIOS = (
    "throughput",
    "latency",
    "cpu",
    "failover",
    "graceful",
    "restart",
    "join",
    "scale",
)
"""In run order. throughput, latency, cpu, failover, graceful and restart share one channel."""
DEFAULT_SCENARIOS = SCENARIOS
"""What a run without ``--only`` measures."""

MAX_NODES = 9
MAX_MEMBERS = 100


class OptionsError(ValueError):
    """A benchmark option is out of range; the message names it and the accepted values."""


@dataclass(frozen=True)
class BenchOptions:
    """Sizes of one run. Defaults take about two minutes on two cores."""

    nodes: int = 3
    """Node processes in the main channel (throughput, latency, failover)."""
    messages: int = 5_000
    """Messages per throughput burst (one from a single sender, one spread over all)."""
    message_bytes: int = 100
    """Length of each benchmark chat message text."""
    latency_samples: int = 200
    """Messages sent one at a time for commit and delivery latency."""
    trials: int = 5
    """Leader SIGKILL trials; graceful-quit trials are ``max(1, trials // 2)``."""
    history: int = 2_000
    """Messages in the channel before a new member joins (join scenario)."""
    members: int = 10
    """Members of the scale channel (5 voters, the rest learners)."""
    idle_s: float = 3.0
    """Idle interval over which steady CPU per node is measured."""
    timeout_s: float = 60.0
    """Longest wait for any single step (formation, a burst, a failover)."""
    only: tuple[str, ...] = DEFAULT_SCENARIOS
    """Scenarios to run, in :data:`SCENARIOS` order."""
    keep_data: bool = False
    """Keep the nodes' data dirs and stderr logs (the path is printed) for a post-mortem."""
    profile_dir: Path | None = None
    """If set, py-spy profiles of the leader and a follower during the throughput bursts
    are written here (needs the py-spy command)."""
    debug_nodes: bool = False
    """Start nodes with ``-v`` (debug logs in their ``<name>.stderr``; slows them down)."""
    webrtc: str = "auto"
    """The nodes' WebRTC engine (the ``webrtc`` setting: ``auto``, ``wrtc``, ``aiortc``)."""

    def __post_init__(self) -> None:
        checks = {
            "nodes": (self.nodes, 1, MAX_NODES),
            "messages": (self.messages, 1, 10_000_000),
            "message_bytes": (self.message_bytes, 16, 4_000),
            "latency_samples": (self.latency_samples, 1, 1_000_000),
            "trials": (self.trials, 1, 1_000),
            "history": (self.history, 1, 1_000_000),
            "members": (self.members, 1, MAX_MEMBERS),
        }
        for name, (value, low, high) in checks.items():
            if not low <= value <= high:
                raise OptionsError(
                    f"--{name.replace('_', '-')} must be between {low} and {high}, got {value}"
                )
        if self.webrtc not in ("auto", "wrtc", "aiortc"):
            raise OptionsError(f"--webrtc must be auto, wrtc or aiortc, got {self.webrtc!r}")
        if self.idle_s <= 0 or self.timeout_s <= 0:
            raise OptionsError("idle and timeout intervals must be positive")
        unknown = [name for name in self.only if name not in SCENARIOS]
        if unknown or not self.only:
            raise OptionsError(
                f"unknown scenario {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(SCENARIOS)}"
            )
        needs_two = {"failover", "graceful"} & set(self.only)
        if needs_two and self.nodes < 2:
            raise OptionsError(f"{', '.join(sorted(needs_two))} needs --nodes 2 or more")
        ordered = tuple(name for name in SCENARIOS if name in self.only)
        object.__setattr__(self, "only", ordered)

    @property
    def graceful_trials(self) -> int:
        return max(1, self.trials // 2)

    def as_params(self) -> dict[str, Any]:
        params = asdict(self)
        params["only"] = list(self.only)
        params["profile_dir"] = str(self.profile_dir) if self.profile_dir else None
        params["graceful_trials"] = self.graceful_trials
        return params


def quick_options(**overrides: Any) -> BenchOptions:
    """Tiny sizes for tests and smoke runs (well under a minute)."""
    quick = BenchOptions(
        messages=300,
        latency_samples=20,
        trials=1,
        history=100,
        members=4,
        idle_s=1.0,
        timeout_s=30.0,
    )
    return replace(quick, **overrides)


def parse_only(text: str | None) -> tuple[str, ...]:
    """``--only throughput,latency`` as a tuple (the default set when not given)."""
    if not text:
        return DEFAULT_SCENARIOS
    return tuple(part.strip() for part in text.split(",") if part.strip())
