"""What the coordinator asks the world to do, as immutable values.

The runner performs effects in the order returned. Two ordering rules matter:
- ``Persist`` effects are durable before any later ``Send`` of the same batch goes out
  (an ``accepted`` is never sent for a share the store could still lose);
- ``Send`` never blocks: the runtime puts the message on the connection's bounded queue
  (or completes the REST reply) and moves on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pooler.core.alerts import Alert
from pooler.core.backend_calls import BackendOp, BackendRequest
from pooler.core.dashboard_events import DashboardEvent
from pooler.core.records import Record
from pooler.core.values import slot_init
from protocol.messages import ServerMessage


@slot_init  # built once per share: see pooler.core.values
@dataclass(frozen=True, slots=True)
class Send:
    """Deliver ``msg`` to one socket's queue or one REST reply."""

    conn: int
    msg: ServerMessage


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Deliver ``msg`` to every socket of ``conns``: encoded ONCE, the same frame queued on each
    (a new block's ``block`` frame for the workers with a slot, docs/protocol.md). Held behind
    the batch's ``Persist`` effects like a ``Send``."""

    conns: tuple[int, ...]
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

    The runtime makes the JSON body of ``request`` (:func:`pooler.backend.request_body`).
    ``deadline`` (unix seconds) bounds all retries: past it the call fails with ``retryable=True``.
    """

    call_id: int
    request: BackendRequest
    deadline: float

    @property
    def op(self) -> BackendOp:
        return self.request.op

    @property
    def block(self) -> int:
        return self.request.block


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
    """A dashboard event (:mod:`pooler.core.dashboard_events`); never carries tokens or secrets."""

    event: DashboardEvent


@slot_init  # built once per share: see pooler.core.values
@dataclass(frozen=True, slots=True)
class Persist:
    """Record something durably (:mod:`pooler.core.records`; the store decides how).
    Later ``Send``s of the batch wait for it."""

    record: Record


@dataclass(frozen=True, slots=True)
class LimitHit:
    """A protective limit cut a miner off or refused it (an operator's count, not a dashboard event)."""

    limit: Literal["invalid-shares"]
    miner_id: str


@dataclass(frozen=True, slots=True)
class WatchPails:
    """Have the block monitor read ``Pail(address, block)`` for these ``(farmer id, address)``
    pairs (and ``Block(block)``) with every poll, and post ``BlockUpdated`` when they change."""

    block: int
    farmers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ReadPails:
    """Read ``Pail(address, block)`` of these ``(farmer id, address)`` pairs from the chain once,
    now, and post ``PailsRead(call_id, block, ...)``: how the core learns what a Backend call whose
    answer could not be read did (:mod:`pooler.core.reconcile`)."""

    call_id: int
    block: int
    farmers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RaiseAlert:
    """Tell the operator (:mod:`pooler.core.alerts`): the dashboard, ``/metrics``, the webhook."""

    alert: Alert


Effect = (
    Send
    | Broadcast
    | Close
    | CallBackend
    | SetTimer
    | CancelTimer
    | LocalSearch
    | Publish
    | Persist
    | LimitHit
    | WatchPails
    | ReadPails
    | RaiseAlert
)
