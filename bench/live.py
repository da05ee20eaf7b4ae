"""What one ``/stats/live`` answer costs the event loop at 1,000 miners / 10,000 workers.

python -m bench.live [--miners 1000] [--workers 10000] [--repeat 5]

A real Coordinator with ``--miners`` miners (one farmer each) and ``--workers`` online workers
in an open block: the time of ``Coordinator.view`` (what the live desk takes at most every
CACHE_S seconds), of a fresh ``LiveDesk.live(100)`` (view + index + answer) and of a cached
one (what the other requests within CACHE_S cost). Not a test: a measurement.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench.stats import _fill
from pooler.app.live import LiveDesk
from pooler.app.options import TUNING, core_config
from pooler.config import Settings
from pooler.core.coordinator import Coordinator
from pooler.core.events import MinerJoined, NewBlock, WorkerConnected
from protocol import strkey

T0 = 1_700_000_000.0


def _core(miners: int, workers: int) -> Coordinator:
    core = Coordinator(core_config(Settings(), TUNING))
    for m in range(miners):
        address = strkey.encode("G", m.to_bytes(4, "big") * 8)
        core.handle(MinerJoined(f"m{m}", f"f{m}", address), T0)
    for conn in range(workers):
        core.handle(WorkerConnected(conn, f"m{conn % miners}", f"w{conn}"), T0)
    core.handle(NewBlock(1, bytes(range(32)), int(T0), 4), T0)
    return core


def _best_ms(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--miners", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    core = _core(args.miners, args.workers)
    # the history of the same workers: 60 minute and 24 hour buckets each (bench.stats)
    history = _fill(args.workers, max(args.workers // args.miners, 1), 60)
    clock = [T0]
    desk = LiveDesk(core.view, history, lambda: clock[0])

    def fresh() -> object:
        clock[0] += 10  # past the cache: a new view each time
        return desk.live(100)

    view_ms = _best_ms(lambda: core.view(T0), args.repeat)
    fresh_ms = _best_ms(fresh, args.repeat)
    cached_ms = _best_ms(lambda: desk.live(100), args.repeat)
    ids = [f"m{m}" for m in range(min(50, args.miners))]
    page_ms = _best_ms(lambda: desk.live_miners(ids), args.repeat)
    one_ms = _best_ms(lambda: desk.live_miner("m0"), args.repeat)
    print(
        f"{args.miners} miners, {args.workers} workers: Coordinator.view {view_ms:.1f} ms,"
        f" /stats/live fresh {fresh_ms:.1f} ms, cached {cached_ms:.2f} ms,"
        f" /stats/live/miners?ids= (50 miners) {page_ms:.2f} ms, /stats/live/miners/m0 {one_ms:.2f} ms"
        f" (best of {args.repeat})"
    )


if __name__ == "__main__":
    main()
