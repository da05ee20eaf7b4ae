"""The dashboard in real headless Chromium, served and fed by a real in-process Pooler on the devnet
with real miners mining: every page loads without a console error, shows the API's figures, draws
its charts, writes events as sentences, keeps hostile text as text, and falls back to Server-Sent
Events when there is no WebSocket. Without the generated front-end files ``/`` is a 503 saying so.

The Pooler-restart test and the block turn-over run in the end-to-end tier
(tests/e2e/test_dashboard_browser.py); the 1,000-miner page in test_dashboard_scale.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.routing import Mount

from pooler.web import dashboard as page_files
from tests.browser.chromium import headless_chromium
from tests.browser.dashboard import Dashboard, dashboard, get_json, same_as_api
from tests.support.asgi import serve
from tests.support.miners import MinerLog, ws_miner
from tests.support.system import Registration, System, register_miner, running_system
from tests.support.wait import wait_until

HOSTILE = '<img src=x onerror="document.title=1">'

# One example of each kind of docs/events.md (and two this page does not know): none may read as
# JSON or "undefined".
EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("snapshot", {"summary": {"block": 37, "miners": 2}, "recent": [], "blocks": []}),
    ("block", {"block": 38, "entropy": "00" * 32, "timestamp": 1, "workAt": 2, "blockEndsAt": 3}),
    ("phase", {"block": 2, "phase": "mining", "workAt": 1, "blockEndsAt": 2}),
    ("phase", {"phase": "brand-new"}),
    (
        "plant",
        {"block": 2, "ok": True, "successfulPlants": 3, "failedPlants": 0, "totalStaked": "6000000000"},
    ),
    ("plant", {"block": 2, "ok": False, "error": "Backend unavailable"}),
    ("work", {"block": 2, "ok": True, "submissions": [{"farmerId": "f", "zeros": 7, "nonce": "1"}]}),
    ("harvest", {"block": 2, "ok": True, "successfulHarvests": 1, "failedHarvests": 0, "totalRewards": "1"}),
    ("miner", {"minerId": "m_1", "farmerId": "f", "event": "joined"}),
    ("farmer", {"farmerId": "32f8", "block": 2, "status": "planted"}),
    ("summary", {"block": 2, "phase": "mining", "miners": 1, "hashrate": 1.5}),
    ("chain", {"ok": False, "detail": "rpc timeout"}),
    ("alert", {"kind": "stake-at-risk", "status": "firing", "severity": "critical", "summary": "at risk"}),
    ("something-new", {"a": 1, "b": {"nested": True}, "c": [1, 2], "d": None}),
]


@asynccontextmanager
async def mining_pool() -> AsyncIterator[tuple[System, list[Registration], list[MinerLog]]]:
    """A Pooler on the devnet with two farmers' miners mining (one named with hostile HTML)."""
    # share zeros 3: a few shares a second per miner (1 and 2 run into the 200 messages/s limit)
    async with running_system(share_zeros=3) as system, aiohttp.ClientSession() as http:
        regs = [
            await register_miner(system.url, HOSTILE, http=http),
            await register_miner(system.url, "rig", http=http),
        ]
        logs = [MinerLog("w-hostile"), MinerLog("w-rig")]
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(ws_miner(system.ws_url, r.token, log, stop))
            for r, log in zip(regs, logs, strict=True)
        ]
        try:
            yield system, regs, logs
        finally:
            stop.set()
            await asyncio.gather(*tasks)


async def _overview_matches_api(board: Dashboard, http: aiohttp.ClientSession, url: str) -> None:
    async def figures(live: Any) -> tuple[Any, Any]:
        page = [await board.text(s) for s in ("#block", "#workers", "#miners", "#hashrate")]
        api = [
            str(live["block"]),
            str(live["workers"]),
            str(live["miners"]),
            await board.fmt("rate", live["hashrate"]),
        ]
        return page, api

    live = await same_as_api(http, f"{url}/stats/live?limit=100", figures, "block, workers, miners, hashrate")
    assert live["workers"] == 2

    async def farmers(live: Any) -> tuple[Any, Any]:
        rows = await board.page.eval_on_selector_all(
            "#best-zeros tr",
            "rows => rows.map(r => [r.dataset.farmer, r.querySelector('.best').textContent,"
            " r.querySelector('.projected').textContent])",
        )
        api = [
            [
                f["farmerId"],
                await board.fmt("num", f["bestZeros"]),
                await board.fmt("kale", f["projectedReward"]),
            ]
            for f in live["farmerList"]
        ]
        return rows, api

    await same_as_api(http, f"{url}/stats/live?limit=100", farmers, "per-farmer best zeros and projections")


async def _online_in_history(http: aiohttp.ClientSession, url: str) -> Any:
    pool = await get_json(http, f"{url}/stats/pool?range=1h")
    return pool if any(b["workersOnline"] == 2 for b in pool["history"]) else None


