"""``pooler serve`` and ``pooler devnet`` as child processes of a test, the one way to start them.

A Pooler in a child process is the other kind of Pooler a test can start (the in-process kind is
:func:`tests.support.system.running_system`): it runs as deployed (its own interpreter, signals,
uvloop, a database file that outlives it), so it can be killed with SIGKILL, paused with SIGSTOP
or stopped with SIGTERM, and restarted on the same files.

- :func:`start_pooler`: ``pooler serve`` with its settings in the environment; returns once it
  prints ``listening on <url>``.
- :func:`start_devnet`: ``pooler devnet`` (a chain that outlives every Pooler); returns once it
  has printed the variables a Pooler needs (:attr:`DevnetProcess.env`).

Each child runs in its own process group (a kill reaches the workers it started too), with its
stdout and stderr in files in the test's directory (no pipe can fill up; :meth:`Child.tail`
shows them when a test fails). Its owner stops it: a test ends every child it started.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.wait import WaitTimeout, wait_until

# Variables the Pooler reads that the test's own environment must not leak into a child: a
# child gets exactly the settings its test gives it.
_OWN_PREFIXES = ("POOLER_", "STELLAR_", "BACKEND_", "KALE_", "STORE", "REDIS_")
DEVNET_VARIABLES = ("STELLAR_NETWORK", "STELLAR_RPC_URL", "BACKEND_API_URL", "KALE_CONTRACT_ID")
_EXIT_S = 10.0  # a failsafe on waiting for a killed child to be gone


def _environment(settings: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def _free_name(cwd: Path, name: str) -> str:
    """``name``, or ``name-2``, ``name-3``... if an earlier child of the test used it (a restart)."""
    n, candidate = 1, name
    while (cwd / f"{candidate}.out").exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


class Child:
    """A ``pooler`` subcommand run as a child process, with its output in ``<name>.out|.err``."""

    def __init__(
        self,
        cwd: Path,
        name: str,
        args: list[str],
        settings: Mapping[str, str],
        *,
        open_files: int | None = None,
    ) -> None:
        """``open_files``: the child's RLIMIT_NOFILE, soft and hard (a systemd unit's, say)."""
        self.name = _free_name(cwd, name)

        def limit() -> None:
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        self.out = cwd / f"{self.name}.out"
        self.err = cwd / f"{self.name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "pooler.cli", *args],
                cwd=cwd,
                env=_environment(settings),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: a kill reaches its children too
                preexec_fn=limit if open_files is not None else None,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def tail(self, n: int = 3000) -> str:
        err = self.err.read_text(errors="replace")
        return f"{self.output()[-n:]}\n--- stderr of {self.name} ---\n{err[-n:]}"

    def send_signal(self, sig: int) -> None:
        """``sig`` to the process itself (not its group), if it still runs: SIGSTOP pauses only it."""
        if self.running:
            os.kill(self.popen.pid, sig)

    async def wait_line(self, pattern: str, within: float) -> re.Match[str]:
        """The first match of ``pattern`` in its stdout; fails if it exits or does not print it."""

        def printed() -> re.Match[str] | None:
            found = re.search(pattern, self.output())
            if found is None and not self.running:
                raise AssertionError(f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}")
            return found

        return await wait_until(
            printed, lambda: f"{self.name} to print {pattern!r}:\n{self.tail()}", within=within, step=0.05
        )

    async def kill(self) -> None:
        """SIGKILL to the process group (as a container kill does): nothing runs, nothing is
        flushed; returns once the process is gone (and reaped)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        await wait_until(lambda: not self.running, f"{self.name} to die of SIGKILL", within=_EXIT_S)

    async def stop(self, sig: signal.Signals = signal.SIGTERM, within: float = 15.0) -> tuple[int, float]:
        """Send ``sig`` and wait for the exit: (exit status, seconds it took). A child that does
        not exit in time is killed and the test fails (:class:`WaitTimeout`)."""
        t0 = time.monotonic()
        if self.running:
            self.send_signal(signal.SIGCONT)  # a paused process cannot act on the signal
            self.send_signal(sig)
        try:
            await wait_until(lambda: not self.running, f"{self.name} to exit on {sig.name}", within=within)
        except WaitTimeout:
            await self.kill()
            raise
        finally:
            # what it started and left behind goes too (a search worker of a Pooler, say)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        return self.popen.returncode, time.monotonic() - t0


class PoolerProcess(Child):
    """``pooler serve``, listening at :attr:`url`."""

    def __init__(
        self, cwd: Path, name: str, settings: Mapping[str, str], *, open_files: int | None = None
    ) -> None:
        super().__init__(cwd, name, ["serve", "--env-file", os.devnull], settings, open_files=open_files)
        self.url = ""  # known once it printed its "listening on" line (start_pooler sets it)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws/miner"


async def start_pooler(
    cwd: Path,
    settings: Mapping[str, str],
    *,
    name: str = "pooler",
    within: float = 60.0,
    open_files: int | None = None,
) -> PoolerProcess:
    """``pooler serve`` in ``cwd`` with ``settings`` as its environment (nothing else of the
    test's ``POOLER_``/``STELLAR_``/... variables, and no env file); returns once it listens.
    ``open_files``: its open-files limit, soft and hard."""
    proc = PoolerProcess(cwd, name, settings, open_files=open_files)
    try:
        found = await proc.wait_line(r"listening on (http://\S+)", within)
    except BaseException:
        await proc.kill()
        raise
    proc.url = found.group(1)
    return proc


@dataclass
class DevnetProcess:
    """``pooler devnet``; :attr:`env` holds what it printed for a Pooler (:data:`DEVNET_VARIABLES`)."""

    child: Child
    env: dict[str, str] = field(default_factory=dict)

    async def stop(self) -> None:
        """SIGTERM, or SIGKILL when it does not exit in time (a chain's exit is not under test)."""
        with contextlib.suppress(WaitTimeout):
            await self.child.stop(signal.SIGTERM, within=_EXIT_S)


async def start_devnet(cwd: Path, block_interval: int, ledger_seconds: float = 1.0) -> DevnetProcess:
    args = ["devnet", "--block-interval", str(block_interval), "--ledger-seconds", str(ledger_seconds)]
    child = Child(cwd, "devnet", args, {})
    try:
        await child.wait_line(r"STELLAR_NETWORK_PASSPHRASE=.*\n", 60.0)
    except BaseException:
        await child.kill()
        raise
    printed = dict(line.split("=", 1) for line in child.output().splitlines() if "=" in line)
    return DevnetProcess(child, {k: printed[k] for k in DEVNET_VARIABLES})
