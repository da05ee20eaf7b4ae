"""What an operator sees of a running Pooler: metrics, the event log, readiness.

The :class:`Observer` is fed by the runtime's own actions instead of adding work to them:

- the runner reports what it already does (``RunnerObserver``): each share answer it
  delivers (counted in plain ints, flushed into Prometheus once per tick, so the share path
  pays one dict increment), each limit the core's share-quality guard hit, each dashboard
  event (block-cycle outcomes, structured log lines), each Backend call's outcome, each store
  commit, each new block's push latency;
- the Backend client's ``observe(op, seconds, outcome)`` hook times every call;
- :class:`ObservedMonitor` times each chain poll;
- its own task (:meth:`Observer.run`, owned and cancelled by the Pooler) probes event-loop
  lag every tick and snapshots gauges from ``Coordinator.view`` every ``snapshot_interval``;
- :class:`BackendProbe` (another task of the Pooler's) polls ``BackendClient.health()`` every
  ``health_interval`` and reports to the observer, so no request to ``/health/ready`` or
  ``/metrics`` ever waits on the Backend;
- :class:`Readiness` answers ``/health`` from what the others hold (no I/O);
- what it learns about the Backend (health polls, real calls) and the chain RPC (each poll of
  :class:`ObservedMonitor`) also goes to :class:`~pooler.app.alerts.Alerts`, which raises
  ``backend-down`` / ``chain-rpc-down`` after a hold and ``resolved`` after them; the hold is
  checked on every tick of :meth:`Observer.run`.

It sees the rest of the Pooler only through narrow ports given at construction (the core's
view, the hub's publish, the group's status, the share-quality hook), never the service.

Nothing logged here carries a token: dashboard events never do (docs/events.md), and the
log handler redacts secret-named fields anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pooler.app.alerts import Alerts
from pooler.chain.monitor import BlockMonitor
from pooler.core.backend_calls import WorkReply
from pooler.core.dashboard_events import (
    BlockEvent,
    ChainEvent,
    DashboardEvent,
    HarvestEvent,
    MinerEvent,
    PlantEvent,
    SummaryEvent,
    WorkEvent,
)
from pooler.core.effects import CallBackend, LimitHit
from pooler.core.events import BackendResult
from pooler.core.records import FarmerStatusChanged
from pooler.core.views import CoreView
from pooler.errors import RpcErrorReply, RpcTimeout, RpcUnavailable
from pooler.logs import log_event
from pooler.metrics import PHASES, SHARE_REASONS, Metrics
from pooler.runtime.event_codec import encode_event
from pooler.store import Store
from protocol.messages import Accepted, Rejected

View = Callable[[float], CoreView]  # the core's view at a time (Coordinator.view)
Publish = Callable[[DashboardEvent], None]  # a dashboard event (EventHub.publish)
Status = Callable[[], Mapping[str, Any]]  # a group member's status (ClusterNode.status)

log = logging.getLogger("pooler.events")

# pooler_cluster_events{kind} <- the key of ClusterNode.status() it mirrors
_CLUSTER_EVENTS = {
    "fence-refusal": "fencedRefusals",
    "backend-fenced": "backendFenced",
    "duplicate-refused": "duplicatesRefused",
    "nonce-chunk": "nonceChunks",
    "leader-term": "terms",
}

_BACKEND_KINDS = {
    "unavailable": "unavailable",
    "rejected": "rejected",
    "bad_response": "bad-response",
    "unknown": "unknown-outcome",
}
_MINER_EVENTS = {
    "joined": "miner joined",
    "left": "miner left",
    "connected": "worker connected",
    "disconnected": "worker disconnected",
}


def op_outcome(op: str, result: BackendResult, missed: bool) -> str:
    """``ok``/``partial``/``failed``/``missed``/``unknown`` of one plant/work/harvest call (metrics)."""
    reply = result.reply
    if result.unknown:
        return "unknown"  # sent, answer unreadable: the core reconciles it with the chain
    if reply is None:
        return "missed" if missed else "failed"
    failed = reply.invalid if isinstance(reply, WorkReply) else reply.failed
    if failed > 0 or any(not r.ok for r in reply.results or ()):
        return "partial"
    return "ok"


def rpc_error_kind(failure: BaseException | None) -> str:
    """The ``kind`` label of a failed chain poll, from the type of the reader's error."""
    match failure:
        case RpcTimeout():
            return "timeout"
        case RpcErrorReply():
            return "rpc-error"
        case RpcUnavailable():
            return "unavailable"
    return "bad-data"  # ChainDataError, or a bug the monitor survived


