"""What the example miners have in common, so each example stays short.

- :func:`mine_range`: the pure core of CPU mining (no sockets, no processes): hash a nonce range and
  yield every nonce whose hash has at least ``share_zeros`` leading zero nibbles.
- :class:`HashPool`: worker processes that run :func:`mine_range` on pieces of a job's range and stream
  their finds back to the asyncio process through pipes (no threads).
- :class:`Backoff`: exponential reconnect delays with jitter.
- :class:`BlockTally`: the per-block figures a miner prints.
- :class:`Engine`: what does the hashing for a miner; :class:`MinerBase`: what a miner does around its
  engine whatever the transport (per-block tallies, run totals, ``--max-blocks``, stop), and
  :func:`run_with_signals` to run one until Ctrl-C.
- :func:`register`, :func:`obtain_token` and :func:`parse_miner_output` (the kale-miner binary's stdout).

Everything here speaks protocol v1 through the ``protocol`` package only, as any third-party miner
would. Run the examples from the repository root with the project installed (``./dev.sh`` creates
the venv): ``.venv/bin/python examples/ws_miner.py --help``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import random
import re
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from typing import Any, NamedTuple, NotRequired, TypedDict

import aiohttp

from protocol.messages import Accepted, ClientMessage, Job, Rejected
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
    share_zeros: int | Callable[[], int],
    stop_check: Callable[[], bool],
    check_every: int = 1024,
) -> Iterator[Found]:
    """Hash nonces ``start .. end-1`` in order; yield each with ``zeros >= share_zeros``.

    ``stop_check`` is called every ``check_every`` nonces (it may cost a system call, so not per
    hash); when it returns true the iterator ends early. ``share_zeros`` may be a callable (the
    pool's current target): it is read again every ``check_every`` nonces, so a ``difficulty``
    (vardiff) takes effect within ~1000 hashes, not at the end of a range or chunk. A share mined
    at a stale, higher target would be missing from what the pool counts (it weighs each share
    at the target it told the miner), and one at a stale, lower target rejected. Nothing here
    touches a clock or a socket.
    """
    if not 0 <= start <= end:
        raise ValueError(f"nonce range [{start}, {end}) is not a range")
    fixed = share_zeros
    target: Callable[[], int] = fixed if callable(fixed) else (lambda: fixed)
    hash_of = template.hash
    nonce = start
    while nonce < end:
        if stop_check():
            return
        least = target()
        stop = min(nonce + check_every, end)
        for n in range(nonce, stop):
            digest = hash_of(n)
            if digest[0] == 0 or least <= 1:  # cheap pre-filter: >= 2 zeros needs a 0x00 first byte
                zeros = count_zeros(digest)
                if zeros >= least:
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


# ---------------------------------------------------------------- engine and miner base


def drop(msg: ClientMessage) -> None:
    """Between connections nothing can be sent; finds are dropped (their jobs die with the socket)."""


class Engine(abc.ABC):
    """What does the hashing for a miner (:class:`MinerBase`); all callbacks run on the event loop."""

    def __init__(self) -> None:
        self.send: Callable[[ClientMessage], None] = drop  # set by the miner while it can send

    async def start(self) -> None:  # noqa: B027 (an optional hook, empty on purpose)
        """Called once before the first connection."""

    @abc.abstractmethod
    def on_job(self, job: Job) -> None:
        """A new job; ``job.clean`` (or a new block) voids every earlier one."""

    def on_difficulty(self, share_zeros: int) -> None:  # noqa: B027 (an optional hook)
        """The share target changed."""

    @abc.abstractmethod
    def on_disconnect(self) -> None:
        """The connection is gone: stop hashing, forget all jobs."""

    def hashes(self) -> int:
        """Hashes done since start, when the engine knows (for the per-block rate)."""
        return 0

    def report(self) -> Mapping[str, object]:
        """Figures for the run's ``summary`` line (JSON), read after :meth:`aclose`; empty: no line."""
        return {}

    async def aclose(self) -> None:  # noqa: B027 (an optional hook)
        """Release processes and subprocesses."""


class MinerOptions(TypedDict):
    """The keyword arguments of :class:`MinerBase`, which its subclasses pass through unchanged."""

    token: str  # the miner's bearer token
    worker: str  # the worker name sent to the pool
    engine: Engine
    max_blocks: NotRequired[int | None]  # stop after this many finished blocks
    duration: NotRequired[float | None]  # stop after this many seconds (the transport's to enforce)
    verbose: NotRequired[bool]  # print every rejected share (and whatever more the transport prints)
    out: NotRequired[Callable[[str], None]]  # where the lines go (print)
    clock: NotRequired[Callable[[], float]]  # unix seconds, injectable for tests
    backoff: NotRequired[Backoff | None]  # reconnect delays (a fresh Backoff())


class MinerBase(abc.ABC):
    """What every example miner does around its :class:`Engine`, whatever carries the protocol.

    Theory of operation: the transport (a subclass's :meth:`run`) hands each job to :meth:`_on_job`.
    The first job of another block closes the current block's :class:`BlockTally` (its line is
    printed) and opens one for the new block; once ``max_blocks`` blocks are closed the miner stops
    instead of mining on. Share results are credited with :meth:`_count`; :meth:`_wind_up` prints the
    last block and the run's totals. Subclasses say, through :meth:`_block_began` and
    :meth:`_job_taken`, which jobs belong to the current block.
    """

    def __init__(
        self,
        *,
        token: str,
        worker: str,
        engine: Engine,
        max_blocks: int | None = None,
        duration: float | None = None,
        verbose: bool = False,
        out: Callable[[str], None] = print,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
    ) -> None:
        self.token = token
        self.worker = worker
        self.engine = engine
        self.max_blocks = max_blocks
        self.duration = duration
        self.verbose = verbose
        self._out = out
        self._clock = clock
        self._backoff = backoff or Backoff()  # failures since the last good exchange with the pool
        self._stop = asyncio.Event()  # set by stop(): the transport ends politely
        self._tally: BlockTally | None = None  # the block being mined now
        self._hashes_at_block = 0  # engine.hashes() when the current block began
        self.blocks_done = 0  # finished blocks, for --max-blocks
        self.accepted = 0  # totals over the run
        self.rejected = 0
        self.rejected_by: dict[str, int] = {}  # reason -> count, over the run
        self.dropped = 0  # finds not sent because the outgoing queue was full
        self.first_job_at: float | None = None  # when mining began: the run's rate is hashes / time since

    def stop(self) -> None:
        self._stop.set()

    @abc.abstractmethod
    async def run(self) -> int:
        """Mine until stopped; the process's exit code."""

    def _enqueuer(self, outbox: asyncio.Queue[ClientMessage]) -> Callable[[ClientMessage], None]:
        """An :attr:`Engine.send` that never awaits: a find that does not fit in ``outbox`` is dropped."""

        def send(msg: ClientMessage) -> None:
            try:
                outbox.put_nowait(msg)
            except asyncio.QueueFull:
                self.dropped += 1

        return send

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when stop() is called meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # not wait_for: on 3.11 it may swallow a cancel
                await self._stop.wait()

    def _on_job(self, job: Job) -> None:
        if self.first_job_at is None:
            self.first_job_at = self._clock()
        if self._tally is None or job.block != self._tally.block:
            if self._tally is not None:
                self._finish_block()
                if self.max_blocks is not None and self.blocks_done >= self.max_blocks:
                    self.stop()
                    return
            self._tally = BlockTally(job.block, self._clock())
            self._hashes_at_block = self.engine.hashes()
            self._block_began(job)
        self._job_taken(job)
        self.engine.on_job(job)

    @abc.abstractmethod
    def _block_began(self, job: Job) -> None:
        """``job`` is the first of a new block: forget the jobs of the previous one."""

    @abc.abstractmethod
    def _job_taken(self, job: Job) -> None:
        """``job`` (of the current block) goes to the engine next: remember it."""

    def _count(self, result: Accepted | Rejected, tally: BlockTally | None) -> None:
        """Credit a share result to the run's totals and to ``tally``, its block's (None: an old block)."""
        if isinstance(result, Accepted):
            self.accepted += 1
            if tally is not None:
                tally.accept(result.zeros)
            return
        self.rejected += 1
        self.rejected_by[result.reason] = self.rejected_by.get(result.reason, 0) + 1
        if tally is not None:
            tally.reject(result.reason)
        if self.verbose:
            self._out(f"rejected nonce {result.nonce}: {int(result.code)} {result.reason} {result.message}")

    def _finish_block(self) -> None:
        if self._tally is None:
            return
        self._tally.hashes = self.engine.hashes() - self._hashes_at_block
        self._out(self._tally.line(self._clock()))
        self._tally = None
        self.blocks_done += 1

    async def _wind_up(self) -> None:
        """The end of a run: the last block's line, the totals, the engine released, and the
        ``summary`` line (one JSON object: the totals and the engine's :meth:`~Engine.report`)
        when the engine has figures to report."""
        self._finish_block()
        self._out(f"done: {self.blocks_done} block(s), accepted {self.accepted}, rejected {self.rejected}")
        await self.engine.aclose()
        report = self.engine.report()
        if report:
            totals = {
                "accepted": self.accepted,
                "rejected": self.rejected,
                "rejectedBy": dict(sorted(self.rejected_by.items())),
                "dropped": self.dropped,
                "firstJobAt": self.first_job_at,  # unix seconds; with endedAt, the time mined
                "endedAt": self._clock(),
            }
            self._out("summary " + json.dumps({**totals, **report}, separators=(",", ":")))


async def run_with_signals(miner: MinerBase) -> int:
    """``miner.run()``, with SIGINT and SIGTERM asking it to stop (it then winds up and prints totals)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, miner.stop)
    try:
        return await miner.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


# ---------------------------------------------------------------- registration (REST)


@dataclass(frozen=True)
class Registration:
    miner_id: str
    token: str
    farmer_id: str
    farmer: str


async def register(
    session: aiohttp.ClientSession, base_url: str, name: str | None, stake_percentage: float | None = None
) -> Registration:
    """``POST /miner/register``: a new miner identity and its bearer token.

    ``stake_percentage`` (0..1) is the share of the farmer's KALE it plants; None leaves the pool's default.
    """
    body: dict[str, Any] = {} if name is None else {"name": name}
    if stake_percentage is not None:
        body["stakePercentage"] = stake_percentage
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


async def obtain_token(
    token: str | None, register_url: str, name: str, out: Callable[[str], None] = print
) -> str:
    """``token`` when given, else the token of a new miner registered (as ``name``) at ``register_url``."""
    if token:
        return str(token)
    async with aiohttp.ClientSession() as session:
        reg = await register(session, register_url, name)
    out(f"registered miner {reg.miner_id} for farmer {reg.farmer_id} ({reg.farmer})")
    return reg.token


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
_CHECK_EVERY = 1024  # nonces between polls of the pipe (and reads of the share target)

# main -> worker: ("mine", task, job, block, entropy, farmer32, start, end) | ("idle", task) | None (exit)
# worker -> main: ("share", job, nonce, hash, zeros) | ("progress", hashes) | ("done", task)


class _Polls:
    """The stop check of one chunk: polls the pipe, and remembers how often (a cut chunk's hashes
    still count: mine_range polls before each ``_CHECK_EVERY`` nonces)."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self._conn = conn
        self.count = 0  # polls so far in this chunk
        self.pre_empted = False  # the last poll saw an order: the chunk was cut there

    def __call__(self) -> bool:
        self.count += 1
        self.pre_empted = self._conn.poll()
        return self.pre_empted


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

        def target() -> int:  # re-read every _CHECK_EVERY hashes: a `difficulty` applies at once
            return int(share_zeros.value)

        pos = start
        while pos < end:
            chunk_end = min(pos + _CHUNK, end)
            polls = _Polls(conn)
            for found in mine_range(template, pos, chunk_end, target, polls, _CHECK_EVERY):
                conn.send(("share", job, found.nonce, found.hash, found.zeros))
            if polls.pre_empted:  # what was hashed counts; the next recv() takes the new order
                done = (polls.count - 1) * _CHECK_EVERY
                if done:
                    conn.send(("progress", done))
                break
            conn.send(("progress", chunk_end - pos))
            pos = chunk_end
            if conn.poll():  # an order arrived at the chunk's end
                break
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
        # the share target, read by the processes every 1024 hashes: a `difficulty` applies at once
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
