"""Protocol v1 messages as typed, immutable values.

One JSON object per WebSocket text frame (or REST body), discriminated by ``type``, with
camelCase field names on the wire and snake_case attributes here. Nonces are ``int`` in
Python and decimal strings on the wire (a u64 does not fit a JavaScript number); hashes
and entropy are ``bytes`` here and 64 lowercase hex characters on the wire.

Encoding and strict decoding live in :mod:`protocol.codec`; the tables for miner authors
are in ``docs/protocol.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocol.errors import Code

BLOCK_BROADCAST: Final = "block-broadcast"
"""The feature a ``hello`` may ask for (``features``): a standing ``slot`` per worker and one
``block`` frame per new block, the same bytes for every socket (docs/protocol.md)."""

# ---------------------------------------------------------------- client -> server


@dataclass(frozen=True, slots=True)
class Hello:
    """First message of every connection: who is mining, with which worker name."""

    token: str
    worker: str = "default"
    agent: str | None = None
    protocol: int = 1
    hashrate: float | None = None
    """Hashes/s the miner says it computes (optional): shown beside the Pooler's effective
    figure as the "reported" hashrate, never used for anything else."""
    features: tuple[str, ...] = ()
    """Optional protocol features the miner asks for (e.g. :data:`BLOCK_BROADCAST`); the
    ``welcome`` lists those granted. Names the server does not know are ignored."""


@dataclass(frozen=True, slots=True)
class Share:
    """A nonce found inside a job's range. ``hash`` is optional: the server recomputes it."""

    job: str
    nonce: int
    hash: bytes | None = None


@dataclass(frozen=True, slots=True)
class More:
    """Ask for a fresh nonce range for the same block (the current one was exhausted)."""

    job: str | None = None


@dataclass(frozen=True, slots=True)
class StatsRequest:
    """Ask for the miner's figures (wire type ``stats``)."""


@dataclass(frozen=True, slots=True)
class Report:
    """The miner's own measured rate, hashes/s (wire type ``report``), sent now and then after
    ``hello`` (every 30-60 s is plenty); display only, like ``hello``'s ``hashrate``."""

    hashrate: float


@dataclass(frozen=True, slots=True)
class Bye:
    """Polite goodbye; the server closes with 1000."""


ClientMessage = Hello | Share | More | StatsRequest | Report | Bye

# ---------------------------------------------------------------- server -> client


@dataclass(frozen=True, slots=True)
class Welcome:
    miner_id: str
    worker: str
    farmer_id: str
    farmer: str
    protocol: int = 1
    features: tuple[str, ...] = ()
    """The features of the ``hello`` this server granted (none: plain protocol v1)."""


@dataclass(frozen=True, slots=True)
class Job:
    """Work for one worker: hash nonces in ``[nonce_start, nonce_end)`` for ``farmer``.

    ``clean`` means every earlier job is void (a new block); ``work_at`` and
    ``block_ends_at`` are unix milliseconds, so a miner can tell how long mining still pays.
    """

    job: str
    block: int
    entropy: bytes
    farmer: str
    nonce_start: int
    nonce_end: int
    share_zeros: int
    clean: bool
    work_at: int
    block_ends_at: int


@dataclass(frozen=True, slots=True)
class Slot:
    """A worker's standing range (feature :data:`BLOCK_BROADCAST`): for every ``block`` frame
    after it, until another ``slot`` replaces it, hash ``[nonce_start, nonce_end)`` of that
    block for ``farmer``; the job id is ``"<slot>.<block>"`` (:func:`slot_job_id`).

    ``share_zeros`` is the difficulty when it was sent; as with a job's, a later
    ``difficulty`` frame replaces it (the last value any frame carried is the one in force).
    """

    slot: str
    farmer: str
    nonce_start: int
    nonce_end: int
    share_zeros: int


@dataclass(frozen=True, slots=True)
class Block:
    """A new block for every worker with a slot: a ``job`` with ``clean: true`` for its slot.
    The same frame goes to every such socket (encoded once)."""

    block: int
    entropy: bytes
    work_at: int
    block_ends_at: int


def slot_job_id(slot: str, block: int) -> str:
    """The id of the job a slot stands for in ``block``: ``"s7.123"``."""
    return f"{slot}.{block}"


def slot_job(slot: Slot, block: Block, share_zeros: int) -> Job:
    """The job ``block`` means for a worker holding ``slot``, mined at ``share_zeros``."""
    return Job(
        slot_job_id(slot.slot, block.block),
        block.block,
        block.entropy,
        slot.farmer,
        slot.nonce_start,
        slot.nonce_end,
        share_zeros,
        True,
        block.work_at,
        block.block_ends_at,
    )


@dataclass(frozen=True, slots=True)
class Difficulty:
    share_zeros: int


@dataclass(frozen=True, slots=True)
class Accepted:
    job: str
    nonce: int
    zeros: int
    best: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    """A share that earned nothing; ``nonce`` is None when it could not even be parsed."""

    job: str | None
    nonce: int | None
    code: Code
    message: str = ""

    @property
    def reason(self) -> str:
        return self.code.reason


@dataclass(frozen=True, slots=True)
class Stats:
    """A miner's figures across all its workers for the current block and in total."""

    miner_id: str
    farmer_id: str
    block: int | None
    workers: int
    hashrate: float
    accepted: int
    rejected: int
    stale: int
    best_zeros: int | None
    share_zeros: int | None
    rewards: int
    """KALE stroops (7 decimals) harvested for the miner's farmer so far; a decimal string on the wire."""
    reported_hashrate: float | None = None
    """Sum of what its online workers say they hash (``hello``/``report``); None if none says."""


@dataclass(frozen=True, slots=True)
class Error:
    code: Code
    message: str

    @property
    def reason(self) -> str:
        return self.code.reason


ServerMessage = Welcome | Job | Slot | Block | Difficulty | Accepted | Rejected | Stats | Error
