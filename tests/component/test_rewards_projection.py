"""The reward projection on the devnet (issue 15, part 4): a real in-process Pooler, two farmers
(their stakes are worked by the Pooler's local search), short blocks. The projection of a block,
made from the block's last read (frozen at the next block), equals what the devnet Backend's
harvest results paid each farmer, to the stroop."""

from __future__ import annotations

import time

import aiohttp

from pooler.core.views import BlockView
from tests.support.system import register_miner, running_system
from tests.support.wait import wait_until

BLOCK_INTERVAL = 6


async def test_the_final_projection_is_what_harvest_paid_to_the_stroop() -> None:
    async with running_system(block_interval=BLOCK_INTERVAL) as system, aiohttp.ClientSession() as http:
        first = system.block()
        assert first is not None
        farmers = {(await register_miner(system.url, name, http=http)).farmer_id for name in ("a", "b")}

        def harvested() -> BlockView | None:
            for b in system.pooler.core.view(time.time()).blocks:
                if b.block > first and b.harvest == "done" and set(b.rewards) == farmers:
                    return b
            return None

        await wait_until(lambda: harvested() is not None, "a block of both farmers harvested", within=60)
        blk = harvested()
        assert blk is not None and blk.projection is not None
        assert blk.projection.final
        assert dict(blk.projection.rewards) == dict(blk.rewards)
        assert all(reward > 0 for reward in blk.rewards.values())
        assert blk.projection.reward == sum(blk.rewards.values())
