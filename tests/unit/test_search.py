from __future__ import annotations

from pooler.runtime.search import search
from protocol.work import address_bytes, count_zeros, work_hash

FARMER = "GBQHTQ7NTSKHVTSVM6EHUO3TU4P4BK2TAAII25V2TT2Q6OWXUJWEKALE"
ENTROPY = bytes.fromhex("0000000009faeb2ff8dc93fb334dabc1398e359a163a6bb538f633fdb9b327ca")


def test_search_returns_the_best_of_the_range() -> None:
    nonce, digest, zeros = search(37, ENTROPY, FARMER, 1000, 5000, deadline=float("inf"))
    assert 1000 <= nonce < 6000
    assert digest == work_hash(37, nonce, ENTROPY, address_bytes(FARMER))
    assert zeros == count_zeros(digest)
    assert zeros == max(
        count_zeros(work_hash(37, n, ENTROPY, address_bytes(FARMER))) for n in range(1000, 6000)
    )


def test_search_stops_at_the_deadline_with_a_valid_answer() -> None:
    nonce, digest, zeros = search(37, ENTROPY, FARMER, 0, 10**12, deadline=0.0)
    assert nonce < 65_536 + 1
    assert digest == work_hash(37, nonce, ENTROPY, address_bytes(FARMER))
    assert zeros == count_zeros(digest)
