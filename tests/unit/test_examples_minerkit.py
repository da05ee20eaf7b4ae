"""The pure parts of the example miners: the mining loop, range splitting, backoff, tallies."""

from __future__ import annotations

import itertools

import pytest
from Crypto.Hash import keccak

from examples.minerkit import Backoff, BlockTally, Found, format_rate, mine_range, split_range
from protocol import address_bytes
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
