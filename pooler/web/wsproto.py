"""uvicorn's websockets-sansio protocol with one addition: a way for the app to drop a stuck peer.

ASGI can only ask for a graceful close, and uvicorn sends that close frame (like every frame)
after waiting for the transport to become writable. A peer that stopped reading never lets it
become writable again, so the close never goes out and the connection, its buffers and its
slot would stay forever. This subclass puts ``abort`` (drop the TCP connection now) into the
scope's extensions under :data:`ABORT`; ``/ws/miner`` calls it when a slow peer has not taken
its close frame within a grace period. Everything else is uvicorn's own protocol.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

ABORT = "pooler.abort"


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """``ws=`` protocol class for uvicorn.Config: websockets-sansio plus the ``pooler.abort`` extension."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][ABORT] = self._abort

    def _abort(self) -> None:
        # Also when already closing: a graceful close waits to flush to a peer that does not read.
        if self.transport is not None:
            self.transport.abort()
