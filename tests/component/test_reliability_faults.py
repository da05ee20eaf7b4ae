"""Dependency faults against a live Pooler on the devnet: the Backend and the chain RPC.

- A Backend that is slow and answers 429 for a window ending before the deadline: the block's
  work still lands. A Backend dropping every connection past the deadline: the loss is reported
  (``work`` event ``ok: false``, the farmer's status ``failed`` with the reason) and the next
  block runs.
- The chain RPC down: the monitor backs off, the Pooler keeps the last block and keeps serving
  miners, readiness and the dashboard's ``chain`` event say so, and it all recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from pooler.app.service import Pooler
from pooler.devnet import Devnet
from pooler.devnet.rpc import SorobanRpc
from pooler.devnet.serve import LoopbackServer
from protocol.messages import Accepted, Job, Stats
from tests.component.reliability_support import Miner, find_shares, mine, ws_url
from tests.support.system import ops_options, register_miner, running_system
from tests.support.wait import wait_until


@contextlib.contextmanager
def dashboard(pooler: Pooler) -> Any:
    """The dashboard stream's events, decoded, as the hub fans them out."""
    sub = pooler.hub.subscribe()
    events: list[dict[str, Any]] = []

    async def pump() -> None:
        while True:
            events.extend(orjson.loads(f) for f in await sub.next_batch())

    task = asyncio.get_running_loop().create_task(pump())
    try:
        yield events
    finally:
        task.cancel()
        sub.close()


def status_of(pooler: Pooler, block: int, farmer_id: str) -> Any:
    for b in pooler.core.view(pooler.clock()).blocks:
        if b.block == block:
            return b.farmers.get(farmer_id)
    return None


def refused_work(caplog: pytest.LogCaptureFixture) -> bool:
    """A ``/work`` attempt was answered 429 (the Backend client logs every attempt it retries)."""
    messages = [r.getMessage() for r in caplog.records if r.name == "pooler.backend"]
    return any("work attempt" in m and "HTTP 429" in m for m in messages)


async def test_backend_faults_before_the_deadline_are_survived_and_after_it_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pooler.backend")
    async with (
        running_system(block_interval=6, profile=ops_options) as system,
        aiohttp.ClientSession() as http,
    ):
        net, pooler = system.net, system.pooler
        reg = await register_miner(pooler.url, "faulty-times", http=http)
        fid = reg.farmer_id

        def status(block: int) -> str:
            return str(getattr(status_of(pooler, block, fid), "status", ""))

        faults = net.backend_faults
        stop = asyncio.Event()
        with dashboard(pooler) as events:
            async with Miner(ws_url(pooler), reg.token) as miner:
                task = asyncio.create_task(mine(miner, stop))
                # 1) slow (0.3 s a request) and 429 for every request, from when block 2 is planted
                #    (before workAt) until a /work attempt has been answered 429: that attempt fails
                #    and is retried, and a later one lands before the deadline
                await wait_until(lambda: status(2) == "planted", "block 2 planted", within=15)
                view = pooler.core.view(pooler.clock())
                assert view.work_at is not None and view.block_ends_at is not None
                faults.latency, faults.error_rate, faults.error_status = 0.3, 1.0, 429
                await wait_until(lambda: refused_work(caplog), "a /work attempt answered 429", within=15)
                faults.clear()
                await wait_until(lambda: status(2) == "worked", "block 2 worked", within=10)
                assert pooler.core.view(pooler.clock()).block == 2  # worked in time, within block 2
                # the faults were met: /work attempts were answered 429 and retried
                retried = [r.getMessage() for r in caplog.records if r.name == "pooler.backend"]
                assert any("work attempt" in m and "HTTP 429" in m for m in retried), retried

                # 2) every connection dropped from before workAt of block 3 to past its deadline
                #    (from when block 3 is planted, before its workAt, to 1 s past its end)
                await wait_until(lambda: status(3) == "planted", "block 3 planted", within=15)
                view = pooler.core.view(pooler.clock())
                assert view.work_at is not None and view.block_ends_at is not None
                faults.outage_for(
                    view.block_ends_at / 1000 + 1.0 - net.contract.now(), net.contract.now(), "refuse"
                )
                await wait_until(lambda: status(3) == "failed", "block 3's work reported failed", within=15)
                reason = status_of(pooler, 3, fid).reason
                assert "deadline" in reason or "next block" in reason, reason
                # ... and nothing else broke: block 4 opens (our late plant retries past the
                # outage), the miner gets its job and its shares are accepted
                await wait_until(
                    lambda: pooler.core.view(pooler.clock()).block == 4, "block 4 to open", within=15
                )
                stop.set()
                await task
                await miner.send({"type": "more"})
                job = await miner.next(Job)
                assert job.block == 4
                for nonce, _ in find_shares(job, 4, 1):
                    await miner.send({"type": "share", "job": job.job, "nonce": str(nonce)})
                    assert isinstance(await miner.next(Accepted), Accepted)
        # the loss was on the dashboard stream: the failed work of block 3 and the farmer's status
        assert any(e["kind"] == "work" and e["data"]["block"] == 3 and not e["data"]["ok"] for e in events)
        assert any(
            e["kind"] == "farmer" and e["data"]["block"] == 3 and e["data"]["status"] == "failed"
            for e in events
        )
        assert any(
            e["kind"] == "farmer" and e["data"]["block"] == 2 and e["data"]["status"] == "worked"
            for e in events
        )
        ops = pooler.metrics.block_ops
        assert ops.labels(op="work", outcome="ok")._value.get() >= 1
        # the devnet drops each connection once it read the request: to the Pooler every /work of
        # the outage is an unknown outcome, reconciled with the chain (not there: sent again)
        assert (
            ops.labels(op="work", outcome="missed")._value.get()
            + ops.labels(op="work", outcome="failed")._value.get()
            + ops.labels(op="work", outcome="unknown")._value.get()
            >= 2
        )
        assert pooler.runner.failures == 0


