"""The miner sockets as the service keeps them: connection limits, and which socket is whose.

- :class:`ConnectionLimits` (the web's ``Admission`` port): open sockets in total and per
  client address, against the configured maxima.
- :class:`LiveSockets`: each live socket's miner and outbox, kept both ways in one object
  (a miner's sockets for the share-quality policy, a socket's miner for the runner's share
  reports, the miners online for ``/health``).
- :class:`SocketDesk` (the web's ``MinerSockets`` port): a socket's outbox from the runner,
  recorded in :class:`LiveSockets`.
"""

from __future__ import annotations

import collections
from typing import Protocol

from pooler.runtime.outbox import Outbox


class ConnectionLimits:
    """Counts miner sockets in and out; refuses past ``max_total`` or ``max_per_ip``."""

    __slots__ = ("_per_ip", "max_per_ip", "max_total", "open")

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.open = 0  # open miner sockets in total, against max_total (/health's workers)
        self._per_ip: collections.Counter[str] = collections.Counter()  # open sockets per client address

    def admit(self, host: str) -> str | None:
        if self.open >= self.max_total:
            return "connections-total"
        if self._per_ip[host] >= self.max_per_ip:
            return "connections-per-ip"
        self.open += 1
        self._per_ip[host] += 1
        return None

    def release(self, host: str) -> None:
        self.open -= 1
        self._per_ip[host] -= 1
        if self._per_ip[host] <= 0:
            del self._per_ip[host]


class LiveSockets:
    """The live miner sockets: socket -> (miner, outbox), and miner -> its sockets."""

    __slots__ = ("_by_conn", "_by_miner")

    def __init__(self) -> None:
        self._by_conn: dict[int, tuple[str, Outbox]] = {}  # socket -> its miner and outbox
        self._by_miner: dict[str, set[int]] = {}  # miner -> its sockets (none: not online)

    def attach(self, conn: int, miner_id: str, box: Outbox) -> None:
        self._by_conn[conn] = (miner_id, box)
        self._by_miner.setdefault(miner_id, set()).add(conn)

    def detach(self, conn: int) -> None:
        entry = self._by_conn.pop(conn, None)
        if entry is None:
            return
        conns = self._by_miner.get(entry[0])
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_miner[entry[0]]

    def miner_of(self, conn: int) -> str | None:
        entry = self._by_conn.get(conn)
        return entry[0] if entry is not None else None

    def outboxes(self, miner_id: str) -> list[Outbox]:
        return [self._by_conn[conn][1] for conn in self._by_miner.get(miner_id, ())]

    def online(self) -> int:
        """Miners with at least one live socket."""
        return len(self._by_miner)


class ConnTable(Protocol):
    """The runner's connection table (pooler.runtime.runner.Runner)."""

    def open_conn(self) -> tuple[int, Outbox]: ...

    def forget_conn(self, conn: int) -> None: ...


class SocketDesk:
    """The web's ``MinerSockets`` port: outboxes from the runner, recorded in :class:`LiveSockets`."""

    __slots__ = ("_live", "_table")

    def __init__(self, table: ConnTable, live: LiveSockets) -> None:
        self._table = table
        self._live = live

    def open(self, miner_id: str) -> tuple[int, Outbox]:
        conn, box = self._table.open_conn()
        self._live.attach(conn, miner_id, box)
        return conn, box

    def detach(self, conn: int) -> None:
        self._live.detach(conn)

    def forget(self, conn: int) -> None:
        self._table.forget_conn(conn)
