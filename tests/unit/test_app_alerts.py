"""The app's alerts without an event loop (pooler/app/alerts.py): the Backend/RPC hold, the
dispatcher (dashboard, metrics, log, webhook), and the observer's Backend evidence feeding them."""

from __future__ import annotations

import logging

import pytest

from pooler.app.alerts import Alerts, DownWatch, one_line
from pooler.app.observe import Observer
from pooler.core.alerts import Alert, BackendDown, ChainRpcDown, Resolved, WorkFailed, alert_record
from pooler.metrics import Metrics
from pooler.runtime.event_codec import encode_event

T0 = 1_760_000_000.0  # 08:53:20 UTC


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sink:
    def __init__(self) -> None:
        self.offered: list[tuple[Alert, float | None]] = []

    def offer(self, alert: Alert, at: float | None = None) -> None:
        self.offered.append((alert, at))


# ---------------------------------------------------------------- the hold


def test_an_outage_shorter_than_the_hold_raises_nothing() -> None:
    watch = DownWatch(BackendDown, hold=30.0)
    assert watch.report(False, "refused", T0) is None
    assert watch.tick(T0 + 29.9) is None
    assert watch.report(True, "ok", T0 + 29.9) is None  # back within the hold: no resolved either
    assert watch.tick(T0 + 100) is None


def test_a_long_outage_raises_once_with_its_first_failure_then_resolves() -> None:
    watch = DownWatch(BackendDown, hold=30.0)
    assert watch.report(False, "refused", T0) is None
    assert watch.report(False, "HTTP 503", T0 + 10) is None
    assert watch.tick(T0 + 30) == BackendDown(T0, "refused")  # since and detail: the first failure
    assert watch.tick(T0 + 31) is None and watch.report(False, "again", T0 + 40) is None  # once
    assert watch.raised == BackendDown(T0, "refused")
    assert watch.report(True, "status 'healthy'", T0 + 50) == Resolved(
        BackendDown(T0, "refused"), T0 + 50, "status 'healthy'"
    )
    assert watch.raised is None and watch.report(True, "ok", T0 + 51) is None
    # the next outage is a new one
    assert watch.report(False, "timeout", T0 + 60) is None
    assert watch.tick(T0 + 90) == BackendDown(T0 + 60, "timeout")


def test_a_report_after_the_hold_raises_at_once_and_hold_zero_at_the_first_failure() -> None:
    watch = DownWatch(ChainRpcDown, hold=5.0)
    assert watch.report(False, "refused", T0) is None
    assert watch.report(False, "refused", T0 + 6) == ChainRpcDown(T0, "refused")
    instant = DownWatch(ChainRpcDown, hold=0.0)
    assert instant.report(False, "refused", T0) == ChainRpcDown(T0, "refused")
    with pytest.raises(ValueError):
        DownWatch(BackendDown, hold=-1.0)


# ---------------------------------------------------------------- the dispatcher


def test_the_dispatcher_counts_publishes_logs_and_offers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pooler.alerts")
    metrics, clock, sink = Metrics(process=False), Clock(), Sink()
    published: list[tuple[str, object]] = []
    alerts = Alerts(
        metrics, lambda e: published.append(encode_event(e)), sink=sink, down_after=10.0, clock=clock
    )
    alerts.backend_seen(False, "health check: refused (http://ops:pa55@backend.example)")
    clock.now += 5
    alerts.tick()
    assert published == [] and sink.offered == []
    clock.now += 5
    alerts.tick()
    down = BackendDown(T0, "health check: refused (http://ops:***@backend.example)")  # a URL password hidden
    assert published == [("alert", alert_record(down))]
    assert sink.offered == [(down, T0 + 10)]
    clock.now += 1
    alerts.backend_seen(True, "status 'healthy'")
    resolved = Resolved(down, T0 + 11, "status 'healthy'")
    assert published[-1] == ("alert", alert_record(resolved)) and sink.offered[-1] == (resolved, T0 + 11)
    alerts.rpc_polled(False, "refused")  # the other watch is separate
    assert len(published) == 2
    sample = metrics.registry.get_sample_value
    assert sample("pooler_alerts_total", {"kind": "backend-down"}) == 1
    assert sample("pooler_alerts_total", {"kind": "resolved"}) == 1
    assert sample("pooler_alerts_total", {"kind": "chain-rpc-down"}) == 0
    lines = [r for r in caplog.records if r.name == "pooler.alerts"]
    assert [(r.getMessage(), r.levelno) for r in lines] == [
        ("alert", logging.WARNING),
        ("alert", logging.INFO),
    ]
    assert "pa55" not in caplog.text


def test_a_detail_is_one_line_of_bounded_length() -> None:
    assert one_line("  getLedgerEntries: 3 validation errors\njsonrpc\n  Field required") == (
        "getLedgerEntries: 3 validation errors ..."
    )
    assert one_line("x" * 500) == "x" * 197 + "..." and one_line("") == ""
    metrics, clock, sink = Metrics(process=False), Clock(), Sink()
    alerts = Alerts(metrics, lambda e: None, sink=sink, down_after=0.0, clock=clock)
    alerts.rpc_polled(False, "first line\nsecond line")
    assert sink.offered == [(ChainRpcDown(T0, "first line ..."), T0)]


def test_without_a_webhook_alerts_still_reach_the_dashboard_and_metrics() -> None:
    metrics, published = Metrics(process=False), []
    alerts = Alerts(
        metrics, lambda e: published.append(encode_event(e)[0]), sink=None, down_after=0.0, clock=Clock()
    )
    alerts.raise_alert(WorkFailed(3, ("f1",), "refused"))
    assert published == ["alert"] and alerts.raised == 1
    assert metrics.registry.get_sample_value("pooler_alerts_total", {"kind": "work-failed"}) == 1


# ---------------------------------------------------------------- the observer's Backend evidence


def test_a_health_poll_counts_by_its_verdict_and_news_flips_once_each_way() -> None:
    """A 503 from /health is an answer to the client (outcome "ok") but a down Backend to the
    probe: the poll's verdict alone is evidence, so the news and the alert watch do not flap."""
    metrics, clock, sink = Metrics(process=False), Clock(), Sink()
    news: list[tuple[str, object]] = []
    alerts = Alerts(metrics, lambda e: news.append(encode_event(e)), sink=sink, down_after=2.0, clock=clock)
    observer = Observer(
        metrics, view=lambda now: None, publish=lambda e: news.append(encode_event(e)), alerts=alerts
    )  # type: ignore[arg-type,return-value]
    observer.backend_polled(True, "status 'healthy'")
    for _ in range(3):  # three polls in an outage answered 503, one second apart
        observer.backend_call("health", 0.01, "ok")
        observer.backend_polled(False, "status ''")
        clock.now += 1
    observer.backend_call("health", 0.01, "ok")
    observer.backend_polled(True, "status 'healthy'")
    chain = [d for k, d in news if k == "chain"]
    assert chain == [
        {"ok": False, "detail": "Backend unavailable (health)"},
        {"ok": True, "detail": "Backend reachable again (health)"},
    ]
    assert [type(a).__name__ for a, _ in sink.offered] == ["BackendDown", "Resolved"]
    assert sink.offered[0][0] == BackendDown(T0, "health check: status ''")
    # a real call is evidence too: unavailable, then answered
    observer.backend_call("work", 0.5, "unavailable")
    observer.backend_call("work", 0.5, "rejected")  # a refusal is an answer
    assert [d["ok"] for k, d in news if k == "chain"][-2:] == [False, True]
