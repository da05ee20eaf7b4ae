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
    hashrate: float  # effective hashes/s of its worker name (pooler.core.hashrate)
    accepted: int  # since it connected
    rejected: int
    reported_hashrate: float | None = None  # what the miner says (hello/report), display only
    confident: bool = False  # enough evidence in the window for +-20% (HashrateConfig.max_error)


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
    reported_hashrate: float | None = None  # sum of what its online workers say, display only


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
    projected_reward: int | None = None  # stroops it would harvest if the open block closed now


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
    projection: ProjectionView | None = None  # the last projection (frozen at the next block)


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
    projection: ProjectionView | None = None  # the open block's reward projection
    # the open block's on-chain zero bounds (Block(N).min_zeros/max_zeros: what the previous
    # period's work set), None before the block's state was read
    chain_zeros: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class ProjectionView:
    """A block's reward projection (pooler/core/rewards.py), as last made from Block(N), the
    pails and our own confirmed work."""

    block: int
    ledger: int  # the ledger of the chain read it rests on
    pot: int  # block reward + staked total (stroops)
    normalized_total: int
    reward: int  # the pool's: sum of its farmers' floored rewards (stroops)
    payout: int  # reward + returned stakes
    forfeited: int  # stakes of planted farmers without work (yet)
    rewards: Mapping[str, int]  # farmer id -> stroops
    final: bool  # made from the block's last read after it closed: what harvest should pay
