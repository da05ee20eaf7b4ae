"""The service's options, derived from :class:`pooler.config.Settings` (the one table of settings).

One configuration path: ``Settings`` -> :func:`pooler_options` -> :class:`PoolerOptions`, whose
``core`` (:class:`~pooler.core.config.CoreConfig`, by :func:`core_config`), ``cluster``
(:class:`~pooler.cluster.options.ClusterOptions`, by :func:`cluster_options`) and ``alerts``
(:class:`AlertOptions`, by :func:`alert_options`) come from the same ``Settings``. None of them
has defaults of its own; every value is

- a setting (an operator sets it; its default and meaning are in the Settings table), or
- a field of :class:`Tuning`: a fixed value that is not a setting, given once in
  :data:`TUNING` (tests and benchmarks pass a ``dataclasses.replace`` of it), or
- an explicit argument of the derivation: where the chain and the Backend are
  (:class:`Endpoints`, the settings' own or an in-process devnet's) and ``gc_freeze``.

Milliseconds become seconds here, once. ``CoreConfig.job_id_prefix`` and ``share_rest_jobs``
start empty/false: they are per-process wiring that the Pooler (a per-start prefix) and the
cluster node (instance prefix, shared REST jobs) set on the coordinator they build.
"""

from __future__ import annotations

from dataclasses import dataclass

