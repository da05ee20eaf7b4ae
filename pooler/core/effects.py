"""What the coordinator asks the world to do, as immutable values.

The runner performs effects in the order returned. Two ordering rules matter:
- ``Persist`` effects are durable before any later ``Send`` of the same batch goes out
  (an ``accepted`` is never sent for a share the store could still lose);
- ``Send`` never blocks: the runtime puts the message on the connection's bounded queue
  (or completes the REST reply) and moves on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pooler.core.events import BackendOp
from protocol.messages import ServerMessage


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver ``msg`` to one socket's queue or one REST reply."""

    conn: int
    msg: ServerMessage


@dataclass(frozen=True, slots=True)
class Close:
    """Close a socket (after its queued messages) with a WebSocket close code."""

    conn: int
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class CallBackend:
    """Call the Phase-1 Backend; the runtime posts a ``BackendResult`` with ``call_id``.

    ``payload`` is the exact JSON body (camelCase). ``deadline`` (unix seconds) bounds all
    retries: past it the call fails with ``retryable=True``.
    """

    call_id: int
    op: BackendOp
    block: int
    payload: Mapping[str, object]
    deadline: float


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Post ``TimerFired(key)`` at ``at`` (unix seconds). Setting a key again moves it."""

    key: str
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: str


@dataclass(frozen=True, slots=True)
class LocalSearch:
    """Find any nonce for a planted farmer nobody mined for, off the event loop.

    Hash nonces from ``nonce_start`` up, for at most ``max_hashes`` or until ``deadline``;
    post ``LocalSearchDone`` with the best found.
    """

    block: int
    farmer_id: str
    farmer: str
    entropy: bytes
    nonce_start: int
    max_hashes: int
    deadline: float


@dataclass(frozen=True, slots=True)
class Publish:
    """A dashboard event: ``kind`` plus camelCase data. Never carries tokens or secrets."""

    kind: str
    data: Mapping[str, object]


PersistKind = Literal[
    "block",  # data: index, entropy, timestamp
    "best",  # data: block, farmerId, nonce, hash, zeros
    "shares",  # data: block, minerId, worker, accepted, rejected (absolute counts)
    "plant",  # data: block, response
    "work",  # data: block, submissions, response or error
    "harvest",  # data: block, response or error
    "farmer_status",  # data: farmerId, block, status, reason?
    "nonces",  # data: block, farmerId, next (every nonce below it was handed out; before the job)
    "worker",  # data: minerId, worker, agent? (a worker said hello)
    "job",  # data: job, block, minerId, farmerId, worker, nonceStart, nonceEnd, shareZeros, issuedAt
]


@dataclass(frozen=True, slots=True)
class Persist:
    """Record something durably (the store decides how). Later ``Send``s wait for it."""

    kind: PersistKind
    data: Mapping[str, object]


Effect = Send | Close | CallBackend | SetTimer | CancelTimer | LocalSearch | Publish | Persist
