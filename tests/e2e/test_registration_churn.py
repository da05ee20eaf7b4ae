"""Registration churn on the devnet: a farmer whose miner left is not planted again (#18, item 10).

A bounded soak in miniature: three miners are registered at any time; at each new block the
oldest leaves (``POST /miner/leave``) and a new one registers, for ``BLOCKS`` blocks. On the
chain (the devnet contract's Pails), each block's planted farmers are those of the miners
registered when its plant was made: the count stays at three instead of growing by one a block
(before, every farmer the Backend held for the pooler was staked again in every block), and no
farmer is planted in a block that opened after its miner left. The devnet's Backend plants
only the ``farmerIds`` the Pooler names.
"""

from __future__ import annotations

import aiohttp

from tests.support.system import Registration, bearer, register_miner, running_system
from tests.support.wait import wait_until

BLOCK_INTERVAL = 4
BLOCKS = 6
AT_ONCE = 3


async def test_farmers_whose_miners_left_are_not_planted_again() -> None:
    async with running_system(block_interval=BLOCK_INTERVAL) as system, aiohttp.ClientSession() as http:
        net = system.net
        live = [await register_miner(system.url, f"churn-{i}", http=http) for i in range(AT_ONCE)]
        everyone: list[Registration] = list(live)
        left_at: dict[str, int] = {}  # farmer address -> the block seen when its miner left
        planted: dict[int, set[str]] = {}  # block -> farmers with a Pail in it (read before harvests)

        def pails(block: int) -> set[str]:
            return {r.farmer for r in everyone if net.contract.get_pail(r.farmer, block) is not None}

        seen = system.block()
        assert seen is not None
        for n in range(BLOCKS):
            before = seen
            await wait_until(
                lambda before=before: (system.block() or 0) > before,
                f"block {before + 1}",
                within=4 * BLOCK_INTERVAL,
                step=0.05,
            )
            seen = system.block() or 0
            # one /plant plants a block's farmers at once (the Backend does not await between them)
            await wait_until(
                lambda seen=seen: bool(pails(seen)),
                f"the plant of block {seen}",
                within=BLOCK_INTERVAL,
                step=0.02,
            )
            planted[seen] = pails(seen)
            gone = live.pop(0)
            async with http.post(f"{system.url}/miner/leave", headers=bearer(gone.token)) as resp:
                assert resp.status == 200, await resp.text()
            left_at[gone.farmer] = seen
            fresh = await register_miner(system.url, f"churn-{AT_ONCE + n}", http=http)
            live.append(fresh)
            everyone.append(fresh)
    assert len(everyone) == AT_ONCE + BLOCKS  # the Backend holds them all: the Pooler names the live ones
    for block, farmers in planted.items():
        assert 0 < len(farmers) <= AT_ONCE, (block, len(farmers))
        for farmer in farmers:  # planted only while its miner had not left
            assert left_at.get(farmer, block) >= block, (block, farmer, left_at.get(farmer))
    assert len(planted[seen]) == AT_ONCE  # the newest block: exactly the three live miners' farmers