from pooler.cluster.options import ClusterOptions, default_instance_id
from pooler.config import Settings
from pooler.core.config import CoreConfig


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the chain RPC, the Backend and the farm contract are."""

    rpc_url: str
    backend_url: str
    contract_id: str

    @classmethod
    def configured(cls, settings: Settings) -> Endpoints | None:
        """``STELLAR_RPC_URL``, ``BACKEND_API_URL`` and ``KALE_CONTRACT_ID``; None when a URL is
        unset (on the devnet, ``pooler serve`` then starts one and uses its endpoints)."""
        if settings.stellar_rpc_url is None or settings.backend_api_url is None:
            return None
        return cls(settings.stellar_rpc_url, settings.backend_api_url, settings.kale_contract_id)


@dataclass(frozen=True, slots=True)
class Tuning:
    """Values the derived options need that are not settings (an operator has no reason to
    change them; one that should becomes a Settings field instead). Seconds unless said."""

    # -- the coordinator (CoreConfig; docs/coordinator.md)
    late_plant_retry: float  # delay before trying a failed late plant again
    backend_retry_delay: float  # delay before re-sending a failed /work while the deadline allows
    harvest_retention_blocks: int  # blocks a worked block stays harvestable (TEMPORARY entries: ~24 h)
    harvest_retry_delay: float  # first delay before re-trying a failed /harvest (doubles, capped)
    local_search_lead: float  # before workAt: planted farmers without a share get a local search
    local_search_max_hashes: int  # bound of one local search
    vardiff_window: float  # seconds of shares a retarget looks at
    vardiff_factor: float  # retarget only when the rate is off by more than this (one nibble = 16x)
    vardiff_grace: float  # after a change, shares meeting the previous difficulty count this long
    range_min: int  # nonces: smallest range of one job
    range_max: int  # nonces: largest range of one job
    range_default: int  # nonces: a job's range while the worker's hashrate is unknown
    range_seconds: float  # a range lasts at least this long of hashing, even near a block's end
    max_jobs_per_worker: int  # jobs kept valid per worker within a block; older ones become stale
    history_blocks: int  # blocks kept for the view (statuses, rewards)
    # -- the service (PoolerOptions)
    slow_client_grace: float  # a peer that fell behind gets this long to take its close frame
    shutdown_timeout: float  # bound of a graceful stop (docs/storage.md)
    metrics_interval: float  # loop-lag probe and share-counter flush period
    snapshot_interval: float  # gauges from the coordinator's view
    # -- a group on Redis (ClusterOptions; docs/scale-out.md)
    lease_drift: float  # the leader stops believing in its lease this fraction before it expires
    key_prefix: str  # prefix of every Redis key (separates pools sharing one Redis)
    chunk_bits: int  # nonces per INCRBY'd chunk: 2**chunk_bits per (block, farmer) refill
    redis_timeout: float  # socket timeout of every Redis command: a hung Redis is a down Redis
    # -- the alert webhook (AlertOptions; docs/operations.md, "Alerts")
    alert_webhook_timeout: float  # bound of one POST
    alert_webhook_queue: int  # alerts waiting for the webhook; a full queue drops its oldest
    alert_webhook_attempts: int  # POSTs of one alert at most (the first and the retries)
    alert_webhook_retry_window: float  # no retry of an alert starts later than this after its first POST
    alert_webhook_backoff_base: float  # first delay between attempts (doubles, with jitter)
    alert_webhook_backoff_cap: float  # longest delay between attempts


TUNING = Tuning(
    late_plant_retry=10.0,
    backend_retry_delay=3.0,
    harvest_retention_blocks=288,  # 288 blocks of 300 s = 24 h
    harvest_retry_delay=30.0,
    local_search_lead=20.0,
    local_search_max_hashes=2_000_000,
    vardiff_window=60.0,
    vardiff_factor=4.0,  # below 4 it would oscillate
    vardiff_grace=15.0,
    range_min=1 << 20,
    range_max=1 << 40,
    range_default=1 << 32,
    range_seconds=30.0,
    max_jobs_per_worker=64,
    history_blocks=50,
    slow_client_grace=5.0,
    shutdown_timeout=5.0,
    metrics_interval=1.0,
    snapshot_interval=5.0,
    lease_drift=0.1,
    key_prefix="kp",
    chunk_bits=44,  # 16 of the largest ranges a job can have
    redis_timeout=2.0,
    alert_webhook_timeout=5.0,
    alert_webhook_queue=256,
    alert_webhook_attempts=5,
    alert_webhook_retry_window=60.0,
    alert_webhook_backoff_base=1.0,
    alert_webhook_backoff_cap=15.0,
)
"""The production values of :class:`Tuning` (the only place they are written)."""


@dataclass(frozen=True, slots=True)
class AlertOptions:
    """Alerts (pooler/app/alerts.py) and their webhook (pooler/runtime/webhook.py). Seconds."""

    webhook_url: str | None  # ALERT_WEBHOOK_URL; None: no webhook
    down_after: float  # the Backend or the RPC down this long raises an alert
    webhook_timeout: float
    webhook_queue: int
    webhook_attempts: int
    webhook_retry_window: float
    webhook_backoff_base: float
    webhook_backoff_cap: float


@dataclass(frozen=True, slots=True)
class PoolerOptions:
    """Everything the running service needs; built by :func:`pooler_options` only."""

    backend_url: str
    rpc_url: str
    contract_id: str
    pooler_id: str  # poolerId at the Backend; also the metrics' pooler_id label
    pooler_name: str  # the display name: the dashboard page and /health show it
    host: str
    port: int
    # PROCESSES > 1: this process is one of several on ``port`` (pooler/supervisor.py); it makes its
    # own listening socket with SO_REUSEPORT, so the kernel spreads connections over the processes
    reuse_port: bool
    backend_timeout: float  # seconds, one Backend request
    retry_attempts: int
    poll_interval: float  # seconds between block monitor reads
    core: CoreConfig
    max_frame: int  # bytes
    hello_timeout: float
    messages_per_second: float
    message_burst: float
    max_connections: int
    max_connections_per_ip: int  # miner sockets per address, and unauthenticated connections per address
    http_read_timeout: float  # seconds a connection gets to send a whole request (headers and body)
    max_pending_connections: int  # connections open that have not authenticated
    fd_reserve: int  # file descriptors kept for the Pooler's own work (store, search, Backend, RPC)
    event_stream_backlog: int  # events waiting for one dashboard subscriber before it is dropped
    registrations_per_ip_per_hour: int  # 0: no limit
    registrations_per_hour: int  # 0: no limit
    auth_failures_allowed: int  # wrong tokens from one address before it is backed off
    auth_backoff: float  # seconds, the first back-off (doubles)
    outbox_size: int
    slow_client_grace: float  # seconds a peer that fell behind gets to take its close frame
    default_stake_percentage: float
    miner_socket: str  # "asgi" or "picows": who frames /ws/miner (pooler/web/picows_ws.py)
    ws_ping_interval: float
    ws_ping_timeout: float  # no pong this long after a ping: closed (IDLE_TIMEOUT - interval)
    shutdown_timeout: float
    db_path: str | None  # SQLite file; None keeps nothing across restarts (STORE=memory, or Redis)
    # Move everything allocated before serving (modules, stellar-sdk's XDR classes: ~90k objects) out
    # of the cyclic GC's reach, so a full collection scans only what sockets and rounds allocate.
    # For a process that runs one Pooler (pooler serve, the benchmarks); not for test sessions that
    # start many, where it would keep their garbage for good.
    gc_freeze: bool
    cluster: ClusterOptions | None  # STORE=redis: one instance of a group (pooler/cluster)
    network: str  # for pooler_info only
    cors_origins: tuple[str, ...]  # browser origins besides the dashboard's own ("*" = any)
    metrics_enabled: bool  # serve /metrics
    metrics_interval: float  # loop-lag probe and share-counter flush period
    snapshot_interval: float  # gauges from Coordinator.view
    health_interval: float  # Backend health polls (readiness)
    admin_token: str | None  # set: POST /miner/register needs it as a bearer token
    alerts: AlertOptions


def core_config(settings: Settings, tuning: Tuning) -> CoreConfig:
    """The coordinator's configuration (seconds) from the settings and the tuning."""
    return CoreConfig(
        pooler_id=settings.pooler_id,
        block_interval=float(settings.block_interval_seconds),
        work_delay=settings.optimal_work_delay_ms / 1000,
        safety_margin=settings.work_safety_margin_ms / 1000,
        late_plant_grace=settings.late_plant_grace_ms / 1000,
        late_plant_retry=tuning.late_plant_retry,
        max_farmers_capacity=settings.max_farmers_capacity,
        backend_retry_delay=tuning.backend_retry_delay,
        harvest_retention_blocks=tuning.harvest_retention_blocks,
        harvest_retry_delay=tuning.harvest_retry_delay,
        local_search_lead=tuning.local_search_lead,
        local_search_max_hashes=tuning.local_search_max_hashes,
        share_zeros_initial=settings.share_zeros_initial,
        share_zeros_min=settings.share_zeros_min,
        share_zeros_max=settings.share_zeros_max,
        vardiff_target_interval=settings.vardiff_target_seconds,
        vardiff_window=tuning.vardiff_window,
        vardiff_factor=tuning.vardiff_factor,
        vardiff_grace=tuning.vardiff_grace,
        range_min=tuning.range_min,
        range_max=tuning.range_max,
        range_default=tuning.range_default,
        range_seconds=tuning.range_seconds,
        max_jobs_per_worker=tuning.max_jobs_per_worker,
        rest_worker_idle=settings.work_timeout_minutes * 60.0,
        farmer_idle=settings.farmer_idle_minutes * 60.0,
        summary_interval=settings.summary_interval_ms / 1000,
        history_blocks=tuning.history_blocks,
        invalid_share_window=settings.invalid_share_window,
        invalid_share_ratio=settings.invalid_share_ratio,
        invalid_share_cooldown=settings.invalid_share_cooldown_ms / 1000,
        stake_alert_lead=settings.alert_stake_lead_ms / 1000,
        worker_silent_after=settings.alert_worker_silent_minutes * 60.0,
        job_id_prefix="",  # set per start by the Pooler (and the cluster node)
        share_rest_jobs=False,  # set by the cluster node on its miner-serving coordinator
    )


