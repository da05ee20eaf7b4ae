"""Per-connection bounded outgoing queues, each drained by its own sender task.

Why: the runner must never await a socket. It drops an encoded frame into the
connection's outbox (O(1), no await) and moves on; the connection's sender task does
the awaiting. A peer that cannot keep up fills its outbox and is closed (1013) rather
than slowing the runner or anyone else.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

SendText = Callable[[str], Awaitable[None]]

CLOSE_TRY_AGAIN_LATER = 1013


class Outbox:
    """Frames waiting for one WebSocket. Single producer (the loop), single consumer (its sender)."""

    __slots__ = ("_close", "_frames", "_limit", "_wake", "closed")

    def __init__(self, limit: int) -> None:
        self._frames: collections.deque[str] = collections.deque()  # encoded text frames, oldest first
        self._limit = limit  # frames allowed to wait before the peer counts as stuck
        self._wake = asyncio.Event()  # set whenever there is something for the sender to do
        self._close: tuple[int, str] | None = None  # requested close, sent after queued frames
        self.closed = False  # no more frames accepted (overflow, close requested, or peer gone)

    def put(self, frame: str) -> bool:
        """Queue a frame; False (and a 1013 close is requested) when the peer is too slow."""
        if self.closed:
            return False
        if len(self._frames) >= self._limit:
            self.close(CLOSE_TRY_AGAIN_LATER, "outbox full: client too slow")
            return False
        self._frames.append(frame)
        self._wake.set()
        return True

    def close(self, code: int, reason: str) -> None:
        """Ask the sender to close after the frames already queued."""
        if self._close is None:
            self._close = (code, reason)
        self.closed = True
        self._wake.set()

    def __len__(self) -> int:
        return len(self._frames)

    async def drain(self, send: SendText, close: Callable[[int, str], Awaitable[None]]) -> None:
        """The sender task's body: send frames in order until a close is requested or sending fails."""
        frames = self._frames
        while True:
            await self._wake.wait()
            self._wake.clear()
            while frames:
                await send(frames.popleft())
            if self._close is not None:
                await close(*self._close)
                return
