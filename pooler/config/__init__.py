"""The Pooler's settings: read once at start-up from the environment and an optional ``.env``.

Every setting is a field of the frozen :class:`Settings` (the "Connection limits" group is
declared in its base class, :class:`pooler.config.limits.LimitSettings`), and each field carries
its own description (:class:`~pooler.config.table.Var`: environment variable, parser, help
text) in its dataclass metadata. That one
table drives loading, validation, ``pooler config``, ``.env.example`` and the table in
``docs/operations.md``, so they cannot drift apart (tests compare them).

Rules an operator can rely on:
- the real environment wins over ``.env``; ``.env`` wins over the defaults;
- an empty value counts as not set (docker compose passes ``VAR=`` for undefined variables);
- a bad value stops start-up with ONE line naming the variable, the value given and what is
  expected (:class:`~pooler.errors.ConfigError`); secrets are never echoed in that line.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from pooler.config.envfile import parse_env, read_env_file
from pooler.config.limits import LimitSettings
from pooler.config.parsers import (
    Parser,
    _bool,
    _contract_id,
    _display_text,
    _enum,
    _float,
    _host,
    _http_url,
    _instance_id,
    _int,
    _Invalid,
    _origins,
    _path,
    _pooler_id,
    _redis_url,
    _secret,
)
from pooler.config.table import (
    ALERTS,
    BACKEND,
    CHAIN,
    CYCLE,
    GROUPS,
    ID,
    MS,
    OPS,
    SHARES,
    STORE,
    Var,
    setting,
)
from pooler.errors import ConfigError

Network = Literal["testnet", "mainnet", "devnet"]
StoreKind = Literal["sqlite", "redis", "memory"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
Source = Literal["env", ".env", "default"]

# The farm contract per network (KALE.md, "Contract addresses"; testnet as of 2025-08).
# The devnet id is not deployed anywhere: it is strkey.encode("C", sha256(b"kale-devnet/farm-contract")),
# pooler.devnet.ledger.CONTRACT_ID, fixed so the local devnet and the Pooler agree without being told.
DEFAULT_CONTRACT_IDS: Final[Mapping[Network, str]] = {
    "mainnet": "CDL74RF5BLYR2YBLCCI7F5FB6TPSCLKEJUBSD2RSVWZ4YHF3VMFAIGWA",
    "testnet": "CDSWUUXGPWDZG76ISK6SUCVPZJMD5YUV66J2FXFXFGDX25XKZJIEITAO",
    "devnet": "CDJOMGYYFSGNBN6CKKZE7VL7NPH6TMJRFJK6I2ORJDR2TPUN646BM4NH",
}

# The farm contract's BLOCK_INTERVAL is a constant of the deployed contract; only our own
# devnet can run a shorter one.
CONTRACT_BLOCK_INTERVAL_SECONDS: Final = 300

# Variables that must be set for ``pooler serve`` against a real network.
REQUIRED_FOR_SERVE: Final = ("BACKEND_API_URL", "STELLAR_RPC_URL")

# PROCESSES: at most this many; a process's instance id is POOLER_INSTANCE_ID plus "-<n>".
MAX_PROCESSES: Final = 64

_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s@/]+@")


# ---------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class Settings(LimitSettings):
    """The effective configuration. Build it with :meth:`from_env`; fields are validated.

    Direct construction (tests, ``dataclasses.replace``) skips the per-value parsers but
    still runs the cross-field checks in ``__post_init__``.
    """

    # -- identity and server
    pooler_id: str = setting(
        "kale-pooler", "POOLER_ID", _pooler_id, ID, "This Pooler's id as the Backend knows it (poolerId)."
    )
    pooler_name: str = setting(
        "KALE Pooler",
        "POOLER_NAME",
        _display_text,
        ID,
        "Display name: the title and heading of the dashboard page, and `name` in GET /health.",
    )
    host: str = setting(
        "127.0.0.1", "HOST", _host, ID, "Address to listen on (the Docker image sets 0.0.0.0)."
    )
    port: int = setting(3001, "PORT", _int(0, 65535), ID, "HTTP/WebSocket port (0 = any free port).")
    processes: int = setting(
        1,
        "PROCESSES",
        _int(1, MAX_PROCESSES),
        ID,
        "Pooler processes on this machine, all on PORT (SO_REUSEPORT: the kernel spreads connections):"
        " more than 1 runs them as a group (needs STORE=redis) under one supervisor that restarts a"
        " process that dies (docs/scale-out.md, One machine).",
    )
    cors_origins: tuple[str, ...] = setting(
        (),
        "CORS_ORIGINS",
        _origins,
        ID,
        "Extra origins allowed to call the API from a browser; empty = only the dashboard's own origin.",
        example="https://pool.example.com",
    )
    # -- backend
    backend_api_url: str | None = setting(
        None,
        "BACKEND_API_URL",
        _http_url(strip_slash=True),
        BACKEND,
        "Base URL of the Phase-1 Backend. Required by `pooler serve` unless STELLAR_NETWORK=devnet.",
        example="http://127.0.0.1:3000",
    )
    backend_timeout_ms: int = setting(
        30_000,
        "BACKEND_TIMEOUT",
        _int(100, 600_000, MS),
        BACKEND,
        "Timeout of one Backend request in ms (each call is also bounded by its phase's deadline).",
    )
    retry_attempts: int = setting(
        3,
        "RETRY_ATTEMPTS",
        _int(0, 20),
        BACKEND,
        "Retries after a failed Backend call (network error, 5xx, 429), with backoff and jitter.",
    )
    # -- chain
    stellar_network: Network = setting(  # noqa: RUF009 -- returns a dataclasses.field
        "testnet",
        "STELLAR_NETWORK",
        _enum("testnet", "mainnet", "devnet"),
        CHAIN,
        "testnet, mainnet, or devnet (the local chain `pooler demo` runs).",
    )
    stellar_rpc_url: str | None = setting(
        None,
        "STELLAR_RPC_URL",
        _http_url(strip_slash=False),
        CHAIN,
        "Soroban RPC server (not Horizon). Required by `pooler serve` unless STELLAR_NETWORK=devnet.",
        example="https://soroban-testnet.stellar.org",
    )
    kale_contract_id: str = setting(
        "",
        "KALE_CONTRACT_ID",
        _contract_id,
        CHAIN,
        "The KALE farm contract (C...). Default: the known contract of STELLAR_NETWORK.",
    )
    block_poll_interval_ms: int = setting(
        1000,
        "BLOCK_POLL_INTERVAL_MS",
        _int(50, 60_000, MS),
        CHAIN,
        "How often the block monitor reads the contract's state.",
    )
    # -- block cycle
    block_interval_seconds: int = setting(
        CONTRACT_BLOCK_INTERVAL_SECONDS,
        "BLOCK_INTERVAL_SECONDS",
        _int(1, 3600, "seconds"),
        CYCLE,
        "Length of a block. Fixed at 300 by the contract on testnet/mainnet; the devnet may shorten it.",
    )
    optimal_work_delay_ms: int = setting(
        280_000,
        "OPTIMAL_WORK_DELAY_MS",
        _int(0, 3_600_000, MS),
        CYCLE,
        "When to submit work, counted from the BLOCK timestamp (capped by the safety margin below).",
    )
    work_safety_margin_ms: int = setting(
        15_000,
        "WORK_SAFETY_MARGIN_MS",
        _int(0, 3_600_000, MS),
        CYCLE,
        "Work is submitted no later than block timestamp + interval - this margin; retries stop there.",
    )
    late_plant_grace_ms: int = setting(
        15_000,
        "LATE_PLANT_GRACE_MS",
        _int(0, 3_600_000, MS),
        CYCLE,
        "If nobody opened the next block by interval + this grace, the Pooler's own /plant opens it.",
    )
    max_farmers_capacity: int = setting(
        1000,
        "MAX_FARMERS_CAPACITY",
        _int(1, 1_000_000),
        CYCLE,
        "maxFarmersCapacity sent with each /plant: how many farmers the Backend may plant per block.",
    )
    farmer_idle_minutes: int = setting(
        10,
        "FARMER_IDLE_MINUTES",
        _int(1, 1440, "minutes"),
        CYCLE,
        "A farmer none of whose miners is connected, or joined, connected or had a share accepted"
        " this recently, is not planted (the farmerIds of /plant); a miner that leaves stops its"
        " farmer's plants at once.",
    )
    stake_percentage: float = setting(
        0.1,
        "STAKE_PERCENTAGE",
        _float(0.0, 1.0, "fraction"),
        CYCLE,
        "Stake fraction (0..1) for miners that register without one.",
    )
    # -- miners and shares
    max_concurrent_miners: int = setting(
        10_000,
        "MAX_CONCURRENT_MINERS",
        _int(1, 1_000_000),
        SHARES,
        "Most miner connections (WebSocket) open at once; more are refused.",
    )
    share_zeros_initial: int = setting(
        6,
        "SHARE_ZEROS_INITIAL",
        _int(0, 64, "zeros"),
        SHARES,
        "Share difficulty (leading zero nibbles) a new worker starts at.",
    )
    share_zeros_min: int = setting(4, "SHARE_ZEROS_MIN", _int(0, 64, "zeros"), SHARES, "Vardiff floor.")
    share_zeros_max: int = setting(20, "SHARE_ZEROS_MAX", _int(0, 64, "zeros"), SHARES, "Vardiff ceiling.")
    vardiff_target_seconds: float = setting(
        10.0,
        "VARDIFF_TARGET_SECONDS",
        _float(0.1, 3600.0, "seconds"),
        SHARES,
        "Vardiff aims at one share per worker this often (10 s = 6 a minute).",
    )
    work_timeout_minutes: int = setting(
        5,
        "WORK_TIMEOUT_MINUTES",
        _int(1, 1440, "minutes"),
        SHARES,
        "REST miners: a worker silent this long (no /miner/work, no /miner/submit) is forgotten;"
        " shares on its jobs are then stale (410).",
    )
    # -- storage
    store: StoreKind = setting(  # noqa: RUF009 -- returns a dataclasses.field
        "sqlite",
        "STORE",
        _enum("sqlite", "redis", "memory"),
        STORE,
        "sqlite (one instance), redis (several instances sharing state) or memory (tests only).",
    )
    pooler_db: str = setting("./pooler.db", "POOLER_DB", _path, STORE, "SQLite database file (STORE=sqlite).")
    redis_url: str | None = setting(
        None,
        "REDIS_URL",
        _redis_url,
        STORE,
        "Redis server (required when STORE=redis); a password in it is never printed.",
        example="redis://127.0.0.1:6379/0",
    )
    pooler_instance_id: str | None = setting(
        None,
        "POOLER_INSTANCE_ID",
        _instance_id,
        STORE,
        "STORE=redis: this instance's name in the group (lease owner, logs, metrics); unset: host + pid.",
        example="pooler-a",
    )
    leader_lease_ms: int = setting(
        5000,
        "LEADER_LEASE_MS",
        _int(200, 600_000, "milliseconds"),
        STORE,
        "STORE=redis: the leader lease; a dead leader is replaced within about this long. Keep it well below"
        " the time from workAt to the block's end.",
    )
    # -- logs, metrics and access
    log_level: LogLevel = setting(  # noqa: RUF009 -- returns a dataclasses.field
        "INFO",
        "LOG_LEVEL",
        _enum("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", upper=True),
        OPS,
        "Least severe log level written.",
    )
    log_format: LogFormat = setting(  # noqa: RUF009 -- returns a dataclasses.field
        "text",
        "LOG_FORMAT",
        _enum("text", "json"),
        OPS,
        "text (one readable line) or json (one object a line).",
    )
    metrics_enabled: bool = setting(
        True, "METRICS_ENABLED", _bool, OPS, "Serve Prometheus metrics at /metrics."
    )
    health_interval_ms: int = setting(
        5000,
        "HEALTH_INTERVAL_MS",
        _int(100, 600_000, MS),
        OPS,
        "How often the Backend's /health is polled for /health/ready (requests never wait on it).",
    )
    summary_interval_ms: int = setting(
        5000,
        "SUMMARY_INTERVAL_MS",
        _int(100, 3_600_000, MS),
        OPS,
        "How often the dashboard stream gets a summary event.",
    )
    admin_token: str | None = setting(
        None,
        "ADMIN_TOKEN",
        _secret(16),
        OPS,
        "Set: only the operator registers miners (POST /miner/register needs 'Authorization: Bearer"
        " <ADMIN_TOKEN>'); unset: anyone may register. Never logged.",
        example="change-me-to-a-long-random-string",
    )
    # -- alerts
    alert_webhook_url: str | None = setting(
        None,
        "ALERT_WEBHOOK_URL",
        _http_url(strip_slash=False),
        ALERTS,
        "Set: every alert is POSTed here as one JSON object (docs/operations.md, Alerts), with retries;"
        " unset: alerts go to the dashboard stream, /metrics and the log only. Webhook URLs often carry"
        " a token, so it is never printed.",
        secret=True,
        example="https://hooks.example.com/kale-pooler",
    )
    alert_down_after_ms: int = setting(
        60_000,
        "ALERT_DOWN_AFTER_MS",
        _int(0, 3_600_000, MS),
        ALERTS,
        "The Backend or the chain RPC failing for this long raises backend-down / chain-rpc-down (and"
        " its recovery resolved); 0 = at the first failure.",
    )

    alert_stake_lead_ms: int = setting(
        30_000,
        "ALERT_STAKE_LEAD_MS",
        _int(0, 3_600_000, MS),
        ALERTS,
        "This long before workAt (never before halfway from the block's opening to workAt), a"
        " planted farmer with no share at or above the previous block's on-chain min zeros raises"
        " stake-at-risk; 0 = off.",
    )
    alert_worker_silent_minutes: int = setting(
        0,
        "ALERT_WORKER_SILENT_MINUTES",
        _int(0, 1440, "minutes"),
        ALERTS,
        "A worker that was active and sent nothing for this many minutes raises worker-silent (resolved"
        " when it sends again); 0 = off.",
    )

    # -- not settings: where each value came from, and warnings to show at start-up
    sources: Mapping[str, Source] = field(default_factory=dict, compare=False, repr=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.kale_contract_id:
            # A frozen dataclass can only fill a network-dependent default this way.
            object.__setattr__(self, "kale_contract_id", DEFAULT_CONTRACT_IDS[self.stellar_network])
        _check_together(self)

    # ------------------------------------------------------------ loading

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        env_file: str | None = ".env",
        *,
        allow_missing: bool = False,
    ) -> Settings:
        """Read every setting from ``environ`` (default ``os.environ``) over ``env_file``.

        A missing ``env_file`` is not an error (pass ``None`` to ignore any). Raises
        :class:`ConfigError` with one line on the first bad value. Unless ``allow_missing``
        or STELLAR_NETWORK=devnet, the URLs ``pooler serve`` needs must be set too.
        """
        env = os.environ if environ is None else environ
        file_values = read_env_file(env_file) if env_file is not None and os.path.isfile(env_file) else {}
        values: dict[str, object] = {}
        sources: dict[str, Source] = {}
        raw: dict[str, tuple[str, Source]] = {}
        for name in (*(var.env for _, var in variables()), "STELLAR_HORIZON_URL"):
            text = env.get(name, "").strip()
            if text:
                raw[name] = (text, "env")
            elif file_values.get(name, "").strip():
                raw[name] = (file_values[name].strip(), ".env")
        for attr, var in variables():
            if var.env not in raw:
                sources[var.env] = "default"
                continue
            text, source = raw[var.env]
            try:
                values[attr] = var.parse(text)
            except _Invalid as exc:
                shown = "<hidden>" if var.secret else _clip(redact_url(text))
                detail = f"; {exc}" if str(exc) else ""
                where = f" (from {env_file})" if source == ".env" else ""
                raise ConfigError(
                    f"{var.env}={shown} is not valid: expected {var.parse.expected}{detail}{where}"
                ) from None
            sources[var.env] = source
        warnings = _horizon_check(raw, "STELLAR_RPC_URL" in raw)
        settings = cls(**cast(dict[str, Any], values), sources=sources, warnings=warnings)
        missing = settings.missing_for_serve()
        if missing and not allow_missing:
            verb, which = ("is", "it") if len(missing) == 1 else ("are", "each")
            raise ConfigError(
                f"{' and '.join(missing)} {verb} not set: expected an http(s) URL for {which} on "
                f"STELLAR_NETWORK={settings.stellar_network} "
                "(or set STELLAR_NETWORK=devnet to run on the local devnet)"
            )
        return settings

    # ------------------------------------------------------------ views

    def missing_for_serve(self) -> list[str]:
        """Variables ``pooler serve`` needs that are not set (none on the devnet, which brings its own)."""
        if self.stellar_network == "devnet":
            return []
        values = {"BACKEND_API_URL": self.backend_api_url, "STELLAR_RPC_URL": self.stellar_rpc_url}
        return [name for name in REQUIRED_FOR_SERVE if not values[name]]

    def source(self, env_name: str) -> Source:
        """Where the variable's value came from: ``env``, ``.env`` or ``default``."""
        return self.sources.get(env_name, "default")

    def redacted(self) -> dict[str, str]:
        """``{VARIABLE: value as text}`` for every setting, secrets shown as ``***``.

        Unset optional values are ``""``. Passwords inside URLs are replaced too.
        """
        out: dict[str, str] = {}
        for attr, var in variables():
            value = getattr(self, attr)
            if var.secret:
                out[var.env] = "***" if value else ""
            else:
                out[var.env] = redact_url(format_value(value))
        return out


