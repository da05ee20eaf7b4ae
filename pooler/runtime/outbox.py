"""Per-connection bounded outgoing queues, written directly when possible, else by a sender task.

Why: the runner must never await a socket. It drops an encoded frame into the
connection's outbox (O(1), no await) and moves on. A peer that cannot keep up fills its
outbox and is closed (1013) rather than slowing the runner or anyone else.

Theory of operation
-------------------
Two ways out, one queue, so frames always leave in order:

- the direct way (a connection with a lane, :mod:`pooler.runtime.lane`): ``put`` marks the box
  dirty with the :class:`Flusher`; the runner flushes after each batch of effects (and a
  ``call_soon`` catches puts made elsewhere), so all frames a batch produced for one socket
  go out in ONE synchronous write: batched acks, no task switch per frame;
- the sender task (``drain``): used when there is no lane, when the lane refuses (the
  transport is applying backpressure, or the connection is closing), and for the close.
  While it is sending, the direct way stands aside so the two never interleave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

SendText = Callable[[str], Awaitable[None]]
WriteNow = Callable[[Iterable[str]], bool]  # Lane.write: all frames sent now, or False and none

CLOSE_TRY_AGAIN_LATER = 1013


class Flusher:
    """Outboxes with frames waiting for the direct way; flushed together, once per batch."""

    __slots__ = ("_dirty", "_handle")

    def __init__(self) -> None:
        self._dirty: list[Outbox] = []  # boxes marked since the last flush, each once
        self._handle: asyncio.Handle | None = None  # the call_soon that flushes if nobody else does

    def mark(self, box: Outbox) -> None:
        self._dirty.append(box)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        dirty, self._dirty = self._dirty, []
        for box in dirty:
            box.flush()


class Outbox:
    """Frames waiting for one WebSocket. Single producer (the loop), single consumer at a time."""

    __slots__ = (
        "_close",
        "_flusher",
        "_frames",
        "_limit",
        "_marked",
        "_sending",
        "_wake",
        "_write",
        "closed",
        "on_wake",
    )

    def __init__(self, limit: int, flusher: Flusher | None = None) -> None:
        # Encoded text frames, oldest first. A list, not a deque: a deque's first block is ~600 bytes
        # and most boxes are empty between batches; the sender takes frames off by swapping lists.
        self._frames: list[str] = []
        self._limit = limit  # frames allowed to wait before the peer counts as stuck
        self._wake: asyncio.Event | None = None  # created with the sender's first work (memory: see above)
        self._close: tuple[int, str] | None = None  # requested close, sent after queued frames
        self._flusher = flusher  # None: every frame goes through the sender task
        self._write: WriteNow | None = None  # the connection's lane, once attached
        self._marked = False  # waiting in the flusher's dirty list
        self._sending = False  # the sender task is mid-send: the direct way must wait its turn
        self.closed = False  # no more frames accepted (overflow, close requested, or peer gone)
        # Called whenever the sender task has work: lets the owner start that task only when first
        # needed (with a lane most sockets never need it: a task per idle socket is memory).
        self.on_wake: Callable[[], None] | None = None

    def _wake_sender(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self.on_wake is not None:
            self.on_wake()

    def attach(self, write: WriteNow | None) -> None:
        """Use ``write`` (a lane) for frames from now on; None goes back to the sender task only."""
        self._write = write if self._flusher is not None else None

    @property
    def direct(self) -> bool:
        """Frames go out through a lane (synchronous batched writes) rather than the sender task."""
        return self._write is not None

    def put(self, frame: str) -> bool:
        """Queue a frame; False (and a 1013 close is requested) when the peer is too slow."""
        if self.closed:
            return False
        if len(self._frames) >= self._limit:
            self.close(CLOSE_TRY_AGAIN_LATER, "outbox full: client too slow")
            return False
        self._frames.append(frame)
        if self._write is not None and not self._sending:
            if not self._marked:
                self._marked = True
                assert self._flusher is not None
                self._flusher.mark(self)
        else:
            self._wake_sender()
        return True

    def flush(self) -> None:
        """The direct way: everything queued in one write, or hand over to the sender task."""
        self._marked = False
        frames = self._frames
        if not frames or self._sending or self._write is None:
            return
        if self._write(frames):
            frames.clear()
        else:
            self._wake_sender()

    def close(self, code: int, reason: str) -> None:
        """Ask the sender to close after the frames already queued."""
        if self._close is None:
            self._close = (code, reason)
        self.closed = True
        self._wake_sender()

    def __len__(self) -> int:
        return len(self._frames)

    async def drain(self, send: SendText, close: Callable[[int, str], Awaitable[None]]) -> None:
        """The sender task's body: send frames in order until a close is requested or sending fails."""
        while True:
            if self._wake is None:
                self._wake = asyncio.Event()
            await self._wake.wait()
            self._wake.clear()
            self._sending = True
            try:
                while self._frames:
                    batch, self._frames = self._frames, []
                    for i, frame in enumerate(batch):
                        try:
                            await send(frame)
                        except BaseException:
                            self._frames[:0] = batch[i + 1 :]  # unsent frames stay queued, in order
                            raise
            finally:
                self._sending = False
            if self._close is not None:
                await close(*self._close)
                return
