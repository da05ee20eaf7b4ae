"""What a store must keep so a restarted coordinator resumes where it stopped.

Every record here mirrors a ``Persist`` record the coordinator emits (:mod:`pooler.core.records`,
in brackets), so a store that writes those can build a :class:`CoreSnapshot` from its tables:

- :class:`BlockRecord` [BlockSeen]: blocks seen (the newest is the open one);
- :class:`BestRecord` [BestFound]: each farmer's best of a block;
- :class:`TallyRecord` [ShareCounts]: absolute share counts per (block, miner, worker);
- :class:`StatusRecord` [FarmerStatusChanged]: the latest status per (block, farmer);
- :class:`RewardRecord` [HarvestCalled, FarmerStatusChanged]: rewards per block (farmer_id ""
  = the block's total);
- :class:`CountsRecord` [MinerCounts]: each miner's ``/miner/stats`` counters (accepted,
  rejected, stale), which go on across restarts.

- ``nonce_next`` [NoncesIssued]: each farmer's counter high-water mark in the open block,
  persisted before the job carrying the range is sent. A store that leaves it empty makes the
  restored counters start at ``2**63`` (above anything a first run hands out) or above the
  best's nonce.

Workers [WorkerSeen] are kept for the record only; REST jobs [RestJobIssued] and credited nonces
[NonceCredited] only matter to a group. Miners are not here: the registry replays ``MinerJoined``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pooler.core.records import FarmerStatus


@dataclass(frozen=True, slots=True)
class BlockRecord:
    index: int
    entropy: bytes
    timestamp: int


@dataclass(frozen=True, slots=True)
class BestRecord:
    block: int
    farmer_id: str
    nonce: int
    hash: bytes
    zeros: int
    found_at: float = 0.0  # unix seconds
    miner_id: str = ""
    worker: str = ""


@dataclass(frozen=True, slots=True)
class TallyRecord:
    block: int
    miner_id: str
    worker: str
    accepted: int
    rejected: int


@dataclass(frozen=True, slots=True)
class CountsRecord:
    """[MinerCounts] a miner's counters as last written: /miner/stats goes on from them."""

    miner_id: str
    accepted: int
    rejected: int
    stale: int


@dataclass(frozen=True, slots=True)
class StatusRecord:
    block: int
    farmer_id: str
    status: FarmerStatus
    reason: str = ""
    zeros: int | None = None  # for "worked": zeros the Backend accepted


@dataclass(frozen=True, slots=True)
class RewardRecord:
    block: int
    farmer_id: str  # "" for the block's total
    reward: int  # stroops


@dataclass(frozen=True, slots=True)
class CoreSnapshot:
    blocks: tuple[BlockRecord, ...] = ()
    bests: tuple[BestRecord, ...] = ()
    tallies: tuple[TallyRecord, ...] = ()
    statuses: tuple[StatusRecord, ...] = ()
    rewards: tuple[RewardRecord, ...] = ()
    nonce_next: Mapping[str, int] = field(default_factory=dict)  # farmer id -> next nonce, open block
    counts: tuple[CountsRecord, ...] = ()  # per-miner counters (they outlive the block window)
