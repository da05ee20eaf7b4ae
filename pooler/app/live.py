"""The live port (pooler.web.ports.LiveStats): the running core's picture, for the dashboard.

The stats API (pooler/app/stats.py) answers from the durable history; what only the running
core knows is here: who is online now, reported hashrates, each farmer's best zeros and reward
projection in the open block, farmers' addresses and names. One ``Coordinator.view`` is taken
at most every :data:`CACHE_S` seconds and indexed once, so a page polling it costs a dict lookup.
In a group (``STORE=redis``) it is this instance's core: its own miners' sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pooler.core.views import CoreView, FarmerView, MinerView, WorkerView
from pooler.stats.history import MINUTE, History

CACHE_S = 5.0  # seconds a view is reused: it measures every worker (10,000 workers: docs/benchmarks.md)
DAY = 24 * 3600


class _Indexed:
    """One view and its lookups, built once per refresh."""

    __slots__ = ("farmers", "miners", "names_of", "view", "workers_of")

    def __init__(self, view: CoreView) -> None:
        self.view = view  # the core's frozen picture
        self.miners: dict[str, MinerView] = {m.miner_id: m for m in view.miner_list}  # minerId -> figures
        self.farmers: dict[str, FarmerView] = {f.farmer_id: f for f in view.farmers}  # farmerId -> figures
        self.workers_of: dict[str, list[WorkerView]] = {}  # minerId -> its online workers
        for w in view.worker_list:
            self.workers_of.setdefault(w.miner_id, []).append(w)
        self.names_of: dict[str, list[str]] = {}  # farmerId -> the names its miners registered with
        for m in view.miner_list:
            if m.name and m.name not in self.names_of.setdefault(m.farmer_id, []):
                self.names_of[m.farmer_id].append(m.name)


def _stroops(value: int | None) -> str | None:
    return None if value is None else str(value)


class LiveDesk:
    def __init__(
        self, view: Callable[[float], CoreView], history: History, clock: Callable[[], float]
    ) -> None:
        self._view = view  # the coordinator's view(now): a frozen picture of its state
        self._history = history  # for last-share times (minute buckets per worker)
        self._clock = clock  # the "now" of every answer
        self._cached: tuple[float, _Indexed] | None = None  # (taken at, view): reused for CACHE_S

    def _indexed(self) -> _Indexed:
        now = self._clock()
        if self._cached is None or not 0 <= now - self._cached[0] < CACHE_S:
            self._cached = (now, _Indexed(self._view(now)))
        return self._cached[1]

    def _last_share(self, miner_id: str, worker: str) -> int | None:
        """Start (unix s) of the newest minute bucket with a share of this worker, in the last day:
        walked from the new end, so it stops at the first (a busy worker: one step)."""
        series = self._history.series.get(("worker", f"{miner_id}/{worker}"))
        if series is None:
            return None
        since = self._clock() - DAY
        for b in reversed(series.of(MINUTE)):
            if b.start < since:
                break
            if b.accepted or b.stale or b.rejected:
                return b.start
        # minute buckets past the history's memory (MEMORY, with SQLite) are in the store only:
        # the series remembers its newest bucket's start (a minute bucket: made by a share answer)
        return series.last if since <= series.last and not series.minutes else None

    def _miner_last_share(self, miner_id: str) -> int | None:
        times = [self._last_share(miner_id, w) for w in self._history.workers_of.get(miner_id, ())]
        known = [t for t in times if t is not None]
        return max(known) if known else None

    def _farmer(self, ix: _Indexed, f: FarmerView) -> dict[str, Any]:
        return {
            "farmerId": f.farmer_id,
            "address": f.farmer,
            "names": ix.names_of.get(f.farmer_id, []),
            "miners": f.miners,
            "workers": f.workers,
            "hashrate": f.hashrate,
            "bestZeros": f.best_zeros,
            "projectedReward": _stroops(f.projected_reward),
            "rewards": str(f.rewards),
        }

    def live(self, limit: int) -> dict[str, Any]:
        ix = self._indexed()
        v = ix.view
        ranked = sorted(
            v.farmers, key=lambda f: (-1 if f.best_zeros is None else f.best_zeros, f.hashrate), reverse=True
        )
        reported = [m.reported_hashrate for m in v.miner_list if m.reported_hashrate is not None]
        return {
            "block": v.block,
            "phase": v.phase,
            "entropy": v.entropy,
            "timestamp": v.timestamp,
            "workAt": v.work_at,
            "blockEndsAt": v.block_ends_at,
            "paused": v.paused,
            "chainOk": v.chain_ok,
            "miners": v.miners,
            "workers": v.workers,
            "hashrate": v.hashrate,
            "reportedHashrate": sum(reported) if reported else None,
            "accepted": v.accepted,
            "rejected": v.rejected,
            "projectedReward": None if v.projection is None else str(v.projection.reward),
            # the zero bounds on chain for this block's scores: the previous period's min and max
            "chainMinZeros": None if v.chain_zeros is None else v.chain_zeros[0],
            "chainMaxZeros": None if v.chain_zeros is None else v.chain_zeros[1],
            "farmers": len(v.farmers),
            "farmerList": [self._farmer(ix, f) for f in ranked[:limit]],
        }

    def _miner(self, ix: _Indexed, miner_id: str) -> dict[str, Any]:
        m = ix.miners.get(miner_id)
        farmer = None if m is None else ix.farmers.get(m.farmer_id)
        return {
            "minerId": miner_id,
            "farmerId": None if m is None else m.farmer_id,
            "address": None if farmer is None else farmer.farmer,
            "name": None if m is None else m.name,
            "workersOnline": len(ix.workers_of.get(miner_id, ())),
            "hashrate": 0.0 if m is None else m.hashrate,
            "reportedHashrate": None if m is None else m.reported_hashrate,
            "bestZeros": None if m is None else m.best_zeros,
            "lastShareAt": self._miner_last_share(miner_id),
        }

    def live_miners(self, ids: Sequence[str]) -> dict[str, Any]:
        ix = self._indexed()
        return {"miners": [self._miner(ix, i) for i in ids]}

    def live_miner(self, miner_id: str) -> dict[str, Any] | None:
        ix = self._indexed()
        if miner_id not in ix.miners and miner_id not in self._history.workers_of:
            return None
        workers = [
            {
                "worker": w.worker,
                "transport": "rest" if w.conn is None else "websocket",
                "agent": w.agent,
                "shareZeros": w.share_zeros,
                "hashrate": w.hashrate,
                "reportedHashrate": w.reported_hashrate,
                "confident": w.confident,
                "accepted": w.accepted,
                "rejected": w.rejected,
                "lastShareAt": self._last_share(miner_id, w.worker),
            }
            for w in sorted(ix.workers_of.get(miner_id, ()), key=lambda w: w.worker)
        ]
        for w in workers:
            w["online"] = True
        online = {w["worker"] for w in workers}
        for name in sorted(set(self._history.workers_of.get(miner_id, ())) - online):
            workers.append({"worker": name, "online": False, "lastShareAt": self._last_share(miner_id, name)})
        return {**self._miner(ix, miner_id), "workerList": workers}
