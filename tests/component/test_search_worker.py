"""The Pooler's local-search worker process never outlives its owner.

- ``Runner.aclose`` stops a worker that is in the middle of a long search and reaps it: when it
  returns, the process is gone (not left to run on to the search's deadline).
- A Pooler process killed outright (SIGKILL: no clean-up runs) takes its worker with it: the
  worker watches its parent (``search.exit_with_parent``), which an executor's worker could not
  otherwise notice, as it holds the write end of its own order queue.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

from pooler.backend import BackendClient
from pooler.core.coordinator import Coordinator
from pooler.core.effects import Effect, LocalSearch
from pooler.runtime.hub import EventHub
from pooler.runtime.runner import Runner
from tests.support.config import core
from tests.support.wait import wait_until

FARMER = "GBQHTQ7NTSKHVTSVM6EHUO3TU4P4BK2TAAII25V2TT2Q6OWXUJWEKALE"
FAILSAFE = 60.0  # a bound on waiting for processes to start or end, so a bug fails instead of hanging
HOURS_OF_HASHING = 2**40


def running(pid: int) -> bool:
    """The process exists and is not a zombie (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def cpu_ticks(pid: int) -> int:
    """User + system CPU time the process has used, in clock ticks (Linux /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


async def test_runner_close_stops_and_reaps_a_busy_search_worker() -> None:
    clock = time.time
    runner = Runner(
        Coordinator(core(pooler_id="search-test")),
        BackendClient("http://127.0.0.1:9", timeout=1.0, retry_attempts=1),  # never called here
        EventHub(clock),
    )
    async with runner:
        search = LocalSearch(
            block=1,
            farmer_id="f1",
            farmer=FARMER,
            entropy=bytes(32),
            nonce_start=0,
            max_hashes=HOURS_OF_HASHING,
            deadline=clock() + 3600,
        )
        await runner.perform([search])
        await wait_until(
            lambda: runner._executor is not None and runner._executor._processes,
            "the worker started",
            within=FAILSAFE,
        )
        assert runner._executor is not None
        pids = list(runner._executor._processes)
        assert pids and all(running(pid) for pid in pids)
    # aclose returned: the worker was stopped and joined, not left to hash for an hour
    assert not any(running(pid) for pid in pids)
    assert runner._executor is None


async def test_runner_close_with_searches_waiting_behind_the_busy_one() -> None:
    """Searches queued behind a running one are cancelled with their tasks at close; stopping the
    worker must not then fail them again (Python 3.11's executor raises InvalidStateError in its
    manager thread for a cancelled future it marks broken: pytest turns that into an error)."""
    clock = time.time
    runner = Runner(
        Coordinator(core(pooler_id="search-test")),
        BackendClient("http://127.0.0.1:9", timeout=1.0, retry_attempts=1),  # never called here
        EventHub(clock),
    )
    async with runner:
        searches: list[Effect] = [
            LocalSearch(
                block=1,
                farmer_id=f"f{i}",
                farmer=FARMER,
                entropy=bytes(32),
                nonce_start=0,
                max_hashes=HOURS_OF_HASHING,
                deadline=clock() + 3600,
            )
            for i in range(4)  # one runs, one waits in the call queue, two wait in the executor
        ]
        await runner.perform(searches)
        await wait_until(
            lambda: runner._executor is not None and runner._executor._processes,
            "the worker started",
            within=FAILSAFE,
        )
        assert runner._executor is not None
        pids = list(runner._executor._processes)
    assert not any(running(pid) for pid in pids)
    assert runner._executor is None


PARENT = textwrap.dedent(
    """
    import multiprocessing, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from pooler.runtime import search

    if __name__ == "__main__":
        ex = ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=search.exit_with_parent
        )
        from os import getpid
        worker = ex.submit(getpid).result()  # the worker is up and initialised
        ex.submit(search.search, 1, bytes(32), sys.argv[1], 0, 2**40, time.time() + 3600)
        print(worker, flush=True)
        sys.stdin.read()  # until killed
    """
)


async def test_a_killed_pooler_process_takes_its_search_worker_with_it() -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PARENT,
        FARMER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), FAILSAFE)
        worker = int(line)
        assert running(worker)
        # into the search before the kill (not needed for the outcome): it spends CPU, hashing
        idle = cpu_ticks(worker)
        await wait_until(lambda: cpu_ticks(worker) > idle + 5, "the worker to hash", within=FAILSAFE)
        os.kill(parent.pid, signal.SIGKILL)  # no clean-up of any kind runs in the parent
        await parent.wait()
        # the orphan ends by itself (it is init's child now: nobody here could reap or join it)
        await wait_until(lambda: not running(worker), "the orphaned worker to end", within=FAILSAFE)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
