"""The connection-limit settings (the "Connection limits" group), a base of :class:`~pooler.config.Settings`.

Declared here to keep ``pooler/config/__init__.py`` under the module size limit; they are read,
validated, documented and shown exactly like every other setting (``variables()`` orders the
groups). Every limit is per instance: in a group (``STORE=redis``) each instance counts its own
connections, registrations and wrong tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pooler.config.parsers import _enum, _float, _int
from pooler.config.table import LIMITS, MS, setting


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """The "Connection limits" settings (see the module docstring)."""

    max_frame_bytes: int = setting(
        4096,
        "MAX_FRAME_BYTES",
        _int(256, 1_048_576, "bytes"),
        LIMITS,
        "Largest WebSocket frame or REST body accepted.",
    )
    messages_per_second: float = setting(
        20.0,
        "MESSAGES_PER_SECOND",
        _float(0.1, 100_000.0, "messages per second"),
        LIMITS,
        "Sustained message rate per connection (token bucket refill rate).",
    )
    messages_burst: int = setting(
        40,
        "MESSAGES_BURST",
        _int(1, 1_000_000, "messages"),
        LIMITS,
        "Token bucket size: messages a connection may send at once before the rate applies.",
    )
    max_connections_per_ip: int = setting(
        100,
        "MAX_CONNECTIONS_PER_IP",
        _int(1, 1_000_000),
        LIMITS,
        "Most miner sockets open at once from one IP address, and most of its connections that have not"
        " authenticated yet (MAX_PENDING_CONNECTIONS).",
    )
    hello_timeout_ms: int = setting(
        10_000,
        "HELLO_TIMEOUT_MS",
        _int(100, 600_000, MS),
        LIMITS,
        "A socket must say hello within this time (else error 25 and close).",
    )
    miner_socket: Literal["asgi", "picows"] = setting(
        "asgi",
        "MINER_SOCKET",
        _enum("asgi", "picows"),
        LIMITS,
        "How /ws/miner frames are parsed and written: asgi (uvicorn's websockets-sansio, Python) or picows"
        " (C, same port; docs/benchmarks.md has both). Same behaviour, limits and close codes either way."
        " For thousands of sockets use picows: about half the memory a socket and, with block-broadcast"
        " clients, the fastest new-block push measured.",
    )
    ws_ping_interval_ms: int = setting(
        20_000, "WS_PING_INTERVAL_MS", _int(100, 600_000, MS), LIMITS, "WebSocket ping interval."
    )
    idle_timeout_ms: int = setting(
        60_000,
        "IDLE_TIMEOUT_MS",
        _int(200, 3_600_000, MS),
        LIMITS,
        "A socket with no message and no pong for this long is closed (must exceed WS_PING_INTERVALMS).",
    )
    invalid_share_window: int = setting(
        50,
        "INVALID_SHARE_WINDOW",
        _int(1, 1_000_000, "shares"),
        LIMITS,
        "Shares per window of the invalid-share guard (a miner's shares are judged window by window).",
    )
    invalid_share_ratio: float = setting(
        0.9,
        "INVALID_SHARE_RATIO",
        _float(0.0, 0.999, "fraction"),
        LIMITS,
        "A window with more invalid shares than this is a strike: warn, then close, then refuse.",
    )
    invalid_share_cooldown_ms: int = setting(
        300_000,
        "INVALID_SHARE_COOLDOWN_MS",
        _int(0, 86_400_000, MS),
        LIMITS,
        "How long a miner is refused after its third bad window in a row.",
    )
    outbox_size: int = setting(
        64,
        "OUTBOX_SIZE",
        _int(1, 100_000, "messages"),
        LIMITS,
        "Bound of each connection's outgoing queue; a client that lets it fill is closed.",
    )
    http_read_timeout_ms: int = setting(
        10_000,
        "HTTP_READ_TIMEOUT_MS",
        _int(100, 600_000, MS),
        LIMITS,
        "A connection must send a whole request (headers and body) within this time of connecting or of"
        " starting the request; else 408 and close (slowloris).",
    )
    max_pending_connections: int = setting(
        10_000,
        "MAX_PENDING_CONNECTIONS",
        _int(1, 1_000_000),
        LIMITS,
        "Most connections open at once that have not authenticated (no hello with a valid token yet, no"
        " REST request with a miner token; dashboards count here). Keep it above the miners that reconnect at"
        " once after a restart. Full: the oldest one still reading its"
        " request or hello is dropped for a newcomer, or the newcomer gets 503. Apart from"
        " MAX_CONCURRENT_MINERS.",
    )
    fd_reserve: int = setting(
        256,
        "FD_RESERVE",
        _int(16, 1_000_000, "file descriptors"),
        LIMITS,
        "File descriptors kept for the Pooler's own work (store, search worker, Backend and RPC calls):"
        " connections are refused before the open-files limit (raised to its hard limit at start) minus"
        " this is reached.",
    )
    event_stream_backlog: int = setting(
        500,
        "EVENT_STREAM_BACKLOG",
        _int(1, 100_000, "events"),
        LIMITS,
        "Events waiting for one /events or /ws/events subscriber; a subscriber that lets more pile up"
        " (it is not reading) is disconnected.",
    )
    registrations_per_ip_per_hour: int = setting(
        20,
        "REGISTRATIONS_PER_IP_PER_HOUR",
        _int(0, 1_000_000, "registrations"),
        LIMITS,
        "POST /miner/register from one IP address per hour (a bucket refilled evenly); more get 429"
        " with Retry-After. 0 = no limit. Not applied to the operator when ADMIN_TOKEN is set.",
    )
    registrations_per_hour: int = setting(
        1000,
        "REGISTRATIONS_PER_HOUR",
        _int(0, 10_000_000, "registrations"),
        LIMITS,
        "POST /miner/register from all addresses together per hour; more get 429 with Retry-After. 0 ="
        " no limit. Not applied to the operator when ADMIN_TOKEN is set.",
    )
    auth_failures_allowed: int = setting(
        10,
        "AUTH_FAILURES_ALLOWED",
        _int(0, 1_000_000, "failures"),
        LIMITS,
        "Wrong tokens (REST bearer, WebSocket hello, ADMIN_TOKEN) one IP address may send before it is"
        " backed off; they are forgotten after AUTH_BACKOFF_MS x 64 without a wrong token.",
    )
    auth_backoff_ms: int = setting(
        1000,
        "AUTH_BACKOFF_MS",
        _int(10, 600_000, MS),
        LIMITS,
        "First back-off after the allowed wrong tokens: the address's token checks are refused (429 /"
        " error 21) this long, doubling with each further wrong token, up to 64 times it.",
    )
