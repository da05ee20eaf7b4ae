"""The dashboard: read-only event stream (WebSocket ``/ws/events`` and SSE ``/events``) and the page.

Every frame is ``{"type": "event", "kind", "at", "data"}`` (docs/events.md); a ``snapshot``
comes first so a page that just opened has something to show. Nothing here can act on
the Pooler and nothing carries a token or a key. The page is ``static/`` as it is, except
that ``index.html`` carries the pool's display name (``POOLER_NAME``) in its title and heading.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope
from starlette.websockets import WebSocket, WebSocketDisconnect

if TYPE_CHECKING:
    from pooler.app.service import Pooler

STATIC = Path(__file__).parent / "static"
_SSE_KEEPALIVE = 15.0  # seconds: keeps proxies from closing an idle stream
# Where index.html names the pool: its <title> and its <h1 id="pooler-name">.
_NAMED = (re.compile(r"(<title>)[^<]*(</title>)"), re.compile(r'(<h1 id="pooler-name">)[^<]*(</h1>)'))


def render_page(page: str, name: str) -> str:
    """``page`` (index.html) with ``name`` as its title and heading, HTML-escaped."""
    for place in _NAMED:
        page, found = place.subn(lambda m: m.group(1) + html.escape(name) + m.group(2), page)
        if found != 1:
            raise ValueError(f"index.html must have exactly one match of {place.pattern!r}; found {found}")
    return page


class PageFiles(StaticFiles):
    """The page's files from ``static/``; ``index.html`` (at ``/`` and ``/index.html``) rendered
    once with the pool's display name."""

    def __init__(self, name: str) -> None:
        super().__init__(directory=STATIC, html=True)
        self._index = os.path.realpath(STATIC / "index.html")
        self._page = render_page((STATIC / "index.html").read_text(encoding="utf-8"), name)

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        if os.path.realpath(full_path) == self._index:
            return HTMLResponse(self._page, status_code=status_code)
        return super().file_response(full_path, stat_result, scope, status_code)


async def events_socket(ws: WebSocket) -> None:
    pooler: Pooler = ws.app.state.pooler
    await ws.accept()
    sub = pooler.hub.subscribe()
    reader = asyncio.create_task(_drain_incoming(ws))
    try:
        await ws.send_text(pooler.hub.snapshot_frame(pooler.summary()))
        while not reader.done():
            waiter = asyncio.create_task(sub.next_batch())
            done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if waiter not in done:
                waiter.cancel()
                break
            for frame in waiter.result():
                await ws.send_text(frame)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sub.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


async def _drain_incoming(ws: WebSocket) -> None:
    """The stream is read-only: incoming frames are ignored; returns when the peer goes."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


async def events_sse(request: Request) -> Response:
    pooler: Pooler = request.app.state.pooler
    sub = pooler.hub.subscribe()

    async def stream() -> AsyncIterator[str]:
        try:
            yield f"data: {pooler.hub.snapshot_frame(pooler.summary())}\n\n"
            while True:
                try:
                    async with asyncio.timeout(_SSE_KEEPALIVE):  # not wait_for: see pooler/app/observe.py
                        batch = await sub.next_batch()
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                for frame in batch:
                    yield f"data: {frame}\n\n"
        finally:
            sub.close()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
