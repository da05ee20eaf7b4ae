"""The read-only stats API: ``GET /stats/...`` (docs/stats.md).

Public by design (miner and farmer ids are shown as pool addresses are on any pool's site;
tokens never are). Every answer is built from in-memory aggregates (:class:`pooler.web.ports.Stats`);
a bad query parameter is a 400 naming the parameter, what it got and what is expected.
"""

from __future__ import annotations

from starlette.requests import Request

from pooler.stats.views import MINER_SORTS
from pooler.web.ports import LiveStats, Stats
from pooler.web.rest import JSON, error_body

RANGES = ("1h", "24h", "7d", "30d")
SORTS = MINER_SORTS  # the keys the history serves (pooler.stats.views)
ORDERS = ("desc", "asc")
MAX_LIMIT = 100
MAX_LIVE_LIMIT = 1000  # farmers in one /stats/live answer
MAX_IDS = 100  # miners in one /stats/live/miners answer


class BadParam(Exception):
    def __init__(self, name: str, got: str, expected: str) -> None:
        super().__init__(f"query parameter {name!r} is {got!r}; expected {expected}")
        self.name = name


def _bad(exc: BadParam) -> JSON:
    return JSON(error_body("bad-request", str(exc), parameter=exc.name), status_code=400)


def _not_found(what: str) -> JSON:
    return JSON(error_body("not-found", f"no {what}"), status_code=404)


def _choice(request: Request, name: str, choices: tuple[str, ...], default: str) -> str:
    got = request.query_params.get(name, default)
    if got not in choices:
        raise BadParam(name, got, "one of " + ", ".join(choices))
    return got


def _int(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    got = request.query_params.get(name)
    if got is None:
        return default
    if not got.isdigit() or not lo <= int(got) <= hi:
        raise BadParam(name, got, f"an integer from {lo} to {hi}")
    return int(got)


def _limit(request: Request) -> int:
    value = _int(request, "limit", 20, 1, MAX_LIMIT)
    assert value is not None
    return value


class StatsRoutes:
    def __init__(self, stats: Stats) -> None:
        self._stats = stats  # the aggregates' read side

    async def pool(self, request: Request) -> JSON:
        try:
            range_ = _choice(request, "range", RANGES, "24h")
        except BadParam as exc:
            return _bad(exc)
        return JSON(await self._stats.pool(range_))

    async def blocks(self, request: Request) -> JSON:
        try:
            before = _int(request, "before", None, 0, 2**32)
            return JSON(await self._stats.blocks(_limit(request), before))
        except BadParam as exc:
            return _bad(exc)

    async def block(self, request: Request) -> JSON:
        raw = str(request.path_params["block"])
        if not raw.isdigit() or int(raw) >= 2**32:
            return _bad(BadParam("block", raw, "a block index (an integer from 0 to 2**32 - 1)"))
        found = await self._stats.block(int(raw))
        return JSON(found) if found is not None else _not_found(f"block {raw} in the history")

    async def miners(self, request: Request) -> JSON:
        try:
            sort = _choice(request, "sort", SORTS, "hashrate")
            order = _choice(request, "order", ORDERS, "desc")
            offset = _int(request, "offset", 0, 0, 10**9)
            assert offset is not None
            return JSON(self._stats.miners(sort, order, _limit(request), offset))
        except BadParam as exc:
            return _bad(exc)

    async def miner(self, request: Request) -> JSON:
        try:
            range_ = _choice(request, "range", RANGES, "24h")
        except BadParam as exc:
            return _bad(exc)
        miner_id = str(request.path_params["miner_id"])
        found = await self._stats.miner(miner_id, range_)
        return JSON(found) if found is not None else _not_found(f"miner {miner_id!r} in the history")

    async def farmers(self, request: Request) -> JSON:
        return JSON(await self._stats.farmers())

    async def farmer(self, request: Request) -> JSON:
        try:
            limit = _limit(request)
        except BadParam as exc:
            return _bad(exc)
        farmer_id = str(request.path_params["farmer_id"])
        found = await self._stats.farmer(farmer_id, limit)
        return JSON(found) if found is not None else _not_found(f"farmer {farmer_id!r} in the history")


class LiveRoutes:
    """``/stats/live``: the running core's picture (who is online now, the open block)."""

    def __init__(self, live: LiveStats) -> None:
        self._live = live  # the core's read side (a cached view)

    async def live(self, request: Request) -> JSON:
        try:
            limit = _int(request, "limit", 100, 1, MAX_LIVE_LIMIT)
            assert limit is not None
            return JSON(self._live.live(limit))
        except BadParam as exc:
            return _bad(exc)

    async def miners(self, request: Request) -> JSON:
        raw = request.query_params.get("ids", "")
        ids = [i for i in raw.split(",") if i]
        if not ids or len(ids) > MAX_IDS or len(set(ids)) != len(ids):
            return _bad(BadParam("ids", raw, f"1 to {MAX_IDS} distinct miner ids, comma-separated"))
        return JSON(self._live.live_miners(ids))

    async def miner(self, request: Request) -> JSON:
        miner_id = str(request.path_params["miner_id"])
        found = self._live.live_miner(miner_id)
        return JSON(found) if found is not None else _not_found(f"miner {miner_id!r}")
