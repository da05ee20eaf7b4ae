"""Two Pooler instances on one Redis, in this process: what a load balancer that is not sticky
needs (REST jobs from any instance) and what a dashboard of any instance sees (the group).

A REST miner's ``GET /miner/work`` and ``POST /miner/submit`` may land on different instances.
The issuing instance records the job in Redis before the miner has it; the other one reads it
there and checks the share against it, with the group's shared duplicate check. Two real
Poolers (uvicorn on loopback) in this process, a real redis-server, the devnet.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from pooler.app.service import Pooler
from pooler.backend import BackendClient
from pooler.devnet import Devnet
from pooler.errors import StoreError
from pooler.miners import MinerRecord, hash_token, new_token
from pooler.store.keys import Keys
from pooler.store.redis import miner_to_json
from tests.component.redis_support import rclient, redis_server  # noqa: F401
from tests.redis_server import RedisServer
from tests.support.system import (
    POOLER_ID,
    MinerSocket,
    System,
    bearer,
    find_nonce,
    register_miner,
    running_system,
)
from tests.support.wait import wait_until

BLOCK = 300  # no block turns over during the test: every job stays current
RECONNECT = 20.0  # seconds of resubmits (0.2 s apart) while the instances reconnect to a restarted Redis


@contextlib.asynccontextmanager
async def two_instances(
    redis_url: str, *, chunk_bits: int = 44
) -> AsyncIterator[tuple[Devnet, Pooler, Pooler]]:
    def instance(net: Devnet, name: str) -> contextlib.AbstractAsyncContextManager[System]:
        return running_system(
            net=net,
            block_interval=BLOCK,
            store="redis",
            redis_url=redis_url,
            pooler_instance_id=name,
            leader_lease_ms=2000,
            tuning={"snapshot_interval": 0.5, "chunk_bits": chunk_bits},
        )

    async with (
        Devnet(block_interval=BLOCK, ledger_seconds=1.0) as net,
        instance(net, "a") as a,  # each returns once it has seen the chain's block
        instance(net, "b") as b,
    ):
        yield net, a.pooler, b.pooler


async def _rest_job(
    http: aiohttp.ClientSession, pooler: Pooler, token: str, worker: str = "rig"
) -> dict[str, Any]:
    """``GET /miner/work`` on ``pooler``: a fresh job."""
    async with http.get(f"{pooler.url}/miner/work?worker={worker}", headers=bearer(token)) as resp:
        job = await resp.json()
        assert resp.status == 200, job
        return dict(job)


async def _registered_on_both(http: aiohttp.ClientSession, a: Pooler, b: Pooler, name: str) -> str:
    """A miner registered through ``a``, once ``b`` knows it too: its token."""
    token = (await register_miner(a.url, name, http=http)).token
    await wait_until(lambda: b.registry.authenticate(token) is not None, f"miner {name} to reach b")
    return token


async def _post_share(
    http: aiohttp.ClientSession, pooler: Pooler, token: str, job: dict[str, Any], nonce: int
) -> tuple[int, dict[str, Any]]:
    share = {"job": job["job"], "nonce": str(nonce)}
    async with http.post(f"{pooler.url}/miner/submit", json=share, headers=bearer(token)) as resp:
        return resp.status, dict(await resp.json())


async def test_work_from_one_instance_shares_to_another(
    redis_server: RedisServer,  # noqa: F811
    rclient: Any,  # noqa: F811  (flushes Redis for this test)
) -> None:
    async with two_instances(redis_server.url) as (_net, a, b), aiohttp.ClientSession() as http:
        token = await _registered_on_both(http, a, b, "rest-rig")
        job = await _rest_job(http, a, token)
        assert job["job"].startswith("a.")

        # the balancer sends the submit to b, which never issued this job
        nonce, _, zeros = find_nonce(job)
        status, answer = await _post_share(http, b, token, job, nonce)
        assert (status, answer["type"], answer["nonce"], answer["zeros"]) == (
            200,
            "accepted",
            str(nonce),
            zeros,
        )

        # the same nonce, now through a: the shared duplicate set refuses it
        status, answer = await _post_share(http, a, token, job, nonce)
        assert (status, answer["type"], answer.get("reason")) == (409, "rejected", "duplicate"), answer
        assert "another instance" in answer["message"]
        # and through b again: b holds the job now, and its own check refuses it
        status, answer = await _post_share(http, b, token, job, nonce)
        assert (status, answer["reason"]) == (409, "duplicate")

        # a second share of the same job to b, a nonce outside it, and a job nobody issued
        nonce2, _, _ = find_nonce(job, start=nonce + 1)
        status, answer = await _post_share(http, b, token, job, nonce2)
        assert (status, answer["type"]) == (200, "accepted")
        status, answer = await _post_share(http, b, token, job, int(job["nonceEnd"]))
        assert (status, answer["reason"]) == (400, "out-of-range")
        status, answer = await _post_share(http, b, token, {"job": "a.ffffff.1"}, 5)
        assert (status, answer["reason"]) == (410, "stale")

        # b counts the worker and both shares: stats of b's view
        async with http.get(f"{b.url}/miner/stats", headers=bearer(token)) as resp:
            stats = await resp.json()
        assert (stats["accepted"], stats["workers"]) == (2, 1)


async def test_another_miners_job_is_stale_even_when_its_record_is_found(
    redis_server: RedisServer,  # noqa: F811
    rclient: Any,  # noqa: F811
) -> None:
    async with two_instances(redis_server.url) as (_net, a, b), aiohttp.ClientSession() as http:
        owner = await _registered_on_both(http, a, b, "owner")
        thief = await _registered_on_both(http, a, b, "thief")
        job = await _rest_job(http, a, owner)
        nonce, _, _ = find_nonce(job)
        status, answer = await _post_share(http, b, thief, job, nonce)
        assert (status, answer["reason"]) == (410, "stale")
        status, answer = await _post_share(http, b, owner, job, nonce)
        assert (status, answer["type"]) == (200, "accepted")


async def test_a_submit_is_answered_503_unavailable_while_redis_is_down(
    redis_server: RedisServer,  # noqa: F811
    rclient: Any,  # noqa: F811
) -> None:
    async with two_instances(redis_server.url) as (_net, a, b), aiohttp.ClientSession() as http:
        token = await _registered_on_both(http, a, b, "rest-rig")
        job = await _rest_job(http, a, token)
        nonce, _, _ = find_nonce(job)
        await asyncio.to_thread(redis_server.stop)
        try:
            status, answer = await _post_share(http, b, token, job, nonce)
            assert (status, answer["type"], answer["code"], answer["reason"]) == (
                503,
                "rejected",
                30,
                "unavailable",
            )
            assert "submit again" in answer["message"]
            # a new REST job cannot be recorded for the other instances: none is handed out
            async with http.get(f"{a.url}/miner/work?worker=rig", headers=bearer(token)) as resp:
                body = await resp.json()
            assert (resp.status, body["error"], body["code"]) == (503, "unavailable", 30), body
            assert "could not record this job" in body["message"]
        finally:
            await asyncio.to_thread(redis_server.start)
        # Redis is back (its AOF kept the job): the same share is looked up and counted; it was
        # never held against the miner. The client reconnects on its next command.
        answers: list[tuple[int, dict[str, Any]]] = []

        async def resubmitted() -> tuple[int, dict[str, Any]] | None:
            answers.append(await _post_share(http, b, token, job, nonce))
            return answers[-1] if answers[-1][0] != 503 else None

        status, answer = await wait_until(
            resubmitted, lambda: f"a resubmit answered (answers: {answers[-3:]})", within=RECONNECT, step=0.2
        )
        assert (status, answer["type"]) == (200, "accepted"), answers


async def test_a_dashboard_of_any_instance_sees_the_groups_totals(
    redis_server: RedisServer,  # noqa: F811
    rclient: Any,  # noqa: F811
) -> None:
    async with two_instances(redis_server.url) as (_net, a, b), aiohttp.ClientSession() as http:
        for name, pooler in (("on-a", a), ("on-b", b)):  # one REST worker on each instance
            await _rest_job(http, pooler, (await register_miner(pooler.url, name, http=http)).token, "w")
        events = f"ws://127.0.0.1:{b.port}/ws/events"
        async with connect(events, open_timeout=30, close_timeout=2) as ws:
            seen: list[dict[str, Any]] = []
            while True:
                frame = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame["kind"] in ("summary", "snapshot"):
                    data = frame["data"] if frame["kind"] == "summary" else frame["data"]["summary"]
                    seen.append(data)
                    if data.get("instances") == 2 and data.get("workers") == 2:
                        break
                    assert len(seen) < 60, seen[-3:]  # 0.5 s summaries: 30 s of them at most
        assert data["miners"] == 2
        assert data["instance"] == {
            "id": "b",
            "miners": 1,
            "workers": 1,
            "hashrate": data["instance"]["hashrate"],
            "accepted": 0,
            "rejected": 0,
        }


async def test_many_sockets_of_one_farmer_wait_for_the_next_chunk_instead_of_failing(
    redis_server: RedisServer,  # noqa: F811
    rclient: Any,  # noqa: F811
) -> None:
    """Chunks of 2**20 nonces and ranges of 2**32: every socket takes what is left of a chunk, so
    each socket after the first waits for a refill from Redis; none is told the space is used up."""
    async with (
        two_instances(redis_server.url, chunk_bits=20) as (_net, a, _b),
        aiohttp.ClientSession() as http,
    ):
        miner = await register_miner(a.url, "gpu-farm", http=http)
        sockets = [MinerSocket.open(f"ws://127.0.0.1:{a.port}/ws/miner") for _ in range(5)]
        async with contextlib.AsyncExitStack() as stack:
            opened = [await stack.enter_async_context(s) for s in sockets]
            jobs: list[dict[str, Any]] = []
            for n, ws in enumerate(opened):
                _welcome, job = await ws.hello(miner.token, f"gpu{n}")
                assert job["clean"], job
                jobs.append(job)
        ranges = sorted((int(j["nonceStart"]), int(j["nonceEnd"])) for j in jobs)
        assert all(hi <= lo2 for (_, hi), (lo2, _) in itertools.pairwise(ranges)), ranges  # disjoint
        assert a.cluster is not None and a.cluster.allocator.chunks >= 5


async def test_metrics_of_the_instances_say_who_leads(
    redis_server: RedisServer,  # noqa: F811
    rclient: Any,  # noqa: F811
) -> None:
    async with two_instances(redis_server.url) as (_net, a, b), aiohttp.ClientSession() as http:

        async def scrape(pooler: Pooler) -> dict[str, float]:
            async with http.get(f"{pooler.url}/metrics") as resp:
                text = await resp.text()
            return {
                sample.name + str(sorted(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name.startswith("pooler_cluster_")
            }

        await register_miner(a.url, "chunky", http=http)  # a draws its farmer's nonce chunk for the block
        scraped: list[tuple[dict[str, float], dict[str, float]]] = []

        async def settled() -> tuple[dict[str, float], dict[str, float]] | None:
            scraped.append((await scrape(a), await scrape(b)))
            ma, mb = scraped[-1]
            both = ma.get("pooler_cluster_instances[]") == mb.get("pooler_cluster_instances[]") == 2
            return scraped[-1] if both else None

        # the gauges follow the periodic snapshot
        ma, mb = await wait_until(
            settled, lambda: f"both instances' gauges to count 2 (last: {scraped[-1:]})", step=0.2
        )
        assert ma["pooler_cluster_instances[]"] == mb["pooler_cluster_instances[]"] == 2, scraped[-1]
        assert ma["pooler_cluster_leader[]"] + mb["pooler_cluster_leader[]"] == 1
        leader = ma if ma["pooler_cluster_leader[]"] == 1 else mb
        assert leader["pooler_cluster_epoch[]"] > 0
        assert leader["pooler_cluster_events[('kind', 'leader-term')]"] == 1
        assert ma["pooler_cluster_events[('kind', 'nonce-chunk')]"] >= 1


async def test_a_miner_registered_elsewhere_a_moment_ago_is_known_at_once(
    redis_server: RedisServer,  # noqa: F811
    rclient: Any,  # noqa: F811
) -> None:
    """Registered (in Redis) but not announced yet: b reads the miners on the unknown token."""
    async with two_instances(redis_server.url) as (net, _a, b), aiohttp.ClientSession() as http:
        async with BackendClient(net.backend_url, 5.0, 1) as backend:
            farmer = await backend.register_farmer(POOLER_ID, 0.5)
        tokens = [new_token(), new_token()]
        for n, token in enumerate(tokens):  # what save_miner writes, without its announcement
            record = MinerRecord(
                f"m_late{n}", farmer["farmerId"], farmer["custodialWallet"], f"late{n}", hash_token(token)
            )
            await rclient.hset(Keys("kp").miners, record.miner_id, miner_to_json(record))
        assert b.registry.authenticate(tokens[0]) is None
        job = await _rest_job(http, b, tokens[0])  # REST: looked up, admitted, served
        assert job["farmer"] == farmer["custodialWallet"]
        async with MinerSocket.open(f"ws://127.0.0.1:{b.port}/ws/miner") as ws:
            welcome, _job = await ws.hello(tokens[1], "w")  # admitted by the same read of Redis
        assert welcome["minerId"] == "m_late1"
        async with http.get(f"{b.url}/miner/work", headers=bearer(new_token())) as resp:
            assert resp.status == 401  # a token nobody registered is still refused


async def test_a_resync_during_a_registration_does_not_revoke_the_new_miner(
    redis_server: RedisServer,  # noqa: F811
    rclient: Any,  # noqa: F811
) -> None:
    """The node re-reads the miners when it (re)subscribes, and drops those Redis no longer has
    (revoked elsewhere while it was not listening). A miner registered here must therefore never
    be known here before Redis has it: a resync in between would revoke it for good (a join
    never re-admits a revoked id). Found by the cluster benchmark, which registers its miners
    right after start-up. A registration whose write to Redis fails leaves nothing behind."""
    async with two_instances(redis_server.url) as (_net, a, _b):
        assert a.cluster is not None
        store = a.store
        assert store is not None
        seen_at_save: list[bool] = []
        save = store.save_miner

        async def save_then_resync(record: MinerRecord) -> None:
            seen_at_save.append(a.registry.by_id(record.miner_id) is not None)
            assert a.cluster is not None
            await a.cluster.membership.sync_miners()  # a resync while the record is on its way to Redis
            await save(record)

        store.save_miner = save_then_resync  # type: ignore[method-assign]
        record, token = await a.register_miner("racing", 0.5, None)
        assert seen_at_save == [False]  # not known here while it was not in Redis
        assert a.registry.authenticate(token) is record  # and known once it is

        store.save_miner = save  # type: ignore[method-assign]
        await asyncio.to_thread(redis_server.stop)
        try:
            with pytest.raises(StoreError):
                await a.register_miner("lost", 0.5, None)
        finally:
            await asyncio.to_thread(redis_server.start)
        assert [r.name for r in a.registry.records()] == ["racing"]
