"""Three Pooler processes on one Redis and a devnet: a block cycle across instances, the leader
killed mid-block, then the next leader partitioned (SIGSTOP past its lease) and resumed.

What is checked is what the chain's Backend accepted (the leaders' /work outcomes, recorded in
Redis with the Backend's per-farmer results) against what the miners were told (every
``accepted`` they received): no acknowledged best is missing from the work of its block, and no
acknowledged share is missing from the durable tallies. No timing is asserted: a takeover that
came too late would show as a block without work.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.e2e.cluster_support import (
    LEASE_MS,
    Instance,
    WsMiner,
    redis_json,
    register,
    start_devnet,
    start_pooler,
    work_calls,
    worked_zeros,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e


async def wait_for(check: Callable[[], Awaitable[Any]], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            got = await check()
        except (aiohttp.ClientError, TimeoutError):
            got = None  # an instance busy (2 cores) or going away: ask again
        if got:
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within} s: {what}")


async def roles(
    session: aiohttp.ClientSession, insts: list[Instance], skip: frozenset[str] = frozenset()
) -> dict[str, dict[str, Any]]:
    out = {}
    for inst in insts:
        if inst.proc.popen.poll() is None and inst.name not in skip:
            try:
                out[inst.name] = (await inst.health(session))["cluster"]
            except (aiohttp.ClientError, TimeoutError):
                pass  # paused or gone
    return out


async def leader(
    session: aiohttp.ClientSession, insts: list[Instance], but: frozenset[str] = frozenset()
) -> Instance | None:
    status = await roles(session, insts, but)
    leaders = [i for i in insts if status.get(i.name, {}).get("role") == "leader"]
    return leaders[0] if len(leaders) == 1 else None


def max_acked_best(miners: list[WsMiner], block: int, farmer: str, before: float) -> int:
    return max(
        (
            a.zeros
            for m in miners
            for a in m.acks
            if a.block == block and a.farmer == farmer and a.best and a.at < before
        ),
        default=-1,
    )


async def check_block(
    r: aioredis.Redis, miners: list[WsMiner], farmers: dict[str, str], block: int, ids: dict[str, str]
) -> None:
    """Every best acknowledged before the block's workAt is in (or beaten by) the work the Backend took."""
    worked = worked_zeros(await work_calls(r), block)
    work_at = min(a.work_at for m in miners for a in m.acks if a.block == block)
    for address, fid in farmers.items():
        acked = max_acked_best(miners, block, address, work_at)
        mine = [
            (a.block, a.zeros, a.best, round(a.at - work_at, 2))
            for m in miners
            for a in m.acks
            if a.farmer == address
        ]
        assert acked >= 0, (
            f"no best of farmer {fid} acknowledged before workAt of block {block}: {mine[:3]} {mine[-3:]}"
        )
        assert worked.get(fid, -1) >= acked, (
            f"block {block}: farmer {fid} worked {worked.get(fid)} < acked {acked}"
        )
    # every acknowledged share is in the durable tally of the instance that acknowledged it
    tallies = await redis_json(r, f"kp:tally:{block}")
    for m in miners:
        counts: dict[str, int] = {}
        for a in m.acks:
            if a.block == block:
                counts[a.instance] = counts.get(a.instance, 0) + 1
        for url, n in counts.items():
            key = f'["{ids[m.token]}","{m.name}","{ids[url]}"]'
            assert tallies[key][0] >= n, f"block {block}: {key} durable {tallies[key][0]} < acknowledged {n}"


