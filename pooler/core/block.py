"""One KALE block's state: its phase (an explicit state machine), the farmers' rounds, calls in flight.

Theory of operation
===================

A block N (timestamp T, interval I) is in exactly one :class:`BlockPhase`. What may happen to
it in each phase is written once, in :data:`TRANSITIONS` (the manner of h11's state table):
a phase, the :class:`Trigger`\\ s allowed in it and where each leads. Nothing else moves a
block's phase; :meth:`BlockState.advance` refuses a trigger the table does not allow there
(a bug), and the cycle asks :meth:`BlockState.may` first where a trigger can legitimately be
stale (a timer that fires late or twice is ignored).

    SEEN ──OPEN──▶ OPEN ──WORK_TIME──▶ WORK_DUE ◀──RETRY_TIME── RETRY_WAIT
      │              │                    │   └─────RETRY_ARMED─────▲
      │              └──DEADLINE──┐       └──DEADLINE──┐          (DEADLINE)
      └──DEADLINE (restored late)─┴──────────────────▶ ENDED
    any of the above ──NEWER_BLOCK──▶ CLOSED ──HARVEST_NEEDED──▶ HARVEST_DUE ◀─HARVEST_RETRY─┐
                                        │                           │  HARVEST_CALLED      │
                                        │ HARVEST_OK (restored)     ▼                      │
                                        └──────────▶ HARVESTED ◀─HARVEST_OK─ HARVESTING ───┘
                          HARVEST_DUE / HARVESTING ──HARVEST_EXPIRED──▶ HARVEST_LOST

- SEEN: the block is known but no job or timer went out for it: the farm was paused when it
  arrived. Unpausing before ``T+I-margin`` opens it.
- OPEN: jobs with ``clean`` went to every worker, ``/plant`` is in flight or answered, the
  timers ``search:N``, ``work:N``, ``end:N``, ``late-plant:N`` are armed.
- WORK_DUE: ``workAt`` passed. Every planted farmer's best went in one ``/work``; a strictly
  better best found later is submitted at once (one call per farmer in flight).
- RETRY_WAIT: a ``/work`` failed for want of the Backend and the deadline leaves room: the
  ``work-retry:N`` timer resends every unconfirmed best; nothing else is sent meanwhile.
- ENDED: past the deadline ``T+I``. Shares are still taken (miners hash until the next block)
  but only count in the tallies.
- CLOSED: a newer block was seen: N's jobs are stale. If any ``/work`` went out the block
  needs a harvest (HARVEST_DUE), else it is over.
- HARVEST_DUE -> HARVESTING -> HARVESTED, or back to HARVEST_DUE on a failure (retried on
  ``harvest-retry:N``, backing off) while the block's TEMPORARY entries live; past that,
  HARVEST_LOST.

The phase a dashboard sees (``idle/planting/mining/submitting/worked/closed/paused``) is a
projection of this one plus the plant and the calls in flight: :meth:`BlockState.dashboard_phase`.

A call whose answer could not be read (:mod:`pooler.core.reconcile`) adds no phase and no
trigger: it stays in flight (``plant_call``, a farmer's ``in_flight``, ``harvest_call``) until
the chain's pails settle it, and then ends through the phase's own answer path, with the
triggers above. A ``/harvest`` waits while a ``/work`` of its block is being settled, and
``harvested`` is a farmer's final status (:meth:`BlockState.set_status`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pooler.core import rewards
from pooler.core.backend_calls import Submission
from pooler.core.config import CoreConfig
from pooler.core.dashboard_events import Phase
from pooler.core.effects import Effect, Persist, Publish
from pooler.core.events import BackendResult
from pooler.core.records import Best, FarmerStatus, FarmerStatusChanged
from pooler.core.shares import FarmerBlock
from pooler.errors import PoolerError

PlantState = Literal["none", "pending", "done", "failed"]
HarvestState = Literal["none", "pending", "in_flight", "done", "failed"]


def ms(seconds: float) -> int:
    """Unix seconds to the unix milliseconds the wire and the dashboard use."""
    return round(seconds * 1000)


class BlockPhase(enum.Enum):
    SEEN = "seen"
    OPEN = "open"
    WORK_DUE = "work-due"
    RETRY_WAIT = "retry-wait"
    ENDED = "ended"
    CLOSED = "closed"
    HARVEST_DUE = "harvest-due"
    HARVESTING = "harvesting"
    HARVESTED = "harvested"
    HARVEST_LOST = "harvest-lost"


class Trigger(enum.Enum):
    OPEN = "open"  # jobs and timers went out (NewBlock, unpause, restore)
    WORK_TIME = "work-time"  # work:N fired
    RETRY_ARMED = "retry-armed"  # a /work failed retryably with time left: work-retry:N is set
    RETRY_TIME = "retry-time"  # work-retry:N fired
    DEADLINE = "deadline"  # end:N fired (or the block was restored past it)
    NEWER_BLOCK = "newer-block"  # NewBlock(N+1) (or a restore found newer blocks)
    HARVEST_NEEDED = "harvest-needed"  # closed with some /work sent: harvest it
    HARVEST_CALLED = "harvest-called"  # /harvest went out
    HARVEST_OK = "harvest-ok"  # /harvest succeeded (or a restore found it done)
    HARVEST_RETRY = "harvest-retry"  # /harvest failed, harvest-retry:N is set
    HARVEST_EXPIRED = "harvest-expired"  # the block's entries are gone: nothing can be harvested


P, T = BlockPhase, Trigger
_UNTIL_CLOSED = {T.NEWER_BLOCK: P.CLOSED, T.DEADLINE: P.ENDED}

TRANSITIONS: Mapping[BlockPhase, Mapping[Trigger, BlockPhase]] = {
    P.SEEN: {T.OPEN: P.OPEN, **_UNTIL_CLOSED},
    P.OPEN: {T.WORK_TIME: P.WORK_DUE, **_UNTIL_CLOSED},
    P.WORK_DUE: {T.RETRY_ARMED: P.RETRY_WAIT, **_UNTIL_CLOSED},
    P.RETRY_WAIT: {T.RETRY_TIME: P.WORK_DUE, T.RETRY_ARMED: P.RETRY_WAIT, **_UNTIL_CLOSED},
    P.ENDED: {T.NEWER_BLOCK: P.CLOSED},
    P.CLOSED: {T.HARVEST_NEEDED: P.HARVEST_DUE, T.HARVEST_OK: P.HARVESTED},
    P.HARVEST_DUE: {T.HARVEST_CALLED: P.HARVESTING, T.HARVEST_EXPIRED: P.HARVEST_LOST},
    P.HARVESTING: {
        T.HARVEST_OK: P.HARVESTED,
        T.HARVEST_RETRY: P.HARVEST_DUE,
        T.HARVEST_EXPIRED: P.HARVEST_LOST,
    },
    P.HARVESTED: {},
    P.HARVEST_LOST: {},
}
"""Phase -> trigger allowed in it -> the phase it leads to. The only place phases change."""

LIVE = frozenset({P.OPEN, P.WORK_DUE, P.RETRY_WAIT, P.ENDED})
"""Jobs of the block are out and it is the newest: it takes shares, hands out ranges."""
WORK_DUE = frozenset({P.WORK_DUE, P.RETRY_WAIT, P.ENDED})
"""``workAt`` has passed: a new best is submitted at once (while the deadline allows)."""
CLOSED = frozenset({P.CLOSED, P.HARVEST_DUE, P.HARVESTING, P.HARVESTED, P.HARVEST_LOST})
"""A newer block exists: the block's shares are stale."""
_HARVEST_VIEW: Mapping[BlockPhase, HarvestState] = {
    P.HARVEST_DUE: "pending",
    P.HARVESTING: "in_flight",
    P.HARVESTED: "done",
    P.HARVEST_LOST: "failed",
}
del P, T


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
    farmers: tuple[str, ...]  # plant: farmers named (or known) at the call; work: farmers submitted
    submissions: tuple[Submission, ...] = ()  # work: what was sent, one per farmer, in order
    late: bool = False  # a plant we made to open the block ourselves
    named: bool = False  # plant: ``farmers`` went as farmerIds (only they can be planted)
    # (farmer id, address) known at the call: a reconciliation reads every farmer of the call,
    # also one the roster no longer holds (restored, its miners gone)
    addresses: tuple[tuple[str, str], ...] = ()
    resend: bool = False  # work: sent again after a reconciliation (#7 "zeros too low" = it landed)


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
        self.phase = BlockPhase.SEEN  # moved only by advance(), along TRANSITIONS
        self.shares: dict[str, FarmerBlock] = {}  # farmer id -> its shares/best in this block
        # farmer id -> best: the canonical copy /work submits from (FarmerBlock mirrors it for
        # the hot path); it exists without a FarmerBlock for restored or local-search bests
        self.bests: dict[str, Best] = {}
        # farmer id -> first nonce to hand out when its FarmerBlock is created (restore)
        self.nonce_floor: dict[str, int] = {}
        self.rounds: dict[str, FarmerRound] = {}  # farmer id -> its cycle status in this block
        self.plant: PlantState = "none"  # /plant runs beside the phase: it may answer after workAt
        self.plant_call: int | None = None  # the /plant in flight (ours or the late one)
        self.searched = False  # the local-search pass ran (work:N does not run it twice)
        self.work_calls = 0  # /work calls in flight
        self.work_tried = False  # some /work went out: the block needs a harvest once closed
        self.harvest_call: int | None = None  # the /harvest in flight
        self.harvest_attempts = 0  # backs off the retry timer
        self.rewards_total: int | None = None  # stroops, from the harvest response
        # The reward projection (pooler/core/forecast.py): Block(N) and the planted farmers' pails
        # as last read (BlockUpdated), or as our own confirmed /work changed them since
        # (rewards.apply_work) until the next read shows it; the ledger of that read; the
        # projection made from them; and whether the block closed after that read (final).
        self.chain: rewards.BlockState | None = None
        self.pails: dict[str, rewards.Pail] = {}  # farmer id -> its Pail(farmer, N)
        self.chain_ledger = 0
        self.projection: rewards.PoolProjection | None = None
        self.projection_final = False
        self.watching = False  # WatchPails went out for this block's planted farmers

    # ------------------------------------------------------------ the phase

    def may(self, trigger: Trigger) -> bool:
        """Whether ``trigger`` is allowed in the current phase."""
        return trigger in TRANSITIONS[self.phase]

    def advance(self, trigger: Trigger) -> None:
        """Move along :data:`TRANSITIONS`; a trigger not allowed here is a bug of the caller."""
        nxt = TRANSITIONS[self.phase].get(trigger)
        if nxt is None:
            raise PoolerError(f"block {self.index}: {trigger.value} is not allowed in {self.phase.value}")
        self.phase = nxt

    @property
    def live(self) -> bool:
        return self.phase in LIVE

    @property
    def closed(self) -> bool:
        return self.phase in CLOSED

    @property
    def work_due(self) -> bool:
        return self.phase in WORK_DUE

    @property
    def harvest(self) -> HarvestState:
        """The harvest as views show it."""
        return _HARVEST_VIEW.get(self.phase, "none")

    def dashboard_phase(self, now: float) -> Phase:
        if self.plant == "pending":
            return "planting"
        if self.work_calls:
            return "submitting"
        if self.any_worked():
            return "worked"
        if self.phase is BlockPhase.ENDED or self.closed or now >= self.ends_at:
            return "closed"
        return "mining"

    # ------------------------------------------------------------ farmers

    def round(self, farmer_id: str) -> FarmerRound:
        fr = self.rounds.get(farmer_id)
        if fr is None:
            fr = self.rounds[farmer_id] = FarmerRound()
        return fr

    def planted(self) -> list[str]:
        return [fid for fid, fr in self.rounds.items() if fr.status in ("planted", "worked")]

    def any_worked(self) -> bool:
        return any(fr.worked >= 0 for fr in self.rounds.values())

    def set_status(
        self,
        fid: str,
        status: FarmerStatus,
        reason: str,
        effects: list[Effect],
        *,
        zeros: int | None = None,
    ) -> None:
        """``fid``'s status in this block, recorded and shown (Persist and Publish). ``harvested``
        is final: a late answer (a reconciled ``/work``, say) never moves a farmer out of it."""
        fr = self.round(fid)
        if fr.status == "harvested" and status != "harvested":
            return
        fr.status = status
        fr.reason = reason
        reward = fr.reward if status == "harvested" else None
        record = FarmerStatusChanged(fid, self.index, status, reason, zeros, reward)
        effects.append(Persist(record))
        effects.append(Publish(record))


@dataclass(slots=True)
class Reconciling:
    """A Backend call whose answer could not be read, until the chain says what it did."""

    call_id: int
    rec: CallRecord
    error: str  # why the answer could not be read, for people
    until: float  # past this (unix seconds) nothing is retried: what the chain shows is final
    farmers: tuple[tuple[str, str], ...]  # (farmer id, address) whose pails tell the outcome
    ledger: int = 0  # the newest ledger known at the failure: a read must be past it to say "not done"
    reads: int = 0  # failed reads so far (the chain RPC may be down too)
    read_error: str = ""  # why the last read failed, for people


@dataclass(slots=True)
class LatePlant:
    """Our own plant into block ``index`` before anyone saw it open (the block is not known yet)."""

    index: int
    call_id: int
    rec: CallRecord
    result: BackendResult | None = None  # kept until NewBlock(index) adopts it