def alert_options(settings: Settings, tuning: Tuning) -> AlertOptions:
    """Where alerts go and when the Backend or the RPC counts as down."""
    return AlertOptions(
        webhook_url=settings.alert_webhook_url,
        down_after=settings.alert_down_after_ms / 1000,
        webhook_timeout=tuning.alert_webhook_timeout,
        webhook_queue=tuning.alert_webhook_queue,
        webhook_attempts=tuning.alert_webhook_attempts,
        webhook_retry_window=tuning.alert_webhook_retry_window,
        webhook_backoff_base=tuning.alert_webhook_backoff_base,
        webhook_backoff_cap=tuning.alert_webhook_backoff_cap,
    )


def cluster_options(settings: Settings, tuning: Tuning) -> ClusterOptions | None:
    """This instance's part in a group (``STORE=redis``); None for a single instance.

    Raises :class:`~pooler.errors.ConfigError` if a value is out of range (the settings'
    parsers already refuse those when read from the environment)."""
    if settings.store != "redis" or settings.redis_url is None:
        return None
    return ClusterOptions(
        redis_url=settings.redis_url,
        instance_id=settings.pooler_instance_id or default_instance_id(),
        lease_ttl=settings.leader_lease_ms / 1000,
        drift=tuning.lease_drift,
        key_prefix=tuning.key_prefix,
        chunk_bits=tuning.chunk_bits,
        redis_timeout=tuning.redis_timeout,
    )


