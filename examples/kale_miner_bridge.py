"""Mine for the KALE pool with the external kale-miner binary (CPU or GPU), over the WebSocket.

    python examples/kale_miner_bridge.py --register http://127.0.0.1:3001 --miner ./miner --threads 8
    python examples/kale_miner_bridge.py --token T --miner "python examples/fake_kale_miner.py"

For each job the bridge runs ``miner <block> <entropy-base64> <start-nonce> <difficulty> <G-address>
--max-threads N --batch-size B --verbose``. The binary stops at the first hash with at least
``difficulty`` zeros and prints it as JSON; the bridge submits it as a share, then restarts the binary
just past that nonce aiming one zero higher (so each block climbs towards the best hash it can find,
never below the pool's ``shareZeros``). The binary knows no range end: the batch size is chosen so its
threads' first batches tile the job's range exactly, and when its verbose ``Mining batch`` lines (or a
find) show it has left the range, the bridge kills it and asks for ``more``. A ``clean`` job kills the
running binary at once.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.minerkit import parse_miner_output
from examples.ws_miner import Engine, add_pool_arguments, check_bounds, run_miner
from protocol import ProtocolError, strkey
from protocol.messages import Job, More, Share
from protocol.work import WorkTemplate

__all__ = ["KaleMinerEngine", "main", "miner_argv"]

_STOLL_MAX = 2**63 - 1  # kale-miner parses the start nonce with std::stoll
_BATCH_MARK = "Mining batch: "


def miner_argv(
    command: Sequence[str], job: Job, start: int, difficulty: int, threads: int, extra: Sequence[str] = ()
) -> list[str]:
    """The kale-miner command line for ``[start, job.nonce_end)`` of ``job``.

    The CPU build hands each of its ``threads`` one batch of ``--batch-size`` nonces from ``start``
    upwards, so a batch of ``ceil(range / threads)`` makes the first round cover the range exactly.
    """
    span = job.nonce_end - start
    batch = max(1, -(-span // threads))
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


class KaleMinerEngine(Engine):
    """Runs one kale-miner process at a time for the newest job.

    Theory of operation: ``on_job`` cancels the task driving the current process (its ``finally``
    kills the process) and starts a task for the new job. The task loops: run the binary from
    ``start`` with target ``max(shareZeros, best + 1)``; a find inside the range is checked locally,
    sent as a share, and the next run starts just past it; leaving the range or exhausting it sends
    one ``more``. ``best`` resets on every new block.
    """

    def __init__(
        self,
        command: Sequence[str],
        threads: int,
        extra: Sequence[str] = (),
        out: Callable[[str], None] = print,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.command = list(command)
        self.threads = threads
        self.extra = list(extra)
        self._out = out
        self._clock = clock
        self._runner: asyncio.Task[None] | None = None  # drives the binary for the newest job
        self._reaping: set[asyncio.Task[None]] = set()  # cancelled runners still killing their process
        self._block: int | None = None  # block of the newest job: `best` belongs to it
        self._best = -1  # best zeros found in this block, so the next run aims higher
        self._share_zeros = 0  # the pool's share target: the floor of every run's difficulty
        self.finds = 0  # results the binary printed (inside and outside ranges)

    def on_job(self, job: Job) -> None:
        if job.clean or job.block != self._block:
            self._block = job.block
            self._best = -1
        self._share_zeros = job.share_zeros
        self._cancel()
        if not job.farmer.startswith("G"):
            self._out(f"kale-miner mines only for G... addresses; skipping job {job.job} for {job.farmer}")
            return
        self._runner = asyncio.create_task(self._run(job))

    def on_difficulty(self, share_zeros: int) -> None:
        self._share_zeros = share_zeros  # applies from the next run of the binary

    def on_disconnect(self) -> None:
        self._cancel()
        self._block = None

    async def aclose(self) -> None:
        self._cancel()
        if self._reaping:
            await asyncio.gather(*self._reaping, return_exceptions=True)

    def _cancel(self) -> None:
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            self._reaping.add(self._runner)
            self._runner.add_done_callback(self._reaping.discard)
        self._runner = None

    async def _run(self, job: Job) -> None:
        template = WorkTemplate(job.block, job.entropy, strkey.decode(job.farmer)[1])
        start = job.nonce_start
        while start < job.nonce_end:
            if start > _STOLL_MAX:
                self._out(f"job {job.job} starts past 2^63-1, beyond what kale-miner accepts")
                return
            difficulty = max(self._share_zeros, self._best + 1)
            found = await self._run_binary(
                miner_argv(self.command, job, start, difficulty, self.threads, self.extra), job
            )
            if found is None or not start <= found[0] < job.nonce_end:
                break  # exhausted, or the binary left our range: ask for a new one
            nonce, printed = found
            digest, zeros = template.verify(nonce)
            if digest != printed:
                self._out(f"kale-miner printed a wrong hash for nonce {nonce}; submitting the recomputed one")
            self._best = max(self._best, zeros)
            self.send(Share(job=job.job, nonce=nonce, hash=digest))
            start = nonce + 1
        if self._clock() * 1000 < job.block_ends_at:
            self.send(More(job=job.job))

    async def _run_binary(self, argv: list[str], job: Job) -> tuple[int, bytes] | None:
        """Run kale-miner once; its result, or None (no result, or it wandered past the range)."""
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            tail: list[str] = []  # lines from the first '{': the JSON result
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace")
                first = batch_start(line)
                if first is not None and first >= job.nonce_end:
                    # a thread began a batch past the range: the others are finishing their last in-range
                    # batches (equal speed, so nearly done); stop here rather than hash outside the range
                    return None
                if tail or line.lstrip().startswith("{"):
                    tail.append(line)
            await proc.wait()
            found = parse_miner_output("".join(tail))
            if found is not None:
                self.finds += 1
            elif proc.returncode:
                self._out(f"kale-miner exited with status {proc.returncode}")
            return found
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Drive the kale-miner binary for the KALE pool (WebSocket)")
    add_pool_arguments(parser)
    parser.add_argument(
        "--miner",
        required=True,
        metavar="COMMAND",
        help="the kale-miner executable, or a command line (e.g. 'python examples/fake_kale_miner.py')",
    )
    parser.add_argument("--threads", type=int, default=4, metavar="N", help="passed as --max-threads")
    parser.add_argument(
        "--miner-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the binary, repeatable (e.g. --miner-arg=--gpu)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_bounds(parser, args)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    command = shlex.split(args.miner)
    if not command:
        parser.error("--miner is empty")

    async def go() -> int:
        return await run_miner(args, KaleMinerEngine(command, args.threads, args.miner_arg))

    try:
        return asyncio.run(go())
    except ProtocolError as exc:
        print(f"bad job from the pool: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