async def test_every_page_loads_and_shows_what_the_api_says() -> None:
    async with mining_pool() as (system, regs, logs), aiohttp.ClientSession() as http:
        await asyncio.gather(*(_shares(log) for log in logs))
        async with headless_chromium() as browser, dashboard(browser, system.url) as board:
            await board.goto("")
            await board.wait_text("#conn", "live")
            assert await board.page.title() == "KALE Pooler"
            await _overview_matches_api(board, http, system.url)
            # the farmers by short G-address and name (hostile text stays text), full address on hover
            cell = board.page.locator(f'#best-zeros tr[data-farmer="{regs[1].farmer_id}"] .addr')
            assert await cell.inner_text() == f"{regs[1].farmer[:5]}\u2026{regs[1].farmer[-4:]} (rig)"
            assert (await cell.get_attribute("title") or "").startswith(regs[1].farmer)
            hostile = board.page.locator(f'#best-zeros tr[data-farmer="{regs[0].farmer_id}"] .addr')
            assert HOSTILE in await hostile.inner_text()
            assert await board.page.locator("img").count() == 0
            # the charts have data points (the pool history's minute buckets, the online counts)
            for chart in ("chart-hashrate", "chart-shares", "chart-online"):
                await board.page.wait_for_function(
                    "(id) => Number(document.getElementById(id).dataset.points) > 0",
                    arg=chart,
                    timeout=30_000,
                )
            assert await board.page.locator("#chart-hashrate canvas").count() == 1
            # the online chart is drawn from the history: a fresh load has its points at once
            pool = await wait_until(
                lambda: _online_in_history(http, system.url), "online counts in the history", step=0.2
            )
            assert max(b["workersOnline"] for b in pool["history"]) == 2
            await board.reload()
            history_points = await board.page.eval_on_selector(
                "#chart-online", "e => Number(e.dataset.historyPoints)"
            )
            assert history_points >= 1
            assert int(await board.page.eval_on_selector("#chart-online", "e => e.dataset.points")) >= 1
            assert await board.text("#chain") == "chain: ok" and await board.text("#backend") == "Backend: ok"

            # Miners: a row per miner, its figures the API's (the list and the live figures)
            await board.goto("miners")
            row = board.page.locator(f'#miner-rows tr[data-miner="{regs[1].miner_id}"]')

            async def miner_row(listed: Any) -> tuple[Any, Any]:
                cells = await row.locator("td").all_inner_texts()
                api = next(m for m in listed["miners"] if m["minerId"] == regs[1].miner_id)
                return [cells[4], cells[6]], [f"1 / {api['workers']}", str(api["accepted24h"])]

            listed = await same_as_api(http, f"{system.url}/stats/miners?limit=50", miner_row, "rig's row")
            assert await board.page.locator("#miner-rows tr").count() == listed["total"] == 2
            assert (await row.locator("td").first.inner_text()).startswith("rig (")
            # a header click reorders the rows (the API's sort): miner ids up, then down
            ids = sorted(r.miner_id for r in regs)
            for order in ("asc", "desc"):
                await board.page.click('th[data-sort="minerId"]')
                # the rows in that order AND the header marked: the rows may already be in that
                # order before the click (random ids), and the mark comes with the API's answer
                await board.page.wait_for_function(
                    "([ids, mark]) => [...document.querySelectorAll('#miner-rows tr')]"
                    ".map(r => r.dataset.miner).join() === ids.join()"
                    " && document.querySelector(mark) !== null",
                    arg=[ids if order == "asc" else ids[::-1], f'th[data-sort="minerId"].sorted-{order}'],
                    timeout=30_000,
                )
                assert await board.page.locator(f'th[data-sort="minerId"].sorted-{order}').count() == 1
            await board.page.click('th[data-sort="workers"]')  # the newer keys too: workers, desc

            async def in_api_order(listed: Any) -> tuple[Any, Any]:
                shown = await board.page.eval_on_selector_all(
                    "#miner-rows tr", "rows => rows.map(r => r.dataset.miner)"
                )
                return shown, [m["minerId"] for m in listed["miners"]]

            await same_as_api(
                http,
                f"{system.url}/stats/miners?sort=workers&order=desc&limit=50",
                in_api_order,
                "workers order",
            )
            # the rows may match the API's order before the answer that also marks the header
            await board.page.wait_for_selector('th[data-sort="workers"].sorted-desc', timeout=30_000)
            assert await board.page.locator('th[data-sort="workers"].sorted-desc').count() == 1
            # one miner's page: its workers and hashrate chart
            await row.click()
            await board.page.wait_for_function("document.body.dataset.loaded === 'miner'", timeout=30_000)
            assert await board.page.locator('#m-workers-rows tr[data-worker="w-rig"]').count() == 1
            await board.page.wait_for_function(
                "Number(document.getElementById('chart-miner').dataset.points) > 0", timeout=30_000
            )
            # Blocks and one block
            await board.goto("blocks")
            blocks = await get_json(http, f"{system.url}/stats/blocks?limit=20")
            assert await board.page.locator("#block-rows tr").count() == len(blocks["blocks"])
            await board.goto(f"blocks/{system.block()}")
            assert await board.text("#b-index") == str(system.block())
            # Events: sentences, filterable by kind
            await board.goto("events")
            await board.page.wait_for_selector('#events li[data-kind="miner"]', timeout=30_000)
            text = await board.text("#events")
            assert "undefined" not in text and "{" not in text and text.strip() != ""
            short = f"{regs[1].farmer[:5]}\u2026{regs[1].farmer[-4:]} (rig)"
            assert short in text  # "miner m_... of farmer GABCD…WXYZ (rig) joined"
            await board.page.select_option("#event-kind", "miner")
            kinds = await board.page.eval_on_selector_all("#events li", "lis => lis.map(l => l.dataset.kind)")
            assert kinds and set(kinds) == {"miner"}
            for kind, data in EXAMPLES:
                said = str(
                    await board.page.evaluate("([k, d]) => window.KP.fmt.sentence(k, d)", [kind, data])
                )
                assert "undefined" not in said and "{" not in said and "null" not in said, (kind, said)
            assert await board.page.evaluate(
                "window.KP.fmt.sentence('phase', {block: 2, phase: 'mining'})"
            ) == ("block 2 is mining")
            assert regs[0].token not in await board.page.content()
            board.assert_clean()


