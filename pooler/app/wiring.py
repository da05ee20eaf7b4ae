"""The one factory: a single Pooler's parts, or a group member's (``options.cluster``), built once.

:func:`build` makes every part in dependency order and hands back a :class:`Wiring`; nothing
is built and then replaced. What differs between the two shapes is decided in one place:

    part                      single instance                   group member (STORE=redis)
    hub                       EventHub                          ClusterHub (the group's summary)
    store                     SqliteStore, or none              RedisStore
    coordinator               Coordinator                       nonce chunks from Redis, credit records
    the runner's Backend      the BackendClient                 FollowerBackend (the leader calls)
    after a commit            -                                 the shared duplicate check (review)
    the monitor's sink        the inbox                         the cluster gate
    REST jobs of others       none                              read from Redis

The inbox is made first, so whatever feeds the coordinator (the monitor, the web handlers, a
group's gate and membership) holds only it, never the runner. The web handlers get narrow
ports (pooler/web/ports.py) implemented by the small adapters below and in sockets.py,
guard.py and observe.py; the service (service.py) only starts and stops what is built here.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.applications import Starlette

from pooler import __version__
from pooler.app.alerts import Alerts
from pooler.app.live import LiveDesk
from pooler.app.observe import BackendProbe, ObservedMonitor, Observer, Readiness
from pooler.app.options import PoolerOptions
from pooler.app.sockets import ConnectionLimits, LiveSockets, SocketDesk
from pooler.app.stats import StatsDesk
from pooler.backend import BackendClient
from pooler.chain.backoff import Backoff
from pooler.cluster.fence import FencedBackend
from pooler.cluster.node import ClusterNode, GroupResources
from pooler.core.alerts import Alert, Resolved, WorkerSilent
from pooler.core.config import CoreConfig
from pooler.core.coordinator import Coordinator
from pooler.core.dashboard_events import SummaryEvent
from pooler.core.effects import Effect
from pooler.core.events import IssuedJob, MinerJoined, MinerLeft
from pooler.metrics import Metrics, metrics_response
from pooler.miners import MinerRecord, MinerRegistry
from pooler.runtime.event_codec import summary_data
from pooler.runtime.hub import EventHub, Subscription
from pooler.runtime.inbox import Inbox
from pooler.runtime.runner import BackendPort, Runner
from pooler.runtime.webhook import AlertWebhook, RetryPolicy
from pooler.stats.history import BLOCKS_KEEP, KEEP, MEMORY, History
from pooler.store import Store
from pooler.store.sqlite import SqliteStore
from pooler.web.app import create_app
from pooler.web.gate import ConnectionGate
from pooler.web.ports import EventSink, WebPorts, WebSettings

# blocks the SQLite file keeps beyond the harvest retention (288 + 12 = 300 in production: the
# restore window); older rows are pruned as new blocks come (docs/storage.md, "Bounds")
STORE_SPARE_BLOCKS = 12


@dataclass(frozen=True, slots=True)
class Wiring:
    """Every part of one Pooler, built by :func:`build`; the service runs them."""

    options: PoolerOptions
    metrics: Metrics  # this Pooler's registry: /metrics serves exactly it
    hub: EventHub  # what its dashboards see
    registry: MinerRegistry
    core: Coordinator  # the miner-serving coordinator (the only one of a single Pooler)
    store: Store | None  # None: nothing kept across restarts
    inbox: Inbox  # the core's inbox: everything that feeds it holds this
    observer: Observer
    alerts: Alerts  # where every alert goes (dashboard, metrics, log, webhook)
    webhook: AlertWebhook | None  # ALERT_WEBHOOK_URL's sender; None when it is unset
    backend: BackendClient  # registrations, health polls; a single Pooler's cycle calls too
    probe: BackendProbe
    runner: Runner
    history: History  # share buckets and block summaries (the stats API's aggregates)
    monitor: ObservedMonitor
    group: ClusterNode | None  # a group member's cluster node; None for a single Pooler
    sockets: LiveSockets
    connections: ConnectionLimits
    gate: ConnectionGate  # every connection, pending (not authenticated) or settled
    readiness: Readiness
    miners: MinerAccounts
    app: Starlette


@dataclass(frozen=True, slots=True)
class _Shape:
    """What differs between a single Pooler and a group member (the table in the module docstring)."""

    hub: EventHub
    store: Store | None
    core: Coordinator
    runner_backend: BackendPort | None  # None: the BackendClient itself (built after the observer)
    review: Callable[[list[Effect]], list[Effect]] | None
    group: ClusterNode | None


def build(options: PoolerOptions, *, clock: Callable[[], float]) -> Wiring:
    """A single Pooler, or one member of a group when ``options.cluster`` is set."""
    # A per-start job-id prefix: a job id from before a restart can never name a job of this run
    # (random: two starts within one clock second must differ too).
    core_config = dataclasses.replace(options.core, job_id_prefix=f"{secrets.token_hex(3)}.")
    inbox = Inbox()
    registry = MinerRegistry(options.pooler_id)
    shape = (
        _single(options, core_config, clock)
        if options.cluster is None
        else _member(options, core_config, inbox, registry, clock)
    )
    group = shape.group
    metrics = Metrics()
    metrics.describe(
        version=__version__,
        pooler_id=options.pooler_id,
        network=options.network,
        contract=options.contract_id,
        instance=options.cluster.instance_id if options.cluster is not None else "",
    )
    limits = LimitCounter(metrics)
    sockets = LiveSockets()
    connections = ConnectionLimits(options.max_connections, options.max_connections_per_ip)
    # every TCP connection; max_open becomes the descriptor budget when the server starts (service.py)
    gate = ConnectionGate(
        options.max_pending_connections,
        options.max_connections_per_ip,
        max_open=1 << 30,
        on_refuse=limits.hit,
    )
    webhook = _webhook(options, metrics, clock)
    alerts = Alerts(
        metrics, shape.hub.publish, sink=webhook, down_after=options.alerts.down_after, clock=clock
    )
    observer = Observer(
        metrics,
        view=shape.core.view,
        publish=shape.hub.publish,
        group_status=group.status if group is not None else None,
        alerts=alerts,
        interval=options.metrics_interval,
        snapshot_interval=options.snapshot_interval,
        clock=clock,
    )
    backend = BackendClient(
        options.backend_url,
        options.backend_timeout,
        options.retry_attempts,
        observe=observer.backend_call,
    )
    # fed by the runner with every batch; its records commit with the batch's own
    # (in a group the block summaries are written by the leader's cycle runner: cycle_feed below)
    # With SQLite only the recent buckets stay in memory (MEMORY: the "now" figures), older parts
    # of a range are read from it (StatsDesk); in a group (Redis) all of the retention stays in
    # memory: Redis keeps a bucket as one hash of every series, with no per-series range read.
    # Block summaries likewise: with SQLite those of its block window (keep_blocks: every block a
    # harvest may still write), older pages read from it;
    # otherwise BLOCKS_KEEP (30 days of blocks, ~300 B per farmer and block: docs/stats.md)
    reader = shape.store if isinstance(shape.store, SqliteStore) else None
    history = History(
        shape.core.share_source,
        durable=shape.store is not None,
        writes_blocks=group is None,
        memory=MEMORY if reader is not None else KEEP,
        blocks_memory=reader.keep_blocks if reader is not None else BLOCKS_KEEP,
        online=shape.core.online,  # the pool's miners / workers online per bucket (sampled)
    )
    runner = Runner(
        shape.core,
        shape.runner_backend or backend,
        shape.hub,
        store=shape.store,
        clock=clock,
        inbox=inbox,
        outbox_size=options.outbox_size,
        review=shape.review,
        observer=observer,
        # in a group the leader's cycle runner raises the cycle's alerts; this one only its workers'
        alert=alerts.raise_alert if group is None else _workers_only(alerts.raise_alert),
        watch_pails=lambda block, farmers: monitor.watch(block, farmers),
        history=history,
        read_pails=lambda block, farmers: monitor.read_pails(block, farmers),
    )
    monitor = ObservedMonitor(
        options.rpc_url,
        options.contract_id,
        emit=group.emit if group is not None else inbox.post,
        poll_interval=options.poll_interval,
        metrics=metrics,
        on_poll=alerts.rpc_polled,
    )
    if group is not None:  # the leader's cycle runner raises the cycle's alerts and watches pails
        group.leadership.alert = alerts.raise_alert
        group.leadership.watch_pails = monitor.watch
        group.leadership.read_pails = monitor.read_pails
        group.leadership.history = history.cycle_feed()
    probe = BackendProbe(
        backend.health, observer.backend_polled, timeout=backend.timeout, interval=options.health_interval
    )
    readiness = Readiness(
        observer,
        chain_ok=lambda: monitor.healthy,
        store=shape.store,
        unsaved=lambda: runner.unsaved,
        summary=shape.core.summary,
        miners_online=sockets.online,
        workers=lambda: connections.open,
        group_status=group.status if group is not None else None,
        name=options.pooler_name,
        clock=clock,
    )
    miners = MinerAccounts(registry, backend, shape.store, inbox, group)
    ports = WebPorts(
        miners=miners,
        admission=connections,
        sockets=SocketDesk(runner, sockets),
        inbox=inbox,
        requests=runner,
        jobs=group if group is not None else NoSharedJobs(),
        limits=limits,
        events=DashboardFeed(shape.hub, shape.core.summary, clock),
        health=readiness,
        metrics=MetricsScrape(metrics, observer) if options.metrics_enabled else None,
        stats=StatsDesk(history, clock, reader),
        live=LiveDesk(shape.core.view, history, clock),
    )
    app = create_app(ports, web_settings(options))
    return Wiring(
        options=options,
        metrics=metrics,
        hub=shape.hub,
        registry=registry,
        core=shape.core,
        store=shape.store,
        inbox=inbox,
        observer=observer,
        alerts=alerts,
        webhook=webhook,
        backend=backend,
        probe=probe,
        runner=runner,
        history=history,
        monitor=monitor,
        group=group,
        sockets=sockets,
        connections=connections,
        gate=gate,
        readiness=readiness,
        miners=miners,
        app=app,
    )


def _workers_only(raise_alert: Callable[[Alert], None]) -> Callable[[Alert], None]:
    """A group member's miner-serving core: its own workers' alerts (the cycle's are the leader's)."""

    def only(alert: Alert) -> None:
        if isinstance(alert, WorkerSilent) or (
            isinstance(alert, Resolved) and isinstance(alert.alert, WorkerSilent)
        ):
            raise_alert(alert)

    return only


def _webhook(options: PoolerOptions, metrics: Metrics, clock: Callable[[], float]) -> AlertWebhook | None:
    """The alert webhook when ``ALERT_WEBHOOK_URL`` is set; its body names this Pooler."""
    alerting = options.alerts
    if alerting.webhook_url is None:
        return None
    source: dict[str, object] = {"id": options.pooler_id, "name": options.pooler_name}
    if options.cluster is not None:
        source["instance"] = options.cluster.instance_id  # each instance watches its own dependencies
    counter = metrics.alert_webhook
    return AlertWebhook(
        alerting.webhook_url,
        source=source,
        timeout=alerting.webhook_timeout,
        queue_size=alerting.webhook_queue,
        retry=RetryPolicy(
            attempts=alerting.webhook_attempts,
            window=alerting.webhook_retry_window,
            backoff=Backoff(alerting.webhook_backoff_base, alerting.webhook_backoff_cap),
        ),
        on_outcome=lambda outcome: counter.labels(outcome=outcome).inc(),
        clock=clock,
    )


def _single(options: PoolerOptions, core_config: CoreConfig, clock: Callable[[], float]) -> _Shape:
    # the block window of the file: every block a harvest may still need, and a few more
    keep = options.core.harvest_retention_blocks + STORE_SPARE_BLOCKS
    store = SqliteStore(options.db_path, clock=clock, keep_blocks=keep) if options.db_path else None
    # block-broadcast (standing slots, one frame per new block) is granted by a single instance only
    core = Coordinator(core_config, block_broadcast=True)
    return _Shape(EventHub(clock), store, core, None, None, None)


def _member(
    options: PoolerOptions,
    core_config: CoreConfig,
    inbox: Inbox,
    registry: MinerRegistry,
    clock: Callable[[], float],
) -> _Shape:
    cluster = options.cluster
    assert cluster is not None
    group = GroupResources.connect(cluster, options.core, local=inbox.post, clock=clock)
    instance = cluster.instance_id
    # The two coordinators of a member (pooler/cluster/node.py). Job ids carry the instance name
    # (unique in the group); the miner-serving one shares its REST jobs and credits through Redis.
    local_config = dataclasses.replace(
        core_config, job_id_prefix=f"{instance}.{core_config.job_id_prefix}", share_rest_jobs=True
    )
    core = Coordinator(local_config, nonces=group.allocator, report_credits=True)

    def cycle_core(epoch: int) -> Coordinator:
        """A term's cycle coordinator: the leader plants, works and harvests with it."""
        # farmer_idle=inf: the leader sees no other instance's sockets or shares, so it plants the
        # farmer of every joined miner (one that left is still left out)
        config = dataclasses.replace(
            options.core, job_id_prefix=f"{instance}.L{epoch}.", farmer_idle=math.inf
        )
        return Coordinator(config, nonces=group.allocator)

    node = ClusterNode(
        group,
        registry=registry,
        fenced=FencedBackend(
            options.backend_url, options.backend_timeout, options.retry_attempts, group.lease
        ),
        make_cycle_core=cycle_core,
        job_prefix=local_config.job_id_prefix,
        summary_interval=options.core.summary_interval,
        clock=clock,
    )
    return _Shape(group.hub, group.store, core, group.follower, group.store.review, node)


