"""Processes and clients for the crash and restart tests.

- :func:`start_devnet`: ``pooler devnet`` as its own process (the chain outlives every Pooler);
- :class:`PoolerProcess`: ``pooler serve`` as a process with its settings in the environment,
  its URL parsed from the ``listening on`` line, killed with SIGKILL or stopped with a signal;
- :class:`StreamMiner`: a protocol v1 WebSocket worker that mines real nonces and records
  every ``accepted`` it got, keyed as the store keys them;
- :func:`read_store`: what the database file holds, read with plain sqlite3 (the Pooler is dead
  or still running: WAL readers never block the writer).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from examples.minerkit import Registration
from examples.minerkit import register as register_at
from protocol.codec import decode_server, encode
from protocol.messages import Accepted, Difficulty, Hello, Job, More, Rejected, Share, Welcome
from protocol.work import WorkTemplate, address_bytes

_CLI = "import sys; from pooler.cli import main; sys.exit(main())"

# Settings for short blocks and cheap shares; a test adds POOLER_DB and the chain's variables.
FAST_SETTINGS: dict[str, str] = {
    "PORT": "0",
    "HOST": "127.0.0.1",
    "LOG_LEVEL": "WARNING",
    "BLOCK_POLL_INTERVAL_MS": "200",
    "SHARE_ZEROS_INITIAL": "1",
    "SHARE_ZEROS_MIN": "1",
    "SHARE_ZEROS_MAX": "4",
    "VARDIFF_TARGET_SECONDS": "0.5",
    "SUMMARY_INTERVAL_MS": "1000",
    "MESSAGES_PER_SECOND": "20000",
    "MESSAGES_BURST": "40000",
    "LATE_PLANT_GRACE_MS": "500",
    "BACKEND_TIMEOUT_MS": "3000",
}


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    skip = ("POOLER_", "STELLAR_", "BACKEND_", "KALE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


async def _spawn(cwd: Path, env: Mapping[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CLI,
        *args,
        cwd=cwd,
        env=_env(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # its own process group: a kill reaches its children too
    )


async def _line(proc: asyncio.subprocess.Process, within: float) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), within)
    if not line:
        raise RuntimeError("the process ended before printing what was expected")
    return line.decode().rstrip("\n")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL to the process and every child it started (as a container kill does)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _reap(proc: asyncio.subprocess.Process) -> int:
    """Wait for the exit, end any child still holding its pipe, read the pipe to its end."""
    code = await asyncio.wait_for(asyncio.shield(_exited(proc)), 10)
    _kill_group(proc)  # a search worker left behind would keep the pipe (and the transport) open
    if proc.stdout is not None:
        await asyncio.wait_for(proc.stdout.read(), 10)
    await asyncio.wait_for(proc.wait(), 10)
    return code


async def _exited(proc: asyncio.subprocess.Process) -> int:
    # proc.wait() also waits for the pipes to close; the exit status alone comes from polling
    while True:
        if proc.returncode is not None:
            return proc.returncode
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- devnet


@dataclass
class DevnetProcess:
    proc: asyncio.subprocess.Process
    env: dict[str, str]  # STELLAR_NETWORK, STELLAR_RPC_URL, BACKEND_API_URL, KALE_CONTRACT_ID

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_exited(self.proc), 10)
        _kill_group(self.proc)
        await _reap(self.proc)


async def start_devnet(cwd: Path, block_interval: int, ledger_seconds: float = 1.0) -> DevnetProcess:
    args = ("devnet", "--block-interval", str(block_interval), "--ledger-seconds", str(ledger_seconds))
    net = DevnetProcess(await _spawn(cwd, {}, *args), {})
    try:
        while "KALE_CONTRACT_ID" not in net.env or "STELLAR_RPC_URL" not in net.env:
            name, _, value = (await _line(net.proc, 60)).partition("=")
            if name in ("STELLAR_NETWORK", "STELLAR_RPC_URL", "BACKEND_API_URL", "KALE_CONTRACT_ID"):
                net.env[name] = value
    except BaseException:
        _kill_group(net.proc)
        await _reap(net.proc)
        raise
    return net


# ---------------------------------------------------------------- the Pooler


@dataclass
class PoolerProcess:
    proc: asyncio.subprocess.Process
    url: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws/miner"

    async def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed; only what was durable survives."""
        _kill_group(self.proc)
        await _reap(self.proc)

    async def stop(self, sig: signal.Signals, within: float) -> tuple[int, float]:
        """Send ``sig``; (exit status, seconds it took to exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(_exited(self.proc), within)
        except TimeoutError:
            _kill_group(self.proc)
            raise
        finally:
            await _reap(self.proc)
        return code, time.monotonic() - t0


async def start_pooler(cwd: Path, settings: Mapping[str, str], within: float = 60) -> PoolerProcess:
    """``pooler serve`` with ``settings`` as its environment; returns once it listens."""
    proc = await _spawn(cwd, settings, "serve", "--env-file", str(cwd / "no.env"))
    try:
        while True:
            line = await _line(proc, within)
            if line.startswith("pooler ") and " listening on " in line:
                return PoolerProcess(proc, line.split(" listening on ", 1)[1].split()[0])
    except BaseException:
        _kill_group(proc)
        await _reap(proc)
        raise


# ---------------------------------------------------------------- miners


async def register(url: str, name: str) -> Registration:
    """A new miner at the Pooler ``url``, through the example miners' client, staking 20 %."""
    async with aiohttp.ClientSession() as session:
        return await register_at(session, url, name, stake_percentage=0.2)


