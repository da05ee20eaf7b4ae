"""The dashboard with a big pool: 1,000 miners and 10,000 workers, in real headless Chromium.

The page is served by the real stats and live routes (pooler/web/stats.py) over a real History
holding 10,000 workers' minute and hour buckets and a core view of 1,000 miners, 1,000 farmers and
10,000 online workers, plus a burst of 2,000 stream events. Every page must load and stay usable
(tables paged, charts drawn); the longest main-thread task is measured and printed (run with -s),
not asserted: timing on a shared 2-core machine is not a test (docs/dashboard.md has the figure).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from pooler.app.live import LiveDesk
from pooler.app.stats import StatsDesk
from pooler.core.records import HistoryBucket
from pooler.core.views import CoreView, FarmerView, MinerView, WorkerView
from pooler.stats.history import HOUR, MINUTE, History
from pooler.web.dashboard import PageFiles
from pooler.web.stats import LiveRoutes, StatsRoutes
from tests.browser.chromium import headless_chromium
from tests.browser.dashboard import dashboard
from tests.support.asgi import serve

MINERS, PER_MINER = 1000, 10  # 10,000 workers
EVENTS = 2000
NOW = time.time()
ADDRESS = "G" + "A" * 55

LONG_TASKS = """
window.__longest = 0; window.__longTasks = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    window.__longTasks++;
    window.__longest = Math.max(window.__longest, e.duration);
  }
}).observe({ type: "longtask", buffered: true });
"""


def _history() -> History:
    h = History(lambda job, conn: None, durable=False)
    rows: list[HistoryBucket] = []
    t = int(NOW)
    for w in range(MINERS * PER_MINER):
        miner = f"m{w // PER_MINER:04d}"
        scopes = [("worker", f"{miner}/rig{w % PER_MINER}")]
        if w % PER_MINER == 0:
            scopes.append(("miner", miner))
        if w == 0:
            scopes.append(("pool", ""))
        for scope, key in scopes:
            scale = MINERS * PER_MINER if scope == "pool" else 1
            for i in range(60):
                start = t - t % MINUTE - i * MINUTE
                rows.append(
                    HistoryBucket(
                        scope, key, MINUTE, start, 12 * scale, 0, (("low-zeros", 1),), 12 * scale * 16**6
                    )
                )
            for i in range(24):
                start = t - t % HOUR - i * HOUR
                rows.append(
                    HistoryBucket(scope, key, HOUR, start, 720 * scale, scale, (), 720 * scale * 16**6)
                )
    rows.sort(key=lambda r: r.start)
    h.load(rows, NOW)
    return h


def _view(now: float) -> CoreView:
    workers = tuple(
        WorkerView(
            f"m{w // PER_MINER:04d}", f"rig{w % PER_MINER}", w, "bench/1", 6, 3.2e5, 120, 1, 3.3e5, True
        )
        for w in range(MINERS * PER_MINER)
    )
    miners = tuple(
        MinerView(
            f"m{m:04d}",
            f"f{m:04d}",
            f"rig-{m}",
            PER_MINER,
            3.2e6,
            1200,
            10,
            2,
            {"low-zeros": 8},
            40,
            1,
            6 + m % 5,
            3.3e6,
        )
        for m in range(MINERS)
    )
    farmers = tuple(
        FarmerView(f"f{m:04d}", ADDRESS, 1, PER_MINER, 3.2e6, 6 + m % 5, None, 25_000_000_000, 12_000_000 + m)
        for m in range(MINERS)
    )
    return CoreView(
        block=4242,
        phase="mining",
        entropy="ab" * 32,
        timestamp=int(now) - 60,
        work_at=int(now * 1000) + 200_000,
        block_ends_at=int(now * 1000) + 240_000,
        paused=False,
        chain_ok=True,
        chain_detail="",
        miners=MINERS,
        workers=len(workers),
        hashrate=3.2e9,
        accepted=40_000,
        rejected=100,
        accepted_total=10**6,
        rejected_total=1000,
        best_zeros={f.farmer_id: 6 for f in farmers},
        farmers=farmers,
        miner_list=miners,
        worker_list=workers,
        blocks=(),
        pending_harvests=(),
    )


def _events() -> list[dict[str, Any]]:
    at = int(NOW * 1000)
    snapshot = {
        "type": "event",
        "kind": "snapshot",
        "at": at,
        "data": {"summary": {"block": 4242}, "recent": []},
    }
    burst = [
        {
            "type": "event",
            "kind": "miner",
            "at": at + i,
            "data": {"minerId": f"m{i % MINERS:04d}", "farmerId": f"f{i % MINERS:04d}", "event": "connected"},
        }
        for i in range(EVENTS)
    ]
    return [snapshot, *burst]


def _app() -> Starlette:
    history = _history()
    stats = StatsRoutes(StatsDesk(history, lambda: NOW))
    live = LiveRoutes(LiveDesk(_view, history, lambda: NOW))
    events = [json.dumps(e) for e in _events()]

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "checks": {"rpc": "ok", "backend": "ok", "store": "ok"}})

    async def ws_events(ws: WebSocket) -> None:
        await ws.accept()
        try:
            for frame in events:
                await ws.send_text(frame)
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass
        except WebSocketDisconnect:
            pass

    routes: list[BaseRoute] = [
        Route("/health", health),
        WebSocketRoute("/ws/events", ws_events),
        Route("/stats/pool", stats.pool),
        Route("/stats/blocks", stats.blocks),
        Route("/stats/miners", stats.miners),
        Route("/stats/miners/{miner_id}", stats.miner),
        Route("/stats/farmers", stats.farmers),
        Route("/stats/live", live.live),
        Route("/stats/live/miners", live.miners),
        Route("/stats/live/miners/{miner_id}", live.miner),
        Mount("/", PageFiles("Big Pool")),
    ]
    return Starlette(routes=routes)


async def test_a_pool_of_1000_miners_and_10000_workers(record_property: pytest.RecordProperty) -> None:
    async with (
        serve(_app()) as base,
        headless_chromium() as browser,
        dashboard(browser, base, init_script=LONG_TASKS) as board,
    ):
        await board.goto("")
        await board.wait_text("#workers", "10000")
        assert await board.text("#miners") == "1000"
        assert await board.page.locator("#best-zeros tr").count() == 100  # the first 100 of 1,000 farmers
        await board.page.wait_for_function(
            "Number(document.getElementById('chart-hashrate').dataset.points) === 60"
        )
        await board.goto("miners")
        assert await board.page.locator("#miner-rows tr").count() == 50  # one page of 50
        assert await board.text("#miners-total") == "1000 miners"
        await board.page.click("#miners-next")
        await board.wait_text("#miners-page", "51\u2013100")
        await board.goto("miners/m0007")
        assert await board.page.locator("#m-workers-rows tr").count() == PER_MINER
        await board.goto("events")
        assert await board.page.locator("#events li").count() == 200  # the newest 200 of the burst
        longest = float(await board.page.evaluate("window.__longest"))
        count = int(await board.page.evaluate("window.__longTasks"))
        record_property("longest_main_thread_task_ms", longest)
        print(
            f"\nbig pool (1,000 miners, 10,000 workers, {EVENTS} events):"
            f" longest main-thread task {longest:.0f} ms, {count} tasks over 50 ms"
        )
        board.assert_clean()
