"""The cluster end-to-end tests' pieces: Pooler instances on one Redis and a devnet, test miners.

Everything runs as real processes on loopback (tests/support/processes.py): ``pooler devnet``
and ``pooler serve`` (with ``STORE=redis``), each with its output in a file of the test's temp dir
(shown when a test fails). The miners are in-test WebSocket clients that hash their ranges with
``protocol.work`` and remember every ``accepted`` they were sent: what "no acknowledged share
lost" is checked against.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from protocol import address_bytes
from protocol.codec import decode_server, encode
from protocol.messages import Accepted, Difficulty, Error, Hello, Job, More, Rejected, Share, Welcome
from protocol.work import WorkTemplate
from tests.support.processes import PoolerProcess

POOLER_ID = "cluster-e2e"
BLOCK = 8  # seconds per block: plant ~0 s, workAt 5 s, last resubmission 7 s
LEASE_MS = 2000  # a leader killed after the plant is replaced before workAt, with room for a busy machine
# what a wait on the group treats as "not yet": an instance busy (2 cores) or going away; ask again
ASK_AGAIN = (aiohttp.ClientError, TimeoutError)


def cluster_settings(chain: dict[str, str], redis_url: str, instance: str) -> dict[str, str]:
    """A group member's settings (``STORE=redis``) on the devnet whose variables are ``chain``."""
    return dict(
        STELLAR_NETWORK="devnet",
        STELLAR_RPC_URL=chain["STELLAR_RPC_URL"],
        BACKEND_API_URL=chain["BACKEND_API_URL"],
        KALE_CONTRACT_ID=chain["KALE_CONTRACT_ID"],
        STORE="redis",
        REDIS_URL=redis_url,
        POOLER_INSTANCE_ID=instance,
        POOLER_ID=POOLER_ID,
        LEADER_LEASE_MS=str(LEASE_MS),
        PORT="0",
        BLOCK_INTERVAL_SECONDS=str(BLOCK),
        OPTIMAL_WORK_DELAY_MS="5000",
        WORK_SAFETY_MARGIN_MS="1000",
        LATE_PLANT_GRACE_MS="500",
        BLOCK_POLL_INTERVAL_MS="100",
        SHARE_ZEROS_INITIAL="2",
        SHARE_ZEROS_MIN="1",
        SHARE_ZEROS_MAX="3",  # in-test miners hash ~1e5/s: every block starts with shares at once
        VARDIFF_TARGET_SECONDS="0.5",
        SUMMARY_INTERVAL_MS="1000",
        MESSAGES_PER_SECOND="2000",
        MESSAGES_BURST="2000",
        LOG_LEVEL="INFO",
    )


