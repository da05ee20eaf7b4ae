"""Nonce ranges: disjoint per farmer within a block, sized from the worker's hashrate.

The preimage contains the farmer, so two farmers hashing the same nonce do different work;
within one farmer, every worker of every miner draws from one counter, so no two of them
ever hash the same nonce. A u64 space per farmer per block is ~1.8e19 nonces: ranges can
be generous (a GPU at 2e9 H/s for a whole 300 s block takes 6e11), so sizing errs on the
large side and wasted tails cost nothing.
"""

from __future__ import annotations

from typing import Protocol

from pooler.core.config import CoreConfig
from protocol.work import MAX_NONCE


class NonceCounter:
    """Hands out consecutive, disjoint ``[start, end)`` ranges below ``2**64 - 1``."""

    __slots__ = ("next",)

    def __init__(self, start: int = 0) -> None:
        self.next = start  # first nonce nobody has been given yet (all below were handed out)

    @property
    def refilling(self) -> bool:
        """Whether more space is on its way (a group's shared counter drawing its next chunk):
        then a socket refused a range now waits for :class:`NonceRefillDone`. The
        single-instance counter holds the whole u64 space: when it is out, it is out."""
        return False

    def take(self, size: int) -> tuple[int, int] | None:
        """The next range of up to ``size`` nonces, or None when the space is exhausted."""
        start = self.next
        if start >= MAX_NONCE:
            return None
        end = min(start + max(size, 1), MAX_NONCE)  # exclusive end stays a valid u64
        self.next = end
        return start, end


class NonceSpace(Protocol):
    """Where a (block, farmer)'s counter comes from (a constructor argument of the coordinator).

    One instance: :class:`LocalNonces`, the whole u64 space per (block, farmer). A group:
    :class:`pooler.cluster.nonces.RangeAllocator`, chunks of a space the instances share.
    """

    def counter(self, block: int, farmer_id: str, floor: int) -> NonceCounter:
        """The counter of (block, farmer), asked for once per (block, farmer). ``floor``: the
        first nonce a restarted process may hand out (a restart resumes above the ranges it
        handed out before); a space whose ranges are unique across restarts may ignore it."""
        ...


class LocalNonces:
    """The single instance's nonce space: a fresh counter from ``floor`` per (block, farmer)."""

    def counter(self, block: int, farmer_id: str, floor: int) -> NonceCounter:
        return NonceCounter(floor)


def range_size(hashrate: float, seconds_left: float, config: CoreConfig) -> int:
    """Nonces for a worker hashing at ``hashrate`` (0 = unknown) with ``seconds_left`` in the block."""
    if hashrate <= 0:
        return config.range_default
    size = int(hashrate * max(seconds_left, config.range_seconds))
    return min(max(size, config.range_min), config.range_max)


class FarmerSlots:
    """One farmer's standing slots (feature ``block-broadcast``, :mod:`pooler.core.slots`):
    disjoint ranges, all below :attr:`top`; each block's counter of the farmer opens at or above
    ``top``, so no job range ever overlaps a slot."""

    __slots__ = ("free", "held", "top")

    def __init__(self) -> None:
        # every slot ever handed out lies below it (it only grows): counters open above it
        self.top = 0
        # ranges of slots given up, handed out again (best fit, the rest kept): a slot is used from
        # the next block on only, so a range given up now may go to a new slot now (see slots.py)
        self.free: list[tuple[int, int]] = []
        self.held = 0  # slots standing now (for views and tests)

    def take(self, size: int) -> tuple[int, int] | None:
        """A range of ``size`` nonces for a new slot, or None when the space has no room left."""
        size = max(size, 1)
        best = -1
        for i, (start, end) in enumerate(self.free):
            if end - start >= size and (best < 0 or end - start < self.free[best][1] - self.free[best][0]):
                best = i
        if best >= 0:
            start, end = self.free.pop(best)
            if end - start > size:
                self.free.append((start + size, end))
            self.held += 1
            return start, start + size
        start = self.top
        if start + size > MAX_NONCE:
            return None
        self.top = start + size
        self.held += 1
        return start, self.top

    def give_back(self, start: int, end: int) -> None:
        """The range of a slot no worker holds any more."""
        self.free.append((start, end))
        self.held -= 1
