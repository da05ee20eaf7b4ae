from __future__ import annotations

from pooler.web.limits import TokenBucket


def test_bucket_allows_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.take(0.05)  # half a token refilled
    assert bucket.take(0.1)  # one whole token
    assert not bucket.take(0.1)


def test_bucket_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket(rate=100, burst=3, now=0.0)
    for _ in range(3):
        assert bucket.take(0.0)
    assert [bucket.take(1000.0) for _ in range(4)] == [True, True, True, False]
