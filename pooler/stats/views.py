"""The stats API's answers, built from :class:`~pooler.stats.history.History` (JSON-ready, camelCase).

Each answer reads the in-memory aggregates only: a series' buckets in a range are walked from
their new end (cost proportional to the range), lists are sorted per request (10,000 workers:
docs/benchmarks.md). Hashrates are work / seconds over :data:`WINDOW` (the "now" figures) or per
bucket (history). Big integers (work, stroops) are decimal strings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pooler.core.records import BlockHistory, HistoryBucket
from pooler.stats.chain import chain_data
from pooler.stats.history import HOUR, MINUTE, History, Series

WINDOW = 600  # seconds behind the "now" hashrates: 10 minutes, as pools show
RANGES: dict[str, tuple[int, int]] = {  # range -> (seconds, bucket width)
    "1h": (HOUR, MINUTE),
    "24h": (24 * HOUR, MINUTE),
    "7d": (7 * 24 * HOUR, HOUR),
    "30d": (30 * 24 * HOUR, HOUR),
}
# the /stats/miners sort keys: what the history serves from its own aggregates (docs/stats.md);
# reported hashrate, workers online, best zeros and rewards are the live core's or the farmer's
MINER_SORTS = (
    "hashrate",
    "accepted",
    "stale",
    "rejected",
    "stalePct",
    "invalidPct",
    "workers",
    "lastShare",
    "minerId",
)

JSON = dict[str, Any]


def _totals(history: History, scope: str, key: str, now: float, seconds: int, width: int) -> JSON:
    accepted = stale = work = 0
    rejected: dict[str, int] = {}
    for b in history.buckets(scope, key, width, now - seconds):
        accepted += b.accepted
        stale += b.stale
        work += b.work
        if b.rejected:
            for reason, n in b.rejected.items():
                rejected[reason] = rejected.get(reason, 0) + n
    return {"accepted": accepted, "stale": stale, "rejected": rejected, "work": work}


def _now(history: History, scope: str, key: str, now: float) -> JSON:
    """Shares of the last 24 h (the hour buckets since the hour 24 h ago began: at most 25 of
    them) and the hashrate of the last WINDOW seconds (at most 11 minute buckets)."""
    day = _totals(history, scope, key, now, 24 * HOUR + HOUR, HOUR)
    recent = _totals(history, scope, key, now, WINDOW, MINUTE)
    return {
        "hashrate": recent["work"] / WINDOW,
        "accepted24h": day["accepted"],
        "stale24h": day["stale"],
        "rejected24h": day["rejected"],
    }


def stored_part(
    history: History, scope: str, key: str, now: float, range_: str
) -> tuple[int, int, int] | None:
    """``(width, since, until)``: the part of a range older than what the history keeps in memory
    (``History.memory``), to read from the store; None when memory holds the whole range."""
    seconds, width = RANGES[range_]
    if history.memory[width] >= seconds:
        return None
    since = int(now - seconds)
    held = next(history.buckets(scope, key, width, since), None)  # the oldest in memory, in range
    return width, since, held.start if held is not None else int(now) + width


def series(
    history: History,
    scope: str,
    key: str,
    now: float,
    range_: str,
    older: Sequence[HistoryBucket] = (),
    online: bool = False,
) -> list[JSON]:
    """The range's buckets, oldest first: ``older`` (from the store: :func:`stored_part`), then
    what memory holds. ``online``: with the most miners / workers online in each (the pool's)."""
    seconds, width = RANGES[range_]
    rows = []
    for r in older:
        if r.width == width:
            rows.append(_bucket_row(width, r.start, r.accepted, r.stale, dict(r.rejected), r.work))
            if online:
                rows[-1].update(minersOnline=r.miners, workersOnline=r.workers)
    for b in history.buckets(scope, key, width, now - seconds):
        if not rows or b.start > rows[-1]["start"]:
            rows.append(_bucket_row(width, b.start, b.accepted, b.stale, dict(b.rejected), b.work))
            if online:
                rows[-1].update(minersOnline=b.miners, workersOnline=b.workers)
    return rows


def _bucket_row(width: int, start: int, accepted: int, stale: int, rejected: JSON, work: int) -> JSON:
    return {
        "start": start,
        "width": width,
        "accepted": accepted,
        "stale": stale,
        "rejected": rejected,
        "work": str(work),
        "hashrate": work / width,
    }


def pool(history: History, now: float, range_: str, older: Sequence[HistoryBucket] = ()) -> JSON:
    newest = next(reversed(history.blocks), None) if history.blocks else None
    return {
        **_now(history, "pool", "", now),
        "miners": len(history.workers_of),
        "workers": sum(len(w) for w in history.workers_of.values()),
        "block": newest,
        "range": range_,
        "history": series(history, "pool", "", now, range_, older, online=True),
    }


def block_data(b: BlockHistory) -> JSON:
    return {
        "block": b.block,
        "timestamp": b.timestamp,
        "planted": b.planted,
        "staked": str(b.staked),
        "workAt": b.work_at,
        "workOk": b.work_ok,
        "workError": b.work_error,
        "harvested": None if b.harvest_total is None else str(b.harvest_total),
        # Block(N) on chain: the score's bounds (period N-1's min/max zeros, gap in ledgers and
        # stake in stroops) and the stake / score totals; None until the monitor read it
        "chain": None if b.chain is None else chain_data(b.chain),
        "farmers": [
            {
                "farmerId": f.farmer_id,
                "planted": f.planted,
                "bestZeros": None if f.best_zeros < 0 else f.best_zeros,
                "gapSeconds": f.gap_s,
                "worked": f.worked,
                "workZeros": f.work_zeros,
                "reward": None if f.reward is None else str(f.reward),
                "error": f.error,
            }
            for f in b.farmers
        ],
    }


def blocks(history: History, limit: int, before: int | None) -> JSON:
    """Newest first, ``limit`` of them, below ``before`` when given."""
    items: list[JSON] = []
    for index in reversed(history.blocks):
        if before is not None and index >= before:
            continue
        items.append(block_data(history.blocks[index]))
        if len(items) >= limit:
            break
    nxt = items[-1]["block"] if len(items) == limit else None
    return {"blocks": items, "nextBefore": nxt}


def block(history: History, index: int) -> JSON | None:
    b = history.blocks.get(index)
    return None if b is None else block_data(b)


def _miner_row(history: History, miner_id: str, now: float) -> JSON:
    row = _now(history, "miner", miner_id, now)
    return {"minerId": miner_id, "workers": len(history.workers_of.get(miner_id, ())), **row}


CACHE_S = 5.0  # the sorted order of the miners is rebuilt at most this often


def miners(history: History, now: float, sort: str, order: str, limit: int, offset: int) -> JSON:
    """A page of the miners in ``sort`` order. The order (ids only) is kept for :data:`CACHE_S`
    seconds; rebuilding it computes one sort key per miner (a few buckets summed), not a row.
    The page's rows are built fresh from the aggregates: at most ``limit`` of them."""
    cached = history.view_cache.get(("miners", sort, order))
    if cached is not None and 0 <= now - cached[0] < CACHE_S:
        ids: list[str] = cached[1]
    else:
        ids = sorted_miners(history, now, sort, order)
        history.view_cache["miners", sort, order] = (now, ids)
    page = [_miner_row(history, m, now) for m in ids[offset : offset + limit] if m in history.workers_of]
    return {"total": len(ids), "offset": offset, "miners": page}


def sorted_miners(history: History, now: float, sort: str, order: str) -> list[str]:
    """Miner ids in ``sort`` order (``order`` desc or asc; ties keep the history's order).

    Incremental: each miner's sort key is kept with its series' ``changes`` and the window it
    was summed over (``epoch``: the window's first bucket, which moves once a minute for the
    hashrate, once an hour for the 24-h figures); only miners whose series changed since are
    summed again, all of them when the window moved."""
    ids = list(history.workers_of)
    desc = order == "desc"
    if sort == "minerId":
        ids.sort(reverse=desc)
        return ids
    series = history.series
    if sort == "workers":  # O(1) a miner: no key kept
        ids.sort(key=lambda m: len(history.workers_of[m]), reverse=desc)
        return ids
    if sort == "lastShare":  # the newest bucket's start of the miner's series (minute resolution)
        last = {m: s.last if (s := series.get(("miner", m))) is not None else 0 for m in ids}
        ids.sort(key=last.__getitem__, reverse=desc)
        return ids
    width, span = _SORT_WINDOWS[sort]
    since = now - span
    epoch = math.ceil(since / width)  # the first bucket start inside the window, in widths
    cached = history.view_cache.get(("keys", sort))
    known: dict[str, tuple[int, float]] = cached[1] if cached is not None and cached[0] == epoch else {}
    fresh: dict[str, tuple[int, float]] = {}
    for m in ids:
        s = series.get(("miner", m))
        changes = -1 if s is None else s.changes
        got = known.get(m)
        if got is None or got[0] != changes:
            got = (changes, 0 if s is None else _key(s, sort, width, since))
        fresh[m] = got
    history.view_cache["keys", sort] = (epoch, fresh)
    ids.sort(key=lambda m: fresh[m][1], reverse=desc)
    return ids


# sort -> (buckets of this width, this many seconds back): the window of the figures the rows
# show (hashrate = the window's work / WINDOW: the same order as the work; the rest: the 24 h)
_DAY = (HOUR, 24 * HOUR + HOUR)
_SORT_WINDOWS = {
    "hashrate": (MINUTE, WINDOW),
    "accepted": _DAY,
    "stale": _DAY,
    "rejected": _DAY,
    "stalePct": _DAY,
    "invalidPct": _DAY,
}


def _key(s: Series, sort: str, width: int, since: float) -> float:
    """A miner's sort key: its window's buckets summed (the percentages of all its answers).
    One field summed for a count (the hashrate's key is the 1/min rebuild of every miner)."""
    picked = []
    for b in reversed(s.minutes if width == MINUTE else s.hours):
        if b.start < since:
            break
        picked.append(b)
    if sort == "hashrate":
        return sum(b.work for b in picked)
    if sort == "accepted":
        return sum(b.accepted for b in picked)
    stale = sum(b.stale for b in picked)
    if sort == "stale":
        return stale
    rejected = sum(sum(b.rejected.values()) for b in picked if b.rejected)
    if sort == "rejected":
        return rejected
    total = sum(b.accepted for b in picked) + stale + rejected
    if not total:
        return 0.0
    return stale / total if sort == "stalePct" else rejected / total  # else: invalidPct


def miner(
    history: History, miner_id: str, now: float, range_: str, older: Sequence[HistoryBucket] = ()
) -> JSON | None:
    names = history.workers_of.get(miner_id)
    if names is None:
        return None
    workers = [
        {"worker": name, **_now(history, "worker", f"{miner_id}/{name}", now)} for name in sorted(names)
    ]
    return {
        **_miner_row(history, miner_id, now),
        "workerList": workers,
        "range": range_,
        "history": series(history, "miner", miner_id, now, range_, older),
    }


def farmers(history: History) -> JSON:
    rows = [
        {"farmerId": f, "blocks": len(r), "rewards": str(sum(r.values()))}
        for f, r in sorted(history.rewards.items())
    ]
    return {"farmers": rows}


def farmer(history: History, farmer_id: str, limit: int) -> JSON | None:
    rewards = history.rewards.get(farmer_id)
    if rewards is None:
        return None
    per_block = [{"block": b, "reward": str(rewards[b])} for b in sorted(rewards, reverse=True)[:limit]]
    return {"farmerId": farmer_id, "rewards": str(sum(rewards.values())), "blocks": per_block}
