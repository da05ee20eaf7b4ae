"""Driving the dashboard page in headless Chromium: open a route, collect console errors, read
figures, and compare them with the API's at the same moment (``same_as_api``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from playwright.async_api import BrowserContext, Page

from tests.support.wait import wait_until

WAIT_MS = 30_000  # failsafe on a loaded 2-core machine; the page reacts in milliseconds


@dataclass
class Dashboard:
    page: Page
    base: str
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions

    async def goto(self, route: str) -> None:
        """Open ``#/route`` and wait until its figures were read (``body[data-loaded]``)."""
        page_name = _page_of(route)
        await self.page.evaluate("() => { delete document.body.dataset.loaded; }")
        await self.page.goto(f"{self.base}/#/{route}")
        await self.page.wait_for_function(
            "(name) => document.body.dataset.loaded === name", arg=page_name, timeout=WAIT_MS
        )

    async def reload(self) -> None:
        """A fresh load of the page (no state kept from before), waited as :meth:`goto`."""
        page_name = _page_of(self.page.url.partition("#/")[2])
        await self.page.reload()
        await self.page.wait_for_function(
            "(name) => document.body.dataset.loaded === name", arg=page_name, timeout=WAIT_MS
        )

    async def text(self, selector: str) -> str:
        return (await self.page.text_content(selector)) or ""

    async def fmt(self, function: str, value: Any) -> str:
        """The page's own formatting (KP.fmt.<function>) of an API value."""
        result = await self.page.evaluate("([f, v]) => window.KP.fmt[f](v)", [function, value])
        return str(result)

    async def wait_text(self, selector: str, expected: str) -> None:
        await self.page.wait_for_function(
            "([s, t]) => { const e = document.querySelector(s); return e !== null && e.textContent === t; }",
            arg=[selector, expected],
            timeout=WAIT_MS,
        )

    def assert_clean(self) -> None:
        assert self.errors == [], f"the page logged errors: {self.errors}"


def _page_of(route: str) -> str:
    parts = [p for p in route.split("/") if p]
    if not parts:
        return "overview"
    if parts[0] in ("blocks", "miners") and len(parts) > 1:
        return parts[0][:-1]
    return parts[0]


@asynccontextmanager
async def dashboard(
    browser: BrowserContext, base: str, *, init_script: str | None = None
) -> AsyncIterator[Dashboard]:
    page = await browser.new_page()
    board = Dashboard(page, base)
    page.on(
        "console",
        lambda m: board.errors.append(f"{m.text} ({m.location.get('url')})") if m.type == "error" else None,
    )
    page.on("pageerror", lambda exc: board.errors.append(str(exc)))
    if init_script is not None:
        await page.add_init_script(init_script)
    try:
        yield board
    finally:
        await page.close()


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def same_as_api(
    http: aiohttp.ClientSession,
    url: str,
    shown: Callable[[Any], Awaitable[tuple[Any, Any]]],
    what: str,
) -> Any:
    """Wait until the page shows what the API answers: ``shown(answer)`` gives (on the page, from
    the API) for one answer; the API is asked again until a moment where both agree (the page
    re-reads every few seconds). Returns that answer."""
    last: list[Any] = []

    async def agree() -> Any:
        answer = await get_json(http, url)
        on_page, expected = await shown(answer)
        last[:] = [on_page, expected]
        return answer if on_page == expected else None

    return await wait_until(
        agree, lambda: f"{what}: the page shows {last[0]!r}, the API {last[1]!r}" if last else what, step=0.25
    )
