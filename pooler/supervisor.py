"""``pooler serve`` with ``PROCESSES`` > 1: a group of Pooler processes on one machine and one port.

One Python process runs on one core. With ``PROCESSES=N`` (and ``STORE=redis``), ``pooler serve``
becomes a supervisor that starts N child processes, each an ordinary group member
(``pooler serve --member <n>``: docs/scale-out.md), all listening on the same ``HOST:PORT`` with
SO_REUSEPORT (pooler/app/listen.py), so the kernel spreads the connections over them. They share
everything through Redis as instances on separate machines do: an ``accepted`` is durable in Redis
before it leaves, a nonce is credited once (the shared duplicate sets), one of them leads the
block cycle. The supervisor serves nothing itself.

- Names: process n is instance ``<POOLER_INSTANCE_ID>-<n>`` (unset: ``<host>-<supervisor pid>-<n>``),
  the same across its restarts.
- The port: the supervisor binds it first (without listening: that gets no connections) and holds
  it while it runs, so PORT=0 picks one port for all, and a restarted process binds it again.
- Start: each child tells the supervisor on its link (a socketpair, ``--link <fd>``) once it
  listens; when all have, the supervisor prints ``listening on <url>``. A child that exits before
  it listened is a start-up failure (a bad setting, Redis unreachable): the others are stopped and
  ``pooler serve`` exits 1.
- A child that dies later is logged (its pid, exit status or signal) and restarted with backoff:
  1 s, doubling with each death that follows within :data:`STABLE_S` of its start, up to
  :data:`BACKOFF_MAX_S`. Its miners reconnect meanwhile and land on the others.
- SIGTERM or SIGINT: forwarded as SIGTERM to every child (each stops gracefully: pooler/serve.py),
  no restarts from then on; exit 0 when every child exited 0 in time, else 1 (children still there
  after the bound are killed). A second signal kills the children at once and exits 1 (every
  acknowledged share is durable already). The children run in their own process groups, so a
  terminal's Ctrl-C reaches the supervisor only (a second signal to a child is "exit now").
- A child whose supervisor is gone (even by SIGKILL) sees its link close and stops gracefully:
  no orphans.
- ``STELLAR_NETWORK=devnet`` without URLs: the supervisor runs the devnet (one chain for all).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

from pooler.app.listen import bind
from pooler.app.options import TUNING
from pooler.cluster.options import default_instance_id
from pooler.config import Settings

log = logging.getLogger("pooler")

STABLE_S = 60.0  # a child that ran this long before it died is restarted after the first delay again
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
READY_S = 120.0  # a child must listen within this long of its start (it restores its state first)
_EXIT_SLACK = 5.0  # beyond a child's own shutdown bound (its devnet-less Pooler, its store)
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Child:
    """One process of the group, across its restarts (a new ``proc`` each time)."""

    index: int  # 1..N: its name's suffix and its place in the log lines
    instance: str  # POOLER_INSTANCE_ID it is started with: the same across restarts
    proc: asyncio.subprocess.Process | None = None  # the running process; None while it waits to restart
    started: float = 0.0  # monotonic time of its last start, against STABLE_S
    deaths: int = 0  # deaths in a row, each within STABLE_S of its start: the backoff's exponent
    link: socket.socket | None = None  # the supervisor's end of its link (the child's "ready", EOF)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # its watcher (exit, restart)

    def describe(self) -> str:
        pid = self.proc.pid if self.proc is not None else "-"
        return f"process {self.index} (pid {pid}, instance {self.instance})"


def exit_text(code: int) -> str:
    """``status 1``, or ``signal SIGKILL`` for a child a signal ended."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"status {code}"


def backoff(deaths: int) -> float:
    """Seconds before restarting a child after ``deaths`` quick deaths in a row (1, 2, 4 ... 30)."""
    return float(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, deaths - 1)))


