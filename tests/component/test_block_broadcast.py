"""block-broadcast on a real Pooler, both ``/ws/miner`` paths: a v1 client and slot clients on one block.

What must hold: the v1 client sees protocol v1 exactly as before (no features, a ``job`` per
block); a client that asks gets ``features``, a ``slot``, a ``job`` for the block it joined in,
and at the next block ONE ``block`` frame, byte for byte the same on every such socket; shares on
``"<slot>.<block>"`` and on the v1 job are both credited, their ranges disjoint, and a replay is
``duplicate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from examples.minerkit import BlockTally
from examples.ws_miner import CpuEngine, WsMiner
from protocol.codec import decode_server, encode
from protocol.errors import Code
from protocol.messages import (
    BLOCK_BROADCAST,
    Accepted,
    Block,
    Hello,
    Job,
    Rejected,
    ServerMessage,
    Share,
    Slot,
    Welcome,
    slot_job,
)
from tests.support.system import register_miner, running_system
from tests.support.wait import FAILSAFE

pytestmark = pytest.mark.usefixtures("miner_socket")

BLOCK_INTERVAL = 4


async def _next(ws: ClientConnection, *kinds: type[ServerMessage]) -> tuple[ServerMessage, str]:
    """The next frame of one of ``kinds`` (others, such as ``difficulty``, skipped) and its text."""
    while True:
        raw = await asyncio.wait_for(ws.recv(), FAILSAFE)
        assert isinstance(raw, str)
        msg = decode_server(raw)
        if isinstance(msg, kinds):
            return msg, raw


async def _answer(ws: ClientConnection, job: Job, nonce: int) -> ServerMessage:
    await ws.send(encode(Share(job.job, nonce)).decode())
    msg, _ = await _next(ws, Accepted, Rejected)
    return msg


async def test_a_v1_client_and_slot_clients_on_one_block() -> None:
    async with (
        running_system(block_interval=BLOCK_INTERVAL, share_zeros=0) as system,  # every nonce is a share
        contextlib.AsyncExitStack() as stack,
    ):
        reg = await register_miner(system.url, "bc")
        sockets: list[ClientConnection] = []
        for _ in range(3):
            sockets.append(await stack.enter_async_context(connect(system.ws_url)))
        v1, fast, also = sockets
        await v1.send(encode(Hello(reg.token, "v1")).decode())
        welcome, raw = await _next(v1, Welcome)
        assert isinstance(welcome, Welcome) and welcome.features == ()
        assert "features" not in orjson.loads(raw)  # the v1 bytes, as before
        slots: dict[ClientConnection, Slot] = {}
        for ws, name in ((fast, "b1"), (also, "b2")):
            await ws.send(encode(Hello(reg.token, name, features=(BLOCK_BROADCAST,))).decode())
            welcome, _ = await _next(ws, Welcome)
            assert isinstance(welcome, Welcome) and welcome.features == (BLOCK_BROADCAST,)
            slot, _ = await _next(ws, Slot)
            assert isinstance(slot, Slot) and slot.farmer == reg.farmer
            slots[ws] = slot
            joined, _ = await _next(ws, Job)  # the block it said hello in: a job of its own
            assert isinstance(joined, Job) and joined.clean
        # the next block: a job for the v1 client, one identical frame for the two others
        first, _ = await _next(v1, Job)
        assert isinstance(first, Job)
        v1_job = first
        while v1_job.block == first.block:
            msg, _ = await _next(v1, Job)
            assert isinstance(msg, Job)
            v1_job = msg
        assert v1_job.clean
        frames: list[str] = []
        jobs: list[Job] = []
        for ws in (fast, also):
            while True:
                block, raw = await _next(ws, Block)
                assert isinstance(block, Block)
                if block.block == v1_job.block:
                    break
            frames.append(raw)
            jobs.append(slot_job(slots[ws], block, 0))
        assert frames[0] == frames[1]  # the same bytes on every socket
        ranges = sorted(
            [(j.nonce_start, j.nonce_end) for j in jobs] + [(v1_job.nonce_start, v1_job.nonce_end)]
        )
        assert all(e1 <= s2 for (_, e1), (s2, _) in itertools.pairwise(ranges))
        # both kinds credited, and a replay of the slot client's share is a duplicate
        for ws, job in ((fast, jobs[0]), (v1, v1_job)):
            ok = await _answer(ws, job, job.nonce_start)
            assert isinstance(ok, Accepted) and ok.job == job.job, ok
        again = await _answer(fast, jobs[0], jobs[0].nonce_start)
        assert isinstance(again, Rejected) and again.code == Code.DUPLICATE
        assert jobs[0].job == f"{slots[fast].slot}.{v1_job.block}"


class _Recording(WsMiner):
    """The example miner, noting the job id of every share result it counts."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results: list[Accepted | Rejected] = []

    def _count(self, result: Accepted | Rejected, tally: BlockTally | None) -> None:
        self.results.append(result)
        super()._count(result, tally)


async def test_the_example_miner_asks_for_it_and_mines_its_slot() -> None:
    async with running_system(block_interval=3, share_zeros=4) as system:
        reg = await register_miner(system.url, "example")
        lines: list[str] = []
        miner = _Recording(
            url=system.ws_url,
            token=reg.token,
            worker="cpu",
            engine=CpuEngine(1),
            max_blocks=2,
            out=lines.append,
        )
        assert await asyncio.wait_for(miner.run(), FAILSAFE) == 0
        assert miner.welcome is not None and miner.welcome.features == (BLOCK_BROADCAST,)
        slot = miner._slot
        assert slot is not None
        on_slot = [r for r in miner.results if r.job is not None and r.job.startswith(f"{slot.slot}.")]
        assert on_slot and all(isinstance(r, Accepted) for r in on_slot), "\n".join(lines)
