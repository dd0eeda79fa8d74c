"""The one rate limit of the network code: a token bucket with bursts.

The mesh uses it for what a peer sends (frames, messages, offences, wrong-passphrase
handshakes), the signaling server for what a WebSocket client sends. Time is passed
in, so it is pure and testable without waiting.
"""

from __future__ import annotations


class TokenBucket:
    """At most ``capacity`` tokens, refilled at ``rate`` per second; :meth:`take` spends some."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("a token bucket needs rate > 0 and capacity >= 1")
        self.rate = rate
        self.capacity = capacity
        self.tokens = float(capacity)
        self.updated = now

    def available(self, now: float) -> float:
        """Tokens there are at ``now`` (refills, spends nothing)."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now
        return self.tokens

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Spend ``amount`` tokens if there are that many; False means over the limit."""
        if self.available(now) >= amount:
            self.tokens -= amount
            return True
        return False
