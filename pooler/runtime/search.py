"""The Pooler's own bounded nonce search, run in a worker process.

Used when a planted farmer's miners found nothing (all offline, say): any valid nonce
beats a forfeited stake. It runs in a separate process because hashing holds the GIL
and would starve the event loop.

The worker must not outlive the Pooler: :func:`exit_with_parent` (the executor's initializer)
ends it when the Pooler's process is gone, also after a SIGKILL that leaves no chance to stop it.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
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


def exit_with_parent() -> None:
    """Initializer of the search worker: end this process as soon as its parent process has ended.

    Why: a ``ProcessPoolExecutor`` worker waits for work on a queue whose write end it holds
    itself, so it never sees its parent go. A Pooler killed outright (SIGKILL, the OOM killer, a
    failover test) would leave it running forever, re-parented to init. The parent's sentinel, a
    pipe the kernel closes when the parent exits, is watched by a daemon thread; hashing releases
    the GIL often enough for it to act within milliseconds.
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing: nobody to outlive
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(1)  # no clean-up to run: the search's result has nobody to go to

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
