"""The dashboard page in real headless Chromium, served and fed by the real Pooler on the devnet.

The page loads from ``/``, shows the block the Pooler works on, and shows the next block once the
devnet opens it (the Pooler's own late plant opens it a few seconds later). Every wait is on the
DOM; nothing is timed.
"""

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import Page

from tests.browser.chromium import headless_chromium
from tests.support.system import MinerSocket, System, find_nonce, register_miner

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT_MS = 60_000  # failsafe for one block turn-over on a loaded machine; the page reacts in milliseconds


async def text_is(page: Page, element_id: str, expected: str) -> None:
    await page.wait_for_function(
        "([id, text]) => document.getElementById(id).textContent === text",
        arg=[element_id, expected],
        timeout=WAIT_MS,
    )


async def test_the_page_shows_the_current_block_then_the_next_one(shared_system: System) -> None:
    system = shared_system
    async with aiohttp.ClientSession() as http:
        reg = await register_miner(system.url, "browser-farmer", http=http)
    async with headless_chromium() as browser, MinerSocket.open(system.ws_url) as miner:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(system.url + "/")
        assert await page.title() == "KALE Pooler"
        await text_is(page, "conn", "live")
        current = system.block()
        assert current is not None
        shown = int(await page.text_content("#block") or "-1")
        assert shown in (current, current + 1)  # the block may turn over between the two reads
        assert (await page.text_content("#phase") or "") != ""

        # a miner joins and mines: the page counts it
        _, job = await miner.hello(reg.token, "in-browser-test")
        nonce, _, _ = find_nonce(job)
        await miner.request({"type": "share", "job": job["job"], "nonce": str(nonce)}, "accepted")
        await page.wait_for_selector('#events li[data-kind="miner"]', timeout=WAIT_MS)

        # the next block, opened on the devnet by the Pooler's own plant, appears on the page
        await text_is(page, "block", str(shown + 1))
        line = await page.locator('#events li[data-kind="block"]').first.inner_text()
        assert f"block {shown + 1} opened" in line
        await page.wait_for_selector(f'#rewards tr[data-block="{shown + 1}"]', timeout=WAIT_MS)
        assert await page.text_content("#transport") == "WebSocket"
        assert reg.token not in await page.content()
        assert errors == [], f"the page threw: {errors}"
