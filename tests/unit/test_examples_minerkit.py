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
    _hash_worker,
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


def test_mine_range_reads_a_callable_target_at_every_check() -> None:
    """A vardiff change applies within ``check_every`` hashes, not at the end of the range."""
    start, end, step = 0, 4_000, 1_000
    reads: list[int] = []

    def target() -> int:  # 0 zeros for the first 1000 nonces, then 2 (a raise), then 1 (a lowering)
        reads.append(1)
        return (0, 2, 1, 1)[len(reads) - 1]

    found = list(mine_range(TEMPLATE, start, end, target, lambda: False, check_every=step))
    wanted = [(0, 1000, 0), (1000, 2000, 2), (2000, 4000, 1)]
    expected = [n for lo, hi, z in wanted for n in range(lo, hi) if slow_zeros(n) >= z]
    assert [f.nonce for f in found] == expected
    assert len(reads) == 4


class ScriptedPipe:
    """The worker's end of the pipe: hands out ``orders``, records what the worker sends; an
    order "arrives" (poll is true) after ``quiet_polls`` polls."""

    def __init__(self, orders: list[object], quiet_polls: int = 10**9) -> None:
        self.orders = orders
        self.quiet_polls = quiet_polls
        self.sent: list[tuple[object, ...]] = []

    def recv(self) -> object:
        return self.orders.pop(0)

    def poll(self) -> bool:
        self.quiet_polls -= 1
        return self.quiet_polls < 0

    def send(self, msg: tuple[object, ...]) -> None:
        self.sent.append(msg)


class SteppedTarget:
    """A stand-in for the shared ``Value``: the target changes after ``after`` reads."""

    def __init__(self, before: int, after: int, reads: int) -> None:
        self.before, self.after_value, self.switch = before, after, reads
        self.reads = 0

    @property
    def value(self) -> int:
        self.reads += 1
        return self.before if self.reads <= self.switch else self.after_value


def test_a_hashing_process_applies_a_new_share_target_inside_its_chunk() -> None:
    """The process re-reads the shared target every 1024 hashes (the HashPool's `difficulty`)."""
    farmer = address_bytes(FARMER)
    pipe = ScriptedPipe([("mine", 1, "j", BLOCK, ENTROPY, farmer, 0, 4096), None])
    target = SteppedTarget(before=3, after=1, reads=2)  # lowered to 1 after 2048 hashes
    _hash_worker(pipe, target)  # type: ignore[arg-type]
    shares = [m[2] for m in pipe.sent if m[0] == "share"]
    expected = [n for n in range(4096) if slow_zeros(n) >= (3 if n < 2048 else 1)]
    assert shares == expected
    assert pipe.sent[-2:] == [("progress", 4096), ("done", 1)]


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


def test_a_pre_empted_chunk_still_counts_the_hashes_it_did() -> None:
    """The miner's own hash count (its reported rate, the demo's "computed") loses no cut chunk."""
    farmer = address_bytes(FARMER)
    pipe = ScriptedPipe([("mine", 1, "j", BLOCK, ENTROPY, farmer, 0, 1 << 20), None], quiet_polls=3)
    _hash_worker(pipe, SteppedTarget(before=9, after=9, reads=0))  # type: ignore[arg-type]
    assert pipe.sent == [("progress", 3 * 1024)]  # three polls passed, the fourth saw the order
