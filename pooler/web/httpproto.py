"""uvicorn's httptools HTTP protocol with the connection gate and a request read timeout.

Two additions, everything else is uvicorn's own protocol:

- **the gate** (:mod:`pooler.web.gate`): each accepted connection takes a :class:`Ticket` at
  ``connection_made`` and gives it back at ``connection_lost``; a connection the gate refuses is
  answered ``503`` and closed before anything is read. The ticket is in every request's scope
  under :data:`~pooler.web.gate.CONNECTION` (REST settles it at a good miner token), and goes
  over to the WebSocket protocol on an upgrade (it is the same connection);
- **a read timeout**: a connection must send a whole request, headers and body, within
  ``read_timeout`` seconds of connecting (or of the first byte of its next request on a
  keep-alive connection); else it gets ``408`` and is closed. uvicorn has no header timeout and
  starts its keep-alive timer only after a first response, so a client sending headers a byte a
  second (slowloris) kept its connection for good.

It also offers ``abort`` (drop the TCP connection now) under :data:`~pooler.web.wsproto.ABORT`,
for a stream whose reader stopped reading (``/events``), and a bound on what the kernel and the
transport queue for it under :data:`~pooler.web.wsproto.SEND_BUFFER`. :func:`gated_http` makes the class
uvicorn's ``http=`` takes, bound to one gate.

A ``/ws/miner`` upgrade handed to picows (``MINER_SOCKET=picows``) never runs the ASGI app, so
uvicorn's ``ProxyHeadersMiddleware`` does not see it: :func:`forwarded_client` runs that same
middleware over the request's client and headers, so the socket's client address (per-address
limits, the wrong-token back-off, logs) is the one the ASGI path gets behind a trusted proxy
(``FORWARDED_ALLOW_IPS``, uvicorn's own setting; default ``127.0.0.1,::1``).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pooler.web.gate import CONNECTION, ConnectionGate, Ticket
from pooler.web.picows_ws import PATH as MINER_PATH
from pooler.web.picows_ws import MinerPath
from pooler.web.wsproto import ABORT, SEND_BUFFER, limit_send_buffer


def _response(status: str, text: str) -> bytes:
    body = text.encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    )
    if status.startswith("503"):
        head += "retry-after: 5\r\n"
    return (head + "\r\n").encode() + body


_REFUSED = {
    "pending-per-ip": _response(
        "503 Service Unavailable",
        "too many connections from your address that have not authenticated yet; retry later\n",
    ),
    "pending-total": _response(
        "503 Service Unavailable", "too many connections that have not authenticated yet; retry later\n"
    ),
    "descriptors": _response(
        "503 Service Unavailable", "the server is at its connection limit; retry later\n"
    ),
}


_SHUTTING_DOWN = _response("503 Service Unavailable", "the server is shutting down; retry later\n")


async def _scope_only(scope: Any, receive: Any, send: Any) -> None:
    """The app under :func:`forwarded_client`'s middleware: the scope is all it was run for."""


async def _never(*_: Any) -> Any:
    raise RuntimeError("forwarded_client's middleware must not receive or send")


# a server's config -> its proxy-headers middleware (None: off), built at its first hand-off
_PROXIES: weakref.WeakKeyDictionary[Config, ProxyHeadersMiddleware | None] = weakref.WeakKeyDictionary()


def proxy_middleware(config: Config) -> ProxyHeadersMiddleware | None:
    """uvicorn's proxy-headers middleware as ``config`` sets it up for the app (None: proxy headers off)."""
    if config not in _PROXIES:
        trusted = config.forwarded_allow_ips
        _PROXIES[config] = ProxyHeadersMiddleware(_scope_only, trusted) if config.proxy_headers else None
    return _PROXIES[config]


