"""The stats API's cost and the history's size: not a test, a measurement.

python -m bench.stats [--workers 10000] [--per-miner 4] [--minutes 60] [--repeat 20] [--memory recent|all]

1. A History holding ``--workers`` workers (``--per-miner`` per miner) with ``--minutes``
   1-minute buckets and 25 hour buckets each (pool, miner and worker series) loaded, of which
   it keeps what ``--memory`` says (recent: MEMORY, as with SQLite): the time one
   answer of each stats route takes (pooler.stats.views, the work a request does besides
   Starlette/uvicorn and the JSON encoding, which is measured too), and the process memory
   the aggregates take.
2. The SQLite size of one worker-day: 1,440 minute rows and 24 hour rows of 50 workers,
   written through SqliteStore, divided by 50 (page-count based, after VACUUM).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import orjson

from pooler.core.effects import Persist
from pooler.core.records import HistoryBucket
from pooler.stats import views
from pooler.stats.history import HOUR, KEEP, MEMORY, MINUTE, History
from pooler.store.sqlite import SqliteStore

NOW = 1_700_000_000.0


def _fill(workers: int, per_miner: int, minutes: int, memory: Mapping[int, int] = KEEP) -> History:
    """The aggregates of ``workers`` workers, loaded a few hundred workers at a time (the rows of
    one chunk are dropped before the next: the RSS measured is the aggregates', not the rows')."""
    h = History(lambda job, conn: None, durable=False, memory=memory)
    t = int(NOW)
    chunk = 500
    for first in range(0, workers, chunk):
        rows: list[HistoryBucket] = []
        for w in range(first, min(first + chunk, workers)):
            miner, key = f"m{w // per_miner}", f"m{w // per_miner}/rig{w % per_miner}"
            pool = (("pool", ""),) if w == 0 else ()
            for scope, k in (("worker", key), *((("miner", miner),) if w % per_miner == 0 else ()), *pool):
                for i in range(minutes):
                    start = t - t % MINUTE - i * MINUTE
                    rows.append(
                        HistoryBucket(scope, k, MINUTE, start, 12, 0, (("low-zeros", 1),), 12 * 16**6)
                    )
                for i in range(25):
                    start = t - t % HOUR - i * HOUR
                    rows.append(HistoryBucket(scope, k, HOUR, start, 720, 1, (), 720 * 16**6))
        rows.sort(key=lambda r: r.start)
        h.load(rows, NOW)
        del rows
    return h


def _time(fn: Callable[[], object], repeat: int) -> tuple[float, float, int]:
    best = float("inf")
    size = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        body = fn()
        t1 = time.perf_counter()
        size = len(orjson.dumps(body))
        t2 = time.perf_counter()
        best = min(best, t1 - t0)
        encode = t2 - t1
    return best * 1000, encode * 1000, size


async def _sqlite_bytes_per_worker_day(workers: int = 50) -> float:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "h.db"
        store = SqliteStore(path, clock=lambda: NOW)
        await store.open()
        t = int(NOW)
        for w in range(workers):
            key = f"0123456789abcdef0123456789abcdef/rig-{w:02d}"  # a 32-hex miner id, a short worker name
            batch = [
                Persist(
                    HistoryBucket("worker", key, MINUTE, t - t % MINUTE - i * MINUTE, 12, 0, (), 12 * 16**6)
                )
                for i in range(1440)
            ]
            batch += [
                Persist(HistoryBucket("worker", key, HOUR, t - t % HOUR - i * HOUR, 720, 0, (), 720 * 16**6))
                for i in range(24)
            ]
            await store.commit(batch)
        t0 = time.perf_counter()
        for _ in range(5):
            day = await store.history_range("worker", key, MINUTE, t - 86400, t + MINUTE)
        read_ms = (time.perf_counter() - t0) / 5 * 1000
        assert len(day) == 1440
        await store.close()
        print(f"SQLite: a series' 24 h of minute buckets (1,440 rows) read in {read_ms:.1f} ms")
        import sqlite3

        with sqlite3.connect(path) as db:
            db.execute("VACUUM")
            pages = (
                db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0]
            )
            empty = 0
            for (n,) in db.execute("SELECT count(*) FROM history"):
                empty = n
        return pages / workers if empty else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--per-miner", type=int, default=4)
    parser.add_argument("--minutes", type=int, default=60, help="minute buckets per series (up to 1440)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--memory",
        choices=("recent", "all"),
        default="recent",
        help="recent: what a Pooler on SQLite keeps in memory (MEMORY, older parts of a range read"
        " from the store); all: every bucket loaded stays in memory (KEEP: no store, or Redis)",
    )
    args = parser.parse_args()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    h = _fill(args.workers, args.per_miner, args.minutes, MEMORY if args.memory == "recent" else KEEP)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kept = sum(len(x.minutes) + len(x.hours) for x in h.series.values())
    print(
        f"history: {args.workers} workers, {args.workers // args.per_miner} miners, {args.minutes} minute"
        f" + 25 hour buckets each loaded, memory={args.memory}: {kept:,} buckets in {len(h.series):,}"
        f" series kept; loaded in {time.perf_counter() - t0:.1f} s; max RSS grew"
        f" {(rss1 - rss0) / 1024:.0f} MiB"
    )
    a_miner = "m0"

    def uncached() -> object:  # the order and every sort key rebuilt (at most once a minute)
        h.view_cache.clear()
        return views.miners(h, NOW, "hashrate", "desc", 20, 0)

    def reordered() -> object:  # the order rebuilt from the kept keys (every 5 s while polled)
        h.view_cache.pop(("miners", "hashrate", "desc"), None)
        series = h.series.get(("miner", "m1"))
        if series is not None:
            series.changes += 1  # one miner's shares arrived since: its key is summed again
        return views.miners(h, NOW, "hashrate", "desc", 20, 0)

    def uncached_by(sort: str) -> Callable[[], object]:  # another key's order, rebuilt
        def run() -> object:
            h.view_cache.clear()
            return views.miners(h, NOW, sort, "desc", 20, 0)

        return run

    cases: list[tuple[str, Callable[[], object]]] = [
        ("/stats/pool?range=1h", lambda: views.pool(h, NOW, "1h")),
        ("/stats/pool?range=30d", lambda: views.pool(h, NOW, "30d")),
        ("/stats/miners?sort=hashrate, all keys (1/min)", uncached),
        ("/stats/miners?sort=hashrate, reordered (1/5 s)", reordered),
        (
            "/stats/miners?sort=hashrate, cached order",
            lambda: views.miners(h, NOW, "hashrate", "desc", 20, 0),
        ),
        ("/stats/miners?sort=stalePct, all keys (1/h)", uncached_by("stalePct")),
        ("/stats/miners?sort=lastShare (no keys kept)", uncached_by("lastShare")),
        ("/stats/miners?sort=workers (no keys kept)", uncached_by("workers")),
        ("/stats/miners?limit=100, cached order", lambda: views.miners(h, NOW, "hashrate", "desc", 100, 0)),
        (f"/stats/miners/{a_miner}?range=24h", lambda: views.miner(h, a_miner, NOW, "24h")),
        ("/stats/blocks?limit=20", lambda: views.blocks(h, 20, None)),
        ("/stats/farmers", lambda: views.farmers(h)),
    ]
    print(f"{'route':45} {'build ms':>9} {'JSON ms':>8} {'bytes':>8}")
    for name, fn in cases:
        build, encode, size = _time(fn, args.repeat)
        print(f"{name:45} {build:9.2f} {encode:8.2f} {size:8d}")
    per_day = asyncio.run(_sqlite_bytes_per_worker_day())
    print(f"SQLite: {per_day:,.0f} bytes per worker per day (1,440 minute rows + 24 hour rows, after VACUUM)")


if __name__ == "__main__":
    main()
