"""Share and block history in the Redis store: per-instance buckets summed on load, expiry, a kill -9."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis

from pooler.cluster.lease import LeaderLease
from pooler.core.effects import Persist
from pooler.core.records import BlockHistory, FarmerOfBlock, HistoryBucket
from pooler.core.rewards import BlockState as ChainBlock
from pooler.devnet import Devnet
from pooler.stats.history import HOUR, HOUR_KEEP, MINUTE, MINUTE_KEEP
from pooler.store.keys import Keys
from pooler.store.redis import RedisStore
from tests.component.redis_support import rclient, redis_server  # noqa: F401
from tests.redis_server import RedisServer
from tests.support.miners import MinerLog, ws_miner
from tests.support.system import System, register_miner, running_system
from tests.support.wait import wait_until

KEYS = Keys("kh")
T = 1_700_000_040


def _store(client: aioredis.Redis, instance: str) -> RedisStore:
    return RedisStore(client, KEYS, instance=instance, block_ttl=3600, clock=lambda: float(T))


def _bucket(width: int, accepted: int, reason: str = "invalid-hash") -> Persist:
    start = T - T % width
    return Persist(
        HistoryBucket("worker", "m1/rig", width, start, accepted, 1, ((reason, 2),), 16 * accepted)
    )


async def test_buckets_of_two_instances_sum_and_survive_a_killed_redis() -> None:
    with RedisServer() as server:
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        a, b = _store(client, "a"), _store(client, "b")
        await a.commit([_bucket(MINUTE, 3), _bucket(HOUR, 3)])
        await a.commit([_bucket(MINUTE, 5), _bucket(HOUR, 5)])  # absolute: the newest stands
        await b.commit([_bucket(MINUTE, 2, "low-zeros"), _bucket(HOUR, 2, "low-zeros")])
        lease = LeaderLease(client, KEYS, "a", 5.0)
        assert await lease.try_acquire() and lease.token is not None
        block = BlockHistory(
            9,
            T,
            planted=2,
            staked=50,
            harvest_total=7,
            farmers=(FarmerOfBlock("f1", True, 6, 3.5, True, 6, 7),),
            chain=ChainBlock(9, 1, 30, 5, 2**62, 3, 8, 50, 2**70),  # on-chain figures, exact
        )
        await a.commit_cycle([Persist(block)], lease.token)
        ttl = await client.pttl(f"{KEYS.base}hist:{MINUTE}:{T - T % MINUTE}")
        assert MINUTE_KEEP * 1000 < ttl <= (MINUTE_KEEP + MINUTE) * 1000  # Redis prunes the minutes
        assert await client.pttl(f"{KEYS.base}hist:{HOUR}:{T - T % HOUR}") > HOUR_KEEP * 1000 - 10_000
        await client.aclose()
        server.stop(kill=True)  # SIGKILL: only what appendfsync always put on disk remains
        server.start()
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        loaded = await _store(client, "c").load_history()
        await client.aclose()
    buckets = {r.width: r for r in loaded if isinstance(r, HistoryBucket)}
    for width in (MINUTE, HOUR):
        got = buckets[width]
        assert (got.accepted, got.stale, got.work) == (7, 2, 16 * 7)
        assert got.rejected == (("invalid-hash", 2), ("low-zeros", 2))
    assert [r for r in loaded if isinstance(r, BlockHistory)] == [block]


# ---------------------------------------------------------------- a group: the leader writes the blocks

GROUP_BLOCK = 8  # seconds: plant -> work -> harvest of a few blocks within the test


def _member(net: Devnet, redis_url: str, name: str) -> contextlib.AbstractAsyncContextManager[System]:
    return running_system(
        net=net,
        block_interval=GROUP_BLOCK,
        store="redis",
        redis_url=redis_url,
        pooler_instance_id=name,
        leader_lease_ms=2000,
        tuning={"snapshot_interval": 0.5},
    )


def _leading(system: System) -> bool:
    group = system.pooler.cluster
    return group is not None and group.leadership.leading


def _harvested(system: System, block: int) -> BlockHistory | None:
    b = system.pooler.parts.history.blocks.get(block)
    return b if b is not None and b.harvest_total is not None else None


async def test_the_leaders_cycle_writes_block_history_and_the_next_leader_goes_on(
    redis_server: RedisServer,  # noqa: F811
    rclient: Any,  # noqa: F811  (flushes Redis for this test)
) -> None:
    """#15: in a group, plant/work/harvest happen in the leader's cycle runner; its history (the
    block summaries, the chain's Block(N)) is written by it, and a new leader carries on the
    summaries the old one wrote (a block planted under one leader and harvested under the next)."""
    async with contextlib.AsyncExitStack() as stack:
        net = await stack.enter_async_context(Devnet(block_interval=GROUP_BLOCK, ledger_seconds=1.0))
        members = {}
        for name in ("a", "b"):  # b's own stack: it stops before a, and a takes over
            inner = await stack.enter_async_context(contextlib.AsyncExitStack())
            members[name] = (await inner.enter_async_context(_member(net, redis_server.url, name)), inner)
        a, b = members["a"][0], members["b"][0]
        await wait_until(lambda: _leading(a) or _leading(b), "a leader")
        leader, follower = (a, b) if _leading(a) else (b, a)
        leader_stack = members["a" if leader is a else "b"][1]
        reg = await register_miner(follower.url, "rig")
        log, stop = MinerLog("rig"), asyncio.Event()
        miner = asyncio.create_task(ws_miner(follower.ws_url, reg.token, log, stop))
        try:
            opened = follower.block()
            assert opened is not None
            first = opened + 1  # the first block planted with this farmer
            await wait_until(
                lambda: _harvested(leader, first) is not None, f"block {first}'s harvest", within=60
            )
            done = _harvested(leader, first)
            assert done is not None

            async def stored_is_live(system: System, writer: System, block: int) -> bool:
                """What Redis holds for ``block`` (read through ``system``) is ``writer``'s summary:
                the writer commits after it folds, so wait for its commit."""
                store = system.pooler.store
                assert isinstance(store, RedisStore)
                return await store.load_block_history([block]) == [writer.pooler.parts.history.blocks[block]]

            # the leader wrote it, the follower did not overwrite it
            await wait_until(lambda: stored_is_live(follower, leader, first), f"block {first} in Redis")
            assert done.planted >= 1 and done.work_ok is True and done.chain is not None
            assert done.chain.normalized_total > 0  # Block(N) read after our work
            [mine] = [f for f in done.farmers if f.farmer_id == reg.farmer_id]
            assert mine.planted and mine.worked and mine.best_zeros >= 1

            # the leader stops mid-block; the follower leads and goes on from what it wrote
            open_block = leader.block()
            assert open_block is not None
            await wait_until(
                lambda: (leader.pooler.parts.history.blocks.get(open_block) or BlockHistory(0)).planted >= 1,
                f"block {open_block} planted",
            )
            await leader_stack.aclose()
            await wait_until(lambda: _leading(follower), "the follower to lead", within=30)
            await wait_until(
                lambda: _harvested(follower, open_block) is not None,
                f"block {open_block}'s harvest",
                within=60,
            )
            await wait_until(
                lambda: stored_is_live(follower, follower, open_block), f"block {open_block} in Redis"
            )
            carried = follower.pooler.parts.history.blocks[open_block]
            assert carried.planted >= 1 and carried.harvest_total is not None  # planted by a, harvested by b
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(miner, 10)