@dataclass
class Acks:
    """What the clients were told, keyed as the store keys it."""

    # (block, miner id, worker) -> shares acknowledged as accepted
    accepted: collections.Counter[tuple[int, str, str]] = field(default_factory=collections.Counter)
    # (block, farmer id) -> the most zeros of any accepted share (the farmer's best is at least that)
    best: dict[tuple[int, str], int] = field(default_factory=dict)
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)  # reason -> count
    welcomes: int = 0
    close_codes: list[int | None] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)  # every job received, in order


class StreamMiner:
    """One worker: hashes its job's range, streams every share, counts the acks it receives."""

    def __init__(self, url: str, reg: Registration, worker: str, acks: Acks, *, in_flight: int = 32) -> None:
        self.url = url
        self.reg = reg
        self.worker = worker
        self.acks = acks
        self._limit = in_flight  # shares sent and not answered yet, at most
        self._pending: dict[tuple[str, int], tuple[int, int]] = {}  # (job, nonce) -> (block, zeros)
        self._blocks: dict[str, int] = {}  # job id -> block
        self._job: Job | None = None  # the range being hashed
        self._next = 0  # next nonce of that range
        self._zeros = 1  # current share target
        self._changed = asyncio.Event()  # a new job or an answer arrived

    async def run(self, stop: asyncio.Event) -> None:
        """Mine until ``stop`` is set or the server goes away (both end it quietly)."""
        try:
            async with connect(self.url, open_timeout=10, close_timeout=1) as ws:
                reader = asyncio.create_task(self._read(ws))
                try:
                    await ws.send(encode(Hello(self.reg.token, self.worker)).decode())
                    await self._mine(ws, stop, reader)
                except ConnectionClosed:
                    pass
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                        await reader
                self.acks.close_codes.append(ws.close_code)  # None: we stopped first
        except (ConnectionClosed, OSError, TimeoutError):
            self.acks.close_codes.append(None)

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            msg = decode_server(raw)
            match msg:
                case Welcome():
                    self.acks.welcomes += 1
                case Job():
                    self.acks.jobs.append(msg)
                    self._blocks[msg.job] = msg.block
                    if msg.clean or self._job is None:
                        self._job, self._next = msg, msg.nonce_start
                    self._zeros = msg.share_zeros
                case Difficulty(zeros):
                    self._zeros = zeros
                case Accepted(job, nonce, zeros, _):
                    block, _sent = self._pending.pop((job, nonce), (self._blocks.get(job, -1), zeros))
                    self.acks.accepted[(block, self.reg.miner_id, self.worker)] += 1
                    key = (block, self.reg.farmer_id)
                    self.acks.best[key] = max(self.acks.best.get(key, 0), zeros)
                case Rejected(job, nonce, code):
                    self._pending.pop((job or "", nonce or 0), None)
                    self.acks.rejected[code.reason] += 1
            self._changed.set()

    async def _mine(self, ws: ClientConnection, stop: asyncio.Event, reader: asyncio.Task[None]) -> None:
        template: WorkTemplate | None = None
        for_job: Job | None = None
        while not stop.is_set() and not reader.done():
            job = self._job
            if job is None or len(self._pending) >= self._limit:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.05)
                continue
            if job is not for_job:
                template = WorkTemplate(job.block, job.entropy, address_bytes(job.farmer))
                for_job = job
            assert template is not None
            start = self._next
            end = min(start + 64, job.nonce_end)
            for nonce in range(start, end):
                _digest, zeros = template.verify(nonce)
                if zeros >= self._zeros:
                    self._pending[(job.job, nonce)] = (job.block, zeros)
                    await ws.send(encode(Share(job.job, nonce)).decode())
            self._next = end
            if end >= job.nonce_end:
                self._job = None
                await ws.send(encode(More(job.job)).decode())
            await asyncio.sleep(0)


# ---------------------------------------------------------------- the database file


@dataclass
class StoreView:
    integrity: str
    accepted: dict[tuple[int, str, str], int]  # (block, miner id, worker) -> accepted
    best: dict[tuple[int, str], int]  # (block, farmer id) -> zeros
    statuses: list[tuple[int, str, str]]  # (block, farmer id, status), oldest first
    calls: list[tuple[str, int, int]]  # (op, block, ok), oldest first
    nonces: dict[tuple[int, str], int]  # (block, farmer id) -> next


def read_store(path: Path) -> StoreView:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        accepted = {
            (b, m, w): n for b, m, w, n in db.execute("SELECT block, miner_id, worker, accepted FROM shares")
        }
        best = {(b, f): z for b, f, z in db.execute("SELECT block, farmer_id, zeros FROM bests")}
        statuses = list(db.execute("SELECT block, farmer_id, status FROM farmer_status ORDER BY id"))
        calls = list(db.execute("SELECT op, block, ok FROM calls ORDER BY id"))
        nonces = {(b, f): int(n) for b, f, n in db.execute("SELECT block, farmer_id, next FROM nonces")}
    finally:
        db.close()
    return StoreView(integrity, accepted, best, statuses, calls, nonces)


def lost_acks(view: StoreView, acks: Acks) -> list[str]:
    """Every acknowledged count or best the store does not hold (empty: nothing lost)."""
    lost = [
        f"shares {key}: {n} acknowledged, {view.accepted.get(key, 0)} stored"
        for key, n in acks.accepted.items()
        if view.accepted.get(key, 0) < n
    ]
    lost += [
        f"best {key}: {z} zeros acknowledged, {view.best.get(key)} stored"
        for key, z in acks.best.items()
        if view.best.get(key, -1) < z
    ]
    return lost
