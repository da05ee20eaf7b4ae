"""A real CPU miner for the KALE pool, over the protocol v1 WebSocket.

    python examples/ws_miner.py --register http://127.0.0.1:3001 --processes 2 --max-blocks 3

Worker processes hash their piece of the job's nonce range (``protocol.work.WorkTemplate``) and
stream back every nonce whose hash has at least ``shareZeros`` leading zero nibbles. When a process
runs out of range the miner asks for ``more``; a ``job`` with ``clean: true`` (a new block) pre-empts
all current ranges at once; ``difficulty`` changes the share target. A lost connection is retried with
exponential backoff and jitter; a refused token (error 24) ends the miner. One line is printed per block.
It asks for the ``block-broadcast`` feature: when the pool grants it, a ``slot`` frame gives the worker a
standing range and each new block arrives as one ``block`` frame meaning the job ``"<slot>.<block>"``
(``protocol.messages.slot_job``); a pool that does not grant it keeps sending a ``job`` per block.

The connection half (:class:`WsMiner`) is reused by ``kale_miner_bridge.py`` with another
:class:`Engine`; the pure mining loop is ``minerkit.mine_range``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Unpack

if __package__ in (None, ""):  # run as a script (or as a spawned child of one): make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from examples.minerkit import (
    BlockTally,
    Engine,
    HashPool,
    MinerBase,
    MinerError,
    MinerOptions,
    Piece,
    drop,
    format_rate,
    mine_range,
    obtain_token,
    run_with_signals,
    split_range,
)
from protocol import Code, ProtocolError, address_bytes
from protocol.codec import decode_server, encode
from protocol.messages import (
    BLOCK_BROADCAST,
    Accepted,
    Block,
    Bye,
    ClientMessage,
    Difficulty,
    Error,
    Hello,
    Job,
    More,
    Rejected,
    Report,
    Share,
    Slot,
    Stats,
    Welcome,
    slot_job,
)

__all__ = ["CpuEngine", "Engine", "WsMiner", "main", "mine_range"]

AGENT = "kale-pooler-examples/ws_miner"


class CpuEngine(Engine):
    """Hashes with :class:`HashPool` processes.

    Theory of operation: a job's range is cut into one piece per process. A new block (or
    ``clean``) idles every process and hands out the new pieces at once; a further job of the same
    block (the answer to ``more``) queues its pieces for processes as they finish. When a process is
    idle and no piece waits, one ``more`` is sent (never two at once), unless the block has ended.
    Shares of jobs that are no longer live are dropped instead of sent stale.
    """

    def __init__(self, processes: int, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock
        self._pool = HashPool(processes, self._on_share, self._on_idle)
        self._live: set[str] = set()  # job ids of the current block: shares for these are worth sending
        self._pieces: deque[Piece] = deque()  # pieces of live jobs no process has taken yet
        self._last_job: Job | None = None  # the newest job: its id goes in `more`, its blockEndsAt bounds it
        self._more_pending = False  # a `more` is unanswered: do not ask twice

    async def start(self) -> None:
        self._pool.start()

    def on_job(self, job: Job) -> None:
        farmer = address_bytes(job.farmer)
        pieces = [
            Piece(job.job, job.block, job.entropy, farmer, lo, hi)
            for lo, hi in split_range(job.nonce_start, job.nonce_end, self._pool.size)
        ]
        new_block = job.clean or self._last_job is None or job.block != self._last_job.block
        self._pool.share_zeros.value = job.share_zeros
        self._more_pending = False
        self._last_job = job
        if new_block:
            self._live = {job.job}
            self._pieces = deque(pieces)
            self._pool.idle_all()
        else:
            self._live.add(job.job)
            self._pieces.extend(pieces)
        self._feed()

    def on_difficulty(self, share_zeros: int) -> None:
        self._pool.share_zeros.value = share_zeros

    def on_disconnect(self) -> None:
        self._live.clear()
        self._pieces.clear()
        self._last_job = None
        self._more_pending = False
        self._pool.idle_all()

    def hashes(self) -> int:
        return self._pool.hashes

    def report(self) -> Mapping[str, object]:
        """The hashes really computed (the ``summary`` line: ``pooler demo`` compares the pool's
        figure with hashes / (endedAt - firstJobAt))."""
        return {"engine": "cpu", "processes": self._pool.size, "hashes": self._pool.hashes}

    async def aclose(self) -> None:
        self._pool.close()

    def _feed(self) -> None:
        idle = self._pool.idle_workers()
        while idle and self._pieces:
            self._pool.assign(idle.pop(), self._pieces.popleft())
        job = self._last_job
        if idle and job is not None and not self._more_pending and self._clock() * 1000 < job.block_ends_at:
            self._more_pending = True
            self.send(More(job=job.job))

    def _on_share(self, job: str, nonce: int, digest: bytes, zeros: int) -> None:
        if job in self._live:
            self.send(Share(job=job, nonce=nonce, hash=digest))

    def _on_idle(self, worker: int) -> None:
        self._feed()


class _Fatal(Exception):
    """The pool refused us for good (bad token): reconnecting cannot help."""


class _Lost(Exception):
    """The connection ended or misbehaved: reconnect after a backoff."""


class WsMiner(MinerBase):
    """One protocol v1 WebSocket session at a time, reconnecting until stopped.

    Theory of operation: ``run`` loops connect -> hello -> welcome -> (reader, sender, stop-watcher)
    until ``stop()``; a fatal error (24 unauthorized) ends it, anything else waits a :class:`Backoff`
    delay and reconnects. Outgoing frames go through a bounded queue drained by the sender task, so
    engine callbacks never await. Per-block figures (:class:`MinerBase`) are printed when the block
    changes and at the end; ``max_blocks`` counts finished blocks.
    """

    def __init__(
        self,
        *,
        url: str,
        agent: str = AGENT,
        **options: Unpack[MinerOptions],
    ) -> None:
        super().__init__(**options)
        self.url = url
        self.agent = agent
        self._job_block: dict[
            str, int
        ] = {}  # job id -> block, to credit accepted/rejected to the right block
        self.welcome: Welcome | None = None  # the last welcome: who we mine for
        # our own measured rate (hashes/s, from engine.hashes()), sent in hello and in a
        # 'report' every report_interval seconds: the pool shows it beside its effective figure
        self.report_interval = 30.0
        self.measured: float | None = None  # the last rate measured (None: none yet)
        # block-broadcast: the last slot the pool sent (the range every later block frame means);
        # None until one comes (and after a reconnect: a new session gets a new slot)
        self._slot: Slot | None = None
        # the share target the last job, slot or difficulty frame said: what a block frame's job is mined at
        self._share_zeros = 0

    async def run(self) -> int:
        """Mine until stopped; 0 on a normal end, 2 when the pool refused the token."""
        await self.engine.start()
        timer = asyncio.create_task(self._stop_after(self.duration)) if self.duration else None
        try:
            while not self._stop.is_set():
                try:
                    await self._session()
                except _Fatal as exc:
                    self._out(f"pool refused this miner: {exc}")
                    return 2
                except (_Lost, OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                    if self._stop.is_set():
                        break
                    delay = self._backoff.next()
                    self._out(f"connection lost ({exc or type(exc).__name__}); reconnecting in {delay:.1f} s")
                    await self._pause(delay)
            return 0
        finally:
            if timer is not None:
                timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await timer
            await self._wind_up()

    async def _stop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.stop()

    async def _session(self) -> None:
        async with connect(self.url, proxy=None, open_timeout=10, close_timeout=2) as ws:
            hello = Hello(
                token=self.token,
                worker=self.worker,
                agent=self.agent,
                hashrate=self.measured,
                features=(BLOCK_BROADCAST,),
            )
            await ws.send(encode(hello).decode())
            try:
                first = decode_server(await asyncio.wait_for(ws.recv(), 10))
            except ProtocolError as exc:
                raise _Lost(f"bad first frame: {exc.message}") from None
            if isinstance(first, Error):
                self._on_error(first)
                raise _Lost(f"error {int(first.code)} {first.reason} before welcome")
            if not isinstance(first, Welcome):
                raise _Lost(f"expected welcome, got {type(first).__name__}")
            self.welcome = first
            self._slot = None
            self._backoff.reset()
            self._out(f"connected as miner {first.miner_id} worker {first.worker!r}, farmer {first.farmer}")
            outbox: asyncio.Queue[ClientMessage] = asyncio.Queue(maxsize=4096)
            self.engine.send = self._enqueuer(outbox)
            reader = asyncio.create_task(self._reader(ws))
            sender = asyncio.create_task(self._sender(ws, outbox))
            stopper = asyncio.create_task(self._stop.wait())
            reporter = asyncio.create_task(self._reporter(outbox))
            try:
                done, _ = await asyncio.wait({reader, sender, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stopper in done:
                    self.engine.on_disconnect()
                    await outbox.put(Bye())  # after the finds already queued
                    with contextlib.suppress(TimeoutError, ConnectionClosed):
                        await asyncio.wait_for(reader, 2)  # the server answers bye with close 1000
                    return
                for task in done:
                    task.result()  # raises what ended the session
                raise _Lost(f"closed by the pool (code {ws.close_code})")
            finally:
                self.engine.send = drop
                self.engine.on_disconnect()
                for task in (reader, sender, stopper, reporter):
                    task.cancel()
                await asyncio.gather(reader, sender, stopper, reporter, return_exceptions=True)

    async def _reporter(self, outbox: asyncio.Queue[ClientMessage]) -> None:
        """Every ``report_interval`` s, the rate our engine measured since the last one, as a
        ``report`` (display only on the pool's side); nothing when the engine does not count."""
        clock = time.monotonic
        at, done = clock(), self.engine.hashes()
        while True:
            await asyncio.sleep(self.report_interval)
            now, hashes = clock(), self.engine.hashes()
            if hashes > done and now > at:
                self.measured = (hashes - done) / (now - at)
                with contextlib.suppress(asyncio.QueueFull):
                    outbox.put_nowait(Report(self.measured))
            at, done = now, hashes

    async def _sender(self, ws: ClientConnection, outbox: asyncio.Queue[ClientMessage]) -> None:
        while True:
            msg = await outbox.get()
            await ws.send(encode(msg).decode())
            if isinstance(msg, Bye):
                await asyncio.Event().wait()  # nothing may follow bye; wait to be cancelled

    async def _reader(self, ws: ClientConnection) -> None:
        async for frame in ws:
            try:
                msg = decode_server(frame)
            except ProtocolError as exc:
                self._out(f"ignoring a frame the pool should not send: {exc.message}")
                continue
            self._handle(msg)

    def _handle(self, msg: object) -> None:
        match msg:
            case Job():
                self._share_zeros = msg.share_zeros
                self._on_job(msg)
            case Slot():  # holds from the next block frame on; the current jobs stay as they are
                self._slot = msg
                self._share_zeros = msg.share_zeros
                self.engine.on_difficulty(msg.share_zeros)
            case Block():
                if self._slot is not None:
                    self._on_job(slot_job(self._slot, msg, self._share_zeros))
            case Accepted():
                self._count(msg, self._tally_for(msg.job))
                if self.verbose:
                    self._out(f"accepted nonce {msg.nonce}: {msg.zeros} zeros{' (best)' if msg.best else ''}")
            case Rejected():
                self._count(msg, self._tally_for(msg.job))
            case Difficulty():
                self._share_zeros = msg.share_zeros
                self.engine.on_difficulty(msg.share_zeros)
                if self.verbose:
                    self._out(f"share target now {msg.share_zeros} zeros")
            case Stats():
                self._out(
                    f"stats: block {msg.block}, {msg.workers} worker(s), {format_rate(msg.hashrate)},"
                    f" accepted {msg.accepted}, rejected {msg.rejected}, best zeros {msg.best_zeros}"
                )
            case Error():
                self._on_error(msg)

    def _on_error(self, err: Error) -> None:
        self._out(f"pool error {int(err.code)} {err.reason}: {err.message}")
        if err.code == Code.UNAUTHORIZED:
            raise _Fatal(err.message or err.reason)

    def _tally_for(self, job: str | None) -> BlockTally | None:
        block = self._job_block.get(job) if job is not None else None
        if self._tally is not None and block == self._tally.block:
            return self._tally
        return None

    def _block_began(self, job: Job) -> None:
        self._job_block = {k: b for k, b in self._job_block.items() if b == job.block}
        if self.verbose:
            self._out(f"block {job.block}: mining, {job.share_zeros} zeros a share")

    def _job_taken(self, job: Job) -> None:
        self._job_block[job.job] = job.block


# ---------------------------------------------------------------- command line


def add_pool_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every WebSocket example miner takes."""
    parser.add_argument("--url", default="ws://127.0.0.1:3001/ws/miner", help="the pool's miner WebSocket")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--token", help="bearer token of an existing miner")
    who.add_argument("--register", metavar="HTTP_URL", help="register a new miner at this pool URL first")
    parser.add_argument("--name", help="miner name sent when registering (default: the worker name)")
    parser.add_argument("--worker", default="default", help="worker name, up to 64 characters")
    parser.add_argument("--max-blocks", type=int, metavar="N", help="stop after N blocks")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    parser.add_argument("--verbose", action="store_true", help="print every share result")
    parser.add_argument(
        "--report-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="send our measured hashrate to the pool this often ('report'; shown beside its own figure)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="CPU miner for the KALE pool (protocol v1 over WebSocket)")
    add_pool_arguments(parser)
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, metavar="N", help="hashing processes"
    )
    return parser


async def run_miner(args: argparse.Namespace, engine: Engine) -> int:
    """Shared main of the WebSocket miners: token, signals, session loop."""
    try:
        token = await obtain_token(args.token, args.register, args.name or args.worker)
    except (MinerError, aiohttp.ClientError, OSError) as exc:
        print(f"cannot register: {exc}", file=sys.stderr)
        await engine.aclose()
        return 1
    miner = WsMiner(
        url=args.url,
        token=token,
        worker=args.worker,
        engine=engine,
        max_blocks=args.max_blocks,
        duration=args.duration,
        verbose=args.verbose,
    )
    miner.report_interval = getattr(args, "report_interval", 30.0)
    try:
        return await run_with_signals(miner)
    except InvalidURI as exc:
        print(f"bad --url: {exc}", file=sys.stderr)
        return 2


def check_bounds(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not getattr(args, "report_interval", 30.0) > 0:
        parser.error("--report-interval must be positive")
    if args.max_blocks is not None and args.max_blocks < 1:
        parser.error("--max-blocks must be at least 1")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    if not 1 <= len(args.worker) <= 64:
        parser.error("--worker must be 1 to 64 characters")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_bounds(parser, args)
    if args.processes < 1:
        parser.error("--processes must be at least 1")

    async def go() -> int:
        return await run_miner(args, CpuEngine(args.processes))

    return asyncio.run(go())


if __name__ == "__main__":
    sys.exit(main())
