"""The Starlette application: one module per surface, assembled here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute

from pooler.metrics import metrics_response
from pooler.web import dashboard, health, rest
from pooler.web.miner_ws import miner_socket
from pooler.web.openapi import SPEC

if TYPE_CHECKING:
    from pooler.app.service import Pooler


async def openapi(request: Request) -> rest.JSON:
    return rest.JSON(SPEC)


async def metrics(request: Request) -> Response:
    """Prometheus exposition of this Pooler's registry (OpenMetrics when the scraper asks)."""
    pooler: Pooler = request.app.state.pooler
    pooler.observer.flush()  # shares counted since the last tick
    body, content_type = metrics_response(request.headers.get("accept"), pooler.metrics)
    return Response(body, headers={"Content-Type": content_type})


def create_app(pooler: Pooler) -> Starlette:
    """Routes, and CORS only for the configured origins (none: same-origin only, the dashboard's)."""
    routes = [
        WebSocketRoute("/ws/miner", miner_socket),
        WebSocketRoute("/ws/events", dashboard.events_socket),
        Route("/events", dashboard.events_sse),
        Route("/miner/register", rest.register, methods=["POST"]),
        Route("/miner/work", rest.work, methods=["GET"]),
        Route("/miner/submit", rest.submit, methods=["POST"]),
        Route("/miner/stats", rest.stats, methods=["GET"]),
        Route("/miner/leave", rest.leave, methods=["POST"]),
        Route("/health", health.health),
        Route("/health/live", health.live),
        Route("/health/ready", health.ready),
        Route("/openapi.json", openapi),
    ]
    if pooler.options.metrics_enabled:
        routes.append(Route("/metrics", metrics))
    if dashboard.STATIC.is_dir():
        # Last: the page at / and its relative app.js/style.css, after every API route.
        routes.append(Mount("/", dashboard.PageFiles(pooler.options.pooler_name), name="dashboard"))
    middleware = []
    origins = list(pooler.options.cors_origins)
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
    app.state.pooler = pooler
    app.state.rest_buckets = {}  # miner id -> TokenBucket of its REST requests (dropped on leave)
    return app
