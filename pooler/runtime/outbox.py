"""Per-connection bounded outgoing queues, each drained by its own sender task.

Why: the runner must never await a socket. It drops an encoded frame into the
connection's outbox (O(1), no await) and moves on; the connection's sender task does
the awaiting. A peer that cannot keep up fills its outbox and is closed (1013) rather
than slowing the runner or anyone else.

What counts as "cannot keep up": the runner answers a whole batch of events before the
sender runs, so a healthy client that sent a burst of requests (within its rate limit)
gets a burst of answers queued at once. While the sender is parked waiting for frames,
it will write them all to the transport without pausing as soon as it runs, so a burst
may exceed ``limit`` (up to ``hard_limit``, which bounds memory). The ``limit`` applies
while the sender is inside a send the transport made it wait for (the peer's TCP window
is full) or has not started: only then are frames really piling up behind the peer.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

SendText = Callable[[str], Awaitable[None]]

CLOSE_TRY_AGAIN_LATER = 1013
HARD_LIMIT_FACTOR = 16  # a burst answered in one runner batch may queue this many times ``limit``
MIN_HARD_LIMIT = 16_384  # ... and more than a full runner batch (4096 events, each may answer with 2 frames)


class Outbox:
    """Frames waiting for one WebSocket. Single producer (the loop), single consumer (its sender)."""

    __slots__ = ("_close", "_frames", "_hard_limit", "_limit", "_parked", "_wake", "closed", "on_close")

    def __init__(self, limit: int) -> None:
        self._frames: collections.deque[str] = collections.deque()  # encoded text frames, oldest first
        self._limit = limit  # frames allowed to wait behind a peer that pushes back before it counts as stuck
        self._hard_limit = max(limit * HARD_LIMIT_FACTOR, MIN_HARD_LIMIT)  # one burst the sender will flush
        self._wake = asyncio.Event()  # set whenever there is something for the sender to do
        # True while the sender waits for frames: it flushes everything queued without pausing
        # when it next runs, so queued frames are a burst, not a backlog behind a slow peer
        self._parked = False
        self._close: tuple[int, str] | None = None  # requested close, sent after queued frames
        self.closed = False  # no more frames accepted (overflow, close requested, or peer gone)
        # called once when the close is requested: the connection's handler stops reading then
        self.on_close: Callable[[], None] | None = None

    def put(self, frame: str) -> bool:
        """Queue a frame; False (and a 1013 close is requested) when the peer is too slow."""
        if self.closed:
            return False
        queued = len(self._frames)
        if queued >= self._limit and (not self._parked or queued >= self._hard_limit):
            self.close(CLOSE_TRY_AGAIN_LATER, "outbox full: client too slow")
            return False
        self._frames.append(frame)
        self._wake.set()
        return True

    def close(self, code: int, reason: str) -> None:
        """Ask the sender to close after the frames already queued."""
        first = self._close is None
        if first:
            self._close = (code, reason)
        self.closed = True
        self._wake.set()
        if first and self.on_close is not None:
            self.on_close()

    def __len__(self) -> int:
        return len(self._frames)

    async def drain(self, send: SendText, close: Callable[[int, str], Awaitable[None]]) -> None:
        """The sender task's body: send frames in order until a close is requested or sending fails."""
        frames = self._frames
        while True:
            self._parked = True
            try:
                await self._wake.wait()
            finally:
                self._parked = False
            self._wake.clear()
            while frames:
                await send(frames.popleft())
            if self._close is not None:
                await close(*self._close)
                return
