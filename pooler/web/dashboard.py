"""The dashboard: read-only event stream (WebSocket ``/ws/events`` and SSE ``/events``) and the page.

Every frame is ``{"type": "event", "kind", "at", "data"}`` (docs/events.md); a ``snapshot``
comes first so a page that just opened has something to show. Nothing here can act on
the Pooler and nothing carries a token or a key. The page is ``static/`` as it is, except
that ``index.html`` carries the pool's display name (``POOLER_NAME``) in its title and heading.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from pooler.runtime.hub import Subscription
from pooler.web.gate import CONNECTION, Ticket
from pooler.web.ports import EventFeed, LimitHits
from pooler.web.wsproto import ABORT, SEND_BUFFER

log = logging.getLogger("pooler.web.events")

STATIC = Path(__file__).parent / "static"
_SSE_KEEPALIVE = 15.0  # seconds: keeps proxies from closing an idle stream
# bytes the kernel, and as many the transport, may queue for one subscriber before its writes wait
_STREAM_BUFFER = 16 * 1024
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
    """``/ws/events`` and ``/events`` over one :class:`~pooler.web.ports.EventFeed` port.

    Each subscriber's backlog is bounded: frames the stream could not write yet wait in its
    subscription; a subscriber that lets more than ``backlog`` pile up (it is not reading: its
    TCP window and the server's send buffers, 16 KiB each, are full) has its connection dropped
    (the ``pooler.abort`` extension), for SSE as for the WebSocket."""

    def __init__(self, feed: EventFeed, backlog: int, limits: LimitHits) -> None:
        self._feed = feed
        self._backlog = backlog
        self._limits = limits  # a dropped subscriber counts as the event-stream-backlog limit

    async def socket(self, ws: WebSocket) -> None:
        """The stream over a WebSocket: a reader (ignores what the peer sends, notices it leave)
        and a sender, in one task group; whichever ends first ends the other."""
        await ws.accept()
        extensions = ws.scope.get("extensions") or {}
        _served(extensions)
        sub = self._feed.subscribe()

        async def send(frames: list[str]) -> None:
            for frame in frames:
                await ws.send_text(frame)

        try:
            async with asyncio.TaskGroup() as tg:
                reader = tg.create_task(_drain_incoming(ws), name="events-reader")
                sender = tg.create_task(self._pump(sub, send, extensions.get(ABORT)), name="events-sender")
                reader.add_done_callback(lambda _: sender.cancel())
                sender.add_done_callback(lambda _: reader.cancel())
        except* (WebSocketDisconnect, RuntimeError):
            pass  # the peer went (a send or receive on a closed socket)
        finally:
            sub.close()

    async def _pump(
        self, sub: Subscription, send: Callable[[list[str]], Awaitable[None]], abort: object
    ) -> None:
        """The snapshot, then every batch, until the peer goes or its backlog is over the bound."""
        if not await self._deliver(sub, send, [self._feed.snapshot_frame()]):
            self._drop(abort)
            return
        while True:
            if not await self._deliver(sub, send, await sub.next_batch()):
                self._drop(abort)
                return

    async def _deliver(
        self, sub: Subscription, send: Callable[[list[str]], Awaitable[None]], frames: list[str]
    ) -> bool:
        """Write ``frames``; False, without waiting for the write, once more than the backlog's
        bound waits behind it."""
        writing = asyncio.ensure_future(send(frames))
        try:
            while not writing.done():
                woken = asyncio.ensure_future(sub.wake.wait())
                try:
                    await asyncio.wait((writing, woken), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
                if not writing.done():
                    if len(sub.frames) + sub.dropped > self._backlog:
                        return False
                    sub.wake.clear()  # seen; next_batch takes what waits once the write is done
            writing.result()
        finally:
            if not writing.done():
                writing.cancel()
            if sub.frames:
                sub.wake.set()
        return True

    def _drop(self, abort: object) -> None:
        self._limits.hit("event-stream-backlog")
        log.info("event stream: a subscriber over its backlog of %d events; dropping it", self._backlog)
        if callable(abort):
            abort()

    async def sse(self, request: Request) -> Response:
        _served(request.scope.get("extensions") or {})
        return _EventSource(self)


class _EventSource(Response):
    """``/events``: Server-Sent Events written straight to ASGI, so each write is bounded by the
    stream's backlog (a ``StreamingResponse`` would wait for a peer that does not read forever)."""

    def __init__(self, streams: EventStreams) -> None:
        super().__init__(
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._streams = streams
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]  # a stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streams = self._streams
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        sub = streams._feed.subscribe()

        async def write(frames: list[str]) -> None:
            body = "".join(f"data: {frame}\n\n" for frame in frames) if frames else ": keepalive\n\n"
            await send({"type": "http.response.body", "body": body.encode(), "more_body": True})

        async def pump() -> None:
            if not await streams._deliver(sub, write, [streams._feed.snapshot_frame()]):
                streams._drop((scope.get("extensions") or {}).get(ABORT))
                return
            while True:
                try:
                    async with asyncio.timeout(_SSE_KEEPALIVE):  # not wait_for: pooler/runtime/tasks.py
                        batch = await sub.next_batch()
                except TimeoutError:
                    batch = []  # a keepalive comment
                if not await streams._deliver(sub, write, batch):
                    streams._drop((scope.get("extensions") or {}).get(ABORT))
                    return

        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            async with asyncio.TaskGroup() as tg:
                sender = tg.create_task(pump(), name="sse-sender")
                watcher = tg.create_task(gone(), name="sse-disconnect")
                sender.add_done_callback(lambda _: watcher.cancel())
                watcher.add_done_callback(lambda _: sender.cancel())
        except* OSError:
            pass  # the peer went
        finally:
            sub.close()


def _served(extensions: Mapping[str, object]) -> None:
    """A dashboard stream is being answered: its connection is no longer one still reading its
    request (pooler/web/gate.py), though it stays unauthenticated; what the kernel and the
    transport queue for it is bounded, so a subscriber that does not read holds little and is
    noticed (its writes wait) after a few dozen KiB."""
    ticket = extensions.get(CONNECTION)
    if isinstance(ticket, Ticket):
        ticket.served()
    send_buffer = extensions.get(SEND_BUFFER)
    if callable(send_buffer):
        send_buffer(_STREAM_BUFFER)


async def _drain_incoming(ws: WebSocket) -> None:
    """The stream is read-only: incoming frames are ignored; returns when the peer goes."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
