"""Percentiles and summaries of measured samples (no numpy needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples`` with linear interpolation between
    closest ranks (numpy's default), so p50 of an even count is the mean of the middle two."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {q}")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = math.ceil(position)
    fraction = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction


def summarize(samples: Sequence[float], digits: int = 3) -> dict[str, float | int]:
    """p50, p99, mean, min, max and count of ``samples``, rounded to ``digits`` decimals.

    An empty list gives only ``{"n": 0}``: a scenario that measured nothing says so
    instead of inventing a figure."""
    if not samples:
        return {"n": 0}
    return {
        "p50": round(percentile(samples, 50), digits),
        "p99": round(percentile(samples, 99), digits),
        "mean": round(sum(samples) / len(samples), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
        "n": len(samples),
    }


def rate(count: int, seconds: float) -> float:
    """Events per second, 0 when nothing was timed."""
    return count / seconds if seconds > 0 else 0.0
