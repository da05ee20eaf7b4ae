"""The dashboard in real headless Chromium, served and fed by the real Pooler on the devnet with a
real miner: blocks turn over on the page, the harvested rewards on the Blocks and miner pages are
the API's, and a Pooler restart shows "reconnecting" then "live". Every wait is on the DOM or on
the API; nothing is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import aiohttp
import pytest

from pooler.devnet import Devnet
from tests.browser.chromium import headless_chromium
from tests.browser.dashboard import dashboard, get_json, same_as_api
from tests.support.miners import MinerLog, ws_miner
from tests.support.system import System, register_miner, running_system
from tests.support.wait import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT_MS = 60_000  # failsafe for block turn-overs on a loaded machine; the page reacts in milliseconds


async def test_blocks_turn_over_and_rewards_are_the_apis(shared_system: System) -> None:
    system = shared_system
    async with aiohttp.ClientSession() as http:
        reg = await register_miner(system.url, "browser-farmer", http=http)
        stop = asyncio.Event()
        miner = asyncio.create_task(ws_miner(system.ws_url, reg.token, MinerLog("in-browser"), stop))
        try:
            async with headless_chromium() as browser, dashboard(browser, system.url) as board:
                await board.goto("")
                assert await board.page.title() == "KALE Pooler"
                await board.wait_text("#conn", "live")
                assert await board.text("#transport") == "WebSocket"
                shown = int(await board.text("#block"))

                # the previous block's on-chain zero range, as the API has it for the open block
                async def bounds(live: Any) -> tuple[Any, Any]:
                    if live["chainMinZeros"] is None:
                        return None, "the block's state read"
                    expected = f"ranged from {live['chainMinZeros']} to {live['chainMaxZeros']} zeros"
                    note = await board.text("#prev-block-note")
                    return (expected if expected in note else note), expected

                await same_as_api(http, f"{system.url}/stats/live", bounds, "the on-chain zero range")
                await board.page.wait_for_function(
                    "(n) => Number(document.getElementById('block').textContent) > n",
                    arg=shown,
                    timeout=WAIT_MS,
                )

                # a block that paid the farmer: the Blocks page and the miner page show the API's figures
                async def paid() -> Any:
                    farmers = await get_json(http, f"{system.url}/stats/farmers")
                    return any(f["farmerId"] == reg.farmer_id for f in farmers["farmers"])

                await wait_until(paid, "a harvest that paid the browser's farmer", within=120)
                await board.goto("blocks")

                async def harvested(page_of_blocks: Any) -> tuple[Any, Any]:
                    rows = await board.page.eval_on_selector_all(
                        "#block-rows tr",
                        "rows => rows.map(r => [r.dataset.block, r.lastElementChild.textContent])",
                    )
                    api = [
                        [str(b["block"]), await board.fmt("kale", b["harvested"])]
                        for b in page_of_blocks["blocks"]
                    ]
                    return rows, api

                await same_as_api(
                    http, f"{system.url}/stats/blocks?limit=20", harvested, "blocks and harvests"
                )

                await board.goto(f"miners/{reg.miner_id}")

                async def rewards(farmer: Any) -> tuple[Any, Any]:
                    return await board.text("#m-rewards"), await board.fmt("kale", farmer["rewards"])

                await same_as_api(
                    http, f"{system.url}/stats/farmers/{reg.farmer_id}", rewards, "the farmer's rewards"
                )
                assert reg.token not in await board.page.content()
                board.assert_clean()
        finally:
            stop.set()
            await miner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_pooler_restart_shows_reconnecting_then_live() -> None:
    port = _free_port()  # the second Pooler listens where the first did, as a restarted one does
    async with (
        Devnet(block_interval=300, ledger_seconds=1.0) as net,
        headless_chromium() as browser,
        contextlib.AsyncExitStack() as first,
    ):
        await first.enter_async_context(running_system(net=net, port=port))
        async with dashboard(browser, f"http://127.0.0.1:{port}") as board:
            await board.goto("")
            await board.wait_text("#conn", "live")
            block = await board.text("#block")
            await first.aclose()  # the Pooler stops
            await board.page.wait_for_function(
                "document.getElementById('conn').textContent.startsWith('reconnecting')", timeout=WAIT_MS
            )
            async with running_system(net=net, port=port):
                await board.wait_text("#conn", "live")
                await board.wait_text("#block", block)  # the same chain: the same block, read again
