"""The pool's miners / workers online per history bucket: sampled by a real Pooler on the devnet
with a real miner, kept in SQLite, and still in ``/stats/pool?range=`` after a restart (when
nobody is online any more)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from pooler.devnet import Devnet
from tests.support.miners import MinerLog, ws_miner
from tests.support.system import register_miner, running_system
from tests.support.wait import wait_until


async def _pool(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(f"{url}/stats/pool?range=1h") as resp:
        assert resp.status == 200
        return await resp.json()


async def test_the_online_counts_are_stored_and_survive_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "pooler.db")
    async with (
        Devnet(block_interval=300, ledger_seconds=1.0) as net,
        aiohttp.ClientSession() as http,
    ):
        async with running_system(net=net, store="sqlite", pooler_db=db, share_zeros=3) as system:
            reg = await register_miner(system.url, "rig", http=http)
            log, stop = MinerLog("w1"), asyncio.Event()
            miner = asyncio.create_task(ws_miner(system.ws_url, reg.token, log, stop))
            try:

                async def sampled() -> Any:
                    rows = (await _pool(http, system.url))["history"]
                    return [r for r in rows if (r["minersOnline"], r["workersOnline"]) == (1, 1)]

                online = await wait_until(sampled, "a bucket with the miner online", step=0.2)
                # the sample rides on the next batch's commit: wait for two more accepted shares
                seen = len(log.accepted)
                await wait_until(lambda: len(log.accepted) >= seen + 2, "two more shares")
            finally:
                stop.set()
                await miner
        async with running_system(net=net, store="sqlite", pooler_db=db, share_zeros=3) as system:
            pool = await _pool(http, system.url)
            again = {r["start"]: r for r in pool["history"]}
            for r in online:  # the restarted Pooler, with nobody online, still has them
                assert (again[r["start"]]["minersOnline"], again[r["start"]]["workersOnline"]) == (1, 1)
            assert {"minersOnline", "workersOnline"} <= set(pool["history"][0])