class SwitchableRpc:
    """The devnet's Soroban RPC behind a proxy that can be taken away and brought back."""

    def __init__(self, rpc: SorobanRpc) -> None:
        self.rpc = rpc
        self.mode = ""  # "" serves; "500": HTTP 500 to everything
        self.server: LoopbackServer | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.mode == "500":
            return web.Response(status=500, text="injected")
        return web.Response(body=orjson.dumps(self.rpc.dispatch(body)), content_type="application/json")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/", self.handle)
        self.server = LoopbackServer(app, port=self.port)
        url = await self.server.start()
        self.port = self.server.port
        return url

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


@contextlib.asynccontextmanager
async def switchable(net: Devnet) -> AsyncIterator[SwitchableRpc]:
    proxy = SwitchableRpc(net.rpc)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def test_chain_rpc_outage_keeps_the_last_block_backs_off_and_recovers() -> None:
    async with (
        Devnet(block_interval=30, ledger_seconds=1.0) as net,
        switchable(net) as proxy,
        running_system(
            net=net, block_interval=30, profile=ops_options, stellar_rpc_url=f"http://127.0.0.1:{proxy.port}"
        ) as system,
        aiohttp.ClientSession() as http,
    ):
        pooler = system.pooler
        reg = await register_miner(pooler.url, http=http)
        with dashboard(pooler) as events:
            async with Miner(ws_url(pooler), reg.token) as miner:
                job = await miner.next(Job)
                await wait_until(
                    lambda: pooler.monitor.healthy and pooler.observer.backend_ok is True,
                    "the chain and the Backend seen healthy",
                )
                for mode in ("refuse", "500"):
                    if mode == "refuse":
                        await proxy.stop()
                    else:
                        proxy.mode = "500"
                    await wait_until(lambda: not pooler.monitor.healthy, "the RPC seen down", within=5)
                    await wait_until(
                        lambda: pooler.monitor.consecutive_failures >= 3, "three failed polls", within=10
                    )
                    async with http.get(f"{pooler.url}/health/ready") as resp:
                        assert resp.status == 503 and (await resp.json())["checks"]["rpc"] == "down"
                    async with http.get(f"{pooler.url}/health") as resp:
                        health = await resp.json()
                    assert health["status"] == "degraded" and health["block"] == 1  # the last block, kept
                    assert pooler.monitor.last_state is not None
                    # miners keep working on the block they have
                    (nonce, _), *_ = find_shares(
                        job, job.share_zeros, 1, start=job.nonce_start + 1000 * len(mode)
                    )
                    await miner.send({"type": "share", "job": job.job, "nonce": str(nonce)})
                    assert isinstance(await miner.next(Accepted), Accepted)
                    if mode == "refuse":
                        await proxy.start()
                    else:
                        proxy.mode = ""
                    await wait_until(lambda: pooler.monitor.healthy, "the RPC seen back", within=15)
                    async with http.get(f"{pooler.url}/health/ready") as resp:
                        assert resp.status == 200
                await miner.send({"type": "stats"})
                assert (await miner.next(Stats)).accepted == 2
        chain = [e["data"] for e in events if e["kind"] == "chain"]
        assert [c["ok"] for c in chain] == [False, True, False, True]
        assert "connection failed" in chain[0]["detail"] and "HTTP 500" in chain[2]["detail"]
        assert "recovered" in chain[1]["detail"]
        errors = pooler.metrics.rpc_errors.labels(method="getLedgerEntries", kind="unavailable")._value.get()
        assert errors >= 6
        assert pooler.metrics.rpc_up._value.get() == 1
