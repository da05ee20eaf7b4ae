"""The stats port (pooler.web.ports.Stats) over the runner's history: pooler.stats.views at now.

A history that keeps only recent buckets in memory (``History.memory``, e.g. MEMORY with SQLite)
has the older part of a requested range read from the store (:class:`HistoryReader`): one
indexed range query, on the store's own thread, per request that reaches past memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pooler.core.records import HistoryBucket
from pooler.stats import views
from pooler.stats.history import History


class HistoryReader(Protocol):
    """A store that answers a range of one series' buckets (pooler.store.sqlite.SqliteStore)."""

    async def history_range(
        self, scope: str, key: str, width: int, since: int, until: int
    ) -> list[HistoryBucket]: ...


class StatsDesk:
    def __init__(
        self, history: History, clock: Callable[[], float], reader: HistoryReader | None = None
    ) -> None:
        self._history = history  # the aggregates the runner keeps up to date (read here only)
        self._clock = clock  # the "now" of every answer
        self._reader = reader  # where buckets older than the history's memory are read (None: none)

    async def _older(self, scope: str, key: str, now: float, range_: str) -> list[HistoryBucket]:
        part = views.stored_part(self._history, scope, key, now, range_)
        if part is None or self._reader is None:
            return []
        width, since, until = part
        return await self._reader.history_range(scope, key, width, since, until)

    async def pool(self, range_: str) -> dict[str, Any]:
        now = self._clock()
        older = await self._older("pool", "", now, range_)
        return views.pool(self._history, now, range_, older)

    def blocks(self, limit: int, before: int | None) -> dict[str, Any]:
        return views.blocks(self._history, limit, before)

    def block(self, index: int) -> dict[str, Any] | None:
        return views.block(self._history, index)

    def miners(self, sort: str, order: str, limit: int, offset: int) -> dict[str, Any]:
        return views.miners(self._history, self._clock(), sort, order, limit, offset)

    async def miner(self, miner_id: str, range_: str) -> dict[str, Any] | None:
        if miner_id not in self._history.workers_of:
            return None
        now = self._clock()
        older = await self._older("miner", miner_id, now, range_)
        return views.miner(self._history, miner_id, now, range_, older)

    def farmers(self) -> dict[str, Any]:
        return views.farmers(self._history)

    def farmer(self, farmer_id: str, limit: int) -> dict[str, Any] | None:
        return views.farmer(self._history, farmer_id, limit)
