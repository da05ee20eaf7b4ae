"""uvicorn's websockets-sansio protocol with a direct lane for the miner socket's hot paths.

Why: through ASGI, every frame costs a task switch and half a dozen coroutine layers each way,
and uvicorn pauses and resumes reading around every inbound message (two event-loop calls per
frame). On the two hot paths of a miner socket, shares in and acks/jobs out, that overhead was
most of the Pooler's cost per message (profiles in docs/benchmarks.md). The lane keeps ASGI for
the handshake, the ``hello``, binary frames and the close, and lets the socket's owner:

- write text frames synchronously, several in ONE ``transport.write`` (:meth:`Lane.write`),
  whenever the transport applies no backpressure; otherwise the caller falls back to the ASGI
  ``send`` path, which waits for the transport to drain;
- take complete text messages synchronously as they are parsed (:meth:`Lane.receive_with`),
  instead of through the ASGI receive queue.

The protocol offers the lane in ``scope["extensions"][LANE]``; an application that never looks
gets plain uvicorn behaviour. The subclass relies on attributes of uvicorn's
``WebSocketsSansIOProtocol`` (``conn``, ``transport``, ``writable``, ``close_sent``,
``handshake_complete``, ``disconnected``); :data:`AVAILABLE` is False, and ``Pooler`` uses
:class:`~pooler.web.wsproto.AbortableWebSocketProtocol` alone, if an uvicorn release ever lacks them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.frames import Frame
from websockets.protocol import State

from pooler.web.wsproto import AbortableWebSocketProtocol

log = logging.getLogger("pooler.web.lane")

LANE = "kale.lane"  # the ASGI scope extension carrying the Lane

# attributes the lane reads, as the names uvicorn's __init__ assigns
_NEEDED = {"conn", "transport", "writable", "close_sent", "handshake_complete", "disconnected"}
AVAILABLE = set(WebSocketsSansIOProtocol.__init__.__code__.co_names) >= _NEEDED and all(
    hasattr(WebSocketsSansIOProtocol, m) for m in ("handle_connect", "handle_text", "send")
)

Receiver = Callable[[str], None]

_TEXT_FIN = 0x81  # FIN + opcode 1 (text)


def text_frames(frames: Iterable[str]) -> bytes:
    """Server-to-client text frames, unfragmented and unmasked (RFC 6455 5.2), back to back.

    Byte for byte what ``websockets`` writes for such frames with no extension negotiated; done
    here so a batch costs one allocation and no per-frame calls into the library's framing.
    """
    out = bytearray()
    for frame in frames:
        data = frame.encode()
        n = len(data)
        if n < 126:
            out += bytes((_TEXT_FIN, n))
        elif n < 65536:
            out += bytes((_TEXT_FIN, 126)) + n.to_bytes(2, "big")
        else:
            out += bytes((_TEXT_FIN, 127)) + n.to_bytes(8, "big")
        out += data
    return bytes(out)


class DirectLane(Protocol):
    """What ``/ws/miner`` needs of a lane: :class:`Lane` here, ``PicowsLane`` (pooler/web/picows_ws.py)."""

    def write(self, frames: Iterable[str]) -> bool: ...

    def receive_with(self, receiver: Receiver | None) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Lane:
    """The synchronous side door of one WebSocket connection (see the module docstring)."""

    __slots__ = ("_proto", "paused")

    def __init__(self, proto: LaneProtocol) -> None:
        self._proto = proto
        self.paused = False  # reading paused by the lane's owner (its consumer is full)

    def write(self, frames: Iterable[str]) -> bool:
        """Send text frames now, in one write; False (nothing sent) if the caller must wait instead."""
        p = self._proto
        if (
            not p.handshake_complete
            or p.close_sent
            or p.disconnected
            or not p.writable.is_set()  # the transport's buffer is over its high-water mark
            or p.transport.is_closing()
        ):
            return False
        conn = p.conn
        if conn.state is not State.OPEN:  # the peer's close arrived: the ASGI path reports the disconnect
            return False
        if conn.extensions:  # negotiated extensions transform frames: let the library frame them
            try:
                for frame in frames:
                    conn.send_text(frame.encode())
            except InvalidState:
                return False
            p.transport.write(b"".join(conn.data_to_send()))
            return True
        p.transport.write(text_frames(frames))
        return True

    def receive_with(self, receiver: Receiver | None) -> None:
        """Hand complete text messages to ``receiver`` from now on (None: back to the ASGI queue)."""
        self._proto.lane_receiver = receiver

    def pause_reading(self) -> None:
        if not self.paused and not self._proto.disconnected:
            self.paused = True
            self._proto.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            if not self._proto.disconnected:
                self._proto.transport.resume_reading()


class LaneProtocol(AbortableWebSocketProtocol):
    """websockets-sansio with ``pooler.abort`` (pooler/web/wsproto.py) plus the lane; uvicorn's ``ws``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lane_receiver: Receiver | None = None  # set by the app once the connection is its own

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][LANE] = Lane(self)  # read by the app task, which has not run yet

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            # uvicorn keeps the handshake's request and response (headers: ~2 KB a socket) for the
            # connection's life; nothing reads them after the accept.
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]

    def handle_text(self, event: Frame) -> None:
        receiver = self.lane_receiver
        if receiver is None or not event.fin or self.close_sent:
            super().handle_text(event)  # fragments and closing connections keep the ASGI path
            return
        try:
            text = bytes(event.data).decode()
        except UnicodeDecodeError:
            super().handle_text(event)  # uvicorn closes with 1007, as without the lane
            return
        try:
            receiver(text)
        except Exception:  # never into the transport's callback: log, and the socket lives on
            log.exception("miner socket receiver failed")
