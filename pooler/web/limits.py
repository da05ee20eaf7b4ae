"""Per-connection and per-miner protective limits (pure: time is passed in).

- :class:`TokenBucket`: messages per second on one connection.
- :class:`InvalidShareGuard`: a miner whose shares are mostly invalid is warned, then
  disconnected, then refused for a cool-down.

Theory of operation (InvalidShareGuard)
---------------------------------------
Each miner's share results are counted in tumbling windows of ``window`` shares. A window
whose invalid share exceeds ``max_invalid`` is a strike; a clean window clears the strikes:

    strike 1 -> WARN    (an error frame explains what is wrong and what comes next)
    strike 2 -> CLOSE   (its sockets are closed with 1008; it may reconnect at once)
    strike 3 -> REFUSE  (closed, and refused for ``cooldown`` seconds: hello, REST work/submit)

After a refusal the strikes start again from 0. "Invalid" means a share the miner should
never have sent (low-zeros, invalid-hash, out-of-range, duplicate, malformed); ``stale`` is a
normal race around a block change and does not count against anyone.
"""

from __future__ import annotations

from typing import Final, Literal

Verdict = Literal["ok", "warn", "close", "refuse"]

INVALID_REASONS: Final = frozenset({"low-zeros", "invalid-hash", "out-of-range", "duplicate", "malformed"})
"""Rejection reasons that count against a miner (see the module docstring)."""


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


class _MinerRecord:
    __slots__ = ("invalid", "seen", "strikes", "until")

    def __init__(self) -> None:
        self.seen = 0  # shares in the current window
        self.invalid = 0  # invalid shares in the current window
        self.strikes = 0  # bad windows in a row (since the last clean one or refusal)
        self.until = 0.0  # refused until this time (0: not refused)


class InvalidShareGuard:
    """Escalating response to a miner whose shares are mostly invalid (module docstring)."""

    def __init__(self, window: int, max_invalid: float, cooldown: float) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1 share, got {window}")
        if not 0.0 <= max_invalid < 1.0:
            raise ValueError(f"max_invalid must be a fraction in [0, 1), got {max_invalid}")
        self.window = window
        self.max_invalid = max_invalid
        self.cooldown = cooldown
        self._miners: dict[str, _MinerRecord] = {}  # miner id -> its window and strikes

    def record(self, miner_id: str, reason: str) -> Verdict:
        """Count one answered share (``reason`` "ok" or a rejection reason); what to do now.

        On ``refuse`` the caller starts the cool-down with :meth:`refuse` (it knows the time).
        """
        rec = self._miners.get(miner_id)
        if rec is None:
            rec = self._miners[miner_id] = _MinerRecord()
        rec.seen += 1
        if reason in INVALID_REASONS:
            rec.invalid += 1
        if rec.seen < self.window:
            return "ok"
        bad = rec.invalid > self.max_invalid * rec.seen
        rec.seen = rec.invalid = 0
        if not bad:
            rec.strikes = 0
            return "ok"
        rec.strikes += 1
        if rec.strikes == 1:
            return "warn"
        if rec.strikes == 2:
            return "close"
        rec.strikes = 0
        return "refuse"

    def refuse(self, miner_id: str, now: float) -> None:
        """Start ``miner_id``'s cool-down at ``now``."""
        rec = self._miners.get(miner_id)
        if rec is None:
            rec = self._miners[miner_id] = _MinerRecord()
        rec.until = now + self.cooldown

    def refused_for(self, miner_id: str, now: float) -> float:
        """Seconds of cool-down left for ``miner_id`` (0.0 when it may connect)."""
        rec = self._miners.get(miner_id)
        if rec is None or rec.until <= now:
            return 0.0
        return rec.until - now

    def forget(self, miner_id: str) -> None:
        """The miner left: drop its record (keeps memory bounded by registered miners)."""
        self._miners.pop(miner_id, None)
