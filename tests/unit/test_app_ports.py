"""The small adapters behind the web's ports (pooler/app/sockets.py, guard.py): pure bookkeeping."""

from __future__ import annotations

from pooler.app.sockets import ConnectionLimits, LiveSockets, SocketDesk
from pooler.runtime.outbox import Outbox
from pooler.web.ports import Admission, MinerSockets


class _Hits:
    def __init__(self) -> None:
        self.hits: list[str] = []

    def hit(self, limit: str) -> None:
        self.hits.append(limit)


class _Table:
    """A runner's connection table, as SocketDesk uses it."""

    def __init__(self) -> None:
        self.conns: dict[int, Outbox] = {}

    def open_conn(self) -> tuple[int, Outbox]:
        conn = len(self.conns) + 1
        box = self.conns[conn] = Outbox(16)
        return conn, box

    def forget_conn(self, conn: int) -> None:
        self.conns.pop(conn, None)


def test_connection_limits_count_in_and_out() -> None:
    limits: Admission = ConnectionLimits(max_total=3, max_per_ip=2)
    assert limits.admit("a") is None and limits.admit("a") is None
    assert limits.admit("a") == "connections-per-ip"  # refused sockets hold no slot
    assert limits.admit("b") is None
    assert limits.admit("c") == "connections-total"
    assert isinstance(limits, ConnectionLimits) and limits.open == 3
    limits.release("a")
    assert limits.admit("c") is None and limits.open == 3
    for host in ("a", "b", "c"):
        limits.release(host)
    assert limits.open == 0 and limits.admit("a") is None and limits.admit("a") is None


def test_live_sockets_know_both_ways() -> None:
    live = LiveSockets()
    table = _Table()
    desk: MinerSockets = SocketDesk(table, live)
    c1, b1 = desk.open("m1")
    c2, b2 = desk.open("m1")
    c3, _b3 = desk.open("m2")
    assert live.miner_of(c1) == "m1" and live.miner_of(c3) == "m2"
    assert live.outboxes("m1") == [b1, b2] or live.outboxes("m1") == [b2, b1]
    assert live.online() == 2
    desk.detach(c1)
    desk.detach(c1)  # twice is harmless
    assert live.miner_of(c1) is None and live.outboxes("m1") == [b2]
    desk.detach(c2)
    assert live.online() == 1 and live.outboxes("m1") == []
    assert c2 in table.conns  # the outbox lives on until it is forgotten (its last frames)
    desk.forget(c2)
    assert c2 not in table.conns
