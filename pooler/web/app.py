"""The Starlette application: one module per surface, assembled here over the ports it is given.

:func:`create_app` builds each surface's handler object with just the ports it needs
(pooler/web/ports.py) and routes to its methods; nothing in pooler/web knows the service
that implements the ports (pooler/app/wiring.py does the wiring).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from pooler.web import dashboard, rest
from pooler.web.health import HealthRoutes
from pooler.web.limits import AuthBackoff
from pooler.web.miner_ws import MinerSocket
from pooler.web.openapi import SPEC
from pooler.web.ports import MetricsPage, WebPorts, WebSettings
from pooler.web.rest import RestRoutes
from pooler.web.stats import LiveRoutes, StatsRoutes


async def openapi(request: Request) -> rest.JSON:
    return rest.JSON(SPEC)


class _Metrics:
    """``/metrics``: Prometheus exposition (OpenMetrics when the scraper asks)."""

    def __init__(self, page: MetricsPage) -> None:
        self._page = page

    async def metrics(self, request: Request) -> Response:
        body, content_type = self._page.scrape(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})


def create_app(ports: WebPorts, settings: WebSettings) -> Starlette:
    """Routes, and CORS only for the configured origins (none: same-origin only, the dashboard's)."""
    # wrong tokens per client address, over REST and /ws/miner alike
    backoff = AuthBackoff(settings.auth_failures_allowed, settings.auth_backoff)
    socket = MinerSocket(
        settings,
        admission=ports.admission,
        miners=ports.miners,
        sockets=ports.sockets,
        inbox=ports.inbox,
        limits=ports.limits,
        backoff=backoff,
    )
    miner = RestRoutes(
        settings,
        miners=ports.miners,
        requests=ports.requests,
        jobs=ports.jobs,
        limits=ports.limits,
        backoff=backoff,
    )
    streams = dashboard.EventStreams(ports.events, settings.event_stream_backlog, ports.limits)
    health = HealthRoutes(ports.health)
    routes: list[BaseRoute] = [
        WebSocketRoute("/ws/miner", socket.endpoint),
        WebSocketRoute("/ws/events", streams.socket),
        Route("/events", streams.sse),
        Route("/miner/register", miner.register, methods=["POST"]),
        Route("/miner/work", miner.work, methods=["GET"]),
        Route("/miner/submit", miner.submit, methods=["POST"]),
        Route("/miner/stats", miner.stats, methods=["GET"]),
        Route("/miner/leave", miner.leave, methods=["POST"]),
        Route("/health", health.health),
        Route("/health/live", health.live),
        Route("/health/ready", health.ready),
        Route("/openapi.json", openapi),
    ]
    if ports.stats is not None:
        stats = StatsRoutes(ports.stats)
        routes += [
            Route("/stats/pool", stats.pool, methods=["GET"]),
            Route("/stats/blocks", stats.blocks, methods=["GET"]),
            Route("/stats/blocks/{block}", stats.block, methods=["GET"]),
            Route("/stats/miners", stats.miners, methods=["GET"]),
            Route("/stats/miners/{miner_id}", stats.miner, methods=["GET"]),
            Route("/stats/farmers", stats.farmers, methods=["GET"]),
            Route("/stats/farmers/{farmer_id}", stats.farmer, methods=["GET"]),
        ]
    if ports.live is not None:
        live = LiveRoutes(ports.live)
        routes += [
            Route("/stats/live", live.live, methods=["GET"]),
            Route("/stats/live/miners", live.miners, methods=["GET"]),
            Route("/stats/live/miners/{miner_id}", live.miner, methods=["GET"]),
        ]
    if ports.metrics is not None:
        routes.append(Route("/metrics", _Metrics(ports.metrics).metrics))
    if dashboard.STATIC.is_dir():
        # Last: the page at / and its relative app.js/style.css, after every API route.
        routes.append(Mount("/", dashboard.PageFiles(settings.pooler_name), name="dashboard"))
    middleware = []
    origins = list(settings.cors_origins)
    if origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            )
        )
    app = Starlette(routes=routes, middleware=middleware)
    app.state.miner_socket = socket  # MINER_SOCKET=picows serves its sockets with the same handler
    return app
