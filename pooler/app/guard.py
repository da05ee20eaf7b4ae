"""The invalid-share guard as the service applies it (pooler/web/limits.py InvalidShareGuard).

The path is unchanged: the runner reports each answered share to the observer, whose share
hook is :meth:`ShareGuardPort.judge_conn`; REST reports its answers through the web's
``ShareGuard`` port (:meth:`ShareGuardPort.judge`); a verdict other than "ok" is acted on for
every socket of the miner (:func:`pooler.web.miner_ws.enforce_share_quality`). The hello and
REST routes ask :meth:`ShareGuardPort.cooldown`. (The guard is to become pure core state whose
outputs are Send/Close effects; until then it lives here, in one place.)
"""

from __future__ import annotations

from collections.abc import Callable

from pooler.app.sockets import LiveSockets
from pooler.web.limits import InvalidShareGuard
from pooler.web.miner_ws import enforce_share_quality
from pooler.web.ports import LimitHits


class ShareGuardPort:
    """See the module docstring."""

    __slots__ = ("_clock", "_limits", "_sockets", "guard")

    def __init__(
        self,
        guard: InvalidShareGuard,
        sockets: LiveSockets,
        limits: LimitHits,
        clock: Callable[[], float],
    ) -> None:
        self.guard = guard  # each miner's windows, strikes and cool-down
        self._sockets = sockets  # a miner's live sockets, told the verdict
        self._limits = limits
        self._clock = clock

    def cooldown(self, miner_id: str) -> float:
        return self.guard.refused_for(miner_id, self._clock())

    def judge(self, miner_id: str, reason: str) -> None:
        """Count one answered share of ``miner_id`` against the invalid-share guard, and act on it."""
        verdict = self.guard.record(miner_id, reason)
        if verdict != "ok":
            boxes = self._sockets.outboxes(miner_id)
            enforce_share_quality(self.guard, miner_id, verdict, boxes, self._clock(), self._limits)

    def judge_conn(self, conn: int, reason: str) -> None:
        """The observer's share hook: a share answered on socket (or REST reply) ``conn``."""
        miner_id = self._sockets.miner_of(conn)
        if miner_id is not None:
            self.judge(miner_id, reason)

    def forget(self, miner_id: str) -> None:
        self.guard.forget(miner_id)
