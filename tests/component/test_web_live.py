"""``/stats/live`` over real sockets: a real Pooler on the devnet with real miners; the live
figures are the core's own (the same view the demo prints), farmers carry their G-address and
the names their miners registered with, and bad parameters are 400s saying what was expected."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from pooler.app.live import CACHE_S
from tests.support.miners import MinerLog, ws_miner
from tests.support.system import register_miner, running_system
from tests.support.wait import wait_until


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


async def _answer(http: aiohttp.ClientSession, url: str, ready: Callable[[Any], bool]) -> Any:
    """The first 200 answer of ``url`` for which ``ready`` holds (views are cached for CACHE_S)."""

    async def poll() -> Any:
        status, body = await _get(http, url)
        assert status == 200, body
        return body if ready(body) else None

    return await wait_until(poll, f"an answer of {url} that is ready", step=CACHE_S / 4)


async def test_live_figures_are_the_cores_and_name_each_farmer() -> None:
    async with running_system(share_zeros=1) as system, aiohttp.ClientSession() as http:
        a = await register_miner(system.url, "alpha", http=http)
        b = await register_miner(system.url, "beta", http=http)
        logs = [MinerLog("rig-a"), MinerLog("rig-b1"), MinerLog("rig-b2")]
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(ws_miner(system.ws_url, tok, log, stop))
            for tok, log in zip((a.token, b.token, b.token), logs, strict=True)
        ]
        try:
            await wait_until(lambda: all(len(log.accepted) >= 10 for log in logs), "shares from every miner")
            await wait_until(lambda: system.pooler.core.view(0).workers == 3, "three workers online")
            # the desk reuses a view for CACHE_S: wait for one that shows all three workers
            live = await _answer(http, f"{system.url}/stats/live", lambda d: d["workers"] == 3)
            assert (live["miners"], live["workers"]) == (2, 3)
            assert live["block"] == system.block() and isinstance(live["phase"], str)
            assert live["hashrate"] > 0 and live["farmers"] == 2
            bounds = system.pooler.core.view(0).chain_zeros
            assert (live["chainMinZeros"], live["chainMaxZeros"]) == (
                bounds if bounds is not None else (None, None)
            )
            farmers = {f["farmerId"]: f for f in live["farmerList"]}
            assert farmers[a.farmer_id]["address"] == a.farmer and farmers[a.farmer_id]["names"] == ["alpha"]
            assert farmers[b.farmer_id]["address"] == b.farmer and farmers[b.farmer_id]["workers"] == 2
            best_a = max(c.zeros for c in logs[0].accepted if c.block == live["block"])
            assert farmers[a.farmer_id]["bestZeros"] >= best_a

            status, rows = await _get(http, f"{system.url}/stats/live/miners?ids={a.miner_id},{b.miner_id}")
            assert status == 200
            by_id = {r["minerId"]: r for r in rows["miners"]}
            assert by_id[b.miner_id]["workersOnline"] == 2 and by_id[b.miner_id]["name"] == "beta"
            assert by_id[a.miner_id]["address"] == a.farmer
            assert isinstance(by_id[a.miner_id]["lastShareAt"], int)

            status, one = await _get(http, f"{system.url}/stats/live/miners/{b.miner_id}")
            assert status == 200
            assert [(w["worker"], w["online"]) for w in one["workerList"]] == [
                ("rig-b1", True),
                ("rig-b2", True),
            ]
            assert all(w["transport"] == "websocket" and w["accepted"] > 0 for w in one["workerList"])
        finally:
            stop.set()
            await asyncio.gather(*tasks)

        # the miner's workers went: the miner page lists them offline, with their last share
        await wait_until(lambda: system.pooler.core.view(0).workers == 0, "the workers to leave")
        one = await _answer(
            http, f"{system.url}/stats/live/miners/{b.miner_id}", lambda d: d["workersOnline"] == 0
        )
        assert [(w["worker"], w["online"]) for w in one["workerList"]] == [
            ("rig-b1", False),
            ("rig-b2", False),
        ]
        assert all(isinstance(w["lastShareAt"], int) for w in one["workerList"])
        assert a.token not in str(live) + str(rows) + str(one)


async def test_bad_live_parameters_say_what_is_expected() -> None:
    async with running_system() as system, aiohttp.ClientSession() as http:
        status, body = await _get(http, f"{system.url}/stats/live?limit=0")
        assert status == 400 and body["parameter"] == "limit" and "1 to 1000" in body["message"]
        status, body = await _get(http, f"{system.url}/stats/live/miners")
        assert status == 400 and body["parameter"] == "ids" and "comma-separated" in body["message"]
        status, body = await _get(http, f"{system.url}/stats/live/miners?ids=x,x")
        assert status == 400 and "distinct" in body["message"]
        status, body = await _get(http, f"{system.url}/stats/live/miners/nobody")
        assert status == 404 and body["error"] == "not-found"
        status, spec = await _get(http, f"{system.url}/openapi.json")
        assert {"/stats/live", "/stats/live/miners", "/stats/live/miners/{miner_id}"} <= set(spec["paths"])
