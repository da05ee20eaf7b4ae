"""The connection gate: every TCP connection the server accepts, counted from accept to close.

Why: a socket that has not authenticated costs a file descriptor and buffers but proves
nothing; slowloris clients (headers a byte a second) and sockets that never say ``hello`` held
hundreds of them and, at the open-files limit, stopped miners, ``/health`` and the Pooler's own
local search (EMFILE). The gate bounds them apart from the miners' own cap
(``MAX_CONCURRENT_MINERS``, counted after ``hello`` by the app's ``Admission``):

- **pending**: a connection is pending from accept until it authenticates (a ``hello`` with a
  valid token, or a REST request with a valid miner token: :meth:`Ticket.settle`, which a
  keep-alive REST connection does at its first good token). At most ``max_pending`` in total and
  ``max_pending_per_host`` per client address. Dashboards and anonymous requests stay pending.
- **open**: every connection, pending or settled, against ``max_open`` (the open-files limit
  minus the descriptors kept for the Pooler's own work: pooler/app/descriptors.py).

A newcomer over a bound first takes the place of the oldest pending connection that is still
*reading* (its request's headers and body, or its ``hello``; legitimate clients spend
milliseconds there, a slowloris its whole life); if there is none, it is refused. The protocols
(pooler/web/httpproto.py, pooler/web/wsproto.py) hold one :class:`Ticket` per connection and put
it in the ASGI scope under :data:`CONNECTION` for the handlers.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

CONNECTION = "pooler.connection"  # the ASGI scope extension carrying the connection's Ticket

_PENDING, _SETTLED, _CLOSED = 0, 1, 2


class Ticket:
    """One connection's place in the gate."""

    __slots__ = ("_drop", "_gate", "host", "reading", "state")

    def __init__(self, gate: ConnectionGate, host: str, drop: Callable[[], None]) -> None:
        self._gate = gate
        self._drop = drop  # closes the connection now (a newcomer takes its place)
        self.host = host
        self.state = _PENDING  # pending -> settled -> closed, or pending -> closed
        self.reading = True  # pending and still reading a request or a hello: may be dropped for a newcomer

    @property
    def pending(self) -> bool:
        return self.state == _PENDING

    def settle(self) -> None:
        """The connection authenticated: it no longer counts as pending (idempotent)."""
        if self.state == _PENDING:
            self._gate._unpend(self)
            self.state = _SETTLED

    def served(self) -> None:
        """Its request is read and being answered (a dashboard stream, say): it stays pending but is
        no longer a candidate to drop for a newcomer."""
        self.reading = False

    def read_again(self) -> None:
        """A new request began on the connection (keep-alive)."""
        self.reading = True

    def close(self) -> None:
        """The connection ended (idempotent)."""
        if self.state == _PENDING:
            self._gate._unpend(self)
        if self.state != _CLOSED:
            self.state = _CLOSED
            self._gate.open -= 1

    def drop(self) -> None:
        """Close the connection now, for a newcomer."""
        self.close()
        self._drop()


class ConnectionGate:
    """Counts connections in and out (see the module docstring)."""

    __slots__ = (
        "_pending",
        "_per_host",
        "max_open",
        "max_pending",
        "max_pending_per_host",
        "on_refuse",
        "open",
    )

    def __init__(
        self, max_pending: int, max_pending_per_host: int, max_open: int, on_refuse: Callable[[str], None]
    ) -> None:
        self.max_pending = max_pending
        self.max_pending_per_host = max_pending_per_host
        self.max_open = max_open  # set again when the server starts (the descriptor budget)
        self.on_refuse = on_refuse  # called with the limit's name on every refusal or drop (metrics)
        self.open = 0  # connections open, pending or settled
        # pending connections, oldest first (dict: ordered, O(1) removal)
        self._pending: dict[Ticket, None] = {}
        self._per_host: collections.Counter[str] = collections.Counter()  # pending connections per address

    @property
    def pending(self) -> int:
        return len(self._pending)

    def enter(self, host: str, drop: Callable[[], None]) -> Ticket | str:
        """A ticket for a new connection from ``host``, or the name of the limit that refused it."""
        if self._per_host[host] >= self.max_pending_per_host and not self._make_room(host):
            self.on_refuse("pending-per-ip")
            return "pending-per-ip"
        if len(self._pending) >= self.max_pending and not self._make_room(None):
            self.on_refuse("pending-total")
            return "pending-total"
        if self.open >= self.max_open and not self._make_room(None):
            self.on_refuse("descriptors")
            return "descriptors"
        ticket = Ticket(self, host, drop)
        self.open += 1
        self._pending[ticket] = None
        self._per_host[host] += 1
        return ticket

    def _make_room(self, host: str | None) -> bool:
        """Drop the oldest pending connection still reading (from ``host`` if given); False if none."""
        for ticket in self._pending:
            if ticket.reading and (host is None or ticket.host == host):
                self.on_refuse("pending-dropped")
                ticket.drop()
                return True
        return False

    def _unpend(self, ticket: Ticket) -> None:
        del self._pending[ticket]
        self._per_host[ticket.host] -= 1
        if self._per_host[ticket.host] <= 0:
            del self._per_host[ticket.host]
