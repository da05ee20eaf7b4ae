"""What the example miners have in common, so each example stays short.

- :func:`mine_range`: the pure core of CPU mining (no sockets, no processes): hash a nonce range and
  yield every nonce whose hash has at least ``share_zeros`` leading zero nibbles.
- :class:`HashPool`: worker processes that run :func:`mine_range` on pieces of a job's range and stream
  their finds back to the asyncio process through pipes (no threads).
- :class:`Backoff`: exponential reconnect delays with jitter.
- :class:`BlockTally`: the per-block figures a miner prints.
- :func:`register` and :func:`parse_miner_output` (the kale-miner binary's stdout).

Everything here speaks protocol v1 through ``protocol.codec`` and ``protocol.work`` only, as any
third-party miner would. Run the examples from the repository root with the project installed
(``./dev.sh`` creates the venv): ``.venv/bin/python examples/ws_miner.py --help``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import random
import re
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from typing import Any, NamedTuple

import aiohttp

from protocol.work import WorkTemplate, count_zeros

_HEX64 = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)


class MinerError(Exception):
    """A miner cannot go on: bad arguments, a refused token, an unreachable pool at start."""


# ---------------------------------------------------------------- the pure mining loop


class Found(NamedTuple):
    """One nonce whose hash reached the share target."""

    nonce: int
    hash: bytes
    zeros: int


def mine_range(
    template: WorkTemplate,
    start: int,
    end: int,
    share_zeros: int,
    stop_check: Callable[[], bool],
    check_every: int = 1024,
) -> Iterator[Found]:
    """Hash nonces ``start .. end-1`` in order; yield each with ``zeros >= share_zeros``.

    ``stop_check`` is called every ``check_every`` nonces (it may cost a system call, so not per
    hash); when it returns true the iterator ends early. Nothing here touches a clock or a socket.
    """
    if not 0 <= start <= end:
        raise ValueError(f"nonce range [{start}, {end}) is not a range")
    hash_of = template.hash
    nonce = start
    while nonce < end:
        if stop_check():
            return
        stop = min(nonce + check_every, end)
        for n in range(nonce, stop):
            digest = hash_of(n)
            if digest[0] == 0 or share_zeros <= 1:  # cheap pre-filter: >= 2 zeros needs a 0x00 first byte
                zeros = count_zeros(digest)
                if zeros >= share_zeros:
                    yield Found(n, digest, zeros)
        nonce = stop


def split_range(start: int, end: int, parts: int) -> list[tuple[int, int]]:
    """``[start, end)`` cut into at most ``parts`` contiguous, non-empty, near-equal pieces."""
    if parts < 1:
        raise ValueError("parts must be at least 1")
    size = end - start
    if size <= 0:
        return []
    parts = min(parts, size)
    step, extra = divmod(size, parts)
    pieces = []
    lo = start
    for i in range(parts):
        hi = lo + step + (1 if i < extra else 0)
        pieces.append((lo, hi))
        lo = hi
    return pieces


# ---------------------------------------------------------------- reconnect backoff


class Backoff:
    """Exponential reconnect delays with "equal jitter": half the delay fixed, half random.

    Jitter spreads the reconnects of many miners after a Pooler restart, so they do not all
    arrive in the same millisecond. ``rng`` is injectable so tests are deterministic.
    """

    def __init__(
        self, base: float = 0.5, cap: float = 30.0, rng: Callable[[], float] = random.random
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._rng = rng
        self.attempt = 0  # failures since the last success; grows the delay

    def next(self) -> float:
        delay = min(self.cap, self.base * 2.0**self.attempt)
        self.attempt += 1
        return delay / 2 + self._rng() * delay / 2

    def reset(self) -> None:
        self.attempt = 0


# ---------------------------------------------------------------- per-block figures


@dataclass
class BlockTally:
    """What one block earned this miner: printed when the block ends or the miner stops."""

    block: int
    started: float
    accepted: int = 0
    rejected: int = 0
    best_zeros: int | None = None
    hashes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def accept(self, zeros: int) -> None:
        self.accepted += 1
        if self.best_zeros is None or zeros > self.best_zeros:
            self.best_zeros = zeros

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = f", {format_rate(self.hashes / elapsed)}" if self.hashes else ""
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
        best = "-" if self.best_zeros is None else str(self.best_zeros)
        return (
            f"block {self.block}: accepted {self.accepted}, rejected {self.rejected}"
            f"{f' ({why})' if why else ''}, best zeros {best}{rate}"
        )


def format_rate(hashes_per_second: float) -> str:
    for unit in ("H/s", "kH/s", "MH/s", "GH/s"):
        if hashes_per_second < 1000 or unit == "GH/s":
            return f"{hashes_per_second:.1f} {unit}"
        hashes_per_second /= 1000
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- registration (REST)


@dataclass(frozen=True)
class Registration:
    miner_id: str
    token: str
    farmer_id: str
    farmer: str


async def register(session: aiohttp.ClientSession, base_url: str, name: str | None) -> Registration:
    """``POST /miner/register``: a new miner identity and its bearer token."""
    body: dict[str, Any] = {} if name is None else {"name": name}
    url = base_url.rstrip("/") + "/miner/register"
    async with session.post(url, json=body) as resp:
        text = await resp.text()
        if resp.status != 201:
            raise MinerError(f"POST {url} answered {resp.status}: {text[:300]}")
    try:
        obj = json.loads(text)
        return Registration(str(obj["minerId"]), str(obj["token"]), str(obj["farmerId"]), str(obj["farmer"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise MinerError(f"POST {url} returned an unexpected body: {text[:300]}") from exc


# ---------------------------------------------------------------- kale-miner stdout


def parse_miner_output(stdout: str) -> tuple[int, bytes] | None:
    """``(nonce, hash)`` from kale-miner's stdout, or None when it printed no result.

    The binary prints verbose lines (``[CPU] Mining batch: ...``) and then one JSON object,
    pretty-printed over several lines (``{"hash": "<hex>", "nonce": N}``); a run that ends without
    a find prints ``No valid hash found.``.
    """
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads("\n".join(lines[i:]))
            except ValueError:
                continue
            if (
                isinstance(obj, dict)
                and isinstance(obj.get("nonce"), int)
                and isinstance(obj.get("hash"), str)
                and _HEX64.fullmatch(obj["hash"])
            ):
                return obj["nonce"], bytes.fromhex(obj["hash"])
    return None


# ---------------------------------------------------------------- hashing processes

_CHUNK = 1 << 16  # nonces between progress reports (~0.1 s at ~500 kH/s per process)

# main -> worker: ("mine", task, job, block, entropy, farmer32, start, end) | ("idle", task) | None (exit)
# worker -> main: ("share", job, nonce, hash, zeros) | ("progress", hashes) | ("done", task)


def _hash_worker(conn: multiprocessing.connection.Connection, share_zeros: Synchronized[int]) -> None:
    """Body of one hashing process. Any message from the parent pre-empts the current range."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        if msg[0] == "idle":
            conn.send(("done", msg[1]))
            continue
        _, task, job, block, entropy, farmer, start, end = msg
        template = WorkTemplate(block, entropy, farmer)
        pos = start
        while pos < end:
            chunk_end = min(pos + _CHUNK, end)
            for found in mine_range(template, pos, chunk_end, share_zeros.value, conn.poll):
                conn.send(("share", job, found.nonce, found.hash, found.zeros))
            if conn.poll():  # pre-empted: the next recv() takes the new order
                break
            conn.send(("progress", chunk_end - pos))
            pos = chunk_end
        else:
            conn.send(("done", task))


