"""The stats port (pooler.web.ports.Stats) over the runner's history: pooler.stats.views at now.

A history that keeps only recent buckets in memory (``History.memory``, e.g. MEMORY with SQLite)
has the older part of a requested range read from the store (:class:`HistoryReader`): one
indexed range query, on the store's own thread, per request that reaches past memory. The same
for block summaries (``History.blocks_memory``: the store's block window with SQLite): a page of
``/stats/blocks`` goes on in the store below the oldest block in memory, a block not in memory is
read there, and the farmers' rewards (which span every stored block) are the store's tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pooler.core.records import BlockHistory, HistoryBucket
from pooler.stats import views
from pooler.stats.history import History


class HistoryReader(Protocol):
    """A store that answers a range of one series' buckets (pooler.store.sqlite.SqliteStore)."""

    async def history_range(
        self, scope: str, key: str, width: int, since: int, until: int
    ) -> list[HistoryBucket]: ...

    async def block_page(self, limit: int, before: int | None) -> list[BlockHistory]: ...

    async def block_summary(self, block: int) -> BlockHistory | None: ...

    async def farmer_totals(self) -> list[tuple[str, int, int]]: ...

    async def farmer_rewards(
        self, farmer_id: str, limit: int
    ) -> tuple[int, list[tuple[int, int]]] | None: ...


# How long an answer of /stats/farmers read from the store is served again: the store's one
# thread also commits the shares, so a public route polled hard must not queue a table read in
# front of every commit (the totals move once a block).
FARMERS_FRESH_S = 5.0


class StatsDesk:
    def __init__(
        self, history: History, clock: Callable[[], float], reader: HistoryReader | None = None
    ) -> None:
        self._history = history  # the aggregates the runner keeps up to date (read here only)
        self._clock = clock  # the "now" of every answer
        self._reader = reader  # where buckets older than the history's memory are read (None: none)
        # the last /stats/farmers answer read from the store and when (FARMERS_FRESH_S)
        self._farmers: tuple[float, dict[str, Any]] | None = None

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

    async def blocks(self, limit: int, before: int | None) -> dict[str, Any]:
        page = views.blocks(self._history, limit, before)
        items: list[dict[str, Any]] = page["blocks"]
        if self._reader is None or len(items) >= limit:
            return page
        # memory holds the newest blocks: the page goes on in the store below the oldest of them
        bounds = [x for x in (before, next(iter(self._history.blocks), None)) if x is not None]
        below = min(bounds) if bounds else None
        items += [views.block_data(b) for b in await self._reader.block_page(limit - len(items), below)]
        return {"blocks": items, "nextBefore": items[-1]["block"] if len(items) == limit else None}

    async def block(self, index: int) -> dict[str, Any] | None:
        found = views.block(self._history, index)
        if found is not None or self._reader is None:
            return found
        stored = await self._reader.block_summary(index)
        return None if stored is None else views.block_data(stored)

    def miners(self, sort: str, order: str, limit: int, offset: int) -> dict[str, Any]:
        return views.miners(self._history, self._clock(), sort, order, limit, offset)

    async def miner(self, miner_id: str, range_: str) -> dict[str, Any] | None:
        if miner_id not in self._history.workers_of:
            return None
        now = self._clock()
        older = await self._older("miner", miner_id, now, range_)
        return views.miner(self._history, miner_id, now, range_, older)

    async def farmers(self) -> dict[str, Any]:
        if self._reader is None:
            return views.farmers(self._history)
        cached = self._farmers
        if cached is not None and self._clock() - cached[0] < FARMERS_FRESH_S:
            return cached[1]
        rows = await self._reader.farmer_totals()
        answer = {"farmers": [{"farmerId": f, "blocks": n, "rewards": str(r)} for f, n, r in rows]}
        self._farmers = (self._clock(), answer)
        return answer

    async def farmer(self, farmer_id: str, limit: int) -> dict[str, Any] | None:
        if self._reader is None:
            return views.farmer(self._history, farmer_id, limit)
        found = await self._reader.farmer_rewards(farmer_id, limit)
        if found is None:
            return None
        total, per_block = found
        return {
            "farmerId": farmer_id,
            "rewards": str(total),
            "blocks": [{"block": b, "reward": str(r)} for b, r in per_block],
        }
