"""Everything that can happen to the coordinator, as immutable values.

Each event comes from exactly one adapter (named in its docstring). ``conn`` ids are ints
the runtime hands out: a WebSocket connection keeps one for its life; a REST request gets
a fresh one as its reply address. The core answers with ``Send(conn, ...)`` effects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pooler.core import rewards
from pooler.core.backend_calls import BackendOp, BackendReply
from protocol.errors import Code
from protocol.messages import Share

# ---------------------------------------------------------------- chain (block monitor)


@dataclass(frozen=True, slots=True)
class NewBlock:
    """FarmIndex changed (or was seen for the first time). From the block monitor.

    ``entropy`` is ``Block(index).entropy`` (what miners hash with); ``timestamp`` is the
    block's ledger timestamp in unix seconds; ``ledger`` the sequence it was read at.
    """

    index: int
    entropy: bytes
    timestamp: int
    ledger: int


@dataclass(frozen=True, slots=True)
class BlockUpdated:
    """``Block(index)`` or a watched farmer's ``Pail(farmer, index)`` changed (the block the core
    asked pails for with ``WatchPails``). From the block monitor, before the ``NewBlock`` of a
    newer block when both are seen by one poll, so block N's final state comes first.

    ``pails`` is keyed by farmer id; a planted farmer whose pail is missing is absent.
    """

    index: int
    block: rewards.BlockState
    pails: Mapping[str, rewards.Pail]
    ledger: int  # the ledger it was read at


@dataclass(frozen=True, slots=True)
class FarmPaused:
    """FarmPaused flipped. A paused farm is a phase, not a crash. From the block monitor."""

    paused: bool


@dataclass(frozen=True, slots=True)
class ChainHealth:
    """The RPC went down (``ok=False``) or came back. From the block monitor."""

    ok: bool
    detail: str = ""


# ---------------------------------------------------------------- miners (registry / web)


@dataclass(frozen=True, slots=True)
class MinerJoined:
    """A miner exists (registered now, or loaded at start-up) and mines for ``farmer``."""

    miner_id: str
    farmer_id: str
    farmer: str  # G... address of the farmer's custodial wallet
    name: str = ""


@dataclass(frozen=True, slots=True)
class MinerLeft:
    """The miner left (``POST /miner/leave``): close its sockets, keep its accepted work."""

    miner_id: str


@dataclass(frozen=True, slots=True)
class WorkerConnected:
    """A WebSocket said a valid ``hello``; the web layer already checked the token."""

    conn: int
    miner_id: str
    worker: str
    agent: str | None = None
    hashrate: float | None = None  # what the miner says it hashes (hello), display only
    features: tuple[str, ...] = ()  # what its hello asked for; the welcome lists those granted


@dataclass(frozen=True, slots=True)
class WorkerDisconnected:
    conn: int


@dataclass(frozen=True, slots=True)
class HashrateReported:
    """``report`` from a socket: the hashes/s the miner says it computes (display only)."""

    conn: int
    hashrate: float


@dataclass(frozen=True, slots=True)
class MalformedSubmitted:
    """A share submit (a REST body, or a socket's ``share`` frame) that did not decode: a
    rejected share of its miner (by the reason of ``code``). ``reply``: the REST request to
    answer with ``Rejected`` (None: a socket, answered by the web layer)."""

    miner_id: str
    reply: int | None = None
    code: Code = Code.MALFORMED
    message: str = ""
    job: str | None = None


@dataclass(frozen=True, slots=True)
class ShareSubmitted:
    """A decoded ``share`` from a WebSocket worker."""

    conn: int
    share: Share


@dataclass(frozen=True, slots=True)
class MoreRequested:
    conn: int
    job: str | None


@dataclass(frozen=True, slots=True)
class StatsRequested:
    """``stats`` from a socket, or ``GET /miner/stats`` (then ``conn`` is the reply id)."""

    conn: int
    miner_id: str


@dataclass(frozen=True, slots=True)
class RestWorkRequested:
    """``GET /miner/work``: reply to ``reply`` with a job for REST worker (miner, worker)."""

    reply: int
    miner_id: str
    worker: str


@dataclass(frozen=True, slots=True)
class IssuedJob:
    """A REST job as the instance that issued it recorded it (``share_rest_jobs``): what another
    instance of the group needs to check a share on it. Read from the shared store by the web
    layer, never from the miner."""

    job_id: str
    block: int
    miner_id: str
    farmer_id: str
    worker: str
    nonce_start: int
    nonce_end: int
    share_zeros: int
    issued_at: float


@dataclass(frozen=True, slots=True)
class RestShareSubmitted:
    """``POST /miner/submit``: reply to ``reply`` with accepted or rejected.

    ``issued``: the job as another instance of the group issued it, when the job id is not one
    of this coordinator's (a REST miner behind a load balancer that is not sticky)."""

    reply: int
    miner_id: str
    share: Share
    issued: IssuedJob | None = None


# ---------------------------------------------------------------- results of effects


@dataclass(frozen=True, slots=True)
class BackendResult:
    """Outcome of a ``CallBackend`` effect, posted back by the runtime.

    ``reply`` is the answer, parsed at the edge (:func:`pooler.backend.parse_reply`); None when
    the call failed, and then ``error`` says why and ``retryable`` tells whether the runtime
    gave up only for want of the Backend (it may succeed again before the deadline).
    ``unknown``: the request was sent but its answer cannot be read (``BackendUnknownOutcome``):
    neither a success nor a failure, the core reconciles it with the chain (``ReadPails``).
    """

    call_id: int
    op: BackendOp
    block: int
    reply: BackendReply | None
    error: str = ""
    status: int | None = None
    retryable: bool = False
    unknown: bool = False

    @property
    def ok(self) -> bool:
        return self.reply is not None


@dataclass(frozen=True, slots=True)
class PailsRead:
    """Result of a ``ReadPails`` effect: ``Pail(farmer, block)`` of the farmers asked for, read
    from the chain (a farmer without a pail is absent), or None and ``error`` when the read
    failed. ``call_id`` names the reconciliation that asked (the unknown call's id); ``ledger``
    the latest ledger the read reflects (Soroban's ``latestLedger``; 0 when unknown): "not done"
    is trusted only from a read past the ledger known at the failure."""

    call_id: int
    block: int
    pails: Mapping[str, rewards.Pail] | None
    error: str = ""
    ledger: int = 0


@dataclass(frozen=True, slots=True)
class TimerFired:
    key: str


@dataclass(frozen=True, slots=True)
class NonceRefillDone:
    """A group instance's refill of (block, farmer)'s shared nonce space ended, granted or failed:
    sockets left waiting for a range get one now, or are told none is available."""

    block: int
    farmer_id: str


@dataclass(frozen=True, slots=True)
class GroupBest:
    """A best candidate an instance of the group accepted, as the leader reads it from the group's
    bests stream: kept if its hash checks out and it beats the farmer's best of the block."""

    block: int
    farmer_id: str
    nonce: int
    hash: bytes
    zeros: int
    miner_id: str = ""
    worker: str = ""


@dataclass(frozen=True, slots=True)
class BatchEnd:
    """The runner handed the core every event of its batch and is about to commit it: the share
    counts the batch's accepted shares changed, as one record each (``RoundState.write_counts``)."""


BATCH_END = BatchEnd()  # the one value the runner sends (it carries nothing)


@dataclass(frozen=True, slots=True)
class LocalSearchDone:
    """Result of a ``LocalSearch`` effect: the best nonce found, or None if none in time."""

    block: int
    farmer_id: str
    nonce: int | None
    hash: bytes | None
    zeros: int


Event = (
    NewBlock
    | BlockUpdated
    | FarmPaused
    | ChainHealth
    | MinerJoined
    | MinerLeft
    | WorkerConnected
    | WorkerDisconnected
    | HashrateReported
    | MalformedSubmitted
    | ShareSubmitted
    | MoreRequested
    | StatsRequested
    | RestWorkRequested
    | RestShareSubmitted
    | BackendResult
    | PailsRead
    | TimerFired
    | LocalSearchDone
    | GroupBest
    | NonceRefillDone
    | BatchEnd
)
