"""The token bucket that rate-limits what peers and signaling clients send."""

import pytest

from raftchat.net.rate_limit import TokenBucket


def test_token_bucket_allows_bursts_then_its_rate():
    bucket = TokenBucket(rate=10.0, capacity=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)
    assert bucket.take(100.0, amount=5) and not bucket.take(100.0)  # capped at capacity
    assert not bucket.take(200.0, amount=6)  # more than it can ever hold
    with pytest.raises(ValueError):
        TokenBucket(rate=0, capacity=5, now=0.0)


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, capacity=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.25) is False  # half a token
    assert bucket.take(0.5) is True  # one full token after 0.5 s at 2/s
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped
