"""The Pooler's Prometheus metrics, in one registry the app serves at ``/metrics``.

``METRICS`` is the process-wide instance the runtime updates; tests make their own
``Metrics()`` (a fresh registry each) and read it back with prometheus-client's parser.
Names and label values are an interface: dashboards and alerts are built on them, so keep
them stable and keep ``docs/operations.md`` ("Metrics") in step with this file.

Usage from the runtime::

    from pooler.metrics import METRICS as M
    M.shares.labels(result="rejected", reason="stale").inc()
    with M.backend_latency.labels(op="work").time():
        ...
    M.block_phase.state("mining")

and from the Starlette app::

    body, content_type = metrics_response(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})
"""

from __future__ import annotations

import contextlib
from typing import Final

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from pooler.core.alerts import ALERT_KINDS
from protocol.errors import Code

# No ``*_created`` series: they double the exposition size, and Prometheus does not use them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library

# Label values. Enumerated here so the series exist (at 0) from the start and so callers
# and docs share one spelling.
PHASES: Final = ("idle", "planting", "mining", "submitting", "worked", "closed", "paused")
"""``pooler_block_phase`` states, the coordinator's phases (``pooler.core.block.Phase``): no
block seen yet; /plant in flight; miners hashing; /work due or in flight; work recorded; the
block's deadline passed, waiting for the next one; the farm is paused."""

SHARE_REASONS: Final = ("ok", *(code.reason for code in Code))
"""``reason`` label of ``pooler_shares_total``: ``ok`` for accepted shares, else the
protocol's rejection reason (stale, duplicate, low-zeros, invalid-hash, out-of-range ...)."""

BLOCK_OPS: Final = ("plant", "work", "harvest")
OP_OUTCOMES: Final = ("ok", "partial", "failed", "missed", "unknown")
"""``outcome`` of ``pooler_block_ops_total``: every farmer succeeded; some failed; the call
failed; the deadline passed before the call could succeed."""

BACKEND_OPS: Final = ("register", "plant", "work", "harvest", "health")
BACKEND_ERROR_KINDS: Final = ("unavailable", "rejected", "bad-response", "unknown-outcome")
"""network error, timeout, 5xx or 429 until the retries or the deadline ran out; another 4xx
(not retryable); a 2xx whose body is not the documented shape (other than plant/work/harvest and
register, whose unreadable 2xx are unknown outcomes); sent, answer unreadable (reconciled)."""

RPC_METHODS: Final = ("getLedgerEntries", "getLatestLedger", "getHealth", "getNetwork")
RPC_ERROR_KINDS: Final = ("timeout", "unavailable", "rpc-error", "bad-data")
"""timeout; connection refused, HTTP 429/5xx; a JSON-RPC error object; undecodable data."""

TRANSPORTS: Final = ("ws", "rest")
LIMITS: Final = (
    "frame-size",
    "rate",
    "connections-per-ip",
    "connections-total",
    "hello-timeout",
    "invalid-shares",
)
"""``limit`` of ``pooler_limit_hits_total``: which protective limit refused or closed a client.
(Idle sockets closed by the WebSocket keepalive and slow readers closed with 1013 are closed
by uvicorn and the outbox; they are not counted here.)"""

ALERT_WEBHOOK_OUTCOMES: Final = ("sent", "failed", "dropped")
"""``outcome`` of ``pooler_alert_webhook_total``: delivered (a 2xx); given up after the retries or
refused by the receiver; dropped unsent (the queue was full, or the Pooler was stopping).
``kind`` of ``pooler_alerts_total`` is ``pooler.core.alerts.ALERT_KINDS``."""

# Buckets, in seconds, around what each thing is expected to take.
_HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_FAST_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_DETECT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class Metrics:
    """Every metric of the Pooler, registered in ``self.registry``.

    ``process=False`` leaves out the process/platform/GC collectors (tests that only care
    about the Pooler's own series).
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        # One registry per instance: the app serves exactly this one, tests read their own.
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        self.info = Info(
            "pooler", "What this process is: version, pooler id, network, farm contract", registry=r
        )

        # -- miners
        self.miners_connected = Gauge(
            "pooler_miners_connected", "Miners with at least one connected worker", registry=r
        )
        self.workers_connected = Gauge(
            "pooler_workers_connected",
            "Connected workers: WebSocket connections (ws) and REST workers seen this block (rest)",
            ["transport"],
            registry=r,
        )
        self.shares = Counter(
            "pooler_shares", "Shares received, by result and reason", ["result", "reason"], registry=r
        )
        self.pool_hashrate = Gauge(
            "pooler_pool_hashes_per_second",
            "Estimated hash rate of all workers, from their shares",
            registry=r,
        )
        self.farmer_hashrate = Gauge(
            "pooler_farmer_hashes_per_second",
            "Estimated hash rate per farmer (all its miners' workers), from their shares",
            ["farmer_id"],
            registry=r,
        )

        # -- the block cycle
        self.block_index = Gauge("pooler_block_index", "FarmIndex of the current block", registry=r)
        self.block_timestamp = Gauge(
            "pooler_block_timestamp_seconds", "Ledger timestamp (unix) of the current block", registry=r
        )
        self.block_phase = Enum(
            "pooler_block_phase", "Phase of the current block cycle", states=list(PHASES), registry=r
        )
        self.block_ops = Counter(
            "pooler_block_ops",
            "plant/work/harvest calls for a block, by outcome",
            ["op", "outcome"],
            registry=r,
        )
        self.new_block_detect_latency = Histogram(
            "pooler_new_block_detect_seconds",
            "From the ledger close time of the block's first ledger to the monitor seeing the new index",
            buckets=_DETECT_BUCKETS,
            registry=r,
        )
        self.new_block_push_latency = Histogram(
            "pooler_new_block_push_seconds",
            "From the coordinator taking a new block to its jobs being queued on every connected socket",
            buckets=_FAST_BUCKETS,
            registry=r,
        )

        # -- dependencies
        self.backend_latency = Histogram(
            "pooler_backend_request_duration_seconds",
            "Backend calls (all attempts and backoff of one call), by operation",
            ["op"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        )
        self.backend_errors = Counter(
            "pooler_backend_errors",
            "Failed Backend requests, by operation and kind",
            ["op", "kind"],
            registry=r,
        )
        self.backend_up = Gauge(
            "pooler_backend_up", "1 if the last Backend request or health check succeeded", registry=r
        )
        self.rpc_latency = Histogram(
            "pooler_rpc_request_duration_seconds",
            "Soroban RPC requests, by JSON-RPC method",
            ["method"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        )
        self.rpc_errors = Counter(
            "pooler_rpc_errors",
            "Failed Soroban RPC requests, by method and kind",
            ["method", "kind"],
            registry=r,
        )
        self.rpc_up = Gauge("pooler_rpc_up", "1 if the last Soroban RPC poll succeeded", registry=r)
        self.store_commit_latency = Histogram(
            "pooler_store_commit_duration_seconds",
            "Time to make a batch of records durable",
            buckets=_FAST_BUCKETS,
            registry=r,
        )

        # -- the process
        self.loop_lag = Histogram(
            "pooler_event_loop_lag_seconds",
            "How late the event loop woke a periodic probe (its scheduling delay)",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.loop_lag_last = Gauge(
            "pooler_event_loop_lag_last_seconds", "The event-loop lag measured last", registry=r
        )
        self.limit_hits = Counter(
            "pooler_limit_hits", "Clients refused or closed by a protective limit", ["limit"], registry=r
        )

        # -- alerts (docs/operations.md, "Alerts")
        self.alerts = Counter("pooler_alerts", "Alerts raised, by kind", ["kind"], registry=r)
        self.alert_webhook = Counter(
            "pooler_alert_webhook",
            "Alerts for the webhook (ALERT_WEBHOOK_URL), by outcome: sent, failed, dropped",
            ["outcome"],
            registry=r,
        )

        # -- a group of instances (STORE=redis); absent series on a single Pooler stay at 0
        self.cluster_leader = Gauge(
            "pooler_cluster_leader",
            "1 while this instance holds the leader lease (runs the cycle)",
            registry=r,
        )
        self.cluster_epoch = Gauge(
            "pooler_cluster_epoch", "Epoch (fencing token) of this instance's last leader lease", registry=r
        )
        self.cluster_instances = Gauge(
            "pooler_cluster_instances",
            "Instances that shared a summary lately, this one included",
            registry=r,
        )
        self.cluster_events = Gauge(
            "pooler_cluster_events",
            "Since start: refusals of the fence, Backend refusals of an older fencing token, "
            "shares refused by the shared duplicate set, nonce chunks drawn, terms as leader",
            ["kind"],
            registry=r,
        )

        self._initialise_series()

    def _initialise_series(self) -> None:
        """Create every enumerated series at 0, so rates and alerts work before the first event."""
        for reason in SHARE_REASONS:
            self.shares.labels(result="accepted" if reason == "ok" else "rejected", reason=reason)
        for op in BLOCK_OPS:
            for outcome in OP_OUTCOMES:
                self.block_ops.labels(op=op, outcome=outcome)
        for op in BACKEND_OPS:
            self.backend_latency.labels(op=op)
            for kind in BACKEND_ERROR_KINDS:
                self.backend_errors.labels(op=op, kind=kind)
        for method in RPC_METHODS:
            self.rpc_latency.labels(method=method)
            for kind in RPC_ERROR_KINDS:
                self.rpc_errors.labels(method=method, kind=kind)
        for transport in TRANSPORTS:
            self.workers_connected.labels(transport=transport)
        for limit in LIMITS:
            self.limit_hits.labels(limit=limit)
        for kind in ALERT_KINDS:
            self.alerts.labels(kind=kind)
        for outcome in ALERT_WEBHOOK_OUTCOMES:
            self.alert_webhook.labels(outcome=outcome)
        self.block_phase.state("idle")

    # ------------------------------------------------------------ small helpers

    def describe(
        self, *, version: str, pooler_id: str, network: str, contract: str, instance: str = ""
    ) -> None:
        """Fill ``pooler_info`` (call once at start-up); ``instance``: a group member's name (its label
        tells the processes of one machine apart, PROCESSES > 1), absent on a single Pooler."""
        labels = {"version": version, "pooler_id": pooler_id, "network": network, "contract": contract}
        if instance:
            labels["instance"] = instance
        self.info.info(labels)

    def share(self, reason: str) -> None:
        """Count one share: ``reason`` is ``ok`` (accepted) or a protocol rejection reason."""
        self.shares.labels(result="accepted" if reason == "ok" else "rejected", reason=reason).inc()

    def record_loop_lag(self, seconds: float) -> None:
        """Record one event-loop lag probe (how late a timer fired)."""
        lag = max(seconds, 0.0)
        self.loop_lag.observe(lag)
        self.loop_lag_last.set(lag)

    def forget_farmer(self, farmer_id: str) -> None:
        """Drop a farmer's per-farmer series (it left), so the label set stays bounded."""
        with contextlib.suppress(KeyError):  # never had a series: nothing to drop
            self.farmer_hashrate.remove(farmer_id)


METRICS: Final = Metrics()
"""The process-wide metrics the runtime updates and ``/metrics`` serves."""


def metrics_response(accept: str | None = None, metrics: Metrics | None = None) -> tuple[bytes, str]:
    """The exposition body and its Content-Type, for ``GET /metrics``.

    ``accept`` is the request's Accept header: OpenMetrics when the scraper asks for it,
    the Prometheus text format otherwise. Pass the Content-Type as a raw header (Starlette's
    ``media_type`` would append a second charset).
    """
    encoder, content_type = choose_encoder(accept or "")
    return encoder((metrics or METRICS).registry), content_type


__all__ = [
    "ALERT_WEBHOOK_OUTCOMES",
    "BACKEND_ERROR_KINDS",
    "BACKEND_OPS",
    "BLOCK_OPS",
    "LIMITS",
    "METRICS",
    "OP_OUTCOMES",
    "PHASES",
    "RPC_ERROR_KINDS",
    "RPC_METHODS",
    "SHARE_REASONS",
    "TRANSPORTS",
    "Metrics",
    "metrics_response",
]