async def _shares(log: MinerLog) -> None:
    await wait_until(lambda: len(log.accepted) >= 5, f"shares from {log.name}")


async def test_the_page_falls_back_to_server_sent_events_and_narrows_to_one_column() -> None:
    async with running_system() as system, headless_chromium() as browser:
        no_websocket = "delete window.WebSocket;"  # a proxy that does not pass WebSockets, say
        async with dashboard(browser, system.url, init_script=no_websocket) as board:
            await board.page.set_viewport_size({"width": 390, "height": 844})
            await board.goto("")
            await board.wait_text("#conn", "live")
            assert await board.text("#transport") == "Server-Sent Events"
            await board.wait_text("#block", str(system.block()))
            # a phone's width: the cards and panels stack in one column
            lefts = await board.page.eval_on_selector_all(
                ".page[data-page=overview] .card, .page[data-page=overview] .panel",
                "els => els.map(e => Math.round(e.getBoundingClientRect().left))",
            )
            assert len(set(lefts)) == 1, lefts
            width = await board.page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390
            board.assert_clean()


async def test_the_page_says_when_its_front_end_files_are_missing(tmp_path: Path) -> None:
    page = Starlette(routes=[Mount("/", page_files.PageFiles("Pool", vendor=tmp_path / "vendor"))])
    async with serve(page) as base, aiohttp.ClientSession() as http:
        async with http.get(base + "/") as resp:
            body = await resp.text()
            assert resp.status == 503
        assert "uPlot.iife.min.js" in body and "./dev.sh web" in body and body.count("\n") == 1
        assert str(tmp_path / "vendor") in body
    assert page_files.missing_vendor_files() == []  # the real ones are there (./dev.sh test builds them)
    # and the Pooler's own page (static/vendor) is served with them
    async with (
        running_system() as system,
        aiohttp.ClientSession() as http,
        http.get(system.url + "/") as resp,
    ):
        assert resp.status == 200 and "<title>" in await resp.text()


async def test_a_backend_outage_shows_in_the_badge_and_the_alert_banner_until_resolved() -> None:
    async with (
        running_system(alert_down_after_ms=300, health_interval_ms=100) as system,
        headless_chromium() as browser,
        dashboard(browser, system.url) as board,
    ):
        await board.goto("")
        await board.wait_text("#backend", "Backend: ok")
        system.net.backend_faults.outage_for(3600, system.net.contract.now())
        await board.page.wait_for_selector('#alerts .alert[data-alert="backend-down"]', timeout=30_000)
        banner = await board.text("#alerts")
        assert banner.startswith("CRITICAL: Backend down since") and "{" not in banner
        await board.page.wait_for_function(
            "document.getElementById('backend').textContent.startsWith('Backend: ')"
            " && document.getElementById('backend').textContent !== 'Backend: ok'",
            timeout=30_000,
        )
        assert await board.text("#chain") == "chain: ok"  # only the Backend is away
        system.net.backend_faults.clear()
        await board.wait_text("#backend", "Backend: ok")
        await board.page.wait_for_function("document.getElementById('alerts').hidden", timeout=30_000)
        board.assert_clean()
