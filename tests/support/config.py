"""Configuration for in-process tests: a :class:`Settings` with overrides, then the one derivation.

Tests configure a Pooler the way an operator does, through the one table of settings
(pooler/config/), and derive its options with pooler/app/options.py; values that are not
settings (short retry delays, fast metrics ticks) are overrides of :data:`TUNING`.

``BASE`` is what every in-process test starts from: the devnet (short blocks allowed), no
store, any free port, and the limits in-process tests have always run with (every client is on
127.0.0.1, and tests send far faster than a miner).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pooler.app.options import TUNING, Endpoints, PoolerOptions, Tuning, core_config, pooler_options
from pooler.config import Settings
from pooler.core.config import CoreConfig

BASE = Settings(
    stellar_network="devnet",
    store="memory",
    port=0,
    backend_timeout_ms=10_000,
    messages_per_second=200.0,
    messages_burst=400,
    max_concurrent_miners=20_000,
    max_connections_per_ip=20_000,
    max_pending_connections=20_000,
    registrations_per_ip_per_hour=0,  # tests register many miners from 127.0.0.1 (limits: lock-out tests)
    registrations_per_hour=0,
    outbox_size=256,
    ws_ping_interval_ms=600_000,  # no ping within a test: no frame the test did not ask for
    idle_timeout_ms=1_200_000,
)


def settings(**overrides: Any) -> Settings:
    """``BASE`` with ``overrides`` (Settings field names; the cross-field checks still run)."""
    return dataclasses.replace(BASE, **overrides)


def tuning(**overrides: Any) -> Tuning:
    """``TUNING`` with ``overrides``."""
    return dataclasses.replace(TUNING, **overrides)


def options(config: Settings, tune: Tuning = TUNING) -> PoolerOptions:
    """The Pooler's options, derived as ``pooler serve`` derives them (without gc_freeze: a test
    session starts many Poolers). The settings must name the endpoints (a devnet's)."""
    endpoints = Endpoints.configured(config)
    assert endpoints is not None, "set stellar_rpc_url and backend_api_url (e.g. a devnet's)"
    return pooler_options(config, endpoints, tuning=tune, gc_freeze=False)


def core(**overrides: Any) -> CoreConfig:
    """A CoreConfig derived from ``BASE`` and ``TUNING``, then ``overrides`` (CoreConfig fields,
    seconds): for tests that drive the coordinator directly."""
    return dataclasses.replace(core_config(BASE, TUNING), **overrides)