def _check_together(self: Settings) -> None:
    """Checks across fields, kept here so direct construction gets them too."""
    if not self.share_zeros_min <= self.share_zeros_max:
        raise ConfigError(
            f"SHARE_ZEROS_MIN={self.share_zeros_min} is not valid: expected at most "
            f"SHARE_ZEROS_MAX={self.share_zeros_max}"
        )
    if not self.share_zeros_min <= self.share_zeros_initial <= self.share_zeros_max:
        raise ConfigError(
            f"SHARE_ZEROS_INITIAL={self.share_zeros_initial} is not valid: expected a value between "
            f"SHARE_ZEROS_MIN={self.share_zeros_min} and SHARE_ZEROS_MAX={self.share_zeros_max}"
        )
    if self.idle_timeout_ms <= self.ws_ping_interval_ms:
        raise ConfigError(
            f"IDLE_TIMEOUT_MS={self.idle_timeout_ms} is not valid: expected more than "
            f"WS_PING_INTERVAL_MS={self.ws_ping_interval_ms} (a pong needs time to come back)"
        )
    if self.stellar_network != "devnet" and self.block_interval_seconds != CONTRACT_BLOCK_INTERVAL_SECONDS:
        raise ConfigError(
            f"BLOCK_INTERVAL_SECONDS={self.block_interval_seconds} is not valid: expected "
            f"{CONTRACT_BLOCK_INTERVAL_SECONDS} on {self.stellar_network} (the contract's interval; "
            "only STELLAR_NETWORK=devnet can shorten it)"
        )
    if self.work_safety_margin_ms >= self.block_interval_seconds * 1000:
        raise ConfigError(
            f"WORK_SAFETY_MARGIN_MS={self.work_safety_margin_ms} is not valid: expected less than the "
            f"block interval (BLOCK_INTERVAL_SECONDS={self.block_interval_seconds})"
        )
    if self.store == "redis" and not self.redis_url:
        raise ConfigError("REDIS_URL is not set: expected a redis:// URL because STORE=redis")
    if self.processes > 1 and self.store != "redis":
        raise ConfigError(
            f"PROCESSES={self.processes} is not valid with STORE={self.store}: expected PROCESSES=1, or"
            " STORE=redis with REDIS_URL (the processes are a group that shares its state through Redis)"
        )
    suffix = len(f"-{self.processes}")
    if self.processes > 1 and self.pooler_instance_id and len(self.pooler_instance_id) + suffix > 64:
        raise ConfigError(
            f"POOLER_INSTANCE_ID={self.pooler_instance_id!r} is not valid with PROCESSES={self.processes}:"
            f" expected at most {64 - suffix} characters (each process is named <id>-<n>)"
        )


