"""The service's options, derived from :class:`pooler.config.Settings` (the one table of settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pooler.cluster.options import ClusterOptions
from pooler.config import Settings
from pooler.core.config import CoreConfig


@dataclass(frozen=True, slots=True)
class PoolerOptions:
    """Everything the running service needs; ``pooler serve`` fills it from Settings."""

    backend_url: str
    rpc_url: str
    contract_id: str
    pooler_id: str = "kale-pooler"
    pooler_name: str = "KALE pool"
    host: str = "127.0.0.1"
    port: int = 3001
    backend_timeout: float = 10.0
    retry_attempts: int = 3
    poll_interval: float = 1.0
    core: CoreConfig = field(default_factory=lambda: CoreConfig(pooler_id="kale-pooler"))
    max_frame: int = 4096
    hello_timeout: float = 10.0
    messages_per_second: float = 200.0
    message_burst: float = 400.0
    max_connections: int = 20_000
    max_connections_per_ip: int = 20_000
    outbox_size: int = 256
    slow_client_grace: float = 5.0  # seconds a peer that fell behind gets to take its close frame
    default_stake_percentage: float = 0.1
    ws_ping_interval: float | None = 20.0
    ws_ping_timeout: float | None = 40.0  # no pong this long after a ping: closed (IDLE_TIMEOUT - interval)
    shutdown_timeout: float = 5.0
    db_path: str | None = None  # SQLite file; None keeps nothing across restarts (tests, the bare demo)
    # Move everything allocated before serving (modules, stellar-sdk's XDR classes: ~90k objects) out
    # of the cyclic GC's reach, so a full collection scans only what sockets and rounds allocate.
    # For a process that runs one Pooler (pooler serve, the benchmarks); not for test sessions that
    # start many, where it would keep their garbage for good.
    gc_freeze: bool = False
    cluster: ClusterOptions | None = None  # STORE=redis: one instance of a group (pooler/cluster)
    network: str = "devnet"  # for pooler_info only
    cors_origins: tuple[str, ...] = ()  # browser origins besides the dashboard's own ("*" = any)
    metrics_enabled: bool = True  # serve /metrics
    metrics_interval: float = 1.0  # loop-lag probe and share-counter flush period
    snapshot_interval: float = 5.0  # gauges from Coordinator.view
    health_interval: float = 5.0  # Backend health polls (readiness)
    invalid_share_window: int = 50  # shares per window of the invalid-share guard
    invalid_share_ratio: float = 0.9  # a window with more invalid shares than this is a strike
    invalid_share_cooldown: float = 300.0  # seconds a miner is refused after its third strike


def options_from_settings(
    settings: Settings, *, rpc_url: str, backend_url: str, contract_id: str
) -> PoolerOptions:
    """The service's options from validated settings (ms become seconds here, once)."""
    core = CoreConfig(
        pooler_id=settings.pooler_id,
        block_interval=float(settings.block_interval_seconds),
        work_delay=settings.optimal_work_delay_ms / 1000,
        safety_margin=settings.work_safety_margin_ms / 1000,
        late_plant_grace=settings.late_plant_grace_ms / 1000,
        max_farmers_capacity=settings.max_farmers_capacity,
        share_zeros_initial=settings.share_zeros_initial,
        share_zeros_min=settings.share_zeros_min,
        share_zeros_max=settings.share_zeros_max,
        vardiff_target_interval=settings.vardiff_target_seconds,
        summary_interval=settings.summary_interval_ms / 1000,
    )
    return PoolerOptions(
        backend_url=backend_url,
        rpc_url=rpc_url,
        contract_id=contract_id,
        pooler_id=settings.pooler_id,
        pooler_name=settings.pooler_name,
        host=settings.host,
        port=settings.port,
        backend_timeout=settings.backend_timeout_ms / 1000,
        retry_attempts=settings.retry_attempts,
        poll_interval=settings.block_poll_interval_ms / 1000,
        core=core,
        max_frame=settings.max_frame_bytes,
        hello_timeout=settings.hello_timeout_ms / 1000,
        messages_per_second=settings.messages_per_second,
        message_burst=float(settings.messages_burst),
        max_connections=settings.max_concurrent_miners,
        max_connections_per_ip=settings.max_connections_per_ip,
        outbox_size=settings.outbox_size,
        default_stake_percentage=settings.stake_percentage,
        ws_ping_interval=settings.ws_ping_interval_ms / 1000,
        ws_ping_timeout=(settings.idle_timeout_ms - settings.ws_ping_interval_ms) / 1000,
        db_path=settings.pooler_db if settings.store == "sqlite" else None,
        gc_freeze=True,  # one Pooler per process here: start-up objects need no more GC scans
        network=settings.stellar_network,
        cors_origins=settings.cors_origins,
        metrics_enabled=settings.metrics_enabled,
        health_interval=settings.health_interval_ms / 1000,
        invalid_share_window=settings.invalid_share_window,
        invalid_share_ratio=settings.invalid_share_ratio,
        invalid_share_cooldown=settings.invalid_share_cooldown_ms / 1000,
    )
