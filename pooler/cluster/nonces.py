"""Nonce ranges that never overlap across the instances of a group: chunks INCRBY'd in Redis.

The coordinator hands out ranges synchronously (``NonceCounter.take`` inside the pure
``handle``), and Redis answers asynchronously, so each instance draws *chunks* ahead of need:
``INCRBY {p}:nonce:{block}:{farmer} 2**chunk_bits`` returns the chunk's end, and the chunk
``[end - size, end)`` is this instance's alone (INCRBY is atomic). Its ranges are then cut
locally, exactly like the single-instance counter does.

- A block's first chunk for every known farmer is fetched before the block reaches the
  coordinator (:meth:`RangeAllocator.prefetch`, called by the node's event gate), and a new
  farmer's before its ``MinerJoined``: jobs for a new block never wait on Redis.
- When a chunk is half used the next one is fetched in the background.
- A chunk used up before the next one arrived (many workers of one farmer on one instance,
  each taking a large range) makes ``take`` return None with ``refilling`` true: the core
  parks those sockets and serves them on ``NonceRefillDone``, posted when the refill ends
  (the allocator's ``on_refill`` port).
- Without a chunk (Redis down since before the block) ``take`` returns None: the worker is
  told the nonce space is unavailable instead of being given a range another instance may
  hash too.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable

from redis.asyncio import Redis

from pooler.core.nonces import NonceCounter
from pooler.runtime.tasks import TaskSet
from pooler.store.keys import Keys
from protocol.work import MAX_NONCE

log = logging.getLogger("pooler.cluster")

_REFILL_BACKOFF = 1.0  # seconds after a failed refill before the same (block, farmer) tries again


class SharedCounter(NonceCounter):
    """A NonceCounter whose space is the chunks this instance was granted for (block, farmer)."""

    __slots__ = ("_allocator", "_chunks", "_end", "_half", "block", "farmer_id")

    def __init__(self, allocator: RangeAllocator, block: int, farmer_id: str) -> None:
        super().__init__(0)
        self._allocator = allocator  # asked for the next chunk when this one is half used
        self.block = block
        self.farmer_id = farmer_id
        self._chunks: collections.deque[tuple[int, int]] = collections.deque()  # granted, not started
        self._end = 0  # end of the chunk being cut (exclusive); next == _end: nothing left
        self._half = 0  # past this point of the current chunk, the next one is requested

    @property
    def refilling(self) -> bool:
        return self._allocator.drawing(self.block, self.farmer_id)

    @property
    def available(self) -> int:
        return self._end - self.next + sum(e - s for s, e in self._chunks)

    def grant(self, start: int, end: int) -> None:
        if start >= end:
            return
        if self.next >= self._end:
            self._start_chunk(start, end)
        else:
            self._chunks.append((start, end))

    def _start_chunk(self, start: int, end: int) -> None:
        self.next = start
        self._end = end
        self._half = start + (end - start) // 2

    def take(self, size: int) -> tuple[int, int] | None:
        if self.next >= self._end:
            if not self._chunks:
                self._allocator.want(self)
                return None
            self._start_chunk(*self._chunks.popleft())
        start = self.next
        end = min(start + max(size, 1), self._end, MAX_NONCE)
        self.next = end
        if end >= self._half and not self._chunks:
            self._allocator.want(self)
        return start, end


class RangeAllocator:
    """This instance's chunks per (block, farmer); one for both of its coordinators."""

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        *,
        chunk_bits: int,
        ttl: float,
        on_refill: Callable[[int, str], None] | None = None,
    ) -> None:
        self._redis = client
        self._keys = keys
        self.chunk = 1 << chunk_bits
        self._ttl_ms = max(1000, round(ttl * 1000))  # counters die with their block
        self._counters: dict[tuple[int, str], SharedCounter] = {}  # (block, farmer id) -> counter
        self._wanted: set[tuple[int, str]] = set()  # refills asked for, not yet granted
        self._tasks = TaskSet("nonce-refill")  # refills in flight: stopped in aclose
        self.chunks = 0  # chunks drawn from Redis since start (metrics, tests)
        # told (block, farmer) when a background refill ended (granted or failed): sockets
        # waiting for it get ranges, or are told there are none
        self._on_refill = on_refill
        # (block, farmer) -> monotonic time of its last failed refill: no new one for a second,
        # so a Redis that refuses at once is not asked in a tight loop by waiting sockets
        self._failed: dict[tuple[int, str], float] = {}

    def drawing(self, block: int, farmer_id: str) -> bool:
        """Whether a refill for (block, farmer) is in flight."""
        return (block, farmer_id) in self._wanted

    def counter(self, block: int, farmer_id: str, floor: int = 0) -> SharedCounter:
        """(block, farmer)'s counter here (the coordinators' nonce space). ``floor`` is not needed:
        chunks are unique across the group and its restarts (INCRBY never goes back)."""
        key = (block, farmer_id)
        c = self._counters.get(key)
        if c is None:
            c = self._counters[key] = SharedCounter(self, block, farmer_id)
        return c

    def forget_before(self, block: int) -> None:
        """Drop counters of blocks older than ``block - 1`` (their jobs are stale)."""
        for key in [k for k in self._counters if k[0] < block - 1]:
            del self._counters[key]
        for key in [k for k in self._failed if k[0] < block - 1]:
            del self._failed[key]

    async def prefetch(self, block: int, farmer_ids: Iterable[str]) -> None:
        """One chunk for each farmer of ``block`` that has none left; raises if Redis fails."""
        todo = [f for f in dict.fromkeys(farmer_ids) if self.counter(block, f).available == 0]
        if not todo:
            return
        await self._draw(block, todo)

    async def _draw(self, block: int, farmer_ids: list[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for fid in farmer_ids:
                key = self._keys.nonce(block, fid)
                pipe.incrby(key, self.chunk)
                pipe.pexpire(key, self._ttl_ms)
            replies = await pipe.execute()
        for fid, end in zip(farmer_ids, replies[::2], strict=True):
            end = int(end)
            start = end - self.chunk
            if start >= MAX_NONCE:
                log.warning("nonce space of farmer %s in block %d is used up", fid, block)
                continue
            self.counter(block, fid).grant(start, min(end, MAX_NONCE))
            self.chunks += 1

    def want(self, counter: SharedCounter) -> None:
        """Fetch the next chunk for ``counter`` in the background (once at a time)."""
        key = (counter.block, counter.farmer_id)
        if key in self._wanted:
            return
        failed = self._failed.get(key)
        if failed is not None and time.monotonic() - failed < _REFILL_BACKOFF:
            return
        self._wanted.add(key)
        self._tasks.spawn(self._refill(key), f"{key[0]}:{key[1]}")

    async def _refill(self, key: tuple[int, str]) -> None:
        try:
            await self._draw(key[0], [key[1]])
            self._failed.pop(key, None)
        except Exception as exc:
            self._failed[key] = time.monotonic()
            log.warning("could not draw a nonce chunk for farmer %s, block %d: %s", key[1], key[0], exc)
        finally:
            self._wanted.discard(key)
        if self._on_refill is not None:
            self._on_refill(*key)

    async def aclose(self) -> None:
        await self._tasks.stop()
