"""Restarts against the devnet: work still goes out, harvests happen, miners resume, shutdown is clean.

One devnet (in this process, so the test reads the contract model) outlives four ``pooler
serve`` processes sharing one database file:

1. killed (SIGKILL) before workAt and restarted after it, with no miner connected: the
   restarted Pooler submits the best it reloaded, before the block's deadline;
2. killed again, down across the block boundary (the next block is opened by someone else):
   on start-up it harvests the worked block, and the miner's old token still works;
3. killed before workAt of the next block and restarted at once: work goes out at workAt;
4. SIGTERM: miners get close code 1012, the process exits 0, nothing acknowledged is lost.

After each restart ``/miner/stats`` ``accepted`` goes on from the stored counters (#18).

The moments are conditions, not sleeps to offsets: a kill comes once a share of the block was
acknowledged (early in the block, so before its workAt); with no Pooler running, "after workAt"
and "the block is over" are read from the chain's own clock (the devnet contract's, which decides
whether a plant opens the next block) by a bounded wait.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
from stellar_sdk import Keypair

from pooler.devnet import Devnet
from protocol.messages import Job
from tests.e2e.crashkit import FAST_SETTINGS, Acks, StreamMiner, lost_acks, read_store
from tests.support.processes import start_pooler
from tests.support.system import Registration, bearer, register_miner
from tests.support.wait import wait_until

INTERVAL = 12  # seconds per block: workAt at +6, deadline at +10
SETTINGS = {
    **FAST_SETTINGS,
    "BLOCK_INTERVAL_SECONDS": str(INTERVAL),
    "OPTIMAL_WORK_DELAY_MS": "6000",
    "WORK_SAFETY_MARGIN_MS": "2000",
    "SHARE_ZEROS_INITIAL": "2",
}


async def miner_stats(url: str, token: str) -> dict[str, Any]:
    """``GET /miner/stats`` with the miner's token."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/miner/stats", headers=bearer(token)) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


def pail_zeros(net: Devnet, farmer: str, block: int) -> int | None:
    """The zeros the chain recorded for the farmer's work in ``block`` (None: not worked yet)."""
    pail = net.contract.get_pail(farmer, block)
    assert pail is not None, f"no pail of {farmer} in block {block}"
    return pail.zeros


class Miners:
    """The test's WebSocket workers, started and stopped around each Pooler process."""

    def __init__(self, reg: Registration, acks: Acks) -> None:
        self.reg, self.acks = reg, acks
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, ws_url: str) -> None:
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(StreamMiner(ws_url, self.reg, w, self.acks, in_flight=4).run(self._stop))
            for w in ("w1", "w2")
        ]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 10)

    def planted_job(self, net: Devnet, after: int = 0) -> Job | None:
        for job in reversed(self.acks.jobs):
            if job.block > after and net.contract.get_pail(self.reg.farmer, job.block) is not None:
                return job
        return None


