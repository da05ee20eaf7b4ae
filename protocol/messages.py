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

from protocol.errors import Code

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


ServerMessage = Welcome | Job | Difficulty | Accepted | Rejected | Stats | Error
