"""A tiny CPU nonce search for devnet tests and demos (not for real mining).

Finds a nonce whose KALE hash has a chosen number of leading zero nibbles, so a test can
script a block with known zeros. Each extra zero costs 16x the hashes: keep targets <= 4.
"""

from __future__ import annotations

from pooler.errors import DevnetError
from protocol.work import WorkTemplate, address_bytes


def find_nonce(
    index: int,
    entropy: bytes,
    farmer: str,
    zeros: int,
    *,
    exact: bool = True,
    start: int = 0,
    limit: int = 2_000_000,
) -> tuple[int, bytes]:
    """(nonce, hash): the first nonce from ``start`` with ``zeros`` zeros (or more, if not ``exact``)."""
    template = WorkTemplate(index, entropy, address_bytes(farmer))
    for nonce in range(start, start + limit):
        digest, got = template.verify(nonce)
        if got == zeros or (not exact and got > zeros):
            return nonce, digest
    raise DevnetError(f"no nonce with {zeros} zeros in {limit} tries from {start}")
