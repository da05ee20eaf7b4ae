"""What the coordinator tells dashboards: one frozen value per event kind (``Publish(event)``).

The wire form of each (``{"type": "event", "kind", "at", "data"}``, camelCase, stroops as
decimal strings, entropy as hex, times in unix ms) is made by the hub
(:mod:`pooler.runtime.event_codec`) and documented in docs/events.md. None carries a token
or a secret. Times here are already unix milliseconds, as the jobs carry them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pooler.core.alerts import Alert
from pooler.core.records import FarmerStatusChanged

Phase = Literal["idle", "planting", "mining", "submitting", "worked", "closed", "paused"]
"""The phase dashboards see: a projection of a block's phase (:mod:`pooler.core.block`)."""


@dataclass(frozen=True, slots=True)
class BlockEvent:
    """``block``: a new block was seen."""

    block: int
    entropy: bytes
    timestamp: int  # the block's ledger time, unix seconds
    work_at: int  # unix ms
    ends_at: int  # unix ms


@dataclass(frozen=True, slots=True)
class PhaseEvent:
    """``phase``: the dashboard's phase changed."""

    block: int | None
    phase: Phase
    work_at: int | None  # unix ms
    ends_at: int | None


@dataclass(frozen=True, slots=True)
class PlantEvent:
    """``plant``: a ``/plant`` ended."""

    block: int
    ok: bool
    successful: int
    failed: int
    total_staked: int  # stroops
    error: str = ""  # when not ok


@dataclass(frozen=True, slots=True)
class ShownSubmission:
    farmer_id: str
    zeros: int
    nonce: int


@dataclass(frozen=True, slots=True)
class WorkEvent:
    """``work``: a ``/work`` ended."""

    block: int
    ok: bool
    submissions: tuple[ShownSubmission, ...]
    valid: int
    invalid: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class FarmerReward:
    farmer_id: str
    reward: int  # stroops


@dataclass(frozen=True, slots=True)
class HarvestEvent:
    """``harvest``: a ``/harvest`` ended."""

    block: int
    ok: bool
    successful: int
    failed: int
    total_rewards: int  # stroops
    rewards: tuple[FarmerReward, ...]
    error: str = ""


MinerChange = Literal["joined", "left", "connected", "disconnected"]


@dataclass(frozen=True, slots=True)
class MinerEvent:
    """``miner``: a miner joined or left, or one of its workers connected or disconnected."""

    miner_id: str
    farmer_id: str
    event: MinerChange
    worker: str | None = None  # for connected/disconnected


@dataclass(frozen=True, slots=True)
class SummaryEvent:
    """``summary``: the periodic picture (also the first thing a new dashboard gets)."""

    block: int | None
    phase: Phase
    miners: int  # online
    workers: int
    hashrate: float  # H/s, from shares
    accepted: int  # current block
    rejected: int
    best_zeros: Mapping[str, int]  # farmer id -> zeros, current block
    work_at: int | None  # unix ms
    ends_at: int | None


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """``chain``: the chain RPC or the Backend went down, or came back."""

    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """``alert``: something an operator must act on, or its resolution (pooler/core/alerts.py)."""

    alert: Alert


DashboardEvent = (
    BlockEvent
    | PhaseEvent
    | PlantEvent
    | WorkEvent
    | HarvestEvent
    | MinerEvent
    | SummaryEvent
    | ChainEvent
    | FarmerStatusChanged
    | AlertEvent
)
"""``FarmerStatusChanged`` (kind ``farmer``) is also a record: the same value goes to the store."""

CYCLE_EVENTS = (BlockEvent, PhaseEvent, PlantEvent, WorkEvent, HarvestEvent, FarmerStatusChanged)
"""The block cycle's events: in a group only the leader's reach the dashboards."""
