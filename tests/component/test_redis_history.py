"""Share and block history in the Redis store: per-instance buckets summed on load, expiry, a kill -9."""

from __future__ import annotations

import redis.asyncio as aioredis

from pooler.cluster.lease import LeaderLease
from pooler.core.effects import Persist
from pooler.core.records import BlockHistory, FarmerOfBlock, HistoryBucket
from pooler.core.rewards import BlockState as ChainBlock
from pooler.stats.history import HOUR, HOUR_KEEP, MINUTE, MINUTE_KEEP
from pooler.store.keys import Keys
from pooler.store.redis import RedisStore
from tests.redis_server import RedisServer

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