@dataclass(frozen=True)
class Piece:
    """A piece of one job's nonce range, for one process."""

    job: str
    block: int
    entropy: bytes
    farmer: bytes
    start: int
    end: int


class HashPool:
    """``processes`` hashing processes fed pieces of nonce ranges; finds come back as callbacks.

    Theory of operation: each process has a duplex pipe. The parent sends orders (``mine`` a piece,
    go ``idle``, exit); an order arriving while a process mines pre-empts the piece at once (the
    process polls its pipe every 1024 hashes). Every order carries a task number, and a process is
    idle only when it reports ``done`` for the LAST task it was given, so a late ``done`` for a
    pre-empted piece cannot make the parent double-book a process. The parent reads the pipes with
    ``loop.add_reader``: no threads, and the callbacks run on the event loop.
    """

    def __init__(
        self,
        processes: int,
        on_share: Callable[[str, int, bytes, int], None],
        on_idle: Callable[[int], None],
    ) -> None:
        if processes < 1:
            raise MinerError("--processes must be at least 1")
        self._on_share = on_share
        self._on_idle = on_idle
        # spawn, not fork: forking a process that runs an event loop (and its threads) is unsafe
        ctx = multiprocessing.get_context("spawn")
        # the share target, read by the processes at every chunk: a `difficulty` takes effect in ~0.1 s
        self.share_zeros: Synchronized[int] = ctx.Value("i", 1, lock=False)
        self._conns: list[multiprocessing.connection.Connection] = []  # parent ends of the pipes
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._last_task = [0] * processes  # per process: the latest order sent
        self._busy = [False] * processes  # per process: mining the latest order
        self._next_task = 0  # order numbers, unique across processes
        self.hashes = 0  # hashes done by all processes since start (for the hashrate)
        self._loop: asyncio.AbstractEventLoop | None = None
        try:
            for _ in range(processes):
                parent, child = ctx.Pipe(duplex=True)
                proc = ctx.Process(target=_hash_worker, args=(child, self.share_zeros), daemon=True)
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
        except BaseException:
            self.close()  # a later start failed: the processes already started are stopped and joined
            raise

    @property
    def size(self) -> int:
        return len(self._procs)

    def start(self) -> None:
        """Begin reading the pipes on the running loop."""
        self._loop = asyncio.get_running_loop()
        for i, conn in enumerate(self._conns):
            self._loop.add_reader(conn.fileno(), self._readable, i)

    def idle_workers(self) -> list[int]:
        return [i for i, busy in enumerate(self._busy) if not busy]

    def assign(self, worker: int, piece: Piece) -> None:
        """Mine ``piece`` on ``worker``, pre-empting whatever it mines now."""
        self._next_task += 1
        self._last_task[worker] = self._next_task
        self._busy[worker] = True
        self._conns[worker].send(
            (
                "mine",
                self._next_task,
                piece.job,
                piece.block,
                piece.entropy,
                piece.farmer,
                piece.start,
                piece.end,
            )
        )

    def idle_all(self) -> None:
        """Stop every process's current piece (clean job without work, disconnect, block over)."""
        for worker in range(self.size):
            if self._busy[worker]:
                self._next_task += 1
                self._last_task[worker] = self._next_task
                self._busy[worker] = False
                self._conns[worker].send(("idle", self._next_task))

    def _readable(self, worker: int) -> None:
        conn = self._conns[worker]
        try:
            while conn.poll():
                msg = conn.recv()
                kind = msg[0]
                if kind == "share":
                    self._on_share(msg[1], msg[2], msg[3], msg[4])
                elif kind == "progress":
                    self.hashes += msg[1]
                elif kind == "done" and msg[1] == self._last_task[worker] and self._busy[worker]:
                    self._busy[worker] = False
                    self._on_idle(worker)
        except (EOFError, OSError):
            if self._loop is not None:
                self._loop.remove_reader(conn.fileno())

    def close(self) -> None:
        """Stop and reap every process (bounded: a stuck process is killed)."""
        for conn in self._conns:
            if self._loop is not None and not conn.closed:
                self._loop.remove_reader(conn.fileno())
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self._procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2)
        for conn in self._conns:
            conn.close()
        for proc in self._procs:
            proc.close()