def web_settings(options: PoolerOptions) -> WebSettings:
    return WebSettings(
        max_frame=options.max_frame,
        hello_timeout=options.hello_timeout,
        slow_client_grace=options.slow_client_grace,
        messages_per_second=options.messages_per_second,
        message_burst=options.message_burst,
        default_stake_percentage=options.default_stake_percentage,
        cors_origins=options.cors_origins,
        pooler_name=options.pooler_name,
        admin_token=options.admin_token,
        event_stream_backlog=options.event_stream_backlog,
        registrations_per_ip_per_hour=options.registrations_per_ip_per_hour,
        registrations_per_hour=options.registrations_per_hour,
        auth_failures_allowed=options.auth_failures_allowed,
        auth_backoff=options.auth_backoff,
    )


# ---------------------------------------------------------------- the web's ports


class GroupMiners(Protocol):
    """What registration and token checks need of a group member (the cluster node)."""

    async def admit_unknown(self, token: str) -> MinerRecord | None: ...

    async def on_registered(self, record: MinerRecord) -> None: ...


class MinerAccounts:
    """The web's ``Miners`` port: token checks, registration, leaving."""

    def __init__(
        self,
        registry: MinerRegistry,
        backend: BackendClient,
        store: Store | None,
        inbox: EventSink,
        group: GroupMiners | None,
    ) -> None:
        self._registry = registry
        self._backend = backend  # registers the farmer
        self._store = store  # a miner is durable before its token works
        self._inbox = inbox
        self._group = group  # None: a single Pooler

    async def register(
        self, name: str, stake_percentage: float, metadata: Mapping[str, Any] | None
    ) -> tuple[MinerRecord, str]:
        record, token = await self._registry.register(self._backend, name, stake_percentage, metadata)
        if self._store is not None:
            # durable first: a token we could forget must not work, and in a group a miner known
            # here but not yet in Redis would read as revoked elsewhere to a resync of the miners
            await self._store.save_miner(record)
        self._registry.add(record)
        if self._group is not None:
            await self._group.on_registered(record)
        await self._inbox.submit(joined(record))
        return record, token

    async def authenticate(self, token: str) -> MinerRecord | None:
        """The miner of ``token``; in a group, also one registered on another instance a moment
        ago whose announcement has not arrived yet."""
        miner = self._registry.authenticate(token)
        if miner is None and self._group is not None:
            miner = await self._group.admit_unknown(token)
        return miner

    async def remove(self, miner_id: str) -> None:
        self._registry.revoke(miner_id)
        if self._store is not None:
            await self._store.revoke_miner(miner_id)
        await self._inbox.submit(MinerLeft(miner_id))


