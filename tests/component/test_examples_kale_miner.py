"""The kale-miner bridge's engine driving real binaries: the kale-miner CPU build (built from its
source, tests/support/kale_miner.py) and the stand-in's GPU mode. No pool: the test hands the engine
jobs and collects what it would send, then recomputes every hash of the range in Python.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from examples.kale_miner_bridge import KaleMinerEngine
from examples.minerkit import mine_range
from protocol import address_bytes
from protocol.messages import ClientMessage, Job, More, Share
from protocol.work import WorkTemplate
from tests.support.kale_miner import kale_miner_binary
from tests.support.wait import FAILSAFE, wait_until

FARMER = "GBQHTQ7NTSKHVTSVM6EHUO3TU4P4BK2TAAII25V2TT2Q6OWXUJWEKALE"
ENTROPY = bytes(range(32))
BLOCK = 9
START = 1_000_003
FAKE = str(Path(__file__).resolve().parent.parent.parent / "examples" / "fake_kale_miner.py")
FAKE_GPU = [sys.executable, FAKE, "--as-gpu-build"]


@pytest.fixture(scope="module")
def miner() -> Path:
    return kale_miner_binary()


def job(name: str, start: int, size: int, zeros: int, *, block: int = BLOCK, clean: bool = True) -> Job:
    ends = int(time.time() * 1000) + 3_600_000
    return Job(name, block, ENTROPY, FARMER, start, start + size, zeros, clean, ends, ends)


def qualifying(start: int, end: int, zeros: int, block: int = BLOCK) -> list[int]:
    """Every nonce of ``[start, end)`` whose hash has at least ``zeros`` zeros (Python, exact)."""
    template = WorkTemplate(block, ENTROPY, address_bytes(FARMER))
    return [f.nonce for f in mine_range(template, start, end, zeros, lambda: False)]


@dataclass
class Sent:
    messages: list[ClientMessage] = field(default_factory=list)
    on_share: Callable[[int], None] | None = None  # called with the share count after each share

    def __call__(self, msg: ClientMessage) -> None:
        self.messages.append(msg)
        if isinstance(msg, Share) and self.on_share is not None:
            self.on_share(len(self.shares()))

    def shares(self) -> list[int]:
        return [m.nonce for m in self.messages if isinstance(m, Share)]

    def mores(self) -> int:
        return sum(isinstance(m, More) for m in self.messages)


@asynccontextmanager
async def engine_of(
    command: list[str], threads: int, *, gpu: bool = False, first_batch: int = 1 << 20
) -> AsyncIterator[tuple[KaleMinerEngine, Sent]]:
    lines: list[str] = []
    engine = KaleMinerEngine(command, threads, gpu=gpu, first_batch=first_batch, out=lines.append)
    sent = Sent()
    engine.send = sent
    try:
        yield engine, sent
    finally:
        await engine.aclose()
        print("\n".join(lines))


async def until_idle(engine: KaleMinerEngine, sent: Sent, mores: int = 1) -> None:
    """The range is done: ``mores`` ``more`` requests went out and no binary runs any longer."""
    await wait_until(
        lambda: sent.mores() >= mores and engine.busy == 0, "the range to be exhausted", within=120
    )


async def test_two_binaries_hash_every_nonce_once_and_send_every_share(miner: Path) -> None:
    size, zeros = 1_000_000, 3
    async with engine_of([str(miner)], 2) as (engine, sent):
        engine.on_job(job("j1", START, size, zeros))
        await until_idle(engine, sent)
        counts = engine.counts
        shares = sent.shares()
        assert sorted(shares) == qualifying(START, START + size, zeros)  # every share, each once
        assert len(shares) > 150  # ~244 expected
        assert (counts.hashes, counts.estimated, counts.by_zeros) == (size, 0, {zeros: size})
        assert counts.outside == 0 and counts.shares == len(shares) == counts.finds
        assert counts.runs == counts.finds + 2  # one run per find, and each lane's last run ran out
        assert sent.mores() == 1  # asked as soon as one binary ran out (the other was finishing)
        assert engine.rate.value > 0


async def test_difficulty_changes_restart_the_binaries_without_a_gap(miner: Path) -> None:
    size = 2_000_000
    async with engine_of([str(miner)], 2) as (engine, sent):
        loop = asyncio.get_running_loop()

        def steer(count: int) -> None:  # lower after 10 shares (at once), raise after 150
            if count == 10:
                loop.call_soon(engine.on_difficulty, 3)
            elif count == 150:
                loop.call_soon(engine.on_difficulty, 5)

        sent.on_share = steer
        engine.on_job(job("j1", START, size, 4))
        await until_idle(engine, sent)
        shares = sent.shares()
        counts = engine.counts
        assert len(shares) == len(set(shares)), "a nonce was sent twice"
        assert sorted(counts.by_zeros) == [3, 4, 5] and sum(counts.by_zeros.values()) == size
        assert (counts.hashes, counts.estimated) == (size, 0)
        at_least_3 = set(qualifying(START, START + size, 3))
        template = WorkTemplate(BLOCK, ENTROPY, address_bytes(FARMER))
        zeros = {n: template.verify(n)[1] for n in at_least_3}
        assert set(shares) <= at_least_3  # nothing below the lowest target
        assert {n for n in at_least_3 if zeros[n] >= 5} <= set(shares)  # no gap: all that beat every target
        assert any(zeros[n] == 3 for n in shares), "the lowering did not reach the binaries"
        assert sent.mores() == 1


async def test_a_clean_job_stops_the_binaries_and_counts_what_they_hashed(miner: Path) -> None:
    async with engine_of([str(miner)], 2) as (engine, sent):
        engine.on_job(job("old", 0, 10**12, 14))  # hours of work, no find expected
        await wait_until(lambda: engine.counts.hashes > 0, "progress from the binaries' batch lines")
        engine.on_job(job("new", START, 400_000, 3, block=BLOCK + 1))
        await until_idle(engine, sent)
        counts = engine.counts
        assert counts.estimated > 0  # the old runs' last batches, cut short
        assert counts.by_zeros[3] == 400_000 and counts.by_zeros[14] > 0
        # the new block's shares, all of them, and none of the old
        assert sorted(sent.shares()) == qualifying(START, START + 400_000, 3, block=BLOCK + 1)


async def test_gpu_mode_counts_batch_lines_and_stays_in_its_range() -> None:
    size, zeros = 150_000, 3
    # 7 threads per GPU block: each kernel call hashes a few nonces past its batch, as CUDA's does
    async with engine_of(FAKE_GPU, 7, gpu=True, first_batch=20_000) as (engine, sent):
        assert engine.lanes == 1 and engine.binary_threads == 7
        engine.on_job(job("g1", START, size, zeros))
        await until_idle(engine, sent)
        counts = engine.counts
        assert sorted(sent.shares()) == qualifying(START, START + size, zeros)
        assert (counts.hashes, counts.estimated, counts.expired) == (size, 0, 0)
        assert sent.mores() == 1
        assert engine.rate.value > 0


async def test_gpu_mode_stops_a_run_that_outlasts_its_measured_rate() -> None:
    size = 200_000
    # after two batches the stand-in hangs (no find, no line): only the deadline can end the run
    stalling = [*FAKE_GPU, "--stall-after-batches", "2"]
    async with engine_of(stalling, 4, gpu=True, first_batch=20_000) as (engine, sent):
        engine.on_job(job("g1", START, size, 12))
        await asyncio.wait_for(until_idle(engine, sent), FAILSAFE)
        counts = engine.counts
        assert counts.expired == 1 and counts.runs == 1
        assert counts.hashes == size and counts.estimated == size - 40_000  # two batches were seen
        assert sent.shares() == []