async def test_restarts_keep_work_harvest_and_tokens_and_sigterm_is_clean(tmp_path: Path) -> None:
    db = tmp_path / "pooler.db"
    async with Devnet(block_interval=INTERVAL, ledger_seconds=1.0) as net:
        settings = {
            **SETTINGS,
            "POOLER_DB": str(db),
            "STELLAR_NETWORK": "devnet",
            "STELLAR_RPC_URL": net.rpc_url,
            "BACKEND_API_URL": net.backend_url,
            "KALE_CONTRACT_ID": net.contract_id,
        }
        pooler = await start_pooler(tmp_path, settings)
        try:
            reg = await register_miner(pooler.url, "restarts", stake_percentage=0.2)
            acks = Acks()
            miners = Miners(reg, acks)
            miners.start(pooler.ws_url)
            # the first block our farmer is planted in is the one the Pooler's late plant opens
            job = await wait_until(lambda: miners.planted_job(net), "a planted block", within=3 * INTERVAL)
            assert job is not None
            block, work_at, ends_at = job.block, job.work_at / 1000, job.block_ends_at / 1000
            await wait_until(
                lambda: (block, reg.farmer_id) in acks.best, f"a share of block {block}", within=5
            )

            # 1. killed before workAt (a share of the block is in), restarted after it: the
            #    reloaded best is submitted
            await pooler.kill()
            await miners.stop()
            assert pail_zeros(net, reg.farmer, block) is None  # nobody worked it yet
            stored = read_store(db)
            assert lost_acks(stored, acks) == []
            best = stored.best[(block, reg.farmer_id)]
            await wait_until(
                lambda: net.contract.now() > work_at,
                f"the chain's clock past workAt of block {block}",
                within=INTERVAL,
                step=0.1,
            )
            pooler = await start_pooler(tmp_path, settings)
            # /miner/stats goes on from the stored counters (#18): no miner is connected yet, so
            # it shows exactly what was stored, at least every share acknowledged before the kill
            stats = await miner_stats(pooler.url, reg.token)
            assert stats["accepted"] >= sum(acks.accepted.values()) > 0, stats
            await wait_until(
                lambda: pail_zeros(net, reg.farmer, block) is not None,
                f"the restarted Pooler's work for block {block}",
                within=ends_at - time.time(),
                step=0.1,
            )
            assert pail_zeros(net, reg.farmer, block) == best

            # 2. down across the block boundary: harvested on start-up; the same token resumes
            await wait_until(
                lambda: ("work", block, 1) in read_store(db).calls,
                "the work result stored",
                within=5,
                step=0.1,
            )
            await pooler.kill()
            balance = net.contract.balance(reg.farmer)
            await wait_until(
                lambda: net.contract.now() >= ends_at,
                f"the chain's clock at the end of block {block}",
                within=INTERVAL,
                step=0.1,
            )
            other = Keypair.random().public_key
            assert net.contract.plant(other, 0) == block + 1  # another farmer opens the next block
            pooler = await start_pooler(tmp_path, settings)
            miners.start(pooler.ws_url)
            await wait_until(
                lambda: net.contract.get_pail(reg.farmer, block) is None,
                f"harvest of {block}",
                within=10,
                step=0.1,
            )
            assert net.contract.balance(reg.farmer) > balance
            await wait_until(
                lambda: (block, reg.farmer_id, "harvested") in read_store(db).statuses,
                "harvest stored",
                within=5,
                step=0.1,
            )
            job = await wait_until(
                lambda: miners.planted_job(net, after=block),
                "a job of the next block",
                within=INTERVAL,
                step=0.1,
            )
            # the job may reach one worker before the other is welcomed: wait for both
            await wait_until(lambda: acks.welcomes >= 4, "both workers welcomed again", within=10)
            assert acks.rejected["unauthorized"] == 0 and acks.welcomes == 4

            # 3. killed before workAt of the next block (a share of it is in), restarted at
            #    once: work at workAt
            assert job is not None
            block = job.block
            await wait_until(
                lambda: (block, reg.farmer_id) in acks.best, f"a share of block {block}", within=5
            )
            await pooler.kill()
            await miners.stop()
            best = read_store(db).best[(block, reg.farmer_id)]
            pooler = await start_pooler(tmp_path, settings)
            miners.start(pooler.ws_url)
            await wait_until(
                lambda: pail_zeros(net, reg.farmer, block) is not None,
                f"work for block {block}",
                within=job.block_ends_at / 1000 - time.time(),
                step=0.1,
            )
            worked = pail_zeros(net, reg.farmer, block)
            assert worked is not None and worked >= best

            # 4. SIGTERM: 1012 to the miners, exit 0, nothing acknowledged lost
            closes = len(acks.close_codes)
            code, _took = await pooler.stop(signal.SIGTERM, within=15)
            assert code == 0
            # each miner ends by itself once its connection is closed (stopping them first would race it)
            await wait_until(lambda: len(acks.close_codes) >= closes + 2, "both miners to see the close")
            await miners.stop()
            assert acks.close_codes[closes:] == [1012, 1012]
            after = read_store(db)
            assert after.integrity == "ok"
            assert lost_acks(after, acks) == []
            # and after a graceful stop the counters are those of every acknowledged share
            pooler = await start_pooler(tmp_path, settings)
            stats = await miner_stats(pooler.url, reg.token)
            assert stats["accepted"] >= sum(acks.accepted.values()), stats
        finally:
            await pooler.kill()
