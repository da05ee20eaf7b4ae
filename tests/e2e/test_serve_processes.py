"""``pooler serve`` with PROCESSES=2: two group members on one port (SO_REUSEPORT), one supervisor.

Real processes on loopback: a redis-server, ``pooler devnet``, and ``pooler serve`` whose
supervisor starts two children (pooler/supervisor.py). WebSocket miners all connect to the one
port; the kernel spreads them over the two processes, which a job id shows (it starts with the
issuing instance's name). What is checked: connections and plain HTTP requests land on both
processes (/health's instance, /metrics' ``pooler_info`` label); every ``accepted`` is in the
durable tally of the process that sent it and its nonce is in the shared duplicate set, and no
nonce was accepted twice; SIGTERM to the supervisor stops everything with status 0 and leaves none
of its children. With MINER_SOCKET=asgi only (the supervisor does not depend on it): either
process's /health has the group's workers; a child killed with SIGKILL is restarted (new pid, same
instance name) and serves again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.e2e.cluster_support import ASK_AGAIN, BLOCK, WsMiner, cluster_settings, redis_json
from tests.redis_server import RedisServer
from tests.support.processes import PoolerProcess, start_devnet, start_pooler
from tests.support.system import register_miner
from tests.support.wait import WaitTimeout, wait_until

pytestmark = pytest.mark.e2e

NAME = "cores"  # POOLER_INSTANCE_ID: the processes are cores-1 and cores-2
INSTANCES = {f"{NAME}-1", f"{NAME}-2"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def children(output: str) -> list[int]:
    """The pids of the supervisor's ``listening on`` line."""
    found = re.search(r"processes, pids ([\d, ]+);", output)
    assert found is not None, output
    return [int(p) for p in found.group(1).split(", ")]


async def instances_answering(url: str, want: set[str], tries: int = 60) -> dict[str, dict[str, Any]]:
    """Each process's /health ``cluster`` section and /metrics text, over fresh connections (a new
    kernel pick each time) until each instance of ``want`` answered both (or ``tries`` requests)."""
    health: dict[str, dict[str, Any]] = {}
    metrics: set[str] = set()
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(tries):
            async with http.get(url + "/health") as resp:
                cluster = (await resp.json())["cluster"]
                health[cluster["instance"]] = cluster
            async with http.get(url + "/metrics") as resp:
                metrics |= set(re.findall(r'pooler_info\{[^}]*instance="([^"]+)"', await resp.text()))
            if want <= health.keys() and want <= metrics:
                break
    assert metrics == health.keys(), (metrics, health.keys())  # /metrics: its process, by its label
    return health


@pytest.mark.parametrize("miner_socket", ["asgi", "picows"])
async def test_two_processes_share_one_port_and_credit_each_share_once(
    tmp_path: Path, miner_socket: str
) -> None:
    with RedisServer() as rs:
        devnet = await start_devnet(tmp_path, BLOCK, ledger_seconds=0.5)
        settings = cluster_settings(devnet.env, rs.url, NAME) | {
            "PROCESSES": "2",
            "MINER_SOCKET": miner_socket,
        }
        r = aioredis.Redis.from_url(rs.url, decode_responses=True)
        tasks: list[asyncio.Task[None]] = []
        pooler = None
        pids: list[int] = []
        try:
            pooler = await start_pooler(tmp_path, settings)
            pids = children(pooler.output())
            assert len(pids) == 2 and all(alive(p) for p in pids)
            # plain HTTP (a dashboard, a health check) lands on either process
            assert (await instances_answering(pooler.url, INSTANCES)).keys() == INSTANCES

            async with aiohttp.ClientSession() as http:
                regs = [await register_miner(pooler.url, n, stake_percentage=0.5, http=http) for n in "ab"]
            farmer_ids = {reg.farmer: reg.farmer_id for reg in regs}
            miners: list[WsMiner] = []

            def issuers() -> set[str]:
                return {a.job.split(".")[0] for m in miners for a in m.acks}

            until = time.time() + 40
            # more connections until both processes have accepted shares (the kernel hashes each one)
            for i in range(16):
                miner = WsMiner(regs[i % 2].token, [pooler.url], name=f"rig{i}")
                miners.append(miner)
                tasks.append(asyncio.create_task(miner.run(until)))
                if i >= 3:
                    with contextlib.suppress(WaitTimeout):  # not yet on both: one more connection
                        await wait_until(lambda: issuers() == INSTANCES, "both", within=1.0)
                        break
            await wait_until(lambda: issuers() == INSTANCES, "shares accepted by both processes", within=20)

            # once (neither depends on the miner socket): either process's /health has the group's
            # workers; a child that dies is restarted, a new pid with the same name, serving again
            if miner_socket == "asgi":

                async def group_counts() -> bool:
                    health = await instances_answering(pooler.url, INSTANCES)
                    return health.keys() == INSTANCES and all(
                        h["groupWorkers"] == len(miners) and h["instances"] == 2 for h in health.values()
                    )

                await wait_until(group_counts, "the group's workers on both processes' /health", within=10)
                pids = await killed_and_restarted(pooler, pids)

            for miner in miners:
                miner.stop()
            await asyncio.gather(*tasks)
            # every accepted share is durable (its process's tally) and its nonce credited once
            acks = [a for m in miners for a in m.acks]
            assert acks and not [e for m in miners for e in m.errors]
            credited = {(a.block, a.farmer, a.nonce) for a in acks}
            assert len(credited) == len(acks), "a nonce was accepted twice"
            for block in {a.block for a in acks}:
                tallies = await redis_json(r, f"kp:tally:{block}")
                durable: dict[str, int] = {}
                for key, counts in tallies.items():
                    instance = key.rsplit(",", 1)[1].strip('"]')
                    durable[instance] = durable.get(instance, 0) + counts[0]
                for instance in INSTANCES:
                    sent = sum(1 for a in acks if a.block == block and a.job.startswith(f"{instance}."))
                    assert durable.get(instance, 0) >= sent, (block, instance, durable, sent)
                for address, fid in farmer_ids.items():
                    nonces = {str(a.nonce) for a in acks if a.block == block and a.farmer == address}
                    assert nonces <= await r.smembers(f"kp:seen:{block}:{fid}")

            status, _took = await pooler.stop(signal.SIGTERM, within=15)
            assert status == 0, pooler.tail()
            assert not [p for p in pids if alive(p)], "a child outlived its supervisor"
            assert "stopping: SIGTERM to 2 processes" in pooler.err.read_text()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, *ASK_AGAIN):
                    await task
            if pooler is not None and pooler.running:
                await pooler.kill()
            for pid in pids:  # in their own process groups: a failed test kills them here
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await devnet.stop()
            await r.aclose()


async def killed_and_restarted(pooler: PoolerProcess, pids: list[int]) -> list[int]:
    """SIGKILL to the first child; its restart logged with a new pid; both processes answer again."""
    os.kill(pids[0], signal.SIGKILL)
    logged = rf"process 1 \(pid {pids[0]}, instance {NAME}-1\) exited with signal SIGKILL"
    await wait_until(lambda: re.search(logged, pooler.err.read_text()), logged, within=10)
    again = rf"process 1 \(pid (?!{pids[0]}\b)(\d+), instance {NAME}-1\) listening"
    restarted = await wait_until(lambda: re.search(again, pooler.err.read_text()), again, within=30)
    assert int(restarted.group(1)) != pids[0] and not alive(pids[0])
    assert (await instances_answering(pooler.url, INSTANCES)).keys() == INSTANCES
    return [int(restarted.group(1)), pids[1]]
