"""Share bookkeeping: per-(block, farmer) verification state, bests and tallies.

These are the objects the share hot path touches, so they are slotted classes reached by
one dict lookup each (job id -> :class:`pooler.core.miners.JobRecord` -> :class:`FarmerBlock`).
The order of the checks lives in :mod:`pooler.core.checks`.
"""

from __future__ import annotations

from pooler.core.nonces import NonceCounter
from pooler.core.records import Best, ShareCounts
from protocol.work import WorkTemplate, address_bytes


class FarmerBlock:
    """What one farmer's shares need within one block."""

    __slots__ = (
        "best",
        "best_zeros",
        "block",
        "counter",
        "farmer",
        "farmer_id",
        "seen",
        "template",
        "waiting",
    )

    def __init__(
        self, block: int, entropy: bytes, farmer_id: str, farmer: str, counter: NonceCounter
    ) -> None:
        self.block = block
        self.farmer_id = farmer_id
        self.farmer = farmer  # G... address: jobs carry it, the preimage uses its key bytes
        # one template per (block, farmer): a share then costs one pack and one Keccak
        self.template = WorkTemplate(block, entropy, address_bytes(farmer))
        # all workers of all miners of this farmer draw ranges here: disjoint by construction
        self.counter = counter
        # accepted nonces as ints: duplicates are caught whatever spelling the client used
        self.seen: set[int] = set()
        self.best: Best | None = None  # the farmer's best of the block; /work submits it
        self.best_zeros = -1  # best.zeros, or -1: compared per share without a None check
        # sockets refused a range while the counter refills (conn -> the job must be clean):
        # served by NonceRefillDone instead of being told the nonce space is used up
        self.waiting: dict[int, bool] = {}

    def offer(self, best: Best) -> bool:
        """Take ``best`` if it has strictly more zeros (what the contract would accept)."""
        if best.zeros > self.best_zeros:
            self.best = best
            self.best_zeros = best.zeros
            return True
        return False


class Tally:
    """Accepted and rejected shares of one (block, miner, worker name): what ``ShareCounts`` records.

    Keyed by worker NAME, not connection, so two connections with one name (a reconnect
    racing the old socket's death, two rigs left on "default") add to one durable count.
    """

    __slots__ = ("accepted", "block", "miner_id", "persisted_rejected", "rejected", "worker")

    def __init__(self, block: int, miner_id: str, worker: str, accepted: int = 0, rejected: int = 0) -> None:
        self.block = block
        self.miner_id = miner_id
        self.worker = worker
        self.accepted = accepted
        self.rejected = rejected
        # rejected count last written: rejections ride on the next accepted write, and a block
        # close flushes the rest without writing per rejected share (cheap to spam)
        self.persisted_rejected = rejected

    def record(self) -> ShareCounts:
        self.persisted_rejected = self.rejected
        return ShareCounts(self.block, self.miner_id, self.worker, self.accepted, self.rejected)