class Supervisor:
    """Starts, watches, restarts and stops the children (see the module docstring)."""

    def __init__(self, settings: Settings, env_file: str) -> None:
        self.settings = settings
        self.env_file = env_file
        base = settings.pooler_instance_id or default_instance_id()
        self.children = [Child(n, f"{base}-{n}") for n in range(1, settings.processes + 1)]
        self.env: dict[str, str] = {}  # what every child gets on top of our environment: port, devnet
        self.stopping = asyncio.Event()  # set by the first signal: no restarts from then on
        self.failed = False  # a child failed to start, or exited non-zero when stopped: exit 1

    # ------------------------------------------------------------ children

    async def spawn(self, child: Child) -> None:
        """Start ``child`` and wait until it listens; raises RuntimeError if it exits first."""
        ours, theirs = socket.socketpair()
        child.link = ours
        env = {**os.environ, **self.env, "POOLER_INSTANCE_ID": child.instance}
        args = ["-m", "pooler.cli", "serve", "--env-file", self.env_file]
        args += ["--member", str(child.index), "--link", str(theirs.fileno())]
        try:
            child.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # its own group: a terminal's Ctrl-C reaches only the supervisor
            )
        finally:
            theirs.close()  # the child holds its end; ours sees EOF when it dies
        child.started = time.monotonic()
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        ready = asyncio.ensure_future(loop.sock_recv(ours, 64))
        exited = asyncio.ensure_future(child.proc.wait())
        try:
            done, _ = await asyncio.wait({ready, exited}, timeout=READY_S, return_when="FIRST_COMPLETED")
        finally:
            ready.cancel()
            exited.cancel()
        if ready in done and ready.exception() is None and ready.result().startswith(b"ready"):
            log.info("%s listening", child.describe())
            return
        if not done:
            child.proc.kill()
        code = await child.proc.wait()
        raise RuntimeError(f"{child.describe()} exited with {exit_text(code)} before it listened")

    async def watch(self, child: Child) -> None:
        """Restart ``child`` whenever it dies, until the supervisor stops."""
        while True:
            assert child.proc is not None
            code = await child.proc.wait()
            if self.stopping.is_set():
                return
            ran = time.monotonic() - child.started
            child.deaths = 1 if ran >= STABLE_S else child.deaths + 1
            delay = backoff(child.deaths)
            log.error(
                "%s exited with %s after %.0f s; restarting it in %.0f s (its miners reconnect elsewhere)",
                child.describe(),
                exit_text(code),
                ran,
                delay,
            )
            self._close_link(child)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stopping.wait()
            if self.stopping.is_set():
                return
            try:
                await self.spawn(child)
            except RuntimeError as exc:  # it exited before it listened: around again, a longer delay
                log.error("%s", exc)
            except OSError as exc:  # no process at all (fork failed, out of descriptors): the same
                log.error("%s could not be started again: %s", child.describe(), exc)

    def _close_link(self, child: Child) -> None:
        if child.link is not None:
            child.link.close()
            child.link = None

    def signal_all(self, sig: signal.Signals) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(sig)

    async def stop_all(self, bound: float) -> None:
        """SIGTERM to every child, then wait ``bound`` seconds for them; SIGKILL for the rest."""
        self.stopping.set()
        for child in self.children:  # no restart from here on (a watcher may be starting one)
            for task in child.tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.signal_all(signal.SIGTERM)
        procs = [c for c in self.children if c.proc is not None]
        try:
            async with asyncio.timeout(bound):
                codes = await asyncio.gather(*(c.proc.wait() for c in procs if c.proc is not None))
        except TimeoutError:
            log.error("processes still running %.0f s after SIGTERM: killing them", bound)
            self.signal_all(signal.SIGKILL)
            codes = await asyncio.gather(*(c.proc.wait() for c in procs if c.proc is not None))
            self.failed = True
        for child, code in zip(procs, codes, strict=True):
            if code != 0:
                self.failed = True
                log.error("%s stopped with %s", child.describe(), exit_text(code))
            self._close_link(child)

    # ------------------------------------------------------------ the whole run

    async def run(self) -> int:
        stack = contextlib.AsyncExitStack()
        settings = self.settings
        # held while we run: the children bind beside it (it gets no connections: it does not listen)
        held = bind(settings.host, settings.port, listen=False)
        for sock in held:
            stack.callback(sock.close)
        port = held[0].getsockname()[1]
        self.env = {"PORT": str(port), "PROCESSES": str(settings.processes)}
        bound = TUNING.shutdown_timeout + _EXIT_SLACK
        async with stack:
            if settings.stellar_rpc_url is None or settings.backend_api_url is None:  # devnet, no URLs
                from pooler.devnet import Devnet

                net = await stack.enter_async_context(Devnet(block_interval=settings.block_interval_seconds))
                self.env |= {
                    "STELLAR_RPC_URL": net.rpc_url,
                    "BACKEND_API_URL": net.backend_url,
                    "KALE_CONTRACT_ID": net.contract_id,
                }
                log.info("started an in-process devnet: rpc %s backend %s", net.rpc_url, net.backend_url)
            failure: BaseException | None = None
            try:  # the first that fails cancels the others' waits
                async with asyncio.TaskGroup() as tg:
                    for child in self.children:
                        tg.create_task(self.spawn(child), name=f"start-{child.index}")
            except* (RuntimeError, OSError) as group:
                failure = group.exceptions[0]
            if failure is not None:
                print(f"pooler serve: {failure}; stopping the others", file=sys.stderr, flush=True)
                await self.stop_all(bound)
                return 1
            for child in self.children:
                child.tasks.append(asyncio.create_task(self.watch(child), name=f"watch-{child.index}"))
            pids = ", ".join(str(c.proc.pid) for c in self.children if c.proc is not None)
            host = f"[{settings.host}]" if ":" in settings.host else settings.host
            print(
                f"pooler {settings.pooler_id} listening on http://{host}:{port}"
                f" ({len(self.children)} processes, pids {pids}; miners: /ws/miner, dashboard: /)",
                flush=True,
            )
            await self.stopping.wait()
            log.info("stopping: SIGTERM to %d processes", len(self.children))
            await self.stop_all(bound)
        log.info("stopped")
        return 1 if self.failed else 0


async def supervise(settings: Settings, env_file: str) -> int:
    """Run the supervisor until SIGTERM/SIGINT (see the module docstring); the exit status."""
    supervisor = Supervisor(settings, env_file)
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if supervisor.stopping.is_set():  # asked twice: the operator does not want to wait
            print(f"pooler serve: {sig.name} again, killing the processes", file=sys.stderr, flush=True)
            supervisor.signal_all(signal.SIGKILL)
            supervisor.failed = True
            return
        log.info("%s received: stopping", sig.name)
        supervisor.stopping.set()

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await supervisor.run()
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)
