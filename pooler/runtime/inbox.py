"""The coordinator's one inbox: adapters put events in, the runner takes them in batches.

It is built before the runner (pooler/app/wiring.py) and handed to everything that feeds the
coordinator (the miner socket and REST routes, the block monitor, a group member's gate and
membership), so none of them needs the runner itself. Three ways in:

- ``submit``: waits while the inbox is full (backpressure on a socket's reader);
- ``offer``: never waits, False when full (the miner socket's lane then pauses reading);
- ``post``: never waits and never loses the event (callbacks that cannot wait): when full,
  a task owned here puts it in as soon as there is room (stopped with the runner).
"""

from __future__ import annotations

import asyncio

from pooler.core.events import Event
from pooler.runtime.tasks import TaskSet


class Inbox:
    __slots__ = ("_overflow", "queue")

    def __init__(self, size: int = 100_000) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=size)  # the runner's loop drains it
        self._overflow = TaskSet("inbox")  # posts waiting for room

    async def submit(self, event: Event) -> None:
        """Hand an event to the coordinator; waits only while the inbox is full (backpressure)."""
        await self.queue.put(event)

    def offer(self, event: Event) -> bool:
        """Hand an event over without waiting; False when the inbox is full (the caller backs off)."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    def post(self, event: Event) -> None:
        """From callbacks that cannot wait: never loses the event, even with a full inbox."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self._overflow.spawn(self.queue.put(event), "post")

    def empty(self) -> bool:
        return self.queue.empty()

    async def aclose(self) -> None:
        """Stop the posts still waiting for room (the runner is closing: nobody will take them)."""
        await self._overflow.stop()
