"""The dashboard page in real headless Chromium, fed by a small event-stream server of the test's own.

The server serves ``pooler/web/static`` exactly as files and speaks the event-stream schema of
docs/events.md on ``/ws/events`` (or only ``/events`` SSE, to check the fallback). The end-to-end test
against the real Pooler lives with the integration tests.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from playwright.async_api import Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

import pooler
from tests.browser.chromium import headless_chromium
from tests.support.wait import wait_until

STATIC = Path(pooler.__file__).parent / "web" / "static"
WAIT_MS = 10_000  # generous on a loaded 2-core CI machine; the page normally reacts in milliseconds
HOSTILE = '<img src=x onerror="document.title=1">'
NOW = 1_760_000_000_000


def event(kind: str, data: dict[str, Any], at: int = NOW) -> dict[str, Any]:
    return {"type": "event", "kind": kind, "at": at, "data": data}


SNAPSHOT = event(
    "snapshot",
    {
        "summary": {
            "block": 100,
            "phase": "mining",
            "miners": 3,
            "workers": 5,
            "hashrate": 1_250_000.0,
            "accepted": 42,
            "rejected": 1,
            "bestZeros": {"farmer-a": 7, HOSTILE: 5},
            "workAt": NOW + 200_000,
            "blockEndsAt": NOW + 300_000,
        },
        "recent": [event("miner", {"minerId": "m1", "farmerId": "farmer-a", "event": "joined"}, NOW - 5000)],
        "blocks": [
            {
                "block": 99,
                "planted": 2,
                "worked": [{"farmerId": "farmer-a", "zeros": 8}],
                "rewards": [{"farmerId": "farmer-a", "reward": "25050000000"}],
            }
        ],
    },
)
NEXT_BLOCK = event(
    "block",
    {
        "block": 101,
        "entropy": "ab" * 32,
        "timestamp": NOW + 1000,
        "workAt": NOW + 281_000,
        "blockEndsAt": NOW + 301_000,
    },
    NOW + 1000,
)


class Feed:
    """Events the test pushes to every connected page; ``None`` ends each stream."""

    def __init__(self) -> None:
        self.queues: list[asyncio.Queue[dict[str, Any] | None]] = []
        self.connected = asyncio.Event()

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=100)
        self.queues.append(queue)
        self.connected.set()
        return queue

    def push(self, item: dict[str, Any] | None) -> None:
        for queue in self.queues:
            queue.put_nowait(item)


def make_app(feed: Feed, *, websocket: bool = True, sse: bool = True) -> Starlette:
    async def ws_events(ws: WebSocket) -> None:
        await ws.accept()
        queue = feed.subscribe()
        try:
            await ws.send_text(json.dumps(SNAPSHOT))
            while (item := await queue.get()) is not None:
                await ws.send_text(json.dumps(item))
            await ws.close(1001)
        except WebSocketDisconnect:
            pass

    async def sse_events(request: Request) -> StreamingResponse:
        queue = feed.subscribe()

        async def body() -> AsyncIterator[str]:
            yield f"data: {json.dumps(SNAPSHOT)}\n\n"
            while (item := await queue.get()) is not None:
                yield f"data: {json.dumps(item)}\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    routes: list[Route | WebSocketRoute | Mount] = []
    if websocket:
        routes.append(WebSocketRoute("/ws/events", ws_events))
    if sse:
        routes.append(Route("/events", sse_events))
    routes.append(Mount("/", StaticFiles(directory=STATIC, html=True)))
    return Starlette(routes=routes)


@asynccontextmanager
async def serve(app: Starlette, feed: Feed) -> AsyncIterator[str]:
    """Run ``app`` on a free loopback port; the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started or task.done(), "the page's server to start")
        if task.done():
            task.result()  # it ended instead: its error
            raise AssertionError("the page's server ended before it started")
        yield f"http://127.0.0.1:{port}"
    finally:
        feed.push(None)  # end open streams so the server can stop
        server.should_exit = True
        await task
        sock.close()


async def text_of(page: Page, selector: str) -> str:
    return (await page.text_content(selector)) or ""


async def wait_text(page: Page, element_id: str, expected: str) -> None:
    await page.wait_for_function(
        "([id, text]) => document.getElementById(id).textContent === text",
        arg=[element_id, expected],
        timeout=WAIT_MS,
    )


async def open_dashboard(base: str, check: Callable[[Page], Any]) -> None:
    async with headless_chromium() as browser:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(base + "/")
        await check(page)
        assert errors == [], f"the page threw: {errors}"


async def test_page_shows_the_snapshot_then_a_new_block_over_websocket() -> None:
    feed = Feed()
    async with serve(make_app(feed), feed) as base:

        async def check(page: Page) -> None:
            await wait_text(page, "block", "100")
            assert await text_of(page, "#phase") == "mining"
            assert await text_of(page, "#miners") == "3"
            assert await text_of(page, "#workers") == "5"
            assert await text_of(page, "#hashrate") == "1.3 MH/s"
            assert await text_of(page, "#accepted") == "42"
            assert await text_of(page, "#transport") == "WebSocket"
            assert await text_of(page, "#conn") == "live"
            # countdowns run against the browser clock: NOW is in the past for it
            assert await text_of(page, "#work-countdown") == "passed"
            # best zeros, highest first; hostile text stays text
            rows = await page.locator("#best-zeros tr").all_inner_texts()
            assert [r.split("\t") for r in rows] == [["farmer-a", "7"], [HOSTILE, "5"]]
            assert await page.locator("img").count() == 0
            assert await page.title() == "KALE Pooler"
            # rewards per block from the snapshot, exact stroops -> KALE
            reward_row = await page.locator('#rewards tr[data-block="99"]').inner_text()
            assert reward_row.split("\t") == ["99", "2", "farmer-a (8)", "2505.0000000"]
            assert await page.locator('#events li[data-kind="miner"]').count() == 1

            feed.push(NEXT_BLOCK)
            await wait_text(page, "block", "101")
            line = await page.locator('#events li[data-kind="block"]').inner_text()
            assert "block 101 opened, entropy abababababab" in line
            assert await page.locator("#best-zeros tr").count() == 0  # best zeros are per block

            feed.push(event("harvest", {
                "block": 100, "ok": True, "successfulHarvests": 1, "failedHarvests": 0,
                "totalRewards": "12345678", "rewards": [{"farmerId": HOSTILE, "reward": "12345678"}],
            }))  # fmt: skip
            await page.wait_for_selector('#rewards tr[data-block="100"]', timeout=WAIT_MS)
            row = await page.locator('#rewards tr[data-block="100"]').inner_text()
            assert row.split("\t")[-1] == "1.2345678"
            feed.push(event("chain", {"ok": False, "detail": "rpc timeout"}))
            await wait_text(page, "chain", "chain: down")
            assert await page.locator("img").count() == 0

        await open_dashboard(base, check)


async def test_page_falls_back_to_server_sent_events() -> None:
    feed = Feed()
    async with serve(make_app(feed, websocket=False), feed) as base:

        async def check(page: Page) -> None:
            await wait_text(page, "block", "100")
            assert await text_of(page, "#transport") == "Server-Sent Events"
            feed.push(NEXT_BLOCK)
            await wait_text(page, "block", "101")

        await open_dashboard(base, check)
