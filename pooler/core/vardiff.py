"""Per-worker variable difficulty and hashrate estimation.

A share at ``z`` zeros costs 16**z hashes on average, so a worker's hashrate is
``sum(16**z) / time`` over its shares, and one more zero means 16x fewer shares. Retargets
therefore move by whole nibbles and only when the observed share rate is off by more than
``vardiff_factor`` (default 4x, the geometric middle of a 16x step), which keeps a worker
on target from oscillating.

Two triggers: a flood (``vardiff_fast_shares`` shares before the window is over: the rate is
surely too high, react at once so a GPU at a low difficulty is not allowed to flood the
pool), and the end of a window (checked on every share and by the coordinator's periodic
sweep, so a silent worker is also lowered).
"""

from __future__ import annotations

import math

from pooler.core.config import CoreConfig


class VarDiff:
    """Difficulty and hashrate of one worker. Mutated on the share hot path: slots, floats."""

    __slots__ = ("count", "flood", "grace_until", "hashrate", "low", "unit", "window_start", "work", "zeros")

    def __init__(self, zeros: int, now: float) -> None:
        self.zeros = zeros  # the difficulty jobs and shares use now
        # lowest difficulty still accepted until grace_until: the previous one after a lowering
        # is above zeros, after a raise below it; shares mined before the change must still count
        self.low = zeros
        self.grace_until = 0.0  # end of the grace period of the last change
        self.window_start = now  # start of the current measuring window
        self.count = 0  # shares credited in the window
        self.unit = 16.0**zeros  # expected hashes per share at ``zeros`` (cached: used per share)
        self.work = 0.0  # expected hashes behind the window's shares
        self.hashrate = 0.0  # last estimate, hashes/s; 0 while unknown
        # config.vardiff_fast_shares, kept at the first credit: a property computed per share
        # would cost the share path more than the rest of the vardiff bookkeeping
        self.flood = 0

    def threshold(self, now: float) -> int:
        """Fewest zeros a share needs right now."""
        return self.zeros if now >= self.grace_until else self.low

    def credit(self, now: float, config: CoreConfig) -> int | None:
        """Count one accepted share; the new difficulty if this share triggered a retarget.

        ``config`` is the coordinator's, the same on every call."""
        self.count += 1
        self.work += self.unit
        flood = self.flood or self._flood(config)
        if self.count >= flood or now - self.window_start >= config.vardiff_window:
            return self.retarget(now, config)
        return None

    def _flood(self, config: CoreConfig) -> int:
        self.flood = config.vardiff_fast_shares
        return self.flood

    def estimate(self, now: float) -> float:
        """Hashrate for views and range sizing: the last window's, or the running one before that."""
        if self.hashrate > 0:
            return self.hashrate
        elapsed = now - self.window_start
        if self.count and elapsed > 0:
            return self.work / elapsed
        return 0.0

    def retarget(self, now: float, config: CoreConfig) -> int | None:
        """Close the window if it is over (or flooded); the new difficulty when it changed."""
        elapsed = now - self.window_start
        flooded = self.count >= config.vardiff_fast_shares
        if elapsed < config.vardiff_window and not flooded:
            return None
        elapsed = max(elapsed, 1e-3)  # a burst in the same instant still has a finite rate
        sample = self.work / elapsed
        # smooth over windows (a Poisson count of ~6 is noisy) but follow big moves quickly
        if self.hashrate <= 0 or sample > 4 * self.hashrate or sample < self.hashrate / 4:
            self.hashrate = sample
        else:
            self.hashrate = (self.hashrate + sample) / 2
        ratio = self.count * config.vardiff_target_interval / elapsed  # 1.0 = on target
        step = 0
        if self.count == 0:
            step = -1  # a whole silent window: ~0.25% likely at the target rate
        elif ratio > config.vardiff_factor:
            step = max(1, round(math.log(ratio, 16)))
        elif ratio < 1 / config.vardiff_factor:
            step = -max(1, round(math.log(1 / ratio, 16)))
        self.window_start = now
        self.count = 0
        self.work = 0.0
        new = min(max(self.zeros + step, config.share_zeros_min), config.share_zeros_max)
        if new == self.zeros:
            return None
        self.low = min(self.zeros, new)
        self.grace_until = now + config.vardiff_grace
        self.zeros = new
        self.unit = 16.0**new
        return new
