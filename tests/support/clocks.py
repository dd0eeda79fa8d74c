"""A clock the test moves by hand, for code that takes its clock as a parameter."""

from __future__ import annotations


class ManualClock:
    """A monotonic clock that moves only when told: rate limits, expiry, charts and
    latencies become exact."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
