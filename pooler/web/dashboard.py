"""The dashboard: read-only event stream (WebSocket ``/ws/events`` and SSE ``/events``) and the page.

Every frame is ``{"type": "event", "kind", "at", "data"}`` (docs/events.md); a ``snapshot``
comes first so a page that just opened has something to show. Nothing here can act on
the Pooler and nothing carries a token or a key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

if TYPE_CHECKING:
    from pooler.app.service import Pooler

STATIC = Path(__file__).parent / "static"
_SSE_KEEPALIVE = 15.0  # seconds: keeps proxies from closing an idle stream


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
