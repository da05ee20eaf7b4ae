"""Screenshots of every dashboard page, against a running Pooler (the demo, say).

    ./dev.sh demo --blocks 0 &                      # prints the dashboard's URL
    .venv/bin/python -m tests.browser.screenshots http://127.0.0.1:3001 --out docs/img

Drives Debian's headless Chromium (tests/browser/chromium.py); writes one PNG per page (desktop
width) and the overview at a phone's width, and prints any console error it saw (exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from playwright.async_api import Page

from tests.browser.chromium import headless_chromium

WAIT_MS = 30_000  # failsafe: a page loads its figures in milliseconds


async def _shoot(page: Page, base: str, route: str, wait_for: str, out: Path) -> None:
    await page.goto(f"{base}/#/{route}")
    await page.wait_for_function(f"document.body.dataset.loaded === {wait_for!r}", timeout=WAIT_MS)
    await page.wait_for_function("document.getElementById('conn').textContent === 'live'", timeout=WAIT_MS)
    await page.screenshot(path=str(out), full_page=True)
    print(out)


async def take(base: str, out: Path) -> list[str]:
    errors: list[str] = []
    async with headless_chromium() as browser:
        page = await browser.new_page()
        await page.set_viewport_size({"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await _shoot(page, base, "", "overview", out / "dashboard-overview.png")
        # the charts draw once their data is in: wait for points (the online chart samples every 5 s)
        await page.wait_for_function(
            "document.getElementById('chart-hashrate').dataset.points > 0"
            " && document.getElementById('chart-online').dataset.points >= 3",
            timeout=WAIT_MS,
        )
        await page.screenshot(path=str(out / "dashboard-overview.png"), full_page=True)
        await _shoot(page, base, "blocks", "blocks", out / "dashboard-blocks.png")
        rows = page.locator("#block-rows tr")
        if await rows.count():
            # the newest block that is over (the first row is usually the open one)
            await rows.nth(min(1, await rows.count() - 1)).click()
            await page.wait_for_function("document.body.dataset.loaded === 'block'", timeout=WAIT_MS)
            await page.screenshot(path=str(out / "dashboard-block.png"), full_page=True)
            print(out / "dashboard-block.png")
        await _shoot(page, base, "miners", "miners", out / "dashboard-miners.png")
        row = page.locator("#miner-rows tr").first
        if await row.count():
            await row.click()
            await page.wait_for_function("document.body.dataset.loaded === 'miner'", timeout=WAIT_MS)
            await page.screenshot(path=str(out / "dashboard-miner.png"), full_page=True)
            print(out / "dashboard-miner.png")
        await _shoot(page, base, "events", "events", out / "dashboard-events.png")
        phone = await browser.new_page()
        await phone.set_viewport_size({"width": 390, "height": 844})
        phone.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await _shoot(phone, base, "", "overview", out / "dashboard-phone.png")
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description="screenshots of the dashboard's pages")
    parser.add_argument("url", help="the Pooler's URL, e.g. http://127.0.0.1:3001")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    errors = asyncio.run(take(args.url.rstrip("/"), args.out))
    for e in errors:
        print("console error:", e, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
