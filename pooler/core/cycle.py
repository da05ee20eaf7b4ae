"""One KALE block's cycle state: plant, work (and resubmissions), harvest, per-farmer status.

Pure records and small rules; the transitions are driven by
:class:`pooler.core.coordinator.Coordinator` (its module docstring draws the phases).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pooler.core.config import CoreConfig
from pooler.core.events import BackendResult
from pooler.core.shares import Best, FarmerBlock

Phase = Literal["idle", "planting", "mining", "submitting", "worked", "closed", "paused"]
FarmerStatus = Literal["active", "planted", "worked", "harvested", "failed"]
PlantState = Literal["none", "pending", "done", "failed"]
HarvestState = Literal["none", "pending", "in_flight", "done", "failed"]


def ms(seconds: float) -> int:
    """Unix seconds to the unix milliseconds the wire and the dashboard use."""
    return round(seconds * 1000)


class FarmerRound:
    """One farmer's progress through one block."""

    __slots__ = ("in_flight", "reason", "resubmit", "reward", "searching", "status", "submitted", "worked")

    def __init__(self) -> None:
        self.status: FarmerStatus = "active"
        self.reason = ""  # why it failed (or a warning on a success), for people
        # zeros of the last nonce sent to /work (in flight or answered), -1 = never: a better
        # best is resubmitted only when it beats what the contract already has or will have
        self.submitted = -1
        self.worked = -1  # zeros the Backend confirmed; a failed resubmission never undoes it
        self.in_flight: int | None = None  # call id of its /work in flight: one at a time
        self.resubmit = False  # a better best arrived while in flight: send it after the answer
        self.searching = False  # a LocalSearch is out for it
        self.reward: int | None = None  # stroops, from harvest results


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A Backend call in flight, remembered by call id until its BackendResult."""

    op: Literal["plant", "work", "harvest"]
    block: int
    farmers: tuple[str, ...]  # plant: farmers known at the call; work: farmers submitted
    submissions: tuple[dict[str, object], ...] = ()  # work: the exact items sent
    zeros: tuple[int, ...] = ()  # work: zeros of each submission, typed
    late: bool = False  # a plant we made to open the block ourselves


class BlockState:
    """Everything about block ``index`` that outlives a single event."""

    def __init__(self, index: int, entropy: bytes, timestamp: int, config: CoreConfig) -> None:
        self.index = index
        self.entropy = entropy
        self.timestamp = timestamp
        self.ends_at = timestamp + config.block_interval  # /work deadline (contract: by block ts)
        self.work_at = min(timestamp + config.work_delay, self.ends_at - config.safety_margin)
        self.search_at = self.work_at - config.local_search_lead
        self.harvest_until = timestamp + config.harvest_retention  # TEMPORARY entries die after
        self.shares: dict[str, FarmerBlock] = {}  # farmer id -> its shares/best in this block
        # farmer id -> best: the canonical copy /work submits from (FarmerBlock mirrors it for
        # the hot path); it exists without a FarmerBlock for restored or local-search bests
        self.bests: dict[str, Best] = {}
        # farmer id -> first nonce to hand out when its FarmerBlock is created (restore)
        self.nonce_floor: dict[str, int] = {}
        self.rounds: dict[str, FarmerRound] = {}  # farmer id -> its cycle status in this block
        self.plant: PlantState = "none"
        self.plant_call: int | None = None  # the /plant in flight (ours or the late one)
        self.opened = False  # jobs and timers went out (not while paused)
        self.work_due = False  # workAt passed: any best now is submitted at once
        self.searched = False  # the local-search pass ran
        self.work_calls = 0  # /work calls in flight
        self.work_tried = False  # some /work went out: the block may need a harvest
        self.retry_pending = False  # a work-retry timer will resend every unconfirmed farmer
        self.ended = False  # past the deadline, or a newer block was seen
        self.closed = False  # a newer block was seen: shares are stale, harvest may start
        self.harvest: HarvestState = "none"
        self.harvest_call: int | None = None
        self.harvest_attempts = 0  # backs off the retry timer
        self.rewards_total: int | None = None  # stroops, from the harvest response
        self.harvest_error = ""

    def round(self, farmer_id: str) -> FarmerRound:
        fr = self.rounds.get(farmer_id)
        if fr is None:
            fr = self.rounds[farmer_id] = FarmerRound()
        return fr

    def planted(self) -> list[str]:
        return [fid for fid, fr in self.rounds.items() if fr.status in ("planted", "worked")]

    def any_worked(self) -> bool:
        return any(fr.worked >= 0 for fr in self.rounds.values())

    def phase(self, now: float) -> Phase:
        if self.plant == "pending":
            return "planting"
        if self.work_calls:
            return "submitting"
        if self.any_worked():
            return "worked"
        if self.ended or self.closed or now >= self.ends_at:
            return "closed"
        return "mining"


@dataclass(slots=True)
class LatePlant:
    """Our own plant into block ``index`` before anyone saw it open (the block is not known yet)."""

    index: int
    call_id: int
    rec: CallRecord
    result: BackendResult | None = None  # kept until NewBlock(index) adopts it
