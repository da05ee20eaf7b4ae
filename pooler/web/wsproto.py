"""uvicorn's websockets-sansio protocol with one addition: a way for the app to drop a stuck peer.

ASGI can only ask for a graceful close, and uvicorn sends that close frame (like every frame)
after waiting for the transport to become writable. A peer that stopped reading never lets it
become writable again, so the close never goes out and the connection, its buffers and its
slot would stay forever. This subclass puts ``abort`` (drop the TCP connection now) into the
scope's extensions under :data:`ABORT`; ``/ws/miner`` calls it when a slow peer has not taken
its close frame within a grace period.

It also carries the connection's :class:`~pooler.web.gate.Ticket` over from the HTTP protocol
that upgraded it (:meth:`adopt`, called by pooler/web/httpproto.py), gives it back when the
connection ends and offers it to the app under :data:`~pooler.web.gate.CONNECTION` (``/ws/miner``
settles it at a good ``hello``). Everything else is uvicorn's own protocol.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from pooler.web.gate import CONNECTION, Ticket

ABORT = "pooler.abort"
# ``send_buffer(size)``: bound what the kernel and the transport hold for a peer that does not read
SEND_BUFFER = "pooler.send_buffer"


def limit_send_buffer(transport: Any, size: int) -> None:
    """At most about ``size`` bytes queued in the kernel (SO_SNDBUF) and ``size`` in the transport
    for this connection; past that its writes wait (a stream then sees its reader is not reading)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    transport.set_write_buffer_limits(high=size)


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """``ws=`` protocol class for uvicorn.Config: websockets-sansio plus the ``pooler.abort`` extension."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ticket: Ticket | None = None  # the connection's place in the gate, from the HTTP protocol

    def adopt(self, ticket: Ticket) -> None:
        """The connection's ticket (called right after the upgrade, before the app task runs)."""
        self.ticket = ticket
        scope: Any = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][CONNECTION] = ticket

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][ABORT] = self._abort
            scope["extensions"][SEND_BUFFER] = lambda size: limit_send_buffer(self.transport, size)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ticket is not None:
            self.ticket.close()
        super().connection_lost(exc)

    def _abort(self) -> None:
        # Also when already closing: a graceful close waits to flush to a peer that does not read.
        if self.transport is not None:
            self.transport.abort()
