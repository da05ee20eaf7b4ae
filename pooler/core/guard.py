"""The share-quality guard: a miner whose shares are mostly invalid is warned, cut off, then refused.

Theory of operation
-------------------
Each miner's answered shares (both surfaces) are counted in tumbling windows of
``invalid_share_window`` shares. A window whose invalid share exceeds ``invalid_share_ratio``
is a strike; a clean window clears the strikes:

    strike 1 -> WARN    an ``error`` to every socket of the miner says what is wrong and what comes next
    strike 2 -> CLOSE   its sockets are closed with 1008; it may reconnect at once
    strike 3 -> REFUSE  closed, and refused for ``invalid_share_cooldown`` seconds: at hello,
                        and for REST work and submits (its stats stay readable)

After a refusal the strikes start again from 0. "Invalid" is every rejection the share check
makes except ``stale`` (a normal race around a block change). The state lives on the miner
(:class:`pooler.core.miners.MinerState`) and goes with it when it leaves. Each close and
refusal is counted as a ``LimitHit("invalid-shares")``.

The share check counts each share inline (two counters); :meth:`ShareGuard.judge` runs once a
window.
"""

from __future__ import annotations

from pooler.core.effects import Close, Effect, LimitHit, Send
from pooler.core.miners import MinerState
from pooler.core.state import RoundState
from protocol.errors import Code
from protocol.messages import Error

CLOSE_POLICY = 1008


class ShareGuard:
    """Judges each full window of a miner's shares (see the module docstring)."""

    def __init__(self, state: RoundState) -> None:
        cfg = state.config
        self._st = state
        self.window = cfg.invalid_share_window  # shares per window
        self._ratio = cfg.invalid_share_ratio
        self._cooldown = cfg.invalid_share_cooldown

    def judge(self, miner: MinerState, effects: list[Effect], now: float) -> None:
        """``miner``'s window is full: a strike or a clean window, and what follows from it."""
        bad = miner.window_invalid > self._ratio * miner.window_seen
        miner.window_seen = miner.window_invalid = 0
        if not bad:
            miner.strikes = 0
            return
        miner.strikes += 1
        share = f"more than {self._ratio:.0%} of its last {self.window} shares"
        if miner.strikes == 1:
            text = (
                f"warning: {share} were invalid (low-zeros, invalid-hash, out-of-range, duplicate); "
                "fix the miner, or the next such window closes the connection"
            )
            self._tell(miner, text, effects, close=False)
            return
        if miner.strikes == 2:
            text = f"closing: {share} were invalid again; one more such window and it is refused for a while"
        else:
            miner.strikes = 0
            miner.refused_until = now + self._cooldown
            text = f"refused for {self._cooldown:g} s: {share} were invalid three windows running"
        effects.append(LimitHit("invalid-shares", miner.miner_id))
        self._tell(miner, text, effects, close=True)

    def refusal(self, miner: MinerState, now: float) -> Error | None:
        """Why ``miner`` is refused now (its cool-down), or None when it may work."""
        left = miner.refused_until - now
        if left <= 0:
            return None
        why = f"refused for {left:.0f} more s: most of this miner's recent shares were invalid"
        return Error(Code.RATE_LIMITED, why)

    def _tell(self, miner: MinerState, text: str, effects: list[Effect], *, close: bool) -> None:
        msg = Error(Code.RATE_LIMITED, text)
        for conn in sorted(miner.sessions):
            effects.append(Send(conn, msg))
            if close:
                effects.append(Close(conn, CLOSE_POLICY, "too many invalid shares"))
