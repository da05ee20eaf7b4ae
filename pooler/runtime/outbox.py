"""Per-connection bounded outgoing queues, written directly when possible, else by a sender task.

Why: the runner must never await a socket. It drops an encoded frame into the
connection's outbox (O(1), no await) and moves on. A peer that cannot keep up fills its
outbox and is closed (1013) rather than slowing the runner or anyone else.

Theory of operation
-------------------
Two ways out, one queue, so frames always leave in order:

- the direct way (a connection with a lane, :mod:`pooler.web.lane`): ``put`` marks the box
  dirty with the :class:`Flusher`; the runner flushes after each batch of effects (and a
  ``call_soon`` catches puts made elsewhere), so all frames a batch produced for one socket
  go out in ONE synchronous write: batched acks, no task switch per frame;
- the sender task (``drain``): used when there is no lane, when the lane refuses (the
  transport is applying backpressure, or the connection is closing), and for the close.
  While it is inside a send, the direct way stands aside so the two never interleave. With
  a lane the owner starts the task only when it is first needed (``on_wake``).

What counts as "cannot keep up": the runner answers a whole batch of events at once, so a
healthy client that sent a burst of requests (within its rate limit) gets a burst of
answers queued at once. While nothing is waiting behind the peer (the direct way is open, or
the sender is parked waiting for frames) everything queued is written without pausing, so
a burst may exceed ``limit`` (up to ``hard_limit``, which bounds memory). The ``limit``
applies once the lane was refused (the transport is over its high-water mark: the peer's
TCP window is full), while the sender is inside a send the transport made it wait for, or
has work but has not run yet: only then are frames really piling up. A refused flush that
already holds ``limit`` frames closes at once: nothing else may come to notice the backlog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

SendText = Callable[[str], Awaitable[None]]
WriteNow = Callable[[Iterable[str]], bool]  # Lane.write: all frames sent now, or False and none

CLOSE_TRY_AGAIN_LATER = 1013
HARD_LIMIT_FACTOR = 16  # a burst answered in one runner batch may queue this many times ``limit``
MIN_HARD_LIMIT = 16_384  # ... and more than a full runner batch (4096 events, each may answer with 2 frames)


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
    """Frames waiting for one WebSocket. Single producer (the loop), one writer at a time."""

    __slots__ = (
        "_backed_up",
        "_close",
        "_flusher",
        "_frames",
        "_hard_limit",
        "_limit",
        "_marked",
        "_parked",
        "_sending",
        "_taken",
        "_wake",
        "_write",
        "closed",
        "on_close",
        "on_wake",
    )

    def __init__(self, limit: int, flusher: Flusher | None = None) -> None:
        # Encoded text frames, oldest first. A list, not a deque: a deque's first block is ~600 bytes
        # and most boxes are empty between batches; the sender takes frames off by swapping lists.
        self._frames: list[str] = []
        self._limit = limit  # frames allowed to wait behind a peer that pushes back before it counts as stuck
        self._hard_limit = max(limit * HARD_LIMIT_FACTOR, MIN_HARD_LIMIT)  # one burst written without pause
        self._wake: asyncio.Event | None = None  # created with the sender's first work (memory: see above)
        # True while the sender waits for frames: it flushes everything queued without pausing
        # when it next runs, so queued frames are a burst, not a backlog behind a slow peer
        self._parked = False
        self._sending = False  # the sender is inside its send loop: the direct way must wait its turn
        self._taken = 0  # frames the sender has taken off the list but not sent yet (still queued)
        self._flusher = flusher  # None: every frame goes through the sender task
        self._write: WriteNow | None = None  # the connection's lane, once attached
        self._marked = False  # waiting in the flusher's dirty list
        # The lane refused (the transport is over its high-water mark): frames now wait behind the
        # peer, so ``limit`` applies until the sender has written everything queued.
        self._backed_up = False
        self._close: tuple[int, str] | None = None  # requested close, sent after queued frames
        self.closed = False  # no more frames accepted (overflow, close requested, or peer gone)
        # called once when the close is requested: the connection's handler stops reading then
        self.on_close: Callable[[], None] | None = None
        # Called whenever the sender task has work: lets the owner start that task only when first
        # needed (with a lane most sockets never need it, and a task per idle socket is memory).
        self.on_wake: Callable[[], None] | None = None

    @property
    def direct(self) -> bool:
        """Frames go out through a lane (synchronous batched writes) rather than the sender task."""
        return self._write is not None

    def attach(self, write: WriteNow | None) -> None:
        """Use ``write`` (a lane) for frames from now on; None goes back to the sender task only."""
        self._write = write if self._flusher is not None else None

    def _wake_sender(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self.on_wake is not None:
            self.on_wake()

    def put(self, frame: str) -> bool:
        """Queue a frame; False (and a 1013 close is requested) when the peer is too slow."""
        if self.closed:
            return False
        queued = len(self._frames) + self._taken
        unhindered = not self._backed_up and ((self._write is not None and not self._sending) or self._parked)
        if queued >= self._limit and (not unhindered or queued >= self._hard_limit):
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
        if not self._frames or self._sending or self._write is None:
            return
        if self._write(self._frames):
            self._frames.clear()
            return
        self._backed_up = True
        if len(self._frames) >= self._limit:  # a backlog behind a peer that stopped taking frames
            del self._frames[self._limit :]  # as if put() had refused those: at most ``limit`` wait
            self.close(CLOSE_TRY_AGAIN_LATER, "outbox full: client too slow")
        else:
            self._wake_sender()

    def close(self, code: int, reason: str) -> None:
        """Ask the sender to close after the frames already queued."""
        first = self._close is None
        if first:
            self._close = (code, reason)
        self.closed = True
        self._wake_sender()
        if first and self.on_close is not None:
            self.on_close()

    def __len__(self) -> int:
        return len(self._frames) + self._taken

    async def drain(self, send: SendText, close: Callable[[int, str], Awaitable[None]]) -> None:
        """The sender task's body: send frames in order until a close is requested or sending fails."""
        while True:
            if self._wake is None:
                self._wake = asyncio.Event()
            self._parked = True
            try:
                await self._wake.wait()
            finally:
                self._parked = False
            self._wake.clear()
            self._sending = True
            try:
                while self._frames:
                    batch, self._frames = self._frames, []
                    self._taken = len(batch)
                    for i, frame in enumerate(batch):
                        try:
                            await send(frame)
                        except BaseException:
                            self._frames[:0] = batch[i + 1 :]  # unsent frames stay queued, in order
                            raise
                        self._taken -= 1
                self._backed_up = False  # the transport took everything: no backlog any more
            finally:
                self._sending = False
                self._taken = 0
            if self._close is not None:
                await close(*self._close)
                return
