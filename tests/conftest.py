"""Session-wide hygiene: no test leaves a live process behind.

Every process a test starts has an owner that stops and joins it, also when the test fails
(example miners and their hashing processes, ``pooler serve`` children, the Pooler's search
worker, redis-servers). A process left running keeps ports, CPU and pipes, and can make a
later test flaky; so it is a failure of the test that left it, found here:

- at session start :data:`MARK` goes into the environment, so every descendant carries it
  (also a grandchild orphaned when its parent died: it no longer has pytest as its parent);
- after each test, processes that carry the mark or are children of pytest and were not
  there before the test are its leftovers: the test fails (in teardown) naming them, and they
  are killed so the rest of the session runs clean;
- at session end nothing may be left at all.

Not counted: multiprocessing's resource tracker (one per session, started by the first
spawned process, it exits with pytest) and zombies (already dead, only not yet reaped). A
process of a wider-scoped fixture (a module's redis-server) was there before the test, so it
only counts at the session end, after its fixture stopped it; so does a redis-server that a
test restarted (its owner is still the fixture: ``tests.redis_server.OWNED_PIDS``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.redis_server import OWNED_PIDS

MARK = "KALE_POOLER_TEST_SESSION"
_PROC = Path("/proc")
# multiprocessing's resource tracker: started once, lives as long as pytest, by design
_KEPT_CMDLINES = ("multiprocessing.resource_tracker",)
# a process whose owner has just stopped it may need a moment to be gone (SIGTERM handlers)
_SETTLE_S = 3.0


@dataclass(frozen=True)
class Leftover:
    pid: int
    ppid: int
    cmdline: str

    def __str__(self) -> str:
        try:
            parent = (
                (_PROC / str(self.ppid) / "cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            parent = "gone"
        return f"pid {self.pid}: {self.cmdline[:200]}\n    parent {self.ppid}: {parent.strip()[:200]}"


def _live_descendants() -> dict[int, Leftover]:
    """Live processes started by this session (Linux /proc), minus the ones kept by design."""
    me = os.getpid()
    mark = f"{MARK}={os.environ.get(MARK, '')}".encode()
    found: dict[int, Leftover] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            stat = (entry / "stat").read_text()
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ")"
            state, ppid_text = stat[stat.rindex(")") + 2 :].split()[:2]
            ppid = int(ppid_text)
            if state in ("Z", "X"):
                continue
            ours = ppid == me
            if not ours:
                try:
                    ours = mark in (entry / "environ").read_bytes().split(b"\0")
                except PermissionError:
                    continue  # another user's process: not ours
            if not ours:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue  # gone meanwhile
        if any(kept in cmdline for kept in _KEPT_CMDLINES):
            continue
        found[int(entry.name)] = Leftover(int(entry.name), ppid, cmdline)
    return found


def _settle(pids: dict[int, Leftover]) -> dict[int, Leftover]:
    """The ones of ``pids`` still alive after a short grace (a failsafe for exits in progress)."""
    deadline = time.monotonic() + _SETTLE_S
    while True:
        alive = {pid: p for pid, p in _live_descendants().items() if pid in pids}
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)  # a bounded poll in pytest's sync hooks (wait_until is async)


def _kill(leftovers: dict[int, Leftover]) -> None:
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid, p in leftovers.items():
        if p.ppid == os.getpid():
            # our own child: reap it, or it stays a zombie (unless its owner reaped it meanwhile)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def pytest_configure(config: pytest.Config) -> None:
    # inherited by every process the session starts, however deep (explicit env= copies os.environ)
    os.environ.setdefault(MARK, f"{os.getpid()}-{time.time_ns()}")


def _in_process_worker(p: Leftover) -> bool:
    """A multiprocessing worker of this very process (an in-process Pooler's local search): its
    owner may be a module-scoped fixture that started it lazily during any of the module's tests."""
    return p.ppid == os.getpid() and "multiprocessing.spawn" in p.cmdline


def _check(before: set[int], what: str, *, workers: bool) -> None:
    new = {
        pid: p
        for pid, p in _live_descendants().items()
        if pid not in before and pid not in OWNED_PIDS and _in_process_worker(p) is workers
    }
    left = _settle(new) if new else {}
    if left:
        _kill(left)
        pytest.fail(
            f"{what} left live processes behind (every process needs an owner that stops and joins it):\n"
            + "\n".join(f"  {p}" for p in left.values()),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Fail the test that leaves a live process behind (module docstring); in-process workers are
    checked per module, after the module's fixtures stopped (``no_worker_left_in_module``)."""
    before = set(_live_descendants())
    yield
    _check(before, "the test", workers=False)


@pytest.fixture(autouse=True, scope="module")
def no_worker_left_in_module() -> Iterator[None]:
    before = set(_live_descendants())
    yield
    _check(before, "this module's tests or fixtures", workers=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = _settle(_live_descendants())
    if left:
        _kill(left)
        session.config.stash[_LEFT] = list(left.values())
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_LEFT = pytest.StashKey[list[Leftover]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    left = terminalreporter.config.stash.get(_LEFT, [])
    if left:
        terminalreporter.section("processes left behind at session end", red=True)
        for p in left:
            terminalreporter.line(str(p))
