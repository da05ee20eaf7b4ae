"""``pooler serve``: run the Pooler alone against the configured chain RPC and Backend.

With no RPC/Backend configured it says so and offers the devnet, instead of failing
obscurely; ``STELLAR_NETWORK=devnet`` with no URLs starts a devnet in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from pooler.config import Settings
from pooler.core.config import CoreConfig
from pooler.errors import ConfigError, StoreError
from pooler.service import Pooler, PoolerOptions

HELP = "run the Pooler against the configured chain RPC and Backend"

log = logging.getLogger("pooler")

_NOT_CONFIGURED = """\
pooler serve: {missing} not set, so there is no chain or Backend to talk to.
  - to see the whole system run locally:    pooler demo
  - to run a local chain + Backend:         pooler devnet   (then export the variables it prints)
  - to start a devnet inside this process:  STELLAR_NETWORK=devnet pooler serve
  - against testnet/mainnet: set STELLAR_RPC_URL (a Soroban RPC URL) and BACKEND_API_URL (see .env.example)"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", default=".env", help="read settings from this file too (default .env)")


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
        network=settings.stellar_network,
        cors_origins=settings.cors_origins,
        metrics_enabled=settings.metrics_enabled,
        health_interval=settings.health_interval_ms / 1000,
        invalid_share_window=settings.invalid_share_window,
        invalid_share_ratio=settings.invalid_share_ratio,
        invalid_share_cooldown=settings.invalid_share_cooldown_ms / 1000,
    )


def run(args: argparse.Namespace) -> int:
    from pooler.logs import setup_logging

    try:
        settings = Settings.from_env(env_file=args.env_file, allow_missing=True)
    except ConfigError as exc:
        print(f"pooler serve: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings)
    for warning in settings.warnings:
        log.warning(warning)
    missing = settings.missing_for_serve()
    if missing and settings.stellar_network != "devnet":
        print(_NOT_CONFIGURED.format(missing=" and ".join(missing)), file=sys.stderr)
        return 2
    if settings.store == "redis":
        print(
            "pooler serve: STORE=redis is not available in this version; use sqlite or memory",
            file=sys.stderr,
        )
        return 2
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # optional: the stock loop works, only slower
        runner = asyncio.run
    try:
        return int(runner(_serve(settings)))
    except StoreError as exc:
        print(f"pooler serve: {exc}", file=sys.stderr)
        return 1


async def _serve(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        rpc_url, backend_url = settings.stellar_rpc_url, settings.backend_api_url
        contract_id = settings.kale_contract_id
        if rpc_url is None or backend_url is None:  # devnet with no URLs: bring our own
            from pooler.devnet import Devnet

            net = await stack.enter_async_context(Devnet(block_interval=settings.block_interval_seconds))
            rpc_url, backend_url, contract_id = net.rpc_url, net.backend_url, net.contract_id
            log.info("started an in-process devnet: rpc %s backend %s", rpc_url, backend_url)
        options = options_from_settings(
            settings, rpc_url=rpc_url, backend_url=backend_url, contract_id=contract_id
        )
        pooler = await stack.enter_async_context(Pooler(options))
        print(
            f"pooler {settings.pooler_id} listening on {pooler.url} (miners: /ws/miner, dashboard: /)",
            flush=True,
        )
        await stop.wait()
        log.info("stopping: closing miner sockets (1012), flushing the store")
    return 0
