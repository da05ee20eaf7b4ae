"""What the web handlers may do: narrow typed ports, one per operation they need.

The handlers (miner socket, REST, dashboard streams, health, metrics) never see the service
that runs them: each gets the few operations below, passed to :func:`pooler.web.app.create_app`
by the app's wiring (pooler/app/wiring.py), which implements them with the runner, the registry,
the store and, in a group, the cluster node. A test can hand a handler any object with the
same methods.

    port           who uses it                        implemented by (pooler/app)
    Miners         hello, REST auth, register, leave  wiring.MinerAccounts
    Admission      miner socket (connection limits)   sockets.ConnectionLimits
    MinerSockets   miner socket (its outbox)          sockets.SocketDesk
    EventSink      miner socket (events in)           the runner's Inbox (pooler/runtime)
    Requests       REST (an event and its answer)     the Runner (pooler/runtime)
    RestJobs       REST submit (a group's jobs)       the cluster node, or wiring.NoSharedJobs
    LimitHits      every refusal (metrics)            wiring.LimitCounter
    EventFeed      /ws/events, /events                wiring.DashboardFeed
    HealthReport   /health, /health/ready             observe.Readiness
    MetricsPage    /metrics                           wiring.MetricsScrape
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pooler.core.events import Event, IssuedJob
from pooler.miners import MinerRecord
from pooler.runtime.hub import Subscription
from pooler.runtime.outbox import Outbox
from protocol.messages import ServerMessage


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The options the handlers read (derived from the service's options by the wiring)."""

    max_frame: int  # bytes of one message (socket frame or REST body)
    hello_timeout: float  # seconds a new socket gets to say hello
    slow_client_grace: float  # seconds a peer that fell behind gets to take its close frame
    messages_per_second: float  # per socket, and per miner over REST
    message_burst: float
    default_stake_percentage: float  # a registration that names none
    cors_origins: tuple[str, ...]  # browser origins besides the dashboard's own ("*" = any)
    pooler_name: str  # the pool's display name: the page's title and heading
    admin_token: str | None  # ADMIN_TOKEN: when set, only its holder may register miners
    event_stream_backlog: int  # events waiting for one dashboard subscriber; more: it is dropped
    registrations_per_ip_per_hour: int  # POST /miner/register per client address (0: no limit)
    registrations_per_hour: int  # ... from all addresses together (0: no limit)
    auth_failures_allowed: int  # wrong tokens from one address before it is backed off
    auth_backoff: float  # seconds, the first back-off (doubles with each further wrong token)


class Miners(Protocol):
    """Who may mine: token checks, registration, leaving."""

    async def authenticate(self, token: str) -> MinerRecord | None: ...

    async def register(
        self, name: str, stake_percentage: float, metadata: Mapping[str, Any] | None
    ) -> tuple[MinerRecord, str]:
        """A new miner and its token; BackendError / StoreError when it could not be made."""
        ...

    async def remove(self, miner_id: str) -> None: ...


class Admission(Protocol):
    """The connection limits of the miner socket (total, per client address)."""

    def admit(self, host: str) -> str | None:
        """Count a new socket from ``host`` in: None when admitted, else the limit that refused it."""
        ...

    def release(self, host: str) -> None:
        """An admitted socket from ``host`` ended."""
        ...


class MinerSockets(Protocol):
    """A miner socket's side of the runner: its outbox, and which miner it belongs to."""

    def open(self, miner_id: str) -> tuple[int, Outbox]:
        """A new connection id and outbox for a socket of ``miner_id``."""
        ...

    def detach(self, conn: int) -> None:
        """The socket's miner is gone from it (no more counts, no more policy frames)."""
        ...

    def forget(self, conn: int) -> None:
        """The outbox is done with (after its last frames went out)."""
        ...


class EventSink(Protocol):
    """The coordinator's inbox (pooler.runtime.inbox.Inbox)."""

    async def submit(self, event: Event) -> None: ...

    def offer(self, event: Event) -> bool: ...

    def post(self, event: Event) -> None: ...


class Requests(Protocol):
    """An event that carries a reply id, and the coordinator's answer (REST)."""

    async def request(self, make: Callable[[int], Event], within: float = ...) -> ServerMessage: ...


class RestJobs(Protocol):
    """Jobs another instance of a group issued (REST shares may reach any instance)."""

    async def issued_job(self, job_id: str) -> IssuedJob | None: ...


class LimitHits(Protocol):
    """A protective limit refused something (``pooler_limit_hits_total{limit}``)."""

    def hit(self, limit: str) -> None: ...


class EventFeed(Protocol):
    """The dashboard event stream."""

    def subscribe(self) -> Subscription: ...

    def snapshot_frame(self) -> str:
        """The first frame of a new stream: the present summary and recent events."""
        ...


class HealthReport(Protocol):
    def health(self) -> dict[str, Any]:
        """Readiness parts and a summary (cheap: no I/O)."""
        ...


class MetricsPage(Protocol):
    def scrape(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition body and its content type, for a scraper's Accept header."""
        ...


class Stats(Protocol):
    """The read-only stats API's answers (pooler.stats.views over the in-memory history; the
    ranges of pool and miner may reach older buckets in the store, and blocks and farmers older
    block summaries, hence async).
    Arguments are validated by the routes; None: no such block, miner or farmer."""

    async def pool(self, range_: str) -> dict[str, Any]: ...

    async def blocks(self, limit: int, before: int | None) -> dict[str, Any]: ...

    async def block(self, index: int) -> dict[str, Any] | None: ...

    def miners(self, sort: str, order: str, limit: int, offset: int) -> dict[str, Any]: ...

    async def miner(self, miner_id: str, range_: str) -> dict[str, Any] | None: ...

    async def farmers(self) -> dict[str, Any]: ...

    async def farmer(self, farmer_id: str, limit: int) -> dict[str, Any] | None: ...


class LiveStats(Protocol):
    """What only the running core knows, for the dashboard (pooler/app/live.py): who is online,
    reported hashrates, the open block's best zeros and projection, farmers' addresses and names."""

    def live(self, limit: int) -> dict[str, Any]: ...

    def live_miners(self, ids: Sequence[str]) -> dict[str, Any]: ...

    def live_miner(self, miner_id: str) -> dict[str, Any] | None:
        """None: no such miner (neither known to the core nor in the history)."""
        ...


@dataclass(frozen=True, slots=True)
class WebPorts:
    """Everything :func:`pooler.web.app.create_app` hands out to the handlers."""

    miners: Miners
    admission: Admission
    sockets: MinerSockets
    inbox: EventSink
    requests: Requests
    jobs: RestJobs
    limits: LimitHits
    events: EventFeed
    health: HealthReport
    metrics: MetricsPage | None  # None: /metrics is not served
    stats: Stats | None = None  # None: the /stats routes are not served
    live: LiveStats | None = None  # None: the /stats/live routes are not served
