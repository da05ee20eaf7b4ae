"""Protective limits (pure: time is passed in, seconds on a monotonic clock).

- :class:`TokenBucket`: messages per second on one connection (or one miner's REST requests).
- :class:`RegistrationLimits`: ``POST /miner/register`` per client address and in total.
- :class:`AuthBackoff`: wrong tokens per client address, ckpool style: a few are answered, then
  the address's token checks are refused for a back-off that doubles with each further wrong one.

Every refusal is a :class:`Refusal` value (which limit, and when to retry): callers tell limits
apart by its fields, never by a message's text. Each Pooler instance counts on its own; in a
group every instance has its own counts (docs/operations.md).

The per-miner share-quality guard (warn, close, refuse a miner whose shares are mostly
invalid) is the coordinator's: :mod:`pooler.core.guard`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_HOUR = 3600.0
_BACKOFF_DOUBLINGS = 6  # the longest back-off is 2**6 = 64 times the first
_TRACKED = 10_000  # addresses kept before the ones that no longer matter are swept out


@dataclass(frozen=True, slots=True)
class Refusal:
    """A limit said no: ``limit`` names it (the ``pooler_limit_hits_total`` label), ``retry_after``
    is the number of seconds after which the same request would be let through."""

    limit: str
    retry_after: float

    @property
    def retry_seconds(self) -> int:
        """``retry_after`` rounded up, for a ``Retry-After`` header (at least 1)."""
        return max(1, math.ceil(self.retry_after))


class TokenBucket:
    """``rate`` messages a second on average, bursts up to ``burst``."""

    __slots__ = ("_at", "_burst", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst  # a new connection may burst at once (hello + a first share batch)
        self._at = now  # when _tokens was last brought up to date

    def _refill(self, now: float) -> float:
        self._tokens = min(self._burst, self._tokens + max(0.0, now - self._at) * self._rate)
        self._at = now
        return self._tokens

    def take(self, now: float) -> bool:
        if self._refill(now) < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: one is there now); takes nothing."""
        tokens = self._refill(now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._rate

    def full(self, now: float) -> bool:
        """Whether the bucket is back to its burst (nothing to remember about its owner)."""
        return self._refill(now) >= self._burst


class RegistrationLimits:
    """``per_address`` registrations an hour from one address and ``total`` from all, each a
    bucket refilled evenly over the hour (0: that limit is off).

    :meth:`admit` takes from both buckets only when both have a registration left: a request the
    total refuses does not use up its address's allowance, and one its address refuses does not
    use up the total."""

    __slots__ = ("_by_address", "_per_address", "_total")

    def __init__(self, per_address: int, total: int, now: float) -> None:
        self._per_address = per_address
        # all addresses together; None: no total limit
        self._total = TokenBucket(total / _HOUR, total, now) if total else None
        self._by_address: dict[str, TokenBucket] = {}  # address -> its bucket (swept when full)

    def admit(self, address: str, now: float) -> Refusal | None:
        """None, and one registration counted for ``address`` and the total; or why not."""
        own = None
        if self._per_address:
            own = self._by_address.get(address)
            if own is None:
                self._sweep(now)
                own = self._by_address[address] = TokenBucket(
                    self._per_address / _HOUR, self._per_address, now
                )
            wait = own.wait(now)
            if wait > 0:
                return Refusal("registrations-per-ip", wait)
        if self._total is not None:
            wait = self._total.wait(now)
            if wait > 0:
                return Refusal("registrations-total", wait)
            self._total.take(now)
        if own is not None:
            own.take(now)
        return None

    def _sweep(self, now: float) -> None:
        if len(self._by_address) >= _TRACKED:
            for address in [a for a, bucket in self._by_address.items() if bucket.full(now)]:
                del self._by_address[address]


class _Failures:
    __slots__ = ("count", "last", "until")

    def __init__(self, now: float) -> None:
        self.count = 0  # wrong tokens since the address was last forgiven
        self.last = now  # when the latest one came
        self.until = 0.0  # token checks from the address are refused before this


class AuthBackoff:
    """Wrong tokens per client address (REST bearer tokens, WebSocket hellos, ADMIN_TOKEN).

    ``allowed`` wrong tokens are answered as usual; with the last of them the address is backed
    off for ``base`` seconds, and each further one (checked after a back-off) doubles it, up to
    64 times ``base``.
    While backed off, its token checks are refused without looking at the token. An address
    with no wrong token for ``forget`` seconds (64 x ``base``) starts again from zero. A good
    token does not forgive earlier wrong ones (else one registered miner could reset the count
    between guesses). Trade-off: miners behind one address (NAT) share the count, so one rig
    with a wrong token can hold back its neighbours' new connections (connected ones are not
    affected); docs/operations.md says so."""

    __slots__ = ("_allowed", "_base", "_by_address", "_forget")

    def __init__(self, allowed: int, base: float) -> None:
        self._allowed = allowed
        self._base = base
        self._forget = base * 2**_BACKOFF_DOUBLINGS
        self._by_address: dict[str, _Failures] = {}  # address -> its recent wrong tokens

    def check(self, address: str, now: float) -> Refusal | None:
        """None when ``address`` may have a token checked now; else how long it must wait."""
        entry = self._by_address.get(address)
        if entry is None or now >= entry.until:
            return None
        return Refusal("auth-backoff", entry.until - now)

    def failed(self, address: str, now: float) -> None:
        """``address`` sent a wrong token."""
        entry = self._by_address.get(address)
        if entry is None or now - entry.last > self._forget:
            if entry is None:
                self._sweep(now)
            entry = self._by_address[address] = _Failures(now)
        entry.count += 1
        entry.last = now
        over = entry.count - self._allowed  # 0: the last one allowed was just used
        if over >= 0:
            entry.until = now + self._base * 2 ** min(over, _BACKOFF_DOUBLINGS)

    def _sweep(self, now: float) -> None:
        if len(self._by_address) >= _TRACKED:
            stale = [a for a, e in self._by_address.items() if now - e.last > self._forget and now >= e.until]
            for address in stale:
                del self._by_address[address]
