"""The Pooler's own bounded nonce search, run in a worker process.

Used when a planted farmer's miners found nothing (all offline, say): any valid nonce
beats a forfeited stake. It runs in a separate process because hashing holds the GIL
and would starve the event loop.
"""

from __future__ import annotations

import time

from protocol.work import WorkTemplate, address_bytes


def search(
    block: int, entropy: bytes, farmer: str, nonce_start: int, max_hashes: int, deadline: float
) -> tuple[int, bytes, int]:
    """Best (nonce, hash, zeros) of ``max_hashes`` nonces from ``nonce_start``; stops at ``deadline``."""
    template = WorkTemplate(block, entropy, address_bytes(farmer))
    best_nonce, (best_hash, best_zeros) = nonce_start, template.verify(nonce_start)
    end = min(nonce_start + max_hashes, 2**64 - 1)
    nonce = nonce_start + 1
    while nonce < end:
        stop = min(nonce + 65_536, end)  # check the clock between chunks, not per hash
        for n in range(nonce, stop):
            digest, zeros = template.verify(n)
            if zeros > best_zeros:
                best_nonce, best_hash, best_zeros = n, digest, zeros
        nonce = stop
        if time.time() >= deadline:
            break
    return best_nonce, best_hash, best_zeros
