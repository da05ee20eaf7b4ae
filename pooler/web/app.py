"""The Starlette application: one module per surface, assembled here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from pooler.web import dashboard, health, rest
from pooler.web.miner_ws import miner_socket
from pooler.web.openapi import SPEC

if TYPE_CHECKING:
    from pooler.service import Pooler


async def openapi(request: Request) -> rest.JSON:
    return rest.JSON(SPEC)


def create_app(pooler: Pooler) -> Starlette:
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
    if dashboard.STATIC.is_dir():
        # Last: the page at / and its relative app.js/style.css, after every API route.
        routes.append(Mount("/", StaticFiles(directory=dashboard.STATIC, html=True), name="dashboard"))
    app = Starlette(routes=routes)
    app.state.pooler = pooler
    app.state.rest_buckets = {}  # miner id -> TokenBucket of its REST requests (dropped on leave)
    return app
