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
settles it at a good ``hello``).

And it drops a peer whose keepalive ping went unanswered if that peer does not take the close
frame within :attr:`~AbortableWebSocketProtocol.close_grace` seconds (``SLOW_CLIENT_GRACE``; set
per server by :func:`with_close_grace`): uvicorn sends 1011 and closes the transport gracefully,
which for a peer that stopped reading (a zero TCP window) waits for a flush that never comes, so
the connection, its gate place and its miner slot stayed. When the kernel still holds bytes that
peer never took, the close is made a reset (:func:`reset_when_stuck`): a graceful close would
only move them into an orphaned kernel socket that trickles them into the zero window for
minutes. Everything else is uvicorn's own protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
from typing import Any, ClassVar, TypeVar

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


def unsent_bytes(sock: Any) -> int:
    """Bytes the kernel still holds for the peer of ``sock`` (not sent, or sent and not yet
    acknowledged: Linux's TIOCOUTQ); raises OSError for a closed or non-TCP socket."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0])


def reset_when_stuck(transport: Any) -> bool:
    """At a keepalive timeout: if the kernel still holds bytes this peer never took (TIOCOUTQ),
    make the connection's close a reset (SO_LINGER 0) instead of a FIN queued behind them.

    The peer answered no ping and is not reading, so the close frame behind those bytes cannot
    reach it; a graceful close would only hand them to the kernel, which keeps the orphaned
    socket and its buffer (up to ``tcp_wmem``, 4 MB here) trickling into a zero window for
    minutes. A peer whose bytes are all taken keeps the graceful close. True when set."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        if unsent_bytes(sock) <= 0:
            return False
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:  # not a TCP socket, or already closed: nothing to reset
        return False
    return True


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """``ws=`` protocol class for uvicorn.Config: websockets-sansio plus the ``pooler.abort`` extension."""

    close_grace: ClassVar[float] = 5.0  # seconds a peer gets to take the keepalive close before the drop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ticket: Ticket | None = None  # the connection's place in the gate, from the HTTP protocol
        # armed when the keepalive ping timed out: drops the connection if its close never flushed
        self._drop_timer: asyncio.TimerHandle | None = None

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

    def keepalive_timeout(self) -> None:
        if self.transport is not None:
            reset_when_stuck(self.transport)  # bytes the peer never took: its close is a reset
        super().keepalive_timeout()  # 1011, then a graceful close: it ends once the buffer is flushed
        if self._drop_timer is None and not self.disconnected:
            self._drop_timer = self.loop.call_later(self.close_grace, self._drop)

    def _drop(self) -> None:
        self._drop_timer = None
        if not self.disconnected:  # the peer did not take our close frame in time
            self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._drop_timer is not None:
            self._drop_timer.cancel()
            self._drop_timer = None
        if self.ticket is not None:
            self.ticket.close()
        super().connection_lost(exc)

    def _abort(self) -> None:
        # Also when already closing: a graceful close waits to flush to a peer that does not read.
        if self.transport is not None:
            self.transport.abort()


P = TypeVar("P", bound=AbortableWebSocketProtocol)


def with_close_grace(protocol: type[P], grace: float) -> type[P]:
    """``protocol`` for one server: a peer whose ping went unanswered has ``grace`` seconds to take
    the close frame, then its connection is dropped (``SLOW_CLIENT_GRACE``, as on the picows path)."""
    return type(protocol.__name__, (protocol,), {"close_grace": grace})
