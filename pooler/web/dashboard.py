"""The dashboard: read-only event stream (WebSocket ``/ws/events`` and SSE ``/events``) and the page.

Every frame is ``{"type": "event", "kind", "at", "data"}`` (docs/events.md); a ``snapshot``
comes first so a page that just opened has something to show. Nothing here can act on
the Pooler and nothing carries a token or a key. The page is ``static/`` as it is, except
that ``index.html`` carries the pool's display name (``POOLER_NAME``) in its title and heading.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope
from starlette.websockets import WebSocket, WebSocketDisconnect

from pooler.runtime.hub import Subscription
from pooler.web.ports import EventFeed

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


class EventStreams:
    """``/ws/events`` and ``/events`` over one :class:`~pooler.web.ports.EventFeed` port."""

    def __init__(self, feed: EventFeed) -> None:
        self._feed = feed

    async def socket(self, ws: WebSocket) -> None:
        """The stream over a WebSocket: a reader (ignores what the peer sends, notices it leave)
        and a sender, in one task group; whichever ends first ends the other."""
        await ws.accept()
        sub = self._feed.subscribe()
        try:
            async with asyncio.TaskGroup() as tg:
                reader = tg.create_task(_drain_incoming(ws), name="events-reader")
                sender = tg.create_task(self._send(ws, sub), name="events-sender")
                reader.add_done_callback(lambda _: sender.cancel())
                sender.add_done_callback(lambda _: reader.cancel())
        except* (WebSocketDisconnect, RuntimeError):
            pass  # the peer went (a send or receive on a closed socket)
        finally:
            sub.close()

    async def _send(self, ws: WebSocket, sub: Subscription) -> None:
        await ws.send_text(self._feed.snapshot_frame())
        while True:
            for frame in await sub.next_batch():
                await ws.send_text(frame)

    async def sse(self, request: Request) -> Response:
        feed = self._feed
        sub = feed.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield f"data: {feed.snapshot_frame()}\n\n"
                while True:
                    try:
                        async with asyncio.timeout(_SSE_KEEPALIVE):  # not wait_for: pooler/runtime/tasks.py
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


async def _drain_incoming(ws: WebSocket) -> None:
    """The stream is read-only: incoming frames are ignored; returns when the peer goes."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
