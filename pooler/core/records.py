"""What the coordinator asks a store to keep: one frozen value per kind of record (``Persist(record)``).

A store dispatches on the type (``match``) and makes its own format of each (SQL rows, Redis
hashes and JSON: :mod:`pooler.store.codec`); nothing here is JSON. Which record rebuilds
which part of a :class:`~pooler.core.snapshot.CoreSnapshot` is listed there.

Ordering (the runner's rule): every record of a batch is durable before any ``Send`` that
followed it goes out, so ``NoncesIssued`` precedes the job carrying the range,
``RestJobIssued`` the REST job, ``ShareCounts``/``BestFound``/``NonceCredited`` the ``accepted``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pooler.core.backend_calls import HarvestReply, PlantReply, Submission, WorkReply
from pooler.core.events import IssuedJob
from pooler.core.rewards import BlockState as ChainBlock
from pooler.core.values import slot_init

FarmerStatus = Literal["active", "planted", "worked", "harvested", "failed"]


@dataclass(frozen=True, slots=True)
class Best:
    """A farmer's best hash of a block: what ``/work`` submits for it."""

    nonce: int
    hash: bytes
    zeros: int
    found_at: float  # unix seconds: the submission's ``timestamp``
    miner_id: str  # "" when the pooler's local search found it
    worker: str


@dataclass(frozen=True, slots=True)
class BlockSeen:
    """A block the chain opened (the newest is the open one after a restart)."""

    index: int
    entropy: bytes
    timestamp: int  # the block's, unix seconds


@slot_init  # built once per share: see pooler.core.values
@dataclass(frozen=True, slots=True)
class BestFound:
    """A farmer's new best of a block (bests only grow: a store keeps the one with most zeros)."""

    block: int
    farmer_id: str
    best: Best


@slot_init  # built once per share: see pooler.core.values
@dataclass(frozen=True, slots=True)
class ShareCounts:
    """Absolute share counts of one (block, miner, worker name): the newest one stands."""

    block: int
    miner_id: str
    worker: str
    accepted: int
    rejected: int


@slot_init  # built once per accepted share: see pooler.core.values
@dataclass(frozen=True, slots=True)
class MinerCounts:
    """A miner's share counters for ``/miner/stats``, absolute since it registered: what was
    loaded at start plus what this process counted. The newest one stands (a group's Redis
    store turns them into increments: pooler/store/redis.py)."""

    miner_id: str
    accepted: int
    rejected: int  # every rejection, stale ones included
    stale: int


@dataclass(frozen=True, slots=True)
class PlantCalled:
    """A ``/plant`` answer: ``reply`` on success, else ``error``."""

    block: int
    reply: PlantReply | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class WorkCalled:
    """A ``/work`` answer for ``submissions``: ``reply`` on success, else ``error``."""

    block: int
    submissions: tuple[Submission, ...]
    reply: WorkReply | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class HarvestCalled:
    """A ``/harvest`` answer: ``reply`` on success, else ``error``."""

    block: int
    reply: HarvestReply | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class FarmerStatusChanged:
    """A farmer's status in a block (the latest stands). Also the dashboard's ``farmer`` event."""

    farmer_id: str
    block: int
    status: FarmerStatus
    reason: str = ""  # why it failed, or a warning on a success
    zeros: int | None = None  # "worked": the zeros the Backend confirmed
    reward: int | None = None  # "harvested": stroops, when the harvest attributed them


@dataclass(frozen=True, slots=True)
class NoncesIssued:
    """Every nonce of (block, farmer) below ``next`` was handed out (recorded before the job)."""

    block: int
    farmer_id: str
    next: int


@dataclass(frozen=True, slots=True)
class WorkerSeen:
    """A worker said hello (kept for the record only)."""

    miner_id: str
    worker: str
    agent: str | None


@dataclass(frozen=True, slots=True)
class RestJobIssued:
    """A REST job, shared before it is sent so any instance of a group can take its shares
    (``share_rest_jobs``)."""

    job: IssuedJob


@slot_init  # built once per share: see pooler.core.values
@dataclass(frozen=True, slots=True)
class NonceCredited:
    """A nonce an accepted share (or a local search) credited, for a group's shared duplicate set
    (``Coordinator(report_credits=True)``). ``job``: the job it was submitted on, which names the
    ``accepted`` to turn into a duplicate when another instance credited it first."""

    block: int
    farmer_id: str
    nonce: int
    job: str


@dataclass(frozen=True, slots=True)
class HistoryBucket:
    """One bucket of share history (absolute: the newest of a key stands). Built by
    :mod:`pooler.stats` from the batch's share answers, committed with the records they follow.

    ``scope``: "pool" (``key`` ""), "miner" (``key`` the miner id) or "worker" (``key``
    "<miner id>/<worker name>"); ``width``: 60 or 3600 seconds; ``start``: unix seconds, a
    multiple of ``width``. ``work``: sum of 16**share_zeros over accepted shares (expected hashes
    behind them), so hashrate = work / width. ``rejected``: (reason, count) pairs, sorted.
    ``miners`` / ``workers``: the most miners / workers online sampled in the bucket (the pool
    series only; 0 elsewhere and in rows stored before they were kept)."""

    scope: str
    key: str
    width: int
    start: int
    accepted: int
    stale: int
    rejected: tuple[tuple[str, int], ...]
    work: int
    miners: int = 0
    workers: int = 0


@dataclass(frozen=True, slots=True)
class FarmerOfBlock:
    """One farmer's part of a block in :class:`BlockHistory`."""

    farmer_id: str
    planted: bool = False
    best_zeros: int = -1  # -1: no share
    gap_s: float | None = None  # seconds from the block's timestamp to the best's find
    worked: bool | None = None  # the Backend's verdict on its work (None: not submitted)
    work_zeros: int | None = None
    reward: int | None = None  # stroops harvested, when the Backend attributed them
    error: str = ""


@dataclass(frozen=True, slots=True)
class BlockOnChain:
    """``Block(index)`` as the block monitor read it (a ``BlockUpdated`` that changed it): the
    contract's bounds of the score (period index-1's min/max zeros, gap and stake, fixed while
    the block is open) and its running stake and score totals. Folded into
    :class:`BlockHistory` by :mod:`pooler.stats`; the stores keep it there, not on its own."""

    index: int
    chain: ChainBlock


@dataclass(frozen=True, slots=True)
class BlockHistory:
    """What the pool did in one block (absolute: the newest stands). Built by :mod:`pooler.stats`.

    ``chain`` is the block's on-chain ``Block(index)`` as last read (:class:`BlockOnChain`;
    None: never read, e.g. a block that closed before the monitor's first read of it)."""

    block: int
    timestamp: int = 0
    planted: int = 0  # farmers the Backend planted
    staked: int = 0  # stroops, the plant reply's total
    work_at: float | None = None  # unix seconds the /work answer came
    work_ok: bool | None = None
    work_error: str = ""
    harvest_total: int | None = None  # stroops, the harvest reply's total
    farmers: tuple[FarmerOfBlock, ...] = ()
    chain: ChainBlock | None = None  # Block(index) on chain, as last read


Record = (
    HistoryBucket
    | BlockHistory
    | BlockSeen
    | BlockOnChain
    | BestFound
    | ShareCounts
    | MinerCounts
    | PlantCalled
    | WorkCalled
    | HarvestCalled
    | FarmerStatusChanged
    | NoncesIssued
    | WorkerSeen
    | RestJobIssued
    | NonceCredited
)
