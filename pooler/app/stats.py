"""The stats port (pooler.web.ports.Stats) over the runner's history: pooler.stats.views at now."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pooler.stats import views
from pooler.stats.history import History


class StatsDesk:
    def __init__(self, history: History, clock: Callable[[], float]) -> None:
        self._history = history  # the aggregates the runner keeps up to date (read here only)
        self._clock = clock  # the "now" of every answer

    def pool(self, range_: str) -> dict[str, Any]:
        return views.pool(self._history, self._clock(), range_)

    def blocks(self, limit: int, before: int | None) -> dict[str, Any]:
        return views.blocks(self._history, limit, before)

    def block(self, index: int) -> dict[str, Any] | None:
        return views.block(self._history, index)

    def miners(self, sort: str, order: str, limit: int, offset: int) -> dict[str, Any]:
        return views.miners(self._history, self._clock(), sort, order, limit, offset)

    def miner(self, miner_id: str, range_: str) -> dict[str, Any] | None:
        return views.miner(self._history, miner_id, self._clock(), range_)

    def farmers(self) -> dict[str, Any]:
        return views.farmers(self._history)

    def farmer(self, farmer_id: str, limit: int) -> dict[str, Any] | None:
        return views.farmer(self._history, farmer_id, limit)