def pooler_options(
    settings: Settings, endpoints: Endpoints, *, tuning: Tuning, gc_freeze: bool
) -> PoolerOptions:
    """The service's options: ``settings`` through ``tuning``, talking to ``endpoints``.

    ``gc_freeze``: true in a process that runs one Pooler (see :attr:`PoolerOptions.gc_freeze`).
    """
    return PoolerOptions(
        backend_url=endpoints.backend_url,
        rpc_url=endpoints.rpc_url,
        contract_id=endpoints.contract_id,
        pooler_id=settings.pooler_id,
        pooler_name=settings.pooler_name,
        host=settings.host,
        port=settings.port,
        reuse_port=settings.processes > 1,
        backend_timeout=settings.backend_timeout_ms / 1000,
        retry_attempts=settings.retry_attempts,
        poll_interval=settings.block_poll_interval_ms / 1000,
        core=core_config(settings, tuning),
        max_frame=settings.max_frame_bytes,
        hello_timeout=settings.hello_timeout_ms / 1000,
        messages_per_second=settings.messages_per_second,
        message_burst=float(settings.messages_burst),
        max_connections=settings.max_concurrent_miners,
        max_connections_per_ip=settings.max_connections_per_ip,
        http_read_timeout=settings.http_read_timeout_ms / 1000,
        max_pending_connections=settings.max_pending_connections,
        fd_reserve=settings.fd_reserve,
        event_stream_backlog=settings.event_stream_backlog,
        registrations_per_ip_per_hour=settings.registrations_per_ip_per_hour,
        registrations_per_hour=settings.registrations_per_hour,
        auth_failures_allowed=settings.auth_failures_allowed,
        auth_backoff=settings.auth_backoff_ms / 1000,
        outbox_size=settings.outbox_size,
        slow_client_grace=tuning.slow_client_grace,
        default_stake_percentage=settings.stake_percentage,
        miner_socket=settings.miner_socket,
        ws_ping_interval=settings.ws_ping_interval_ms / 1000,
        ws_ping_timeout=(settings.idle_timeout_ms - settings.ws_ping_interval_ms) / 1000,
        shutdown_timeout=tuning.shutdown_timeout,
        db_path=settings.pooler_db if settings.store == "sqlite" else None,
        gc_freeze=gc_freeze,
        cluster=cluster_options(settings, tuning),
        network=settings.stellar_network,
        cors_origins=settings.cors_origins,
        metrics_enabled=settings.metrics_enabled,
        metrics_interval=tuning.metrics_interval,
        snapshot_interval=tuning.snapshot_interval,
        health_interval=settings.health_interval_ms / 1000,
        admin_token=settings.admin_token,
        alerts=alert_options(settings, tuning),
    )