class NoSharedJobs:
    """A single Pooler's ``RestJobs``: every job is its own coordinator's."""

    async def issued_job(self, job_id: str) -> IssuedJob | None:
        return None


class LimitCounter:
    """The web's ``LimitHits`` port: ``pooler_limit_hits_total{limit}``."""

    __slots__ = ("_metrics",)

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def hit(self, limit: str) -> None:
        self._metrics.limit_hits.labels(limit=limit).inc()


class DashboardFeed:
    """The web's ``EventFeed`` port: the hub's stream, opened with the present summary."""

    __slots__ = ("_clock", "_hub", "_summary")

    def __init__(
        self, hub: EventHub, summary: Callable[[float], SummaryEvent], clock: Callable[[], float]
    ) -> None:
        self._hub = hub
        self._summary = summary
        self._clock = clock

    def subscribe(self) -> Subscription:
        return self._hub.subscribe()

    def snapshot_frame(self) -> str:
        return self._hub.snapshot_frame(summary_data(self._summary(self._clock())))


class MetricsScrape:
    """The web's ``MetricsPage`` port: the shares counted since the last tick, then the exposition."""

    __slots__ = ("_metrics", "_observer")

    def __init__(self, metrics: Metrics, observer: Observer) -> None:
        self._metrics = metrics
        self._observer = observer

    def scrape(self, accept: str | None) -> tuple[bytes, str]:
        self._observer.flush()
        return metrics_response(accept, self._metrics)


def joined(record: MinerRecord) -> MinerJoined:
    return MinerJoined(record.miner_id, record.farmer_id, record.farmer, record.name)
