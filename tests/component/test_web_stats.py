"""The stats API over real sockets: a real Pooler on the devnet, real miners, numbers checked
against what the miners were told; bad parameters are 400s that say what was expected."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from pooler.stats import views
from pooler.stats.history import History
from pooler.store.sqlite import SqliteStore
from tests.support.miners import MinerLog, ws_miner
from tests.support.system import register_miner, running_system
from tests.support.wait import wait_until


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


def _counted(system: Any, miner_id: str | None = None, worker: str | None = None) -> int:
    """Accepted shares in the Pooler's durable tallies (a miner's last shares before its bye may
    be counted after its socket stopped reading: a log can be a few short, never over)."""
    return sum(
        t.accepted
        for t in system.pooler.core.snapshot().tallies
        if miner_id in (None, t.miner_id) and worker in (None, t.worker)
    )


async def test_pool_miner_and_worker_figures_match_what_the_miners_were_told() -> None:
    async with running_system(share_zeros=1) as system, aiohttp.ClientSession() as http:
        a, b = (
            await register_miner(system.url, "a", http=http),
            await register_miner(system.url, "b", http=http),
        )
        logs = [MinerLog("rig-a"), MinerLog("rig-b1"), MinerLog("rig-b2")]
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(ws_miner(system.ws_url, tok, log, stop))
            for tok, log in zip((a.token, b.token, b.token), logs, strict=True)
        ]
        await wait_until(lambda: all(len(log.accepted) >= 20 for log in logs), "shares from every miner")
        stop.set()
        await asyncio.gather(*tasks)
        await wait_until(lambda: system.pooler.runner.drain(0), "the last answers' batch handled")

        status, pool = await _get(http, f"{system.url}/stats/pool?range=1h")
        assert status == 200
        told = _counted(system)
        assert told >= sum(len(log.accepted) for log in logs)
        assert sum(bk["accepted"] for bk in pool["history"]) == told == pool["accepted24h"]
        assert sum(sum(bk["rejected"].values()) + bk["stale"] for bk in pool["history"]) == sum(
            len(log.rejected) for log in logs
        )
        # work behind accepted shares at share zeros 1: 16 hashes each
        assert sum(int(bk["work"]) for bk in pool["history"]) == 16 * told
        assert pool["hashrate"] == 16 * told / 600 and (pool["miners"], pool["workers"]) == (2, 3)

        status, miners = await _get(http, f"{system.url}/stats/miners?sort=accepted&order=asc")
        assert status == 200 and miners["total"] == 2
        rows = {r["minerId"]: r for r in miners["miners"]}
        assert rows[a.miner_id]["accepted24h"] == _counted(system, a.miner_id) >= len(logs[0].accepted)
        assert rows[b.miner_id]["accepted24h"] == _counted(system, b.miner_id)
        assert [r["accepted24h"] for r in miners["miners"]] == sorted(r["accepted24h"] for r in rows.values())

        # every sort key the history serves orders the rows by the figure they show
        def answers(r: Any) -> int:
            return int(r["accepted24h"] + r["stale24h"] + sum(r["rejected24h"].values()))

        figures = {
            "hashrate": lambda r: r["hashrate"],
            "stale": lambda r: r["stale24h"],
            "rejected": lambda r: sum(r["rejected24h"].values()),
            "stalePct": lambda r: r["stale24h"] / answers(r),
            "invalidPct": lambda r: sum(r["rejected24h"].values()) / answers(r),
            "workers": lambda r: r["workers"],
        }
        for sort, figure in figures.items():
            for order in ("desc", "asc"):
                status, got = await _get(http, f"{system.url}/stats/miners?sort={sort}&order={order}")
                assert status == 200 and got["total"] == 2, (sort, order)
                keys = [figure(r) for r in got["miners"]]
                assert keys == sorted(keys, reverse=order == "desc"), (sort, order, keys)
        status, by_workers = await _get(http, f"{system.url}/stats/miners?sort=workers&order=desc")
        assert [r["minerId"] for r in by_workers["miners"]] == [b.miner_id, a.miner_id]  # 2 workers, 1
        status, by_last = await _get(http, f"{system.url}/stats/miners?sort=lastShare&order=desc")
        assert status == 200 and {r["minerId"] for r in by_last["miners"]} == {a.miner_id, b.miner_id}

        status, one = await _get(http, f"{system.url}/stats/miners/{b.miner_id}?range=24h")
        assert status == 200
        workers = {w["worker"]: w["accepted24h"] for w in one["workerList"]}
        assert workers == {w: _counted(system, b.miner_id, w) for w in ("rig-b1", "rig-b2")}
        assert workers["rig-b1"] >= len(logs[1].accepted) and workers["rig-b2"] >= len(logs[2].accepted)
        assert sum(bk["accepted"] for bk in one["history"]) == workers["rig-b1"] + workers["rig-b2"]
        body = str([pool, miners, one])
        assert a.token not in body and b.token not in body  # ids are public, tokens never

        status, blocks = await _get(http, f"{system.url}/stats/blocks?limit=5")
        assert status == 200 and blocks["blocks"][0]["block"] == system.block()
        status, block = await _get(http, f"{system.url}/stats/blocks/{system.block()}")
        assert status == 200 and block["block"] == system.block()
        bests = {f["farmerId"]: f["bestZeros"] for f in block["farmers"]}
        assert bests[a.farmer_id] >= max(c.zeros for c in logs[0].accepted)
        status, farmers = await _get(http, f"{system.url}/stats/farmers")
        assert status == 200 and {a.farmer_id, b.farmer_id} <= {f["farmerId"] for f in farmers["farmers"]}
        status, farmer = await _get(http, f"{system.url}/stats/farmers/{a.farmer_id}")
        assert status == 200 and farmer["farmerId"] == a.farmer_id


async def test_bad_parameters_are_400_with_what_is_expected_and_unknown_ids_404() -> None:
    async with running_system() as system, aiohttp.ClientSession() as http:
        for path, param, expected in (
            ("/stats/pool?range=2h", "range", "one of 1h, 24h, 7d, 30d"),
            ("/stats/miners?sort=speed", "sort", "one of hashrate"),
            ("/stats/miners?limit=0", "limit", "an integer from 1 to 100"),
            ("/stats/miners?offset=-1", "offset", "an integer from 0"),
            ("/stats/blocks?before=x", "before", "an integer"),
            ("/stats/blocks/abc", "block", "a block index"),
            ("/stats/farmers/f?limit=500", "limit", "an integer from 1 to 100"),
        ):
            status, body = await _get(http, system.url + path)
            assert status == 400, path
            assert body["parameter"] == param and expected in body["message"], body
        for path in ("/stats/miners/nobody", "/stats/farmers/nobody", "/stats/blocks/999999"):
            status, body = await _get(http, system.url + path)
            assert status == 404 and body["error"] == "not-found", path


async def test_what_the_api_showed_is_in_the_file_after_the_pooler_stops(tmp_path: Path) -> None:
    db = tmp_path / "pooler.db"
    async with (
        running_system(store="sqlite", pooler_db=str(db)) as system,
        aiohttp.ClientSession() as http,
    ):
        a = await register_miner(system.url, "a", http=http)
        log, stop = MinerLog("rig"), asyncio.Event()
        task = asyncio.create_task(ws_miner(system.ws_url, a.token, log, stop))
        await wait_until(lambda: len(log.accepted) >= 30, "shares")
        stop.set()
        await task
        await wait_until(lambda: system.pooler.runner.drain(0), "the last answers' batch handled")
        _, before = await _get(http, f"{system.url}/stats/miners/{a.miner_id}?range=1h")
        _, block_before = await _get(http, f"{system.url}/stats/blocks/{system.block()}")
        now = time.time()
        assert before["accepted24h"] == _counted(system, a.miner_id)
    assert before["accepted24h"] >= len(log.accepted) >= 30
    store = SqliteStore(db)
    restored = await store.open()
    await store.close()
    # a restarted Pooler loads this into its History: the same answers
    history = History(lambda job, conn: None)
    history.load(restored.history, now)
    again = views.miner(history, a.miner_id, now, "1h")
    assert again is not None
    assert again["accepted24h"] == before["accepted24h"] and again["history"] == before["history"]
    assert views.block(history, block_before["block"]) == block_before


async def test_a_harvested_block_shows_each_farmers_reward() -> None:
    async with running_system(block_interval=6, share_zeros=2) as system, aiohttp.ClientSession() as http:
        a = await register_miner(system.url, "a", http=http)
        log, stop = MinerLog("rig"), asyncio.Event()
        task = asyncio.create_task(ws_miner(system.ws_url, a.token, log, stop))
        opened = system.block()
        assert opened is not None
        first = opened + 1  # the first block planted with this farmer in the roster

        def harvested() -> bool:
            b = system.pooler.parts.history.blocks.get(first)
            return b is not None and b.harvest_total is not None

        try:
            await wait_until(harvested, "the block's harvest", within=40)
        except AssertionError:
            raise AssertionError(str(system.pooler.parts.history.blocks)) from None
        stop.set()
        await task
        _, block = await _get(http, f"{system.url}/stats/blocks/{first}")
        _, farmer = await _get(http, f"{system.url}/stats/farmers/{a.farmer_id}")
        _, page = await _get(http, f"{system.url}/stats/blocks?limit=100")
    # the block's on-chain figures (#15): Block(first) as the chain holds it now, after its works
    on_chain = system.net.contract.get_block(first)
    assert on_chain is not None
    assert block["chain"] == {
        "minZeros": on_chain.min_zeros,
        "maxZeros": on_chain.max_zeros,
        "minGap": on_chain.min_gap,
        "maxGap": on_chain.max_gap,
        "minStake": str(on_chain.min_stake),
        "maxStake": str(on_chain.max_stake),
        "stakedTotal": str(on_chain.staked_total),
        "normalizedTotal": str(on_chain.normalized_total),
    }
    assert int(block["chain"]["normalizedTotal"]) > 0  # our work is in it
    assert next(b for b in page["blocks"] if b["block"] == first)["chain"] == block["chain"]
    mine = next(f for f in block["farmers"] if f["farmerId"] == a.farmer_id)
    assert mine["planted"] and mine["worked"] and block["planted"] >= 1 and int(block["staked"]) >= 0
    assert block["workOk"] is True and block["workAt"] is not None
    assert mine["bestZeros"] == mine["workZeros"] >= max(c.zeros for c in log.accepted if c.block == first)
    if mine["reward"] is not None:  # the Backend attributed it: the farmer's page says the same
        assert {"block": first, "reward": mine["reward"]} in farmer["blocks"]
    else:
        assert block["harvested"] is not None
