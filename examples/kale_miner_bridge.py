"""Mine for the KALE pool with the external kale-miner binary (CPU or GPU), over the WebSocket.

    python examples/kale_miner_bridge.py --register http://127.0.0.1:3001 --miner ./miner --threads 2
    python examples/kale_miner_bridge.py --token T --miner ./miner --gpu --threads 512
    python examples/kale_miner_bridge.py --token T --miner "python examples/fake_kale_miner.py"

The pool wants **every** nonce whose hash has at least the job's ``shareZeros`` (docs/protocol.md): that
is how it measures a worker's hashrate and tunes its difficulty. kale-miner stops at the first hash
reaching its ``<difficulty>`` argument and knows no range end, so the bridge runs it once per share::

    miner <block> <entropy-base64> <start> <shareZeros> <G-address> --max-threads T --batch-size B --verbose

**Restart rule.** ``<difficulty>`` is the pool's ``shareZeros``. When the binary prints a find at
nonce ``n``, the bridge checks it (recomputes the hash), sends it as a share and starts the binary
again from ``n + 1``; so every qualifying nonce of the range is sent, each once. A ``difficulty``
message (or a job carrying another ``shareZeros``) restarts the binary at the new value: a lowering at
once, from the last nonce known to be hashed (the few nonces since are hashed again, at the lower
target, so none of their shares is missed); a raise at the binary's next batch line (nothing hashed
twice; the few finds in between meet the old target, which the pool still accepts during its grace
period). Each restart costs ~5 ms (a process start), so at a difficulty where shares come every few
milliseconds the bridge hashes slowly until the pool's vardiff raises it, as it does within seconds.

**Progress.** The bridge sets ``--batch-size`` so that the binary's batches tile what is left of
its range exactly (the last one ends at most a few nonces past it) and each lasts about
:data:`CPU_BATCH_SECONDS` (CPU) or :data:`GPU_BATCH_SECONDS` (GPU) at the measured rate. The binary
prints a ``Mining batch`` line as each batch begins, so line ``k`` of a run says the ``k - 1``
batches before it are hashed: exact progress. The line after the last batch means the range is
exhausted: the bridge kills the binary (the few milliseconds it hashed past the end are wasted, and
never sent) and takes the next range, or asks ``more``. A ``clean`` job kills every binary at once.
The connection is :class:`examples.ws_miner.WsMiner`'s, so the bridge asks for ``block-broadcast``
too: a granted slot's ``block`` frame reaches this engine as the clean job it means.

**Threads: one single-threaded binary per thread.** ``--threads N`` runs N binaries with
``--max-threads 1``, each on its own slice of the range (``minerkit.split_range``), not one binary
with ``--max-threads N``. The CPU build hands each of its threads a batch of consecutive nonces and,
at the first find in any of them, stops all of them wherever they are and reports only that one:
the other threads' unhashed tails (below the find) would be skipped by a restart from ``n + 1``,
and their finds in the same instant are lost. Which nonces those are cannot be read from its
output, so the waste could only be guessed. A single-threaded run is sequential, so "found ``n``"
means exactly "every nonce from the start to ``n`` was hashed", and the slices cover the range with
no gap and no overlap. The cost is one extra idle monitor thread per binary.

**GPU (``--gpu``).** One binary drives the device; ``--threads`` is then its threads per GPU block
(kale-miner's ``--max-threads`` meaning). The GPU build's batch lines repeat the run's start nonce,
so they do not say where it is; the bridge counts them instead (the line count times the batch size
it chose is the progress), and also bounds each run by time: once it has measured the rate (from
those lines), a run that has not reached its range's end within :data:`GPU_DEADLINE_FACTOR` times
the time the rest of the range needs at that rate, plus :data:`GPU_DEADLINE_GRACE` seconds, is
killed and its range counted as done (by time: those hashes are an estimate). So a GPU stays inside
its range even if its lines stop coming. Two limits of the GPU kernels, which no driver can fix:
a kernel call reports one find, whichever thread got one first, so a qualifying nonce below it
that another thread hashed at the same moment is skipped by the restart from ``n + 1`` (those above
it are hashed again by the next run); and the CUDA kernel rounds a batch up to a multiple of the
threads per block, so the last batch of a range may pass its end by that much (such finds are
dropped). At the pool's vardiff difficulty a find is rare among the nonces hashed at one moment,
so little is lost.

**Counting.** The bridge counts the nonces of its ranges it has hashed (each once: exact from the
binary's output, estimated from the rate for a run cut short by a new block, a disconnect, the end
or a GPU deadline), per difficulty. It prints them per block and at the end, with the share count
those hashes lead one to expect (``hashes / 16**zeros``), and puts them in the ``summary`` line (one
JSON object) it prints last; the pool's figures for this worker can be checked against them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import re
import shlex
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.minerkit import format_rate, parse_miner_output, split_range
from examples.ws_miner import Engine, add_pool_arguments, check_bounds, run_miner
from protocol import ProtocolError, strkey
from protocol.messages import Job, More, Share
from protocol.work import WorkTemplate

__all__ = [
    "Counters",
    "KaleMinerEngine",
    "RateMeter",
    "batch_start",
    "main",
    "miner_argv",
    "plan_batch",
    "reported_rate",
]

CPU_BATCH_SECONDS = 0.25  # a CPU batch line this often: the progress known when a run is cut short
GPU_BATCH_SECONDS = 1.0  # a kernel call this long: launch overhead stays negligible
GPU_DEADLINE_FACTOR = 1.5  # a GPU run may take this many times its expected time ...
GPU_DEADLINE_GRACE = 2.0  # ... plus this many seconds (device start-up), then it is stopped
FIRST_BATCH = 1 << 20  # nonces per batch before the rate is measured
RATE_HALF_LIFE = 10.0  # seconds: the measured rate follows changes this fast
_STOLL_MAX = 2**63 - 1  # kale-miner parses the start nonce with std::stoll
_BATCH_MARK = "Mining batch: "
_RATE_LINE = re.compile(r"Hash Rate: ([0-9.]+) ([KMGTPE]?)H/s")
_UNITS = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_OWN_OPTIONS = ("--max-threads", "--batch-size")  # the bridge sets these itself


# ---------------------------------------------------------------- pure parts


def plan_batch(remaining: int, rate: float, seconds: float, first: int = FIRST_BATCH) -> int:
    """A batch size whose batches tile ``remaining`` nonces, each about ``rate * seconds`` long.

    Before the rate is known (``rate <= 0``) batches are about ``first`` nonces. The batches of the
    answer cover ``remaining`` with an overshoot below their count (``count * size - remaining <
    count``), so the last one ends at most a few nonces past the range.
    """
    if remaining < 1:
        raise ValueError("nothing left to hash")
    target = first if rate <= 0 else rate * seconds
    count = -(-remaining // max(1, int(target)))
    return -(-remaining // count)


def miner_argv(
    command: Sequence[str],
    job: Job,
    start: int,
    difficulty: int,
    threads: int,
    batch: int,
    extra: Sequence[str] = (),
) -> list[str]:
    """The kale-miner command line: hash ``job`` from ``start``, stop at ``difficulty`` zeros."""
    return [
        *command,
        str(job.block),
        base64.b64encode(job.entropy).decode("ascii"),
        str(start),
        str(difficulty),
        job.farmer,
        "--max-threads",
        str(threads),
        "--batch-size",
        str(batch),
        "--verbose",
        *extra,
    ]


def batch_start(line: str) -> int | None:
    """The start nonce of a ``[CPU] Mining batch: N block: ...`` line, else None."""
    at = line.find(_BATCH_MARK)
    if at < 0:
        return None
    word = line[at + len(_BATCH_MARK) :].split(" ", 1)[0]
    return int(word) if word.isdigit() else None


def reported_rate(line: str) -> float | None:
    """The hashes/s of a ``[CPU] Hash Rate: 984.39 KH/s`` line (the binary's own figure), else None."""
    m = _RATE_LINE.search(line)
    if m is None:
        return None
    try:
        return float(m.group(1)) * _UNITS[m.group(2)]
    except ValueError:
        return None


class RateMeter:
    """Hashes per second of one binary, from (hashes, seconds) samples, older ones fading out
    with a half-life of ``half_life`` seconds of measured time."""

    def __init__(self, half_life: float = RATE_HALF_LIFE) -> None:
        self._half_life = half_life
        self._hashes = 0.0
        self._seconds = 0.0

    def add(self, hashes: int, seconds: float) -> None:
        if seconds <= 0:
            return
        keep = 0.5 ** (seconds / self._half_life)
        self._hashes = self._hashes * keep + hashes
        self._seconds = self._seconds * keep + seconds

    @property
    def value(self) -> float:
        """Hashes/s; 0 while nothing was measured."""
        return self._hashes / self._seconds if self._seconds > 0 else 0.0


# ---------------------------------------------------------------- the engine


@dataclass
class _Piece:
    """A slice ``[pos, end)`` of one job's range; ``pos`` is the first nonce not known hashed."""

    job: Job
    pos: int
    end: int
    template: WorkTemplate


@dataclass
class _Run:
    """One run of the binary, from ``start`` at ``zeros``, in batches of ``batch``."""

    proc: asyncio.subprocess.Process
    start: int
    batch: int
    zeros: int
    spawned: float  # loop time
    lines: int = 0  # batch lines read
    last: float | None = None  # loop time of the last exact progress (None before the first line)
    lowered: bool = False  # killed by the bridge to restart at a lower difficulty


@dataclass(eq=False)
class _Lane:
    """One binary at a time working through one piece."""

    piece: _Piece
    task: asyncio.Task[None] | None = None
    run: _Run | None = None


@dataclass
class Counters:
    """What the engine did, for the per-block lines and the summary."""

    hashes: int = 0  # nonces of the pool's ranges hashed, each counted once
    estimated: int = 0  # the part of ``hashes`` estimated from the rate (runs cut short)
    by_zeros: dict[int, int] = field(default_factory=dict)  # difficulty -> hashes at it
    runs: int = 0  # binaries started
    finds: int = 0  # results the binary printed
    shares: int = 0  # shares sent
    outside: int = 0  # finds past the end of their piece: dropped
    stale: int = 0  # finds of jobs no longer live: dropped
    redone: int = 0  # estimated hashes done again after a lowering (wasted)
    expired: int = 0  # GPU runs stopped by their deadline
    mores: int = 0  # `more` requests sent


class KaleMinerEngine(Engine):
    """Runs kale-miner binaries over the newest jobs' ranges (module docstring: the rules).

    Theory of operation: a job's range is cut into one piece per lane (``threads`` lanes on a CPU,
    one on a GPU). A new block (or ``clean``) cancels every lane (each lane's task kills its binary
    in a ``finally``) and queues the new pieces; a further job of the block (the answer to ``more``)
    queues its pieces behind the current ones. A lane is a task that runs the binary again and again
    from its piece's ``pos`` until ``pos`` reaches the end, then takes the next queued piece; when a
    lane is free and no piece waits, one ``more`` is sent (never two at once), unless the block has
    ended. Everything runs on the event loop: callbacks never block, the binaries' output is read
    by the lanes' tasks.
    """

    def __init__(
        self,
        command: Sequence[str],
        threads: int,
        extra: Sequence[str] = (),
        *,
        gpu: bool = False,
        first_batch: int = FIRST_BATCH,
        out: Callable[[str], None] = print,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.command = list(command)
        self.gpu = gpu
        self.extra = [*extra, "--gpu"] if gpu and "--gpu" not in extra else list(extra)
        self.lanes = 1 if gpu else threads  # binaries running at once
        self.binary_threads = threads if gpu else 1  # their --max-threads
        self.first_batch = first_batch
        self.batch_seconds = GPU_BATCH_SECONDS if gpu else CPU_BATCH_SECONDS
        self.rate = RateMeter()  # of one lane, measured from the binaries' progress
        self.binary_rate = RateMeter()  # of one lane, from the binaries' own Hash Rate lines
        self.counts = Counters()
        self._out = out
        self._clock = clock  # unix seconds: for blockEndsAt
        self._active: list[_Lane] = []
        self._pieces: deque[_Piece] = deque()  # pieces of live jobs no lane has taken yet
        self._reaping: set[asyncio.Task[None]] = set()  # cancelled lanes still killing their binary
        self._live: set[str] = set()  # job ids of the current block: finds for these are sent
        self._last_job: Job | None = None  # the newest job: its id goes in `more`
        self._more_pending = False  # a `more` is unanswered: do not ask twice
        self._failed_block: int | None = None  # the binary failed in this block: no more `more`
        self._zeros = 0  # the share target every run is started with
        self._started: float | None = None  # loop time of the first job
        self._ended: float | None = None

    # ------------------------------------------------------------ Engine hooks

    def on_job(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        if self._started is None:
            self._started = loop.time()
        last = self._last_job
        if job.clean or last is None or job.block != last.block:
            self._cancel_lanes()
            self._pieces.clear()
            self._live = {job.job}
            self._failed_block = None
        else:
            self._live.add(job.job)
        self._last_job = job
        self._more_pending = False
        self.on_difficulty(job.share_zeros)
        if not job.farmer.startswith("G"):
            self._out(f"kale-miner mines only for G... addresses; skipping job {job.job} for {job.farmer}")
            return
        template = WorkTemplate(job.block, job.entropy, strkey.decode(job.farmer)[1])
        for lo, hi in split_range(job.nonce_start, job.nonce_end, self.lanes):
            self._pieces.append(_Piece(job, lo, hi, template))
        self._feed()

    def on_difficulty(self, share_zeros: int) -> None:
        self._zeros = share_zeros
        for lane in self._active:
            run = lane.run
            if run is not None and share_zeros < run.zeros and not run.lowered:
                run.lowered = True  # its lane restarts from the last exact progress (module docstring)
                with contextlib.suppress(ProcessLookupError):
                    run.proc.kill()
        # a raise is applied by each run at its next batch line or find (see _run)

    def on_disconnect(self) -> None:
        self._cancel_lanes()
        self._pieces.clear()
        self._live.clear()
        self._last_job = None
        self._more_pending = False

    def hashes(self) -> int:
        return self.counts.hashes

    @property
    def busy(self) -> int:
        """Lanes hashing now."""
        return len(self._active)

    async def aclose(self) -> None:
        self._cancel_lanes()
        if self._reaping:
            await asyncio.gather(*self._reaping, return_exceptions=True)
        if self._started is not None and self._ended is None:
            self._ended = asyncio.get_running_loop().time()
            self._out(self.summary_line())

    def report(self) -> Mapping[str, object]:
        c = self.counts
        seconds = self._seconds()
        return {
            "engine": "kale-miner-gpu" if self.gpu else "kale-miner",
            "lanes": self.lanes,
            "hashes": c.hashes,
            "estimatedHashes": c.estimated,
            "hashesByZeros": {str(z): n for z, n in sorted(c.by_zeros.items())},
            "expectedShares": round(self.expected_shares(), 3),
            "seconds": round(seconds, 3),
            "hashrate": round(c.hashes / seconds, 1) if seconds > 0 else 0.0,
            "laneRate": round(self.rate.value, 1),  # measured from progress, one binary
            "binaryRate": round(self.binary_rate.value, 1),  # what the binary printed, one binary
            "runs": c.runs,
            "finds": c.finds,
            "shares": c.shares,
            "outside": c.outside,
            "staleFinds": c.stale,
            "redoneHashes": c.redone,
            "expiredRuns": c.expired,
            "mores": c.mores,
        }

    # ------------------------------------------------------------ figures

    def expected_shares(self) -> float:
        """Shares the hashes counted lead one to expect: sum of hashes / 16**zeros."""
        return sum(n / 16.0**z for z, n in self.counts.by_zeros.items())

    def summary_line(self) -> str:
        c = self.counts
        seconds = self._seconds()
        rate = format_rate(c.hashes / seconds) if seconds > 0 else "-"
        estimated = f" ({100 * c.estimated / c.hashes:.1f}% estimated)" if c.hashes else ""
        return (
            f"kale-miner: hashed {c.hashes} nonces{estimated} in {seconds:.1f} s ({rate};"
            f" {self.lanes} binar{'y' if self.lanes == 1 else 'ies'} at {format_rate(self.rate.value)} each),"
            f" {c.runs} runs, {c.shares} shares sent (expected {self.expected_shares():.1f}),"
            f" {c.outside} finds outside the ranges dropped"
        )

    def _seconds(self) -> float:
        if self._started is None:
            return 0.0
        end = self._ended if self._ended is not None else asyncio.get_running_loop().time()
        return max(0.0, end - self._started)

    # ------------------------------------------------------------ lanes

    def _cancel_lanes(self) -> None:
        for lane in self._active:
            if lane.task is not None and not lane.task.done():
                lane.task.cancel()
                self._reaping.add(lane.task)
                lane.task.add_done_callback(self._reaping.discard)
        self._active.clear()

    def _feed(self) -> None:
        while len(self._active) < self.lanes and self._pieces:
            lane = _Lane(self._pieces.popleft())
            self._active.append(lane)
            lane.task = asyncio.create_task(self._mine(lane))
        job = self._last_job
        if (
            len(self._active) < self.lanes
            and job is not None
            and not self._more_pending
            and self._failed_block != job.block
            and self._clock() * 1000 < job.block_ends_at
        ):
            self._more_pending = True
            self.counts.mores += 1
            self.send(More(job=job.job))

    async def _mine(self, lane: _Lane) -> None:
        piece = lane.piece
        while piece.pos < piece.end:
            if piece.pos > _STOLL_MAX:
                self._out(
                    f"job {piece.job.job}: nonce {piece.pos} is past 2^63-1, which kale-miner cannot take"
                )
                break
            if not await self._run(lane):
                self._failed_block = piece.job.block
                break
        if lane in self._active:
            self._active.remove(lane)
            self._feed()

    def _count(self, zeros: int, hashes: int, *, estimated: bool = False) -> None:
        if hashes <= 0:
            return
        c = self.counts
        c.hashes += hashes
        c.by_zeros[zeros] = c.by_zeros.get(zeros, 0) + hashes
        if estimated:
            c.estimated += hashes

    def _advance(self, run: _Run, piece: _Piece, to: int, now: float) -> None:
        """Exact progress: every nonce of ``piece`` below ``to`` has been hashed by ``run``."""
        done = to - piece.pos
        if done > 0:
            self._count(run.zeros, done)
            if run.last is not None:
                self.rate.add(done, now - run.last)
            piece.pos = to
        run.last = now

    def _in_flight(self, run: _Run, piece: _Piece, now: float) -> int:
        """Estimated nonces hashed since the last exact progress (at most to the current batch's end)."""
        if run.last is None or self.rate.value <= 0:
            return 0
        batch_end = min(piece.end, run.start + max(1, run.lines) * run.batch)
        return max(0, min(batch_end - piece.pos, int((now - run.last) * self.rate.value)))

    def _deadline(self, run: _Run, piece: _Piece) -> float | None:
        """GPU only: loop time by which the run must have reached the piece's end."""
        rate = self.rate.value
        if not self.gpu or rate <= 0:
            return None
        since = run.last if run.last is not None else run.spawned
        return since + (piece.end - piece.pos) / rate * GPU_DEADLINE_FACTOR + GPU_DEADLINE_GRACE

    async def _run(self, lane: _Lane) -> bool:
        """Run the binary once from the piece's ``pos``; False when it failed (no result, not stopped)."""
        piece = lane.piece
        loop = asyncio.get_running_loop()
        zeros = self._zeros
        batch = plan_batch(piece.end - piece.pos, self.rate.value, self.batch_seconds, self.first_batch)
        argv = miner_argv(self.command, piece.job, piece.pos, zeros, self.binary_threads, batch, self.extra)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
            )
        except OSError as exc:
            self._out(f"cannot start kale-miner ({shlex.join(self.command)}): {exc}")
            return False
        run = _Run(proc, piece.pos, batch, zeros, loop.time())
        lane.run = run
        self.counts.runs += 1
        if self._zeros < run.zeros:  # lowered while it was starting: restart it at once, like any run
            self.on_difficulty(self._zeros)
        try:
            assert proc.stdout is not None
            tail: list[str] = []  # lines from the first '{': the JSON result
            while True:
                deadline = self._deadline(run, piece)
                try:
                    async with asyncio.timeout_at(deadline):
                        raw = await proc.stdout.readline()
                except TimeoutError:
                    self._expire(run, piece, loop.time())
                    return True
                if not raw:
                    break
                line = raw.decode("utf-8", "replace")
                rate = reported_rate(line)
                if rate is not None:  # (its monitor thread prints these: even amid the result)
                    self.binary_rate.add(int(rate), 1.0)
                elif tail or line.lstrip().startswith("{"):
                    tail.append(line)
                elif _BATCH_MARK in line:
                    self._batch_line(run, piece, line, loop.time())
                    if piece.pos >= piece.end or self._zeros > run.zeros:
                        return True  # exhausted; or a raise to apply from here
            await proc.wait()
            found = parse_miner_output("".join(tail))
            if found is not None:
                return self._found(run, piece, found[0], found[1], loop.time())
            if run.lowered:
                self.counts.redone += self._in_flight(run, piece, loop.time())
                return True
            self._out(
                f"kale-miner exited with status {proc.returncode} and no result"
                f" ({shlex.join(argv[:3])} ...); not asking for more work in block {piece.job.block}"
            )
            return False
        except asyncio.CancelledError:
            # a new block, a disconnect or the end: these nonces were hashed, how many is an estimate
            self._count(run.zeros, self._in_flight(run, piece, loop.time()), estimated=True)
            raise
        finally:
            if lane.run is run:
                lane.run = None
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    def _batch_line(self, run: _Run, piece: _Piece, line: str, now: float) -> None:
        run.lines += 1
        counted = run.start + (run.lines - 1) * run.batch  # what the line count says
        printed = batch_start(line)
        # the CPU build prints where each batch begins; the GPU build repeats the run's start
        at = counted if self.gpu or printed is None else printed
        self._advance(run, piece, min(max(at, piece.pos), piece.end), now)

    def _found(self, run: _Run, piece: _Piece, nonce: int, printed: bytes, now: float) -> bool:
        self.counts.finds += 1
        if nonce >= piece.end:  # it went past the end (the last batch's overshoot): all was hashed
            self._advance(run, piece, piece.end, now)
            self.counts.outside += 1
            return True
        if nonce < piece.pos:
            self._out(f"kale-miner reported nonce {nonce}, below its start {piece.pos}: not a kale-miner?")
            return False
        digest, zeros = piece.template.verify(nonce)
        self._advance(run, piece, nonce + 1, now)
        if digest != printed:
            self._out(f"kale-miner printed a wrong hash for nonce {nonce}; submitting the recomputed one")
        if zeros < run.zeros:
            self._out(f"kale-miner reported nonce {nonce} with {zeros} zeros, below {run.zeros}: not sent")
        elif piece.job.job not in self._live:
            self.counts.stale += 1
        else:
            self.counts.shares += 1
            self.send(Share(job=piece.job.job, nonce=nonce, hash=digest))
        return True

    def _expire(self, run: _Run, piece: _Piece, now: float) -> None:
        left = piece.end - piece.pos
        self._out(
            f"kale-miner (GPU) has not finished nonces {piece.pos}..{piece.end - 1} in the time"
            f" {format_rate(self.rate.value)} needs; stopping it there (counted as hashed)"
        )
        self.counts.expired += 1
        self._count(run.zeros, left, estimated=True)
        piece.pos = piece.end
        run.last = now


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Drive the kale-miner binary for the KALE pool (WebSocket)")
    add_pool_arguments(parser)
    parser.add_argument(
        "--miner",
        required=True,
        metavar="COMMAND",
        help="the kale-miner executable, or a command line (e.g. 'python examples/fake_kale_miner.py')",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU: binaries run side by side, one thread each (default 4);"
        " GPU: threads per GPU block, passed as --max-threads (default 512)",
    )
    parser.add_argument("--gpu", action="store_true", help="mine on the GPU (a GPU build of kale-miner)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=FIRST_BATCH,
        metavar="N",
        help="nonces per batch until the rate is measured (then batches last"
        f" {CPU_BATCH_SECONDS} s on a CPU, {GPU_BATCH_SECONDS} s on a GPU)",
    )
    parser.add_argument(
        "--miner-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the binary, repeatable (e.g. --miner-arg=--device --miner-arg=1)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_bounds(parser, args)
    gpu = bool(args.gpu or "--gpu" in args.miner_arg)
    threads = args.threads if args.threads is not None else (512 if gpu else 4)
    if threads < 1:
        parser.error("--threads must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    own = [a for a in args.miner_arg if a in _OWN_OPTIONS]
    if own:
        parser.error(f"--miner-arg={own[0]}: the bridge sets it (use --threads / --batch-size)")
    command = shlex.split(args.miner)
    if not command:
        parser.error("--miner is empty")

    async def go() -> int:
        engine = KaleMinerEngine(command, threads, args.miner_arg, gpu=gpu, first_batch=args.batch_size)
        return await run_miner(args, engine)

    try:
        return asyncio.run(go())
    except ProtocolError as exc:
        print(f"bad job from the pool: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
