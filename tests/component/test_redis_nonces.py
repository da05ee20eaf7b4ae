"""Nonce chunks INCRBY'd in a real Redis: ranges of two instances never overlap."""

from __future__ import annotations

import asyncio
import itertools
import random

import redis.asyncio as aioredis

from pooler.cluster.nonces import RangeAllocator
from pooler.store.keys import Keys
from tests.component.redis_support import rclient, redis_server  # noqa: F401
from tests.support.wait import wait_until

KEYS = Keys("kp")


async def _settle(*allocators: RangeAllocator) -> None:
    """Until every refill in flight has landed."""
    await wait_until(lambda: not any(a._tasks for a in allocators), "the nonce refills to land")


async def test_two_instances_draw_disjoint_ranges(rclient: aioredis.Redis) -> None:  # noqa: F811
    a = RangeAllocator(rclient, KEYS, chunk_bits=20, ttl=60)
    b = RangeAllocator(rclient, KEYS, chunk_bits=20, ttl=60)
    farmers = ["f1", "f2"]
    await a.prefetch(7, farmers)
    await b.prefetch(7, farmers)
    rng = random.Random(4)
    taken: dict[str, list[tuple[int, int]]] = {f: [] for f in farmers}
    for _ in range(400):
        alloc = rng.choice((a, b))
        fid = rng.choice(farmers)
        got = alloc.counter(7, fid).take(rng.randrange(1, 1 << 17))
        if got is None:  # the refill is in flight: let it land, as the event loop would
            await _settle(a, b)
            got = alloc.counter(7, fid).take(1 << 10)
        assert got is not None
        taken[fid].append(got)
        await asyncio.sleep(0)  # a turn of the loop between draws, as between two miners' requests
    await _settle(a, b)
    for fid, ranges in taken.items():
        ranges.sort()
        for (s1, e1), (s2, _e2) in itertools.pairwise(ranges):
            assert s1 < e1 <= s2, f"{fid}: [{s1}, {e1}) overlaps a range starting at {s2}"
    assert a.chunks + b.chunks > 4  # refills happened: several chunks per instance
    assert await rclient.pttl(KEYS.nonce(7, "f1")) > 0  # counters expire with the block
    await a.aclose()
    await b.aclose()


async def test_no_chunk_no_range_until_redis_grants_one(rclient: aioredis.Redis) -> None:  # noqa: F811
    a = RangeAllocator(rclient, KEYS, chunk_bits=24, ttl=60)
    counter = a.counter(3, "f")
    assert counter.take(100) is None  # never a range another instance could also hash
    await _settle(a)
    assert counter.take(100) == (0, 100)
    await a.prefetch(3, ["f"])  # still has nonces: nothing drawn
    assert a.chunks == 1
    b = RangeAllocator(rclient, KEYS, chunk_bits=24, ttl=60)
    await b.prefetch(3, ["f"])
    assert b.counter(3, "f").take(10) == (1 << 24, (1 << 24) + 10)
    await a.aclose()
    await b.aclose()
