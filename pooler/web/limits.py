"""Per-connection protective limits (pure: time is passed in).

- :class:`TokenBucket`: messages per second on one connection (or one miner's REST requests).

The per-miner share-quality guard (warn, close, refuse a miner whose shares are mostly
invalid) is the coordinator's: :mod:`pooler.core.guard`.
"""

from __future__ import annotations


class TokenBucket:
    """``rate`` messages a second on average, bursts up to ``burst``."""

    __slots__ = ("_at", "_burst", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst  # a new connection may burst at once (hello + a first share batch)
        self._at = now  # when _tokens was last brought up to date

    def take(self, now: float) -> bool:
        tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True
