"""The coordinator of a group instance: the pure core, with shared nonce space and shared credits.

:class:`ClusterCoordinator` changes exactly one thing of :class:`pooler.core.coordinator.Coordinator`:
when it creates a (block, farmer) record, the record's nonce counter becomes this instance's
:class:`~pooler.cluster.nonces.SharedCounter` (ranges disjoint across the group) and, for the
coordinator that serves miners, its accepted-nonce set becomes a :class:`SharedSeen` that reports
every credited nonce to the store. The store adds them to the shared duplicate set in the same
Redis script that makes the batch durable, before any ``accepted`` of the batch goes out.
Everything else (checks, vardiff, the block cycle) is the single-instance core, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from pooler.cluster.nonces import RangeAllocator
from pooler.core.block import BlockState
from pooler.core.config import CoreConfig
from pooler.core.coordinator import Coordinator
from pooler.core.miners import FarmerState
from pooler.core.shares import FarmerBlock

Credit = tuple[int, str, int]  # (block, farmer id, nonce) credited by an accepted share


class SharedSeen(set[int]):
    """A (block, farmer)'s accepted nonces; every ``add`` is also queued as a credit for the store."""

    __slots__ = ("_block", "_credits", "_farmer_id")

    def __init__(self, initial: Iterable[int], credits: list[Credit], block: int, farmer_id: str) -> None:
        super().__init__(initial)
        self._credits = credits  # drained by the store's next commit (same batch as the acks)
        self._block = block
        self._farmer_id = farmer_id

    def add(self, nonce: int) -> None:
        super().add(nonce)
        self._credits.append((self._block, self._farmer_id, nonce))


class ClusterCoordinator(Coordinator):
    """See the module docstring. ``credits`` None: no shared duplicate set (the leader's cycle core)."""

    def __init__(self, config: CoreConfig, allocator: RangeAllocator, credits: list[Credit] | None) -> None:
        super().__init__(config)
        self._allocator = allocator  # shared nonce space of the group
        self._credits = credits  # the store drains it at each commit

    def _farmer_block(self, blk: BlockState, farmer: FarmerState) -> FarmerBlock:
        fresh = farmer.farmer_id not in blk.shares
        fb = super()._farmer_block(blk, farmer)
        if fresh:
            fb.counter = self._allocator.counter(blk.index, farmer.farmer_id)
            if self._credits is not None:
                fb.seen = SharedSeen(fb.seen, self._credits, blk.index, farmer.farmer_id)
        return fb
