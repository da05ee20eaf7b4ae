"""Every background task has an owner that stops it.

Where a set of tasks lives and dies with one block of code, the owner is an
``asyncio.TaskGroup`` (the observer's probes, a group member's loops, a dashboard socket's
reader and sender). Where tasks are started from synchronous callbacks and outlive any one
block (the runner's Backend calls and searches, a group's nonce refills, a miner's join
waiting for its nonce chunk), one :class:`TaskSet` object owns them: ``spawn`` keeps a
strong reference until the task ends (the event loop keeps only weak ones), a task that
fails is logged instead of being lost, and ``stop`` cancels and awaits them all.

:func:`cancel_and_wait` is the one way a task is stopped: cancel it, then wait for it to end
without swallowing a cancellation aimed at the caller. (``with suppress(CancelledError):
await task`` swallows that one too, and a shutdown that is itself cancelled carries on.)
The same lesson for timeouts, learnt on Python 3.11: bound a wait with ``asyncio.timeout``,
never ``asyncio.wait_for``, which drops a cancel that lands just as its call completes
(tests/component/test_cancellation.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("pooler.runtime")


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel ``tasks`` and wait until each has ended; a failure other than the cancel is logged.

    A cancellation of the caller while it waits propagates (the tasks stay cancelled)."""
    await _cancel(tasks)
    for task in tasks:
        _report(task)


_RECANCEL = 1.0  # seconds a cancelled task gets before it is cancelled again


async def _cancel(tasks: tuple[asyncio.Task[Any], ...] | list[asyncio.Task[Any]]) -> None:
    """Cancel until each task has ended. A library may swallow a cancel (redis-py turned one that
    landed inside a reconnect into a ConnectionError, which a retry loop then retried: a group
    member's shutdown hung), so a task still running after ``_RECANCEL`` is cancelled again."""
    pending = {task for task in tasks if not task.done()}
    rounds = 0
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=_RECANCEL)
        rounds += 1
        if pending and rounds == 1:
            names = ", ".join(sorted(t.get_name() for t in pending))
            log.warning("still running %.0f s after a cancel, cancelling again: %s", _RECANCEL, names)


def _report(task: asyncio.Task[Any]) -> None:
    """Retrieve the outcome of a finished task so nothing is lost: a failure is logged."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("task %s failed", task.get_name(), exc_info=exc)


class TaskSet:
    """The owner of tasks started one by one (see the module docstring)."""

    __slots__ = ("_tasks", "name")

    def __init__(self, name: str) -> None:
        self.name = name  # names the owner's tasks in logs and task dumps
        self._tasks: set[asyncio.Task[Any]] = set()  # running: strong references until they end

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{name or 'task'}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        _report(task)

    async def stop(self) -> None:
        """Cancel every task (those spawned while stopping too) and wait until all have ended."""
        while self._tasks:
            tasks = list(self._tasks)
            await _cancel(tasks)
            self._tasks.difference_update(tasks)  # ended; each one's outcome is reported by _done
