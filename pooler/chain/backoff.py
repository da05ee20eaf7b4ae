"""Exponential backoff with jitter, as a pure function (no clock, no sleeping).

Shared by the block monitor (RPC faults) and the Backend client (network errors, 5xx, 429).
"Equal jitter": half of the exponential step is kept, the other half is random, so a retry
never comes back immediately (a flapping server is not hammered) yet many clients that failed
together do not retry in lock-step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number ``attempt`` (1 = the first retry): ``base * 2**(attempt-1)``,
    capped at ``cap``, then scaled into ``[step/2, step)`` by ``rng()`` in ``[0, 1)``."""

    base: float
    cap: float

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.cap >= self.base):
            raise ValueError(f"backoff needs 0 < base <= cap, got base={self.base} cap={self.cap}")

    def step(self, attempt: int) -> float:
        """The un-jittered delay for ``attempt`` (>= 1)."""
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, got {attempt}")
        # Cap the exponent too: 2**attempt for a long outage would be a huge float for nothing.
        return min(self.cap, self.base * 2.0 ** min(attempt - 1, 62))

    def delay(self, attempt: int, rng: Callable[[], float]) -> float:
        step = self.step(attempt)
        return step / 2 + step / 2 * rng()
