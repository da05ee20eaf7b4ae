"""A real HTTP receiver for the alert webhook on 127.0.0.1, programmable while it runs.

``async with WebhookReceiver() as receiver:`` serves ``receiver.url`` (POST /hook). Each request
is recorded (its JSON body, headers, the status it got) before it is answered; ``statuses``
are the answers to give next, in order (then 200); ``hang()`` makes every request wait
unanswered until ``release()`` (a receiver that accepted the connection and froze).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Delivery:
    body: dict[str, Any]
    headers: dict[str, str]
    status: int | None = None  # what it was answered; None while it hangs (or was never answered)


class WebhookReceiver:
    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []  # every request, in arrival order
        self.statuses: list[int] = []  # the next answers; empty: 200
        self.retry_after: str | None = None  # sent with every non-2xx answer when set
        self._open = asyncio.Event()  # set: answer; clear: hang
        self._open.set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        # a short shutdown: a handler still hanging at the end is cut, not waited for a minute
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = int(self._runner.addresses[0][1])
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()

    def hang(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def delivered(self) -> list[dict[str, Any]]:
        """The bodies answered with a 2xx, in order."""
        return [d.body for d in self.deliveries if d.status is not None and 200 <= d.status < 300]

    def kinds(self) -> list[str]:
        return [str(b["kind"]) for b in self.delivered()]

    async def _handle(self, request: web.Request) -> web.Response:
        delivery = Delivery(orjson.loads(await request.read()), dict(request.headers))
        self.deliveries.append(delivery)
        await self._open.wait()
        if request.transport is None or request.transport.is_closing():
            raise web.HTTPServiceUnavailable  # the client gave up meanwhile: nobody hears an answer
        status = self.statuses.pop(0) if self.statuses else 200
        headers = {"Retry-After": self.retry_after} if self.retry_after and status >= 300 else {}
        delivery.status = status
        return web.Response(status=status, text="ok" if status < 300 else "no", headers=headers)