class ObservedMonitor(BlockMonitor):
    """The block monitor, with each poll timed and counted in ``metrics`` and reported to
    ``on_poll(ok, detail)`` (the alerts' RPC watch), if given."""

    def __init__(
        self,
        *args: Any,
        metrics: Metrics,
        on_poll: Callable[[bool, str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics
        self._latency = metrics.rpc_latency.labels(method="getLedgerEntries")
        self._on_poll = on_poll

    async def poll_once(self) -> bool:
        started = time.perf_counter()
        failed_before = self.consecutive_failures
        ok = await super().poll_once()
        self._latency.observe(time.perf_counter() - started)
        self._metrics.rpc_up.set(1 if ok else 0)
        if not ok:
            kind = rpc_error_kind(self.last_failure)
            self._metrics.rpc_errors.labels(method="getLedgerEntries", kind=kind).inc()
        if self._on_poll is not None:
            detail = self.last_error if not ok else f"a poll succeeded after {failed_before} failed"
            self._on_poll(ok, detail)
        return ok


class Observer:
    """Metrics, structured event log lines and readiness of one Pooler (module docstring)."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        view: View,
        publish: Publish,
        group_status: Status | None = None,
        alerts: Alerts | None = None,
        interval: float = 1.0,
        snapshot_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self._view = view  # gauges come from the core's view
        self._publish = publish  # Backend reachability news go to the dashboards too
        self._group_status = group_status  # None: a single Pooler (no cluster gauges)
        self._alerts = alerts  # told what the Backend evidence says, ticked; None: no alerts
        self.interval = interval  # loop-lag probe and share-count flush period
        self.snapshot_interval = snapshot_interval  # gauges from Coordinator.view
        self._clock = clock
        # Shares answered since the last flush, by reason ("ok" = accepted): the share path
        # only increments an int here; Prometheus counters are updated once per tick.
        self._shares: dict[str, int] = dict.fromkeys(SHARE_REASONS, 0)
        self._block: int | None = None  # the newest block seen, as log context
        self._farmers: set[str] = set()  # farmers with a hashrate series, to drop when they go
        # Backend readiness from the last health poll: None before the first answer.
        self.backend_ok: bool | None = None
        self.backend_detail = "not checked yet"
        # The newest evidence about the Backend, from a health poll or a real call: a call can
        # find it down, or back, between polls, and /health must follow whichever came last.
        # None until the first evidence.
        self._backend_seen: bool | None = None
        self.store_ok = True  # False after a failed store commit, until one succeeds
        self.pushes = 0  # new blocks pushed (tests, docs figures)

    # ------------------------------------------------------------ the runner's reports

    def share_answered(self, conn: int, msg: Accepted | Rejected) -> None:
        reason = "ok" if type(msg) is Accepted else msg.code.reason  # type: ignore[union-attr]
        self._shares[reason] += 1

    def limit_hit(self, hit: LimitHit) -> None:
        self.metrics.limit_hits.labels(limit=hit.limit).inc()

    def published(self, event: DashboardEvent) -> None:
        m = self.metrics
        match event:
            case BlockEvent(block=block, timestamp=ts):
                self._block = block
                m.block_timestamp.set(ts)
                m.new_block_detect_latency.observe(max(0.0, self._clock() - ts))
                m.block_index.set(block)
                log_event(
                    log, logging.INFO, "new block", block=block, workAt=event.work_at, endsAt=event.ends_at
                )
            case PlantEvent() | WorkEvent() | HarvestEvent():
                kind, data = encode_event(event)
                ok = event.ok
                fields: dict[str, Any] = {
                    k: v for k, v in data.items() if k not in ("ok", "submissions", "rewards", "exc_info")
                }
                if isinstance(event, WorkEvent):
                    fields["farmers"] = len(event.submissions)
                level = logging.INFO if ok else logging.WARNING
                log_event(log, level, f"{kind} {'ok' if ok else 'failed'}", **fields)
            case MinerEvent():
                log_event(
                    log,
                    logging.INFO,
                    _MINER_EVENTS[event.event],
                    block=self._block,
                    minerId=event.miner_id,
                    farmerId=event.farmer_id,
                    worker=event.worker,
                )
            case ChainEvent(ok=True):
                log_event(log, logging.INFO, "chain RPC up", block=self._block, detail=event.detail)
            case ChainEvent():
                log_event(log, logging.WARNING, "chain RPC down", block=self._block, detail=event.detail)
            case FarmerStatusChanged(status="failed"):
                log_event(
                    log,
                    logging.WARNING,
                    "farmer failed",
                    block=event.block,
                    farmerId=event.farmer_id,
                    reason=event.reason or None,
                )
            case _:
                pass

    def backend_done(self, call: CallBackend, result: BackendResult, missed: bool) -> None:
        self.metrics.block_ops.labels(op=call.op, outcome=op_outcome(call.op, result, missed)).inc()

    def store_committed(self, seconds: float, records: int, ok: bool) -> None:
        self.metrics.store_commit_latency.observe(seconds)
        self.store_ok = ok

    def block_pushed(self, block: int, seconds: float, sockets: int) -> None:
        self.metrics.new_block_push_latency.observe(seconds)
        self.pushes += 1
        if log.isEnabledFor(logging.DEBUG):
            log_event(
                log, logging.DEBUG, "block pushed", block=block, sockets=sockets, ms=round(seconds * 1e3, 3)
            )

    # ------------------------------------------------------------ the Backend client's hook

    def backend_call(self, op: str, seconds: float, outcome: str) -> None:
        """``BackendClient(observe=...)``: one call ended (``outcome`` as the client names it)."""
        m = self.metrics
        m.backend_latency.labels(op=op).observe(seconds)
        kind = _BACKEND_KINDS.get(outcome)
        if kind is not None:
            m.backend_errors.labels(op=op, kind=kind).inc()
        if outcome == "ok":
            m.backend_up.set(1)
        elif outcome == "unavailable":
            m.backend_up.set(0)
        if outcome == "cancelled":
            return  # the caller gave up: says nothing about the Backend
        if op == "health":
            # The probe's own poll: a 503 is an answer to the client ("ok") but an unhealthy
            # Backend to the probe, which reports its verdict itself (backend_polled).
            return
        ok = outcome != "unavailable"  # it answered (a refusal is an answer)
        self._backend_evidence(ok, op, f"{op} call: {'answered' if ok else 'unavailable'}")

    def _backend_evidence(self, ok: bool, source: str, detail: str) -> None:
        """The newest evidence about the Backend (a real call, or a health poll): news on the
        dashboard when it flips, and to the alerts' Backend watch."""
        if self._alerts is not None:
            self._alerts.backend_seen(ok, detail)
        was = self._backend_seen
        self._backend_seen = ok
        if ok != (True if was is None else was):  # news: unavailable, or reachable again
            news = f"Backend {'reachable again' if ok else 'unavailable'} ({source})"
            (log.info if ok else log.warning)("%s", news)
            self._publish(ChainEvent(ok, news))

    def backend_check(self) -> str:
        """/health's ``backend``: what the newest evidence says (a health poll or a real call),
        "unknown" before there is any."""
        if self._backend_seen is None:
            return "unknown"
        return "ok" if self._backend_seen else "down"

    # ------------------------------------------------------------ periodic work

    def flush(self) -> None:
        """Move the share counts into the Prometheus counters (each tick and before a scrape)."""
        shares = self._shares
        for reason, n in shares.items():
            if n:
                shares[reason] = 0
                result = "accepted" if reason == "ok" else "rejected"
                self.metrics.shares.labels(result=result, reason=reason).inc(n)

    def snapshot(self) -> None:
        """Gauges from one ``Coordinator.view`` (miners, workers, hashrates, block, phase)."""
        m = self.metrics
        view = self._view(self._clock())
        m.miners_connected.set(view.miners)
        ws = sum(1 for w in view.worker_list if w.conn is not None)
        m.workers_connected.labels(transport="ws").set(ws)
        m.workers_connected.labels(transport="rest").set(view.workers - ws)
        m.pool_hashrate.set(view.hashrate)
        if view.block is not None:
            m.block_index.set(view.block)
        if view.timestamp is not None:
            m.block_timestamp.set(view.timestamp)
        if view.phase in PHASES:
            m.block_phase.state(view.phase)
        farmers = set()
        for farmer in view.farmers:
            if farmer.miners:
                farmers.add(farmer.farmer_id)
                m.farmer_hashrate.labels(farmer_id=farmer.farmer_id).set(farmer.hashrate)
        for gone in self._farmers - farmers:
            m.forget_farmer(gone)
        self._farmers = farmers
        if self._group_status is not None:
            status = self._group_status()
            m.cluster_leader.set(1 if status["role"] == "leader" else 0)
            m.cluster_epoch.set(status["epoch"])
            m.cluster_instances.set(status["instances"])
            for kind, key in _CLUSTER_EVENTS.items():
                m.cluster_events.labels(kind=kind).set(status[key])

    async def run(self) -> None:
        """The probes: loop lag and flushes every tick, gauge snapshots on their period."""
        loop = asyncio.get_running_loop()
        next_snapshot = 0.0
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval)
            woke = loop.time()
            self.metrics.record_loop_lag(woke - started - self.interval)
            self.flush()
            if self._alerts is not None:
                try:
                    self._alerts.tick()
                except Exception:  # nor a bug in an alert
                    log.exception("alert check failed")
            if woke >= next_snapshot:
                next_snapshot = woke + self.snapshot_interval
                try:
                    self.snapshot()
                except Exception:  # a bug in a view must not stop the probes
                    log.exception("metrics snapshot failed")

    def backend_polled(self, ok: bool, detail: str) -> None:
        """:class:`BackendProbe`'s report: one health poll's outcome."""
        self._set_backend(ok, detail)

    def _set_backend(self, ok: bool, detail: str) -> None:
        was = self.backend_ok
        self.backend_ok, self.backend_detail = ok, detail
        self._backend_evidence(ok, "health", f"health check: {detail}")
        self.metrics.backend_up.set(1 if ok else 0)
        if was is not ok:
            if ok:
                log_event(log, logging.INFO, "backend up", block=self._block, detail=detail)
            else:
                log_event(log, logging.WARNING, "backend down", block=self._block, detail=detail)


class BackendProbe:
    """Polls the Backend's ``/health`` every ``interval`` seconds and reports each outcome
    (readiness); its own task, owned by the Pooler."""

    def __init__(
        self,
        check: Callable[[], Awaitable[Mapping[str, Any]]],
        report: Callable[[bool, str], None],
        *,
        timeout: float,
        interval: float = 5.0,
    ) -> None:
        self._check = check  # BackendClient.health
        self._report = report  # Observer.backend_polled
        self.timeout = max(0.5, min(timeout, interval))  # one poll never outlasts its period
        self.interval = interval

    async def run(self) -> None:
        timeout = self.timeout
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancel that
                # lands just as its call completes, and this loop then never ends (a hung shutdown)
                async with asyncio.timeout(timeout):
                    answer = await self._check()
                status = str(answer.get("status", ""))
                ok, detail = status in ("healthy", "ok"), f"status {status!r}"
            except TimeoutError:
                ok, detail = False, f"no answer to /health within {timeout:g} s"
            except Exception as exc:  # any failure of the check is an unhealthy Backend
                ok, detail = False, str(exc) or type(exc).__name__
            self._report(ok, detail)
            await asyncio.sleep(self.interval)


class Readiness:
    """``/health`` and ``/health/ready``: readiness parts and a summary. Cheap (no view, no
    I/O): the chain is polled by the monitor and the Backend by :class:`BackendProbe`."""

    def __init__(
        self,
        observer: Observer,
        *,
        chain_ok: Callable[[], bool],
        store: Store | None,
        unsaved: Callable[[], int],
        summary: Callable[[float], SummaryEvent],
        miners_online: Callable[[], int],
        workers: Callable[[], int],
        group_status: Status | None,
        name: str,
        clock: Callable[[], float],
    ) -> None:
        self._name = name  # POOLER_NAME: /health names the pool as the page does
        self._observer = observer  # the Backend's evidence and the store's last commit
        self._chain_ok = chain_ok  # the block monitor's last poll
        self._store = store  # None: nothing durable, always "ok"
        self._unsaved = unsaved  # records the runner still holds for a store that failed
        self._summary = summary
        self._miners_online = miners_online
        self._workers = workers  # open miner sockets
        self._group_status = group_status
        self._clock = clock
        self.started_at = clock()
        # the store was opened and not closed yet: set by the service's lifecycle
        self.store_open = False

    def health(self) -> dict[str, Any]:
        now = self._clock()
        rpc_ok = self._chain_ok()
        backend = self._observer.backend_check()
        backend_ok = backend == "ok"
        store = self._store
        store_ok = store is None or (
            self.store_open and self._observer.store_ok and not store.last_error and not self._unsaved()
        )
        checks = {
            "rpc": "ok" if rpc_ok else "down",
            "backend": backend,
            "store": "ok" if store_ok else "failing",
        }
        summary = self._summary(now)
        block = summary.block
        ready = rpc_ok and backend_ok and store_ok
        # Degraded: it still holds a block and serves miners while a dependency is away.
        status = "ok" if ready else ("degraded" if block is not None else "down")
        body: dict[str, Any] = {
            "name": self._name,
            "status": status,
            "checks": checks,
            "block": block,
            "phase": summary.phase,
            "minersOnline": self._miners_online(),
            "workers": self._workers(),
            "uptime": round(now - self.started_at, 3),
            "timestamp": int(now * 1000),
        }
        if self._group_status is not None:
            body["cluster"] = self._group_status()
        return body
