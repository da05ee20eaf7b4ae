"""Health: ``/health`` (the seed's summary), ``/health/live`` (process up), ``/health/ready`` (can serve)."""

from __future__ import annotations

from starlette.requests import Request

from pooler.web.ports import HealthReport
from pooler.web.rest import JSON


class HealthRoutes:
    """The three health routes over one :class:`~pooler.web.ports.HealthReport` port."""

    def __init__(self, report: HealthReport) -> None:
        self._report = report

    async def health(self, request: Request) -> JSON:
        report = self._report.health()
        status = 200 if report["status"] in ("ok", "degraded") else 503
        return JSON(report, status_code=status)

    async def live(self, request: Request) -> JSON:
        """200 whenever the event loop answers: restarting would not fix a Backend or RPC outage."""
        return JSON({"status": "ok"})

    async def ready(self, request: Request) -> JSON:
        """200 when the chain RPC answers, the Backend's last health poll was healthy and the store
        is open."""
        report = self._report.health()
        ok = report["status"] == "ok"
        body = {"status": "ready" if ok else "not-ready", "checks": report["checks"]}
        return JSON(body, status_code=200 if ok else 503)
