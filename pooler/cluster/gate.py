"""The chain gate of a group member: a new block reaches the coordinators only with its nonce chunks.

Chain events come from this instance's block monitor and from the leader (new blocks it
announces on ``{p}:control``); :meth:`ChainGate.emit` queues them and :meth:`ChainGate.run`
lets them through in order:

- a new block's first nonce chunk for every known farmer is drawn from Redis before the block
  reaches a coordinator, so jobs for a new block never wait on Redis (while Redis fails the
  block waits, retried with the shared backoff);
- each block is let through once (the monitor and the leader both announce it);
- while this instance leads, every block it lets through is announced to the group.

What it let through last (the block, the paused flag) is where a new leader's cycle starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from pooler.cluster.retry import retrying
from pooler.core.events import Event, FarmPaused, NewBlock

log = logging.getLogger("pooler.cluster")

_GATE_SIZE = 10_000  # chain and control events waiting for their nonce chunks


class ChunkSource(Protocol):
    """The nonce chunks of the group (pooler.cluster.nonces.RangeAllocator)."""

    async def prefetch(self, block: int, farmer_ids: Iterable[str]) -> None: ...

    def forget_before(self, block: int) -> None: ...


class ChainGate:
    """See the module docstring."""

    def __init__(
        self,
        chunks: ChunkSource,
        *,
        farmers: Callable[[], Iterable[str]],
        post: Callable[[Event], None],
        leading: Callable[[], bool],
        announce: Callable[[NewBlock], Awaitable[None]],
    ) -> None:
        self._chunks = chunks
        self._farmers = farmers  # farmer ids of the miners known here: whose chunks a block needs
        self._post = post  # to the coordinators (the local one, and the cycle one while leading)
        self._leading = leading
        self._announce = announce
        self._queue: asyncio.Queue[Event] = asyncio.Queue(_GATE_SIZE)  # waiting to be let through
        self.last_block: NewBlock | None = None  # newest block let through: a new leader starts from it
        self.paused: bool | None = None  # last FarmPaused let through (None: none yet)

    @property
    def block_index(self) -> int | None:
        """The open block's index (None before the first)."""
        return self.last_block.index if self.last_block is not None else None

    def emit(self, event: Event) -> None:
        """The block monitor's sink (and the leader's announcements): queued, never awaited."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.error("cluster gate full: dropped %s", type(event).__name__)

    async def run(self) -> None:
        while True:
            event = await self._queue.get()
            if isinstance(event, NewBlock):
                last = self.last_block
                if last is not None and event.index <= last.index:
                    continue  # seen already (the monitor and the leader both announce it)
                await self._prefetch(event.index)
                self.last_block = event
                self._chunks.forget_before(event.index)
                if self._leading():
                    await self._announce(event)
            elif isinstance(event, FarmPaused):
                self.paused = event.paused
            self._post(event)

    async def _prefetch(self, index: int) -> None:
        async def draw(established: Callable[[], None]) -> None:
            await self._chunks.prefetch(index, self._farmers())

        await retrying(f"block {index} waits for its nonce chunks", draw)
