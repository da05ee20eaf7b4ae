"""Three Pooler processes on one Redis and a devnet, one block per scenario (one setup keeps the
suite fast): a block cycle across instances; the leader killed mid-block; the next leader
partitioned (SIGSTOP past its lease) and resumed; Redis restarted mid-block.

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
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError

from tests.e2e.cluster_support import (
    ASK_AGAIN,
    BLOCK,
    LEASE_MS,
    Instance,
    WsMiner,
    check_block,
    cluster_settings,
    leader,
    past,
    planted_after,
    redis_json,
    roles,
)
from tests.redis_server import RedisServer
from tests.support.processes import start_devnet, start_pooler
from tests.support.system import register_miner
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e


async def test_block_cycle_leader_kill_partition_and_redis_restart(tmp_path: Path) -> None:
    with RedisServer() as rs:
        devnet = await start_devnet(tmp_path, BLOCK, ledger_seconds=0.5)
        chain = devnet.env
        insts: list[Instance] = []
        # the test's reads are idempotent: retried across the Redis restart (the Pooler's commits are not)
        retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), 20)
        r = aioredis.Redis.from_url(
            rs.url, decode_responses=True, retry=retry, retry_on_error=[ConnectionError]
        )
        miner_tasks: list[asyncio.Task[None]] = []
        miners: list[WsMiner] = []
        try:
            names = ("a", "b", "c")
            procs = await asyncio.gather(
                *(start_pooler(tmp_path, cluster_settings(chain, rs.url, n), name=n) for n in names)
            )
            insts = [Instance(n, proc) for n, proc in zip(names, procs, strict=True)]
            by_url = {i.url: i.name for i in insts}
            async with aiohttp.ClientSession() as session:
                first = await wait_until(
                    lambda: leader(session, insts), "a first leader", within=15, step=0.1, ignoring=ASK_AGAIN
                )
                followers = [i for i in insts if i is not first]
                # Registered on two different instances; one miner starts on the leader, one on a follower.
                r1 = await register_miner(followers[0].url, "one", stake_percentage=0.5, http=session)
                r2 = await register_miner(followers[1].url, "two", stake_percentage=0.5, http=session)
                farmers = {r1.farmer: r1.farmer_id, r2.farmer: r2.farmer_id}
                m1 = WsMiner(r1.token, [first.url, followers[0].url, followers[1].url])
                m2 = WsMiner(r2.token, [followers[1].url, followers[0].url])
                miners = [m1, m2]
                ids = {m1.token: r1.miner_id, m2.token: r2.miner_id, **by_url}
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

                b0 = await wait_until(harvested, "a harvested block", within=30, step=0.1, ignoring=ASK_AGAIN)
                await check_block(r, miners, farmers, b0, ids)

                # 2. Kill the leader while block B1 is being mined (planted, bests acknowledged).
                async def mining_block() -> int | None:
                    h = await first.health(session)
                    blk = h["block"]
                    planted = await r.hgetall(f"kp:status:{blk}")
                    got = {a.farmer for m in miners for a in m.acks if a.block == blk and a.best}
                    ok = h["phase"] == "mining" and len(planted) == 2 and len(got) == 2 and blk > b0
                    return blk if ok else None

                b1 = await wait_until(
                    mining_block,
                    "a planted block with bests from both miners",
                    within=20,
                    step=0.1,
                    ignoring=ASK_AGAIN,
                )
                first.proc.send_signal(signal.SIGKILL)
                second = await wait_until(
                    lambda: leader(session, insts),
                    "a new leader after the kill",
                    within=15,
                    step=0.1,
                    ignoring=ASK_AGAIN,
                )
                assert second is not first
                await wait_until(
                    lambda: past(r, b1), f"block {b1} over", within=20, step=0.1, ignoring=ASK_AGAIN
                )
                await check_block(r, miners, farmers, b1, ids)
                assert (
                    m1.connects[0] == first.url and len(m1.connects) >= 2
                )  # it resumed elsewhere with its token

                # 3. Partition the new leader: paused past its lease while block B2 is mined.
                b2 = await wait_until(
                    lambda: planted_after(r, second, session, b1, miners),
                    "a planted block under the new leader",
                    within=20,
                    step=0.1,
                    ignoring=ASK_AGAIN,
                )
                calls_before = (await second.health(session))["cluster"]["backendCalls"]
                second.proc.send_signal(signal.SIGSTOP)
                third = await wait_until(
                    lambda: leader(session, insts, but=frozenset({second.name})),
                    "a leader while the old one is paused",
                    within=15,
                    step=0.1,
                    ignoring=ASK_AGAIN,
                )
                # the partition lasts a lease more (a scenario's length, not a wait for a state)
                await asyncio.sleep(LEASE_MS / 1000)
                second.proc.send_signal(signal.SIGCONT)
                await wait_until(
                    lambda: past(r, b2), f"block {b2} over", within=20, step=0.1, ignoring=ASK_AGAIN
                )
                status = await wait_until(
                    lambda: _all_answer(session, insts),
                    "every instance answering",
                    within=10,
                    step=0.1,
                    ignoring=ASK_AGAIN,
                )
                assert status[second.name]["role"] == "follower"
                assert status[second.name]["backendCalls"] == calls_before  # it made no call after waking
                assert len([n for n, s in status.items() if s["role"] == "leader"]) == 1
                await check_block(r, miners, farmers, b2, ids)

                # 4. Redis restarts (SIGTERM, then started again on its AOF) while block B3 is mined.
                b3 = await wait_until(
                    lambda: planted_after(r, third, session, b2, miners),
                    "a planted block",
                    within=20,
                    step=0.1,
                    ignoring=ASK_AGAIN,
                )
                acked = [a for m in miners for a in m.acks if a.block == b3 and a.best]
                rs.restart()
                restarted_at = time.time()
                table = await redis_json(r, f"kp:best:{b3}")  # every best acknowledged before is still there
                for a in acked:
                    assert table[farmers[a.farmer]]["zeros"] >= a.zeros
                await wait_until(
                    lambda: past(r, b3), f"block {b3} over", within=20, step=0.1, ignoring=ASK_AGAIN
                )
                await check_block(r, miners, farmers, b3, ids)
                # ... and the group goes on: the next block is planted, shares are acknowledged again
                await wait_until(
                    lambda: planted_after(r, third, session, b3, miners),
                    "a planted block after the restart",
                    within=20,
                    step=0.1,
                    ignoring=ASK_AGAIN,
                )
                for m in miners:
                    assert [a for a in m.acks if a.at > restarted_at + 1], (
                        f"no ack after the restart: {m.drops}"
                    )
                status = await wait_until(
                    lambda: _all_answer(session, insts),
                    "every instance answering",
                    within=10,
                    step=0.1,
                    ignoring=ASK_AGAIN,
                )
                assert sorted(s["role"] for s in status.values()) == ["follower", "leader"]
                assert not [e for m in miners for e in m.errors], [e for m in miners for e in m.errors]
        except BaseException:
            for inst in [*insts]:
                print(f"==== {inst.name}\n{inst.proc.tail()}")
            for t in miner_tasks:
                print("miner task:", t)
            for w in miners:
                print("miner:", w.connects, w.drops[-5:], w.errors[-5:], w.rejects[-5:])
            raise
        finally:
            for task in miner_tasks:
                task.cancel()
            await asyncio.gather(*miner_tasks, return_exceptions=True)
            await r.aclose()
            for inst in insts:
                await inst.proc.kill()
            await devnet.stop()


async def _all_answer(
    session: aiohttp.ClientSession, insts: list[Instance]
) -> dict[str, dict[str, Any]] | None:
    """Every live instance's cluster status, or None while one of them does not answer."""
    status = await roles(session, insts)
    live = [i for i in insts if i.proc.running]
    return status if len(status) == len(live) else None
