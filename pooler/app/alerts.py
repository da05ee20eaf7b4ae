"""Where alerts go, and the ones the observer raises itself (issue #15, part 5).

:class:`Alerts` is the one place an alert (a value of :mod:`pooler.core.alerts`) is sent on:

- counted in ``pooler_alerts_total{kind}``;
- published to the dashboard stream as an ``alert`` event (docs/events.md) through the hub's
  ``publish``, as the observer publishes Backend news;
- logged (logger ``pooler.alerts``, event ``alert``);
- offered to the webhook when ``ALERT_WEBHOOK_URL`` is set (:class:`~pooler.runtime.webhook.AlertWebhook`:
  never blocks).

It also watches the two dependencies the observer already hears about: the Backend (its
health polls and the outcome of every real call) and the chain RPC (every poll of the block
monitor). Each is a :class:`DownWatch`: down continuously for ``ALERT_DOWN_AFTER_MS`` raises
``backend-down`` / ``chain-rpc-down`` (once per outage), and the first success after that
raises ``resolved``. A dependency that comes back within the hold raises nothing. The hold is
checked on every report and on every observer tick (:meth:`Alerts.tick`), so an alert is at
most one tick late even when the reports themselves back off.

The alerts the coordinator will emit (stake at risk, worker silent, work or harvest failed)
come through :meth:`Alerts.raise_alert` too, once the core emits them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from pooler.config import redact_url
from pooler.core.alerts import Alert, BackendDown, ChainRpcDown, Resolved
from pooler.core.dashboard_events import AlertEvent, DashboardEvent
from pooler.logs import log_event
from pooler.metrics import Metrics

log = logging.getLogger("pooler.alerts")

Publish = Callable[[DashboardEvent], None]  # a dashboard event (EventHub.publish)


def one_line(text: str, limit: int = 200) -> str:
    """The first line of an error's text, clipped: an alert's detail is read in a chat line or a
    pager, and some errors (a validation report) run over many lines."""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    if len(first) > limit:
        return first[: limit - 3] + "..."
    return first + (" ..." if len(lines) > 1 else "")


class AlertSink(Protocol):
    """Where alerts are delivered besides the dashboard (the webhook)."""

    def offer(self, alert: Alert, at: float | None = None) -> None: ...


class DownWatch:
    """One dependency's up/down reports turned into alerts after a hold (pure: times are given).

    ``report(ok, detail, now)`` for each piece of evidence, ``tick(now)`` as often as wanted;
    each returns the alert to raise, if any."""

    __slots__ = ("_detail", "_down", "_hold", "_raised", "_since")

    def __init__(self, down: Callable[[float, str], BackendDown | ChainRpcDown], hold: float) -> None:
        if hold < 0:
            raise ValueError(f"the hold is >= 0 seconds, got {hold}")
        self._down = down  # makes the alert: (since, detail)
        self._hold = hold
        self._since: float | None = None  # the first failure of the current outage; None while up
        self._detail = ""  # what that first failure said
        self._raised: BackendDown | ChainRpcDown | None = None  # the alert of this outage, once raised

    @property
    def raised(self) -> BackendDown | ChainRpcDown | None:
        return self._raised

    def report(self, ok: bool, detail: str, now: float) -> Alert | None:
        if ok:
            raised, self._raised, self._since = self._raised, None, None
            return None if raised is None else Resolved(raised, now, detail)
        if self._since is None:
            self._since, self._detail = now, detail
        return self.tick(now)

    def tick(self, now: float) -> Alert | None:
        since = self._since
        if since is None or self._raised is not None or now - since < self._hold:
            return None
        self._raised = self._down(since, self._detail)
        return self._raised


class Alerts:
    """Counts, publishes, logs and forwards alerts; watches the Backend and the chain RPC."""

    def __init__(
        self,
        metrics: Metrics,
        publish: Publish,
        *,
        sink: AlertSink | None,
        down_after: float,
        clock: Callable[[], float],
    ) -> None:
        self._metrics = metrics
        self._publish = publish
        self._sink = sink  # None: no ALERT_WEBHOOK_URL
        self._clock = clock
        self.backend = DownWatch(BackendDown, down_after)
        self.rpc = DownWatch(ChainRpcDown, down_after)
        self.raised = 0  # alerts raised since start (tests)

    def raise_alert(self, alert: Alert, at: float | None = None) -> None:
        """Send ``alert`` on (the module docstring). Cheap and synchronous: safe on any path."""
        now = self._clock() if at is None else at
        self.raised += 1
        self._metrics.alerts.labels(kind=alert.kind).inc()
        self._publish(AlertEvent(alert))
        level = logging.INFO if isinstance(alert, Resolved) else logging.WARNING
        log_event(log, level, "alert", kind=alert.kind, key=alert.key, summary=alert.summary())
        if self._sink is not None:
            self._sink.offer(alert, now)

    def backend_seen(self, ok: bool, detail: str) -> None:
        """Evidence about the Backend: a health poll, or a real call (it answered, or not)."""
        self._report(self.backend, ok, detail)

    def rpc_polled(self, ok: bool, detail: str) -> None:
        """One poll of the block monitor."""
        self._report(self.rpc, ok, detail)

    def tick(self) -> None:
        """The hold of an outage that is not reported again (the observer's tick)."""
        now = self._clock()
        for watch in (self.backend, self.rpc):
            alert = watch.tick(now)
            if alert is not None:
                self.raise_alert(alert, now)

    def _report(self, watch: DownWatch, ok: bool, detail: str) -> None:
        now = self._clock()
        alert = watch.report(ok, one_line(redact_url(detail)), now)
        if alert is not None:
            self.raise_alert(alert, now)


__all__ = ["AlertSink", "Alerts", "DownWatch", "one_line"]
