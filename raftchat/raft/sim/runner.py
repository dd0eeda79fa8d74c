"""Running many seeds, reporting failures, and the command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from .simulation import SimResult, SimSettings, Simulation

DESCRIPTION = "Deterministic fault simulator for the Raft core."


def run_seeds(
    seeds: int,
    start: int = 0,
    nodes: int | None = None,
    settings: SimSettings | None = None,
    report: Callable[[SimResult], None] | None = None,
    stop_at_first: bool = False,
    observe: Callable[[SimResult], None] | None = None,
) -> list[SimResult]:
    """Run ``seeds`` schedules from ``start``; return (and ``report``) the failing ones.
    ``observe`` sees every result."""
    failures = []
    for seed in range(start, start + seeds):
        result = Simulation(seed, nodes, settings).run()
        if observe is not None:
            observe(result)
        if not result.ok:
            failures.append(result)
            if report is not None:
                report(result)
            if stop_at_first:
                break
    return failures


def format_failure(result: SimResult) -> str:
    lines = [f"VIOLATION seed={result.seed} nodes={result.nodes}: {result.violations[0]}"]
    lines.append(f"  last {len(result.trace)} events:")
    lines.extend(f"    {line}" for line in result.trace)
    lines.append(f"  replay: python -m raftchat.raft.sim --seed {result.seed} --seeds 1")
    return "\n".join(lines)


def witness_summary(results: list[SimResult]) -> str:
    """How many runs had a witness, and how long survivors took in the headline check."""
    pairs = sum(1 for r in results if r.witness == "pair")
    spares = sum(1 for r in results if r.witness == "spare")
    ticks = sorted(r.headline_ticks for r in results if r.headline_ticks >= 0)
    text = f"witness runs: pair={pairs} spare={spares}"
    if ticks:
        median = ticks[len(ticks) // 2]
        text += f"; member death to its removal committed: median={median} max={ticks[-1]} ticks"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raftchat.raft.sim", description=DESCRIPTION)
    parser.add_argument("--seeds", type=int, default=100, help="how many schedules to run")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--nodes", type=int, default=None, help="initial voters (1-7)")
    args = parser.parse_args(argv)
    if args.nodes is not None and not 1 <= args.nodes <= 7:
        parser.error("--nodes must be between 1 and 7")
    started = time.monotonic()
    results: list[SimResult] = []
    failures = run_seeds(
        args.seeds,
        args.seed,
        args.nodes,
        report=lambda r: print(format_failure(r), flush=True),
        observe=results.append,
    )
    elapsed = time.monotonic() - started
    print(f"elapsed={elapsed:.1f}s", file=sys.stderr)
    print(witness_summary(results), file=sys.stderr)
    forgotten = sum(1 for result in results if result.forgotten)
    print(f"forget runs (a survivor carried on alone): {forgotten}", file=sys.stderr)
    print(f"seeds={args.seeds} violations={len(failures)}")
    return 1 if failures else 0