async def test_block_cycle_leader_kill_and_partition(tmp_path: Path) -> None:
    with RedisServer() as rs:
        devnet, chain = await start_devnet(tmp_path)
        insts: list[Instance] = []
        r = aioredis.Redis.from_url(rs.url, decode_responses=True)
        miner_tasks: list[asyncio.Task[None]] = []
        miners: list[WsMiner] = []
        try:
            from tests.e2e.cluster_support import pooler_env

            insts = list(
                await asyncio.gather(
                    *(start_pooler(n, pooler_env(chain, rs.url, n), tmp_path) for n in ("a", "b", "c"))
                )
            )
            by_url = {i.url: i.name for i in insts}
            async with aiohttp.ClientSession() as session:
                first = await wait_for(lambda: leader(session, insts), 15, "a first leader")
                followers = [i for i in insts if i is not first]
                # Registered on two different instances; one miner starts on the leader, one on a follower.
                r1 = await register(session, followers[0], "one")
                r2 = await register(session, followers[1], "two")
                farmers = {r1["farmer"]: r1["farmerId"], r2["farmer"]: r2["farmerId"]}
                m1 = WsMiner(r1["token"], [first.url, followers[0].url, followers[1].url])
                m2 = WsMiner(r2["token"], [followers[1].url, followers[0].url])
                miners = [m1, m2]
                ids = {m1.token: r1["minerId"], m2.token: r2["minerId"], **by_url}
                until = time.time() + 80
                miner_tasks = [asyncio.create_task(m.run(until)) for m in miners]

                # 1. A full cycle across instances: block B0 planted, worked with both farmers' bests
                # (one found through a follower), and harvested.
                async def harvested() -> int | None:
                    # a block both miners mined from its start (they joined during an earlier one)
                    joined = [min((a.block for a in m.acks), default=None) for m in miners]
                    if None in joined:
                        return None
                    for _id, f in await r.xrange("kp:calls"):
                        blk = int(f["block"])
                        if f["op"] == "harvest" and '"response"' in f["record"] and blk > max(joined):  # type: ignore[type-var]
                            return blk
                    return None

                b0 = await wait_for(harvested, 30, "a harvested block")
                await check_block(r, miners, farmers, b0, ids)

                # 2. Kill the leader while block B1 is being mined (planted, bests acknowledged).
                async def mining_block() -> int | None:
                    h = await first.health(session)
                    blk = h["block"]
                    planted = await r.hgetall(f"kp:status:{blk}")
                    got = {a.farmer for m in miners for a in m.acks if a.block == blk and a.best}
                    ok = h["phase"] == "mining" and len(planted) == 2 and len(got) == 2 and blk > b0
                    return blk if ok else None

                b1 = await wait_for(mining_block, 20, "a planted block with bests from both miners")
                first.proc.signal(signal.SIGKILL)
                second = await wait_for(lambda: leader(session, insts), 15, "a new leader after the kill")
                assert second is not first
                await wait_for(lambda: _past(r, b1), 20, f"block {b1} over")
                await check_block(r, miners, farmers, b1, ids)
                assert (
                    m1.connects[0] == first.url and len(m1.connects) >= 2
                )  # it resumed elsewhere with its token

                # 3. Partition the new leader: paused past its lease while block B2 is mined.
                b2 = await wait_for(
                    lambda: _planted_after(r, second, session, b1), 20, "a planted block under the new leader"
                )
                calls_before = (await second.health(session))["cluster"]["backendCalls"]
                second.proc.signal(signal.SIGSTOP)
                third = await wait_for(
                    lambda: leader(session, insts, but=frozenset({second.name})),
                    15,
                    "a leader while the old one is paused",
                )
                await asyncio.sleep(LEASE_MS / 1000)
                second.proc.signal(signal.SIGCONT)
                await wait_for(lambda: _past(r, b2), 20, f"block {b2} over")
                status = await roles(session, insts)
                assert status[second.name]["role"] == "follower"
                assert status[second.name]["backendCalls"] == calls_before  # it made no call after waking
                assert [n for n, s in status.items() if s["role"] == "leader"] == [third.name]
                await check_block(r, miners, farmers, b2, ids)
                assert not [e for m in miners for e in m.errors], [e for m in miners for e in m.errors]
        except BaseException:
            for inst in [*insts]:
                print(f"==== {inst.name}\n{inst.proc.tail()}")
            for m in miner_tasks:
                print("miner task:", m)
            for w in miners:
                print("miner:", w.connects, w.drops[-5:], w.errors[-5:], w.rejects[-5:])
            raise
        finally:
            for task in miner_tasks:
                task.cancel()
            await asyncio.gather(*miner_tasks, return_exceptions=True)
            await r.aclose()
            for inst in insts:
                inst.proc.stop()
            devnet.stop()


async def _past(r: aioredis.Redis, block: int) -> bool:
    """A newer block exists (so ``block``'s work phase is over)."""
    newest = await r.zrange("kp:blocks", -1, -1, withscores=True)
    return bool(newest) and int(newest[0][1]) > block


async def _planted_after(
    r: aioredis.Redis, inst: Instance, session: aiohttp.ClientSession, after: int
) -> int | None:
    h = await inst.health(session)
    blk = h["block"]
    if blk is None or blk <= after or h["phase"] != "mining":
        return None
    return blk if len(await r.hgetall(f"kp:status:{blk}")) == 2 else None