@dataclass
class Instance:
    """A group member: its name (``POOLER_INSTANCE_ID``) and its ``pooler serve`` process."""

    name: str
    proc: PoolerProcess

    @property
    def url(self) -> str:
        return self.proc.url

    async def health(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(self.url + "/health", timeout=aiohttp.ClientTimeout(total=3)) as resp:
            body: dict[str, Any] = await resp.json()
            return body


@dataclass
class Ack:
    block: int
    farmer: str
    nonce: int
    zeros: int
    best: bool
    at: float  # unix seconds it was received
    work_at: float  # the job's workAt (unix seconds)
    instance: str
    job: str = ""  # its job id: "<instance>.<...>", the process that issued it


@dataclass
class WsMiner:
    """One WebSocket worker: mines its jobs on this process, reconnects (with its token) elsewhere."""

    token: str
    urls: list[str]  # where the "load balancer" may send it; first = where it starts
    name: str = "rig"
    acks: list[Ack] = field(default_factory=list)
    rejects: list[Rejected] = field(default_factory=list)
    errors: list[Error] = field(default_factory=list)
    connects: list[str] = field(default_factory=list)
    drops: list[str] = field(default_factory=list)  # connections lost, and why
    _stop: bool = False

    async def run(self, until: float) -> None:
        i = 0
        while not self._stop and time.time() < until:
            url = self.urls[i % len(self.urls)]
            try:
                await self._session(url, until)
            except (OSError, ConnectionClosed, TimeoutError) as exc:
                self.drops.append(f"{url}: {exc!r}")
            i += 1  # the instance went away: the balancer sends the next connection elsewhere
            await asyncio.sleep(0.1)  # a miner's pause before it reconnects

    def stop(self) -> None:
        self._stop = True

    async def _session(self, url: str, until: float) -> None:
        ws_url = url.replace("http://", "ws://") + "/ws/miner"
        # pings: a dead instance is noticed in ~2 s even if no FIN ever comes (host lost, process paused)
        async with connect(
            ws_url, open_timeout=3, close_timeout=1, ping_interval=1.0, ping_timeout=1.5
        ) as ws:
            await ws.send(encode(Hello(self.token, self.name)).decode())
            welcome = decode_server(await asyncio.wait_for(ws.recv(), 5))
            assert isinstance(welcome, Welcome), welcome
            self.connects.append(url)
            jobs: dict[str, Job] = {}
            state: dict[str, Any] = {"job": None, "next": 0, "zeros": 1}

            async def reader() -> None:
                async for raw in ws:
                    msg = decode_server(raw)
                    if isinstance(msg, Job):
                        jobs[msg.job] = msg
                        if msg.clean or state["job"] is None or state["next"] >= state["job"].nonce_end:
                            state["job"], state["next"] = msg, msg.nonce_start
                        state["zeros"] = msg.share_zeros
                    elif isinstance(msg, Difficulty):
                        state["zeros"] = msg.share_zeros
                    elif isinstance(msg, Accepted):
                        job = jobs[msg.job]
                        self.acks.append(
                            Ack(
                                job.block,
                                job.farmer,
                                msg.nonce,
                                msg.zeros,
                                msg.best,
                                time.time(),
                                job.work_at / 1000,
                                url,
                                msg.job,
                            )
                        )
                    elif isinstance(msg, Rejected):
                        self.rejects.append(msg)
                    elif isinstance(msg, Error):
                        self.errors.append(msg)

            read = asyncio.create_task(reader())
            try:
                while not self._stop and time.time() < until and not read.done():
                    job = state["job"]
                    if job is None:
                        await asyncio.sleep(0.05)  # idle until the first job comes (paces the loop)
                        continue
                    template = WorkTemplate(job.block, job.entropy, address_bytes(job.farmer))
                    start = state["next"]
                    end = min(start + 3000, job.nonce_end)
                    state["next"] = end
                    sent = 0
                    for nonce in range(start, end):
                        digest, zeros = template.verify(nonce)
                        if zeros >= state["zeros"] and sent < 20:
                            await ws.send(encode(Share(job.job, nonce, digest)).decode())
                            sent += 1
                    if end >= job.nonce_end:
                        await ws.send(encode(More(job.job)).decode())
                    await asyncio.sleep(0.02)  # paces the miner's shares
            finally:
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await read


async def redis_json(client: aioredis.Redis, key: str) -> dict[str, Any]:
    return {k: orjson.loads(v) for k, v in (await client.hgetall(key)).items()}


async def work_calls(client: aioredis.Redis, prefix: str = "kp") -> list[dict[str, Any]]:
    """Every /work outcome the leaders recorded (the Backend's per-farmer results inside)."""
    out = []
    for _id, fields in await client.xrange(f"{prefix}:calls"):
        if fields["op"] == "work":
            out.append(orjson.loads(fields["record"]))
    return out


def worked_zeros(calls: list[dict[str, Any]], block: int) -> dict[str, int]:
    """farmer id -> most zeros the Backend accepted for ``block``."""
    best: dict[str, int] = {}
    for call in calls:
        if call.get("block") != block or "response" not in call:
            continue
        for item in call["response"].get("results", []):
            if item.get("ok"):
                fid = item["farmerId"]
                best[fid] = max(best.get(fid, -1), int(item["zeros"]))
    return best


async def roles(
    session: aiohttp.ClientSession, insts: list[Instance], skip: frozenset[str] = frozenset()
) -> dict[str, dict[str, Any]]:
    out = {}
    for inst in insts:
        if inst.proc.running and inst.name not in skip:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):  # paused or gone
                out[inst.name] = (await inst.health(session))["cluster"]
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


async def past(r: aioredis.Redis, block: int) -> bool:
    """A newer block exists (so ``block``'s work phase is over)."""
    newest = await r.zrange("kp:blocks", -1, -1, withscores=True)
    return bool(newest) and int(newest[0][1]) > block


async def planted_after(
    r: aioredis.Redis, inst: Instance, session: aiohttp.ClientSession, after: int, miners: list[WsMiner]
) -> int | None:
    """A block newer than ``after``, planted for both farmers, with a best acknowledged to each miner."""
    h = await inst.health(session)
    blk = h["block"]
    if blk is None or blk <= after or h["phase"] != "mining":
        return None
    if len(await r.hgetall(f"kp:status:{blk}")) != 2:
        return None
    bests = [any(a.block == blk and a.best for a in m.acks) for m in miners]
    return blk if all(bests) else None
