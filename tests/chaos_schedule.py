"""The chaos test's settings and its seeded fault schedule.

A schedule is a list of steps run one after another: each injects one fault, holds
it, heals it, and pauses before the next. Which node a step hits is a number resolved
against the nodes running at that moment (the leader is only known then), so a seed
always gives the same plan; the run prints what it actually did.

Settings come from the environment, so a long run by hand is::

    RAFTCHAT_CHAOS_SEED=1234 RAFTCHAT_CHAOS_SECONDS=600 pytest -m chaos -s
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

SEED_ENV = "RAFTCHAT_CHAOS_SEED"
SECONDS_ENV = "RAFTCHAT_CHAOS_SECONDS"
RATE_ENV = "RAFTCHAT_CHAOS_RATE"

DEFAULT_SECONDS = 35.0
"""Fits the CI budget (about two minutes with start-up, convergence and checks)."""
DEFAULT_RATE = 8.0

KINDS = ("kill", "pause", "partition", "isolate_leader", "kill_leader", "join", "leave")
WEIGHTS = (3, 2, 3, 2, 1, 1, 1)
HOLD_S = {
    "kill": (0.3, 3.0),
    "kill_leader": (0.3, 2.0),
    "pause": (0.3, 4.0),
    "partition": (0.5, 5.0),
    "isolate_leader": (0.5, 4.0),
    "join": (0.0, 0.0),
    "leave": (0.0, 0.0),
}
GAP_S = (0.3, 2.0)
"""Quiet time between two faults."""


@dataclass(frozen=True)
class ChaosSettings:
    seed: int
    seconds: float
    """How long faults are injected (start-up and convergence come on top)."""
    rate: float
    """Messages per second from each sender."""

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.rate <= 0:
            raise ValueError(f"{SECONDS_ENV} and {RATE_ENV} must be positive")

    @classmethod
    def from_env(cls) -> ChaosSettings:
        seed_text = os.environ.get(SEED_ENV)
        seed = int(seed_text) if seed_text else random.SystemRandom().randrange(2**32)
        return cls(
            seed=seed,
            seconds=float(os.environ.get(SECONDS_ENV) or DEFAULT_SECONDS),
            rate=float(os.environ.get(RATE_ENV) or DEFAULT_RATE),
        )

    def replay_hint(self) -> str:
        return f"{SEED_ENV}={self.seed} {SECONDS_ENV}={self.seconds:g} {RATE_ENV}={self.rate:g}"


@dataclass(frozen=True)
class Step:
    at_s: float
    """Planned start, seconds after the faults begin (later if a step ran long)."""
    kind: str
    pick: int
    """Which node: an index (modulo) into the sorted candidates running at the time."""
    hold_s: float
    """How long the fault lasts before it is healed."""
    minority: int
    """Partitions: how many nodes are cut off from the rest (1 or 2)."""
    gap_s: float
    """Quiet time after the fault is healed."""

    def __str__(self) -> str:
        detail = f" minority={self.minority}" if "partition" in self.kind else ""
        return (
            f"t={self.at_s:6.2f}s {self.kind:<14} pick={self.pick} "
            f"hold={self.hold_s:.2f}s{detail} gap={self.gap_s:.2f}s"
        )


def plan(seed: int, seconds: float) -> list[Step]:
    """The steps of a run of about ``seconds``, the same for the same seed."""
    rng = random.Random(seed)
    steps = []
    at = rng.uniform(*GAP_S)
    while at < seconds:
        kind = rng.choices(KINDS, WEIGHTS)[0]
        hold = round(rng.uniform(*HOLD_S[kind]), 2)
        gap = round(rng.uniform(*GAP_S), 2)
        steps.append(Step(round(at, 2), kind, rng.randrange(1000), hold, rng.choice((1, 2)), gap))
        at += hold + gap
    return steps
