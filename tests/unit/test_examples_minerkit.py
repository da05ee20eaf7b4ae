"""The pure parts of the example miners: mining loop, range splitting, backoff, tallies, the miner base."""

from __future__ import annotations

import itertools

import pytest
from Crypto.Hash import keccak

from examples.minerkit import (
    Backoff,
    BlockTally,
    Engine,
    Found,
    MinerBase,
    format_rate,
    mine_range,
    split_range,
)
from protocol import Code, address_bytes
from protocol.messages import Accepted, Job, Rejected
from protocol.work import WorkTemplate

FARMER = "GBQHTQ7NTSKHVTSVM6EHUO3TU4P4BK2TAAII25V2TT2Q6OWXUJWEKALE"  # the kale-miner README example
ENTROPY = bytes.fromhex("0000000009faeb2ff8dc93fb334dabc1398e359a163a6bb538f633fdb9b327ca")
BLOCK = 37


def slow_zeros(nonce: int) -> int:
    """Independent of protocol.work: pycryptodome Keccak and the hex text."""
    data = BLOCK.to_bytes(4, "big") + nonce.to_bytes(8, "big") + ENTROPY + address_bytes(FARMER)
    hex_digest = keccak.new(data=data, digest_bits=256).hexdigest()
    return len(hex_digest) - len(hex_digest.lstrip("0"))


TEMPLATE = WorkTemplate(BLOCK, ENTROPY, address_bytes(FARMER))


@pytest.mark.parametrize("share_zeros", [0, 1, 2, 3])
def test_mine_range_yields_exactly_the_nonces_with_enough_zeros(share_zeros: int) -> None:
    start, end = 1_000_000, 1_006_000
    found = list(mine_range(TEMPLATE, start, end, share_zeros, lambda: False))
    expected = [n for n in range(start, end) if slow_zeros(n) >= share_zeros]
    assert [f.nonce for f in found] == expected
    assert len(expected) > 0
    for f in found:
        assert f.zeros == slow_zeros(f.nonce)
        assert f.hash == TEMPLATE.hash(f.nonce)


def test_mine_range_finds_the_published_kale_miner_example() -> None:
    nonce = 20495217910
    found = list(mine_range(TEMPLATE, nonce - 500, nonce + 500, 8, lambda: False))
    assert found == [
        Found(nonce, bytes.fromhex("0000000099be0037e5a48324959cb9dd10965ae59511cfd1996f9b917aad9980"), 8)
    ]


def test_mine_range_stops_when_asked_and_checks_in_steps() -> None:
    calls = itertools.count()
    seen: list[int] = []

    def stop_after_three_checks() -> bool:
        seen.append(1)
        return next(calls) >= 3

    found = list(mine_range(TEMPLATE, 0, 100_000, 0, stop_after_three_checks, check_every=100))
    assert [f.nonce for f in found] == list(range(300))  # three blocks of 100 hashed, then stopped
    assert len(seen) == 4


def test_mine_range_rejects_a_backwards_range() -> None:
    with pytest.raises(ValueError, match="not a range"):
        list(mine_range(TEMPLATE, 10, 5, 1, lambda: False))


def test_empty_range_yields_nothing() -> None:
    assert list(mine_range(TEMPLATE, 7, 7, 0, lambda: False)) == []


@pytest.mark.parametrize(("start", "end", "parts"), [(0, 10, 3), (5, 6, 4), (0, 2**64 - 1, 7), (100, 100, 2)])
def test_split_range_tiles_the_range(start: int, end: int, parts: int) -> None:
    pieces = split_range(start, end, parts)
    assert len(pieces) == min(parts, end - start)
    if pieces:
        assert pieces[0][0] == start and pieces[-1][1] == end
        assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
        sizes = [hi - lo for lo, hi in pieces]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_backoff_grows_exponentially_with_jitter_and_caps() -> None:
    low = Backoff(base=0.5, cap=8.0, rng=lambda: 0.0)
    high = Backoff(base=0.5, cap=8.0, rng=lambda: 1.0)
    assert [low.next() for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [high.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    high.reset()
    assert high.next() == 0.5


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0)


def test_block_tally_line() -> None:
    tally = BlockTally(block=12, started=100.0)
    tally.accept(5)
    tally.accept(7)
    tally.accept(6)
    tally.reject("stale")
    tally.reject("stale")
    tally.reject("duplicate")
    tally.hashes = 3_000_000
    assert tally.line(now=102.0) == (
        "block 12: accepted 3, rejected 3 (duplicate 1, stale 2), best zeros 7, 1.5 MH/s"
    )
    assert BlockTally(block=1, started=0.0).line(now=1.0) == "block 1: accepted 0, rejected 0, best zeros -"


def test_format_rate() -> None:
    assert format_rate(999.0) == "999.0 H/s"
    assert format_rate(1500.0) == "1.5 kH/s"
    assert format_rate(2.5e12) == "2500.0 GH/s"


class CountingEngine(Engine):
    """Takes jobs and reports a hash count the test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[str] = []
        self.hash_count = 0

    def on_job(self, job: Job) -> None:
        self.jobs.append(job.job)

    def on_disconnect(self) -> None:
        self.jobs.clear()

    def hashes(self) -> int:
        return self.hash_count


class RecordingMiner(MinerBase):
    """MinerBase with no transport: records what its hooks were told."""

    def __init__(self, max_blocks: int | None, out: list[str], now: list[float]) -> None:
        super().__init__(
            token="t",
            worker="w",
            engine=CountingEngine(),
            max_blocks=max_blocks,
            duration=None,
            verbose=True,
            out=out.append,
            clock=lambda: now[0],
        )
        self.began: list[int] = []
        self.taken: list[str] = []

    async def run(self) -> int:
        raise AssertionError("not used: the test drives the hooks")

    def _block_began(self, job: Job) -> None:
        self.began.append(job.block)

    def _job_taken(self, job: Job) -> None:
        self.taken.append(job.job)


def job(name: str, block: int) -> Job:
    return Job(name, block, ENTROPY, FARMER, 0, 100, 2, False, 0, 0)


def test_miner_base_tallies_each_block_and_stops_after_max_blocks() -> None:
    out: list[str] = []
    now = [10.0]
    miner = RecordingMiner(max_blocks=2, out=out, now=now)
    engine = miner.engine
    assert isinstance(engine, CountingEngine)
    miner._on_job(job("a", 5))
    miner._on_job(job("b", 5))  # the same block: no new tally
    miner._count(Accepted("a", 1, 4, True), miner._tally)
    miner._count(Rejected("b", 2, Code.DUPLICATE, "again"), miner._tally)
    miner._count(Accepted("old", 3, 9, False), None)  # of no current block: totals only
    engine.hash_count, now[0] = 2000, 12.0
    miner._on_job(job("c", 6))
    assert out == [
        "rejected nonce 2: 22 duplicate again",
        "block 5: accepted 1, rejected 1 (duplicate 1), best zeros 4, 1.0 kH/s",
    ]
    assert (miner.accepted, miner.rejected, miner.blocks_done) == (2, 1, 1)
    miner._on_job(job("d", 7))  # block 6 ends the second block: the miner stops instead of mining 7
    assert out[-1] == "block 6: accepted 0, rejected 0, best zeros -"  # no hashes counted: no rate
    assert miner._stop.is_set() and miner.blocks_done == 2
    assert (engine.jobs, miner.taken, miner.began) == (["a", "b", "c"], ["a", "b", "c"], [5, 6])
