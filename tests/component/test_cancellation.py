"""Long-running loops end when they are cancelled, whatever moment the cancel lands at.

On Python 3.11, ``asyncio.wait_for`` returns its inner call's result, and drops the cancel,
when the cancel reaches it just as that call completes. A loop built on it then runs on
forever, and whoever awaits it after cancelling (a Pooler shutting down) hangs with an idle
event loop: what a fresh-clone CI run caught in ``Pooler.aclose`` (the observer awaiting its
Backend health loop, now :class:`~pooler.app.observe.BackendProbe`). The loops now bound their
waits with ``asyncio.timeout``. This test lands
the cancel at exactly that moment, deterministically: the health call signals, then returns;
the test cancels when woken by the signal, before the bounded wait resumes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pooler.app.observe import BackendProbe

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
