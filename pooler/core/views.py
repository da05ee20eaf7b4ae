"""Read-only pictures of the coordinator for /health, stats and the dashboard.

Frozen values built on demand by :meth:`Coordinator.view`; nothing here aliases live state,
so a view may be handed to another task or encoded later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pooler.core.dashboard_events import Phase
from pooler.core.records import FarmerStatus


@dataclass(frozen=True, slots=True)
class WorkerView:
    miner_id: str
    worker: str
    conn: int | None  # None for a REST worker
    agent: str | None
    share_zeros: int
    hashrate: float  # hashes/s measured from its shares
    accepted: int  # since it connected
    rejected: int


@dataclass(frozen=True, slots=True)
class MinerView:
    miner_id: str
    farmer_id: str
    name: str
    workers: int
    hashrate: float
    accepted: int  # since it joined (this process)
    rejected: int
    stale: int
    rejected_by: Mapping[str, int]  # reason -> count
    block_accepted: int
    block_rejected: int
    best_zeros: int | None  # its best in the current block


@dataclass(frozen=True, slots=True)
class FarmerStatusView:
    status: FarmerStatus
    reason: str
    zeros: int | None  # zeros the Backend confirmed for it
    reward: int | None  # stroops, when the harvest attributed one


@dataclass(frozen=True, slots=True)
class FarmerView:
    farmer_id: str
    farmer: str  # G... address
    miners: int
    workers: int
    hashrate: float
    best_zeros: int | None  # in the current block
    status: FarmerStatusView | None  # in the current block
    rewards: int  # stroops harvested for it (attributed by results)


@dataclass(frozen=True, slots=True)
class BlockView:
    """One recent block: its farmers' statuses and what it paid."""

    block: int
    timestamp: int
    work_at: int  # ms
    block_ends_at: int  # ms
    plant: str  # none | pending | done | failed
    harvest: str  # none | pending | in_flight | done | failed
    farmers: Mapping[str, FarmerStatusView]
    best_zeros: Mapping[str, int]
    rewards_total: int | None  # stroops
    rewards: Mapping[str, int]  # farmer id -> stroops (when the Backend said per farmer)


@dataclass(frozen=True, slots=True)
class CoreView:
    block: int | None
    phase: Phase
    entropy: str | None  # hex
    timestamp: int | None  # the block's, unix seconds
    work_at: int | None  # unix ms
    block_ends_at: int | None  # unix ms
    paused: bool
    chain_ok: bool
    chain_detail: str
    miners: int  # miners with at least one worker online
    workers: int  # WebSocket + live REST workers
    hashrate: float  # pool, hashes/s
    accepted: int  # current block
    rejected: int
    accepted_total: int  # since start
    rejected_total: int
    best_zeros: Mapping[str, int]  # farmer id -> best zeros of the current block
    farmers: tuple[FarmerView, ...]
    miner_list: tuple[MinerView, ...]
    worker_list: tuple[WorkerView, ...]
    blocks: tuple[BlockView, ...]  # recent blocks, newest first
    pending_harvests: tuple[int, ...]
