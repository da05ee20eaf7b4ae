"""Health: ``/health`` (the seed's summary), ``/health/live`` (process up), ``/health/ready`` (can serve)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

from pooler.web.rest import JSON

if TYPE_CHECKING:
    from pooler.app.service import Pooler


async def health(request: Request) -> JSON:
    pooler: Pooler = request.app.state.pooler
    report = pooler.health()
    status = 200 if report["status"] in ("ok", "degraded") else 503
    return JSON(report, status_code=status)


async def live(request: Request) -> JSON:
    """200 whenever the event loop answers: restarting would not fix a Backend or RPC outage."""
    return JSON({"status": "ok"})


async def ready(request: Request) -> JSON:
    """200 when the chain RPC answers, the Backend's last health poll was healthy and the store is open."""
    pooler: Pooler = request.app.state.pooler
    report = pooler.health()
    ok = report["status"] == "ok"
    return JSON(
        {"status": "ready" if ok else "not-ready", "checks": report["checks"]}, status_code=200 if ok else 503
    )
