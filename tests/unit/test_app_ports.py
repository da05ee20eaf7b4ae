"""The small adapters behind the web's ports (pooler/app/sockets.py, guard.py): pure bookkeeping."""

from __future__ import annotations

from pooler.app.guard import ShareGuardPort
from pooler.app.sockets import ConnectionLimits, LiveSockets, SocketDesk
from pooler.runtime.outbox import Outbox
from pooler.web.limits import InvalidShareGuard
from pooler.web.ports import Admission, LimitHits, MinerSockets, ShareGuard
from protocol.codec import decode_server
from protocol.errors import Code
from protocol.messages import Error


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


def test_the_guard_port_escalates_on_the_miners_own_sockets() -> None:
    now = [100.0]
    live = LiveSockets()
    desk = SocketDesk(_Table(), live)
    hits = _Hits()
    port = ShareGuardPort(InvalidShareGuard(2, 0.5, 60.0), live, hits, lambda: now[0])
    guard: ShareGuard = port
    limit_hits: LimitHits = hits
    assert limit_hits is hits
    conn, box = desk.open("bad")
    _other, other_box = desk.open("good")
    port.judge_conn(conn, "low-zeros")
    port.judge_conn(conn, "invalid-hash")  # a bad window: warned
    assert len(box) == 1 and not box.closed and len(other_box) == 0
    warning = decode_server(box._frames[0])
    assert isinstance(warning, Error) and warning.code is Code.RATE_LIMITED
    guard.judge("bad", "duplicate")
    guard.judge("bad", "duplicate")  # a second one: closed
    assert box.closed and hits.hits == ["invalid-shares"]
    conn2, box2 = desk.open("bad")
    port.judge_conn(conn2, "low-zeros")
    port.judge_conn(conn2, "low-zeros")  # a third: refused for the cool-down
    assert box2.closed and guard.cooldown("bad") == 60.0
    now[0] += 59.0
    assert guard.cooldown("bad") == 1.0 and guard.cooldown("good") == 0.0
    port.judge_conn(999, "low-zeros")  # a REST reply id or a forgotten socket: nobody to judge
    port.forget("bad")
    assert guard.cooldown("bad") == 0.0
