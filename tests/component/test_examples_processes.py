"""The examples as processes: each runs with --help, and the hashing pool's processes find every share."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from examples.minerkit import HashPool, Piece, mine_range
from protocol import address_bytes
from protocol.work import WorkTemplate

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ["ws_miner", "rest_miner", "kale_miner_bridge", "dashboard_tail", "fake_kale_miner"]
FARMER = "GBQHTQ7NTSKHVTSVM6EHUO3TU4P4BK2TAAII25V2TT2Q6OWXUJWEKALE"
ENTROPY = bytes(range(32))


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_with_help(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",  # not the repository: the script must find `examples` and `protocol` by itself
    )
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


async def test_hash_pool_processes_find_exactly_the_shares_of_their_pieces() -> None:
    farmer = address_bytes(FARMER)
    shares: list[tuple[str, int, bytes, int]] = []
    idle: asyncio.Queue[int] = asyncio.Queue()
    pool = HashPool(
        2, lambda job, nonce, digest, zeros: shares.append((job, nonce, digest, zeros)), idle.put_nowait
    )
    try:
        pool.start()
        pool.share_zeros.value = 3
        pieces = [Piece("a", 5, ENTROPY, farmer, 0, 40_000), Piece("b", 5, ENTROPY, farmer, 40_000, 70_000)]
        for worker, piece in enumerate(pieces):
            pool.assign(worker, piece)
        finished = {await asyncio.wait_for(idle.get(), 60), await asyncio.wait_for(idle.get(), 60)}
        assert finished == {0, 1}
        assert pool.idle_workers() == [0, 1]
        template = WorkTemplate(5, ENTROPY, farmer)
        expected = [
            (piece.job, f.nonce, f.hash, f.zeros)
            for piece in pieces
            for f in mine_range(template, piece.start, piece.end, 3, lambda: False)
        ]
        assert sorted(shares, key=lambda s: s[1]) == expected
        assert len(expected) > 5
        assert pool.hashes == 70_000
    finally:
        pool.close()


async def test_hash_pool_pre_empts_a_range_at_once() -> None:
    farmer = address_bytes(FARMER)
    shares: list[str] = []
    idle: asyncio.Queue[int] = asyncio.Queue()
    pool = HashPool(1, lambda job, *_: shares.append(job), idle.put_nowait)
    try:
        pool.start()
        pool.share_zeros.value = 1
        pool.assign(0, Piece("old", 1, ENTROPY, farmer, 0, 2**40))  # hours of work
        pool.assign(0, Piece("new", 2, ENTROPY, farmer, 0, 3_000))  # replaces it
        assert await asyncio.wait_for(idle.get(), 60) == 0  # only the new piece reports done
        # one pipe, in order: whatever the old range found came before the new range began, and
        # the process is idle in recv() now, so nothing of the old range can follow
        first_new = shares.index("new")
        assert set(shares[:first_new]) <= {"old"} and set(shares[first_new:]) == {"new"}
        assert len(shares) - first_new > 10  # ~3000 / 16 expected at 1 zero
        assert pool.idle_workers() == [0]
    finally:
        pool.close()