def forwarded_client(
    middleware: ProxyHeadersMiddleware | None,
    client: tuple[str, int] | None,
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[str, int] | None:
    """The client address the ASGI app would see for a request from TCP peer ``client`` with
    ``headers``: ``X-Forwarded-For`` honoured from a trusted proxy, by uvicorn's own middleware."""
    if middleware is None:
        return client
    scope: Any = {"type": "websocket", "client": client, "headers": list(headers)}  # only what it reads
    step = middleware(scope, _never, _never)
    try:
        step.send(None)  # the middleware only reads headers and rewrites the scope: it never suspends
    except StopIteration:
        found = scope.get("client")
        return (str(found[0]), int(found[1])) if found else None
    step.close()
    raise RuntimeError("uvicorn's ProxyHeadersMiddleware suspended: this uvicorn is not supported")


class GatedHttpProtocol(HttpToolsProtocol):
    """``http=`` protocol class for uvicorn.Config (see the module docstring); made by :func:`gated_http`."""

    gate: ClassVar[ConnectionGate]
    read_timeout: ClassVar[float]  # seconds to send one whole request
    miner_path: ClassVar[MinerPath | None]  # MINER_SOCKET=picows: /ws/miner upgrades go to picows

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ticket: Ticket | None = None  # this connection's place in the gate (None: refused, or upgraded)
        self._read_timer: asyncio.TimerHandle | None = None  # armed while a request is being read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else "?"
        entered = self.gate.enter(host, transport.abort)
        if isinstance(entered, str):
            transport.write(_REFUSED[entered])
            transport.close()
            return
        self.ticket = entered
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.ticket is not None:
            self.ticket.close()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        transport = self.transport
        extensions: dict[str, Any] = {
            CONNECTION: self.ticket,
            ABORT: transport.abort,
            SEND_BUFFER: lambda size: limit_send_buffer(transport, size),
        }
        self.scope["extensions"] = extensions
        if self.ticket is not None:
            self.ticket.read_again()
        if self._read_timer is None:
            self._arm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        if self.ticket is not None:
            self.ticket.served()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # from here the hello timeout of /ws/miner applies
        if self.miner_path is not None and self.url.partition(b"?")[0] == MINER_PATH:
            self._hand_to_picows(self.miner_path)
            return
        super().handle_websocket_upgrade()
        ticket, self.ticket = self.ticket, None
        adopt = getattr(self.transport.get_protocol(), "adopt", None)
        if ticket is not None:
            if callable(adopt):
                adopt(ticket)
            else:  # a WebSocket protocol without the gate: the connection stops counting here
                ticket.close()

    def _hand_to_picows(self, path: MinerPath) -> None:
        """The connection becomes a picows socket (pooler/web/picows_ws.py), with its ticket."""
        transport = self.transport
        if path.closing:  # shutting down: no new socket (connection_lost gives the ticket back)
            transport.write(_SHUTTING_DOWN)
            transport.close()
            return
        self.connections.discard(self)  # uvicorn stops tracking it, as on any upgrade
        headers = self.scope["headers"]
        head = [self.scope["method"].encode(), b" ", self.url, b" HTTP/1.1\r\n"]
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        client = forwarded_client(proxy_middleware(self.config), self.client, headers)
        ticket, self.ticket = self.ticket, None
        path.take_over(transport, b"".join(head), ticket, client)
        # this protocol is done: drop what would keep it (and its parser's cycle back to it) alive
        self.parser = None  # type: ignore[assignment]
        self.transport = None  # type: ignore[assignment]
        self.flow = None  # type: ignore[assignment]

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        transport = self.transport
        if transport.is_closing():
            return
        self.gate.on_refuse("read-timeout")
        if self.cycle is None or not self.cycle.response_started:
            transport.write(
                _response(
                    "408 Request Timeout",
                    f"the request was not received within {self.read_timeout:g} s; send it whole, faster\n",
                )
            )
        transport.close()


def gated_http(
    gate: ConnectionGate, read_timeout: float, miner_path: MinerPath | None = None
) -> type[GatedHttpProtocol]:
    """The protocol class for one server: its connections go through ``gate``; with ``miner_path``,
    ``/ws/miner`` upgrades go to picows (``MINER_SOCKET=picows``)."""
    attrs = {"gate": gate, "read_timeout": read_timeout, "miner_path": miner_path}
    return type("PoolerHttpProtocol", (GatedHttpProtocol,), attrs)
