"""Long-running loops end when they are cancelled, whatever moment the cancel lands at.

On Python 3.11, ``asyncio.wait_for`` returns its inner call's result, and drops the cancel,
when the cancel reaches it just as that call completes. A loop built on it then runs on
forever, and whoever awaits it after cancelling (a Pooler shutting down) hangs with an idle
event loop: what a fresh-clone CI run caught in ``Pooler.aclose`` (the observer awaiting its
Backend health loop, now :class:`~pooler.app.observe.BackendProbe`). The loops now bound their
waits with ``asyncio.timeout``. This test lands
the cancel at exactly that moment, deterministically: the health call signals, then returns;
the test cancels when woken by the signal, before the bounded wait resumes.

Also here: stopping a task (pooler/runtime/tasks.py) never swallows a cancel of whoever stops
it, a task set stops every task it owns and loses no failure, and the group's Redis sessions
are retried with the shared backoff (pooler/cluster/retry.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from pooler.app.observe import BackendProbe
from pooler.cluster.retry import retrying
from pooler.runtime.tasks import TaskSet, cancel_and_wait
from tests.support.wait import wait_until

FAILSAFE_S = 15.0  # a loop that ignores its cancel fails the test instead of hanging it


class _Backend:
    timeout = 5.0

    def __init__(self) -> None:
        self.answered = asyncio.Event()
        self.calls = 0

    async def health(self) -> dict[str, Any]:
        self.calls += 1
        self.answered.set()  # wakes the test first; the return below then completes the call
        return {"status": "healthy"}


async def test_the_backend_health_loop_ends_when_cancelled_as_its_call_completes() -> None:
    backend = _Backend()
    reports: list[tuple[bool, str]] = []
    probe = BackendProbe(
        backend.health,
        lambda ok, detail: reports.append((ok, detail)),
        timeout=backend.timeout,
        interval=0.01,
    )
    for _ in range(20):  # the same moment, again and again
        backend.answered.clear()
        task = asyncio.create_task(probe.run())
        await backend.answered.wait()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=FAILSAFE_S)
        assert task in done and task.cancelled(), "the health loop swallowed its cancel and ran on"
    assert backend.calls == 20


async def test_stopping_a_task_does_not_swallow_a_cancel_of_the_stopper() -> None:
    """``with suppress(CancelledError): await task`` would: the stopper, itself cancelled while
    the task winds down, would carry on. cancel_and_wait lets that cancel through."""
    winding_down = asyncio.Event()
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            winding_down.set()
            await release.wait()  # its cleanup takes a while
            raise

    task = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)  # one turn of the loop: the task starts and waits (no time involved)
    went_on = []

    async def stopper() -> None:
        await cancel_and_wait(task)
        went_on.append(True)  # must not run: the stopper was cancelled meanwhile

    outer = asyncio.create_task(stopper())
    await winding_down.wait()
    outer.cancel()
    done, _ = await asyncio.wait({outer}, timeout=FAILSAFE_S)
    assert outer in done and outer.cancelled() and not went_on
    release.set()
    done, _ = await asyncio.wait({task}, timeout=FAILSAFE_S)
    assert task in done and task.cancelled()  # the task itself was still stopped


async def test_a_task_set_stops_all_its_tasks_and_logs_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="pooler.runtime")
    owner = TaskSet("test")
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    async def fails() -> None:
        raise RuntimeError("a bug")

    tasks = [owner.spawn(forever(), "a"), owner.spawn(forever(), "b"), owner.spawn(fails(), "c")]
    await started.wait()
    await asyncio.wait({tasks[2]}, timeout=FAILSAFE_S)
    await wait_until(lambda: len(owner) == 2, "the failed task's done callback")
    assert len(owner) == 2  # the failed one is gone, and its failure was not lost
    assert any("test:c" in r.getMessage() for r in caplog.records)
    await asyncio.wait_for(owner.stop(), FAILSAFE_S)
    assert len(owner) == 0 and all(t.done() for t in tasks)
    assert tasks[0].cancelled() and tasks[1].cancelled()


async def test_a_redis_session_is_retried_with_the_shared_backoff() -> None:
    sleeps: list[float] = []
    attempts: list[int] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    async def session(established: Callable[[], None]) -> None:
        attempts.append(len(attempts) + 1)
        n = len(attempts)
        if n in (1, 2):
            raise RedisConnectionError("down")
        if n == 3:
            established()  # subscribed, say: the steps start from the first again
            raise RedisConnectionError("lost again")
        if n == 4:
            raise OSError("reset")

    await asyncio.wait_for(retrying("test", session, sleep=sleep, rng=lambda: 0.0), FAILSAFE_S)
    assert attempts == [1, 2, 3, 4, 5]
    # equal jitter with rng 0: half of each step of Backoff(0.1, 2.0); reset after attempt 3
    assert sleeps == [0.05, 0.1, 0.05, 0.1]


async def test_other_errors_end_a_retried_session() -> None:
    async def session(established: Callable[[], None]) -> None:
        raise ValueError("a bug is not an outage")

    with pytest.raises(ValueError, match="a bug"):
        await retrying("test", session, sleep=asyncio.sleep)