# ---------------------------------------------------------------- helpers


def variables() -> list[tuple[str, Var]]:
    """``(field name, Var)`` for every setting, group by group (:data:`GROUPS`), in declaration order
    within a group (the connection limits are declared in pooler/config/limits.py)."""
    found = [(f.name, f.metadata["var"]) for f in dataclasses.fields(Settings) if "var" in f.metadata]
    return sorted(found, key=lambda item: GROUPS.index(item[1].group))


def format_value(value: object) -> str:
    """A setting's value as it would be written in ``.env``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def redact_url(text: str) -> str:
    """Replace the password of any ``scheme://user:password@host`` in ``text`` with ``***``."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


def _clip(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _horizon_check(raw: Mapping[str, tuple[str, Source]], have_rpc: bool) -> tuple[str, ...]:
    """The seed named a Horizon URL; Horizon cannot read Soroban contract storage.

    Alone it is refused (a Pooler pointed at Horizon would fail obscurely at the first
    poll); beside STELLAR_RPC_URL it is ignored with a warning.
    """
    if "STELLAR_HORIZON_URL" not in raw:
        return ()
    shown = _clip(redact_url(raw["STELLAR_HORIZON_URL"][0]))
    if have_rpc:
        return (
            f"STELLAR_HORIZON_URL={shown} is ignored: the Pooler reads contract state through "
            "STELLAR_RPC_URL (Soroban RPC); Horizon is not used",
        )
    raise ConfigError(
        f"STELLAR_HORIZON_URL={shown} is not used: expected STELLAR_RPC_URL instead, because Soroban "
        "contract state is only readable through a Soroban RPC server (e.g. https://soroban-testnet.stellar.org)"
    )


__all__ = [
    "CONTRACT_BLOCK_INTERVAL_SECONDS",
    "DEFAULT_CONTRACT_IDS",
    "MAX_PROCESSES",
    "REQUIRED_FOR_SERVE",
    "ConfigError",
    "Parser",
    "Settings",
    "Var",
    "format_value",
    "parse_env",
    "read_env_file",
    "redact_url",
    "variables",
]
