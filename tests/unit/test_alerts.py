"""Alerts without an event loop: the values and their JSON record (pooler/core/alerts.py), and the
webhook's queue, retry rules and body (pooler/runtime/webhook.py), with injected time and randomness."""

from __future__ import annotations

import typing

import orjson
import pytest

from pooler.chain.backoff import Backoff
from pooler.core.alerts import (
    ALERT_KINDS,
    Alert,
    BackendDown,
    ChainRpcDown,
    HarvestFailed,
    Resolved,
    RewardUnknown,
    StakeAtRisk,
    WorkerSilent,
    WorkFailed,
    alert_record,
)
from pooler.metrics import ALERT_WEBHOOK_OUTCOMES, Metrics
from pooler.runtime.webhook import AlertWebhook, DropOldest, Outcome, RetryPolicy, webhook_body

T0 = 1_760_000_000.0  # 08:53:20 UTC

EVERY_KIND: list[Alert] = [
    StakeAtRisk("f1", 38, 5, 7, 20.0, True),
    WorkerSilent("m1", "rig-2", T0 - 600, 10.0),
    BackendDown(T0, "health check: status 503"),
    ChainRpcDown(T0, "connection refused"),
    WorkFailed(38, ("f1", "f2"), "work was not recorded before the deadline"),
    HarvestFailed(38, ("f1",), "harvest failed until the block's entries expired"),
    RewardUnknown(38, ("f1",), "the harvest's answer was lost and the projection is not final"),
    Resolved(BackendDown(T0, "status 503"), T0 + 42.5, "status 'healthy'"),
]

# ---------------------------------------------------------------- the values


def test_every_kind_has_a_value_and_the_kinds_are_the_metrics_labels() -> None:
    assert [a.kind for a in EVERY_KIND] == list(ALERT_KINDS)
    assert set(typing.get_args(Outcome)) == set(ALERT_WEBHOOK_OUTCOMES)
    metrics = Metrics(process=False)
    for kind in ALERT_KINDS:  # every series exists at 0 from the start
        assert metrics.registry.get_sample_value("pooler_alerts_total", {"kind": kind}) == 0
    for outcome in ALERT_WEBHOOK_OUTCOMES:
        assert metrics.registry.get_sample_value("pooler_alert_webhook_total", {"outcome": outcome}) == 0


@pytest.mark.parametrize("alert", EVERY_KIND, ids=[a.kind for a in EVERY_KIND])
def test_the_record_is_json_with_camel_case_data(alert: Alert) -> None:
    record = alert_record(alert)
    assert list(record) == ["kind", "status", "severity", "key", "summary", "data"]
    assert record["kind"] == alert.kind and record["key"] == alert.key
    assert record["status"] == ("resolved" if isinstance(alert, Resolved) else "firing")
    assert record["severity"] in ("critical", "warning", "info")
    assert isinstance(record["summary"], str) and record["summary"]
    data = record["data"]
    assert isinstance(data, dict)
    assert all(k[0].islower() and "_" not in k for k in data)
    assert orjson.loads(orjson.dumps(record)) == record  # plain JSON: no tuples, bytes or floats as keys


def test_the_values_are_frozen_and_slotted() -> None:
    alert = BackendDown(T0, "x")
    with pytest.raises(AttributeError):
        alert.detail = "y"  # type: ignore[misc]
    assert not hasattr(alert, "__dict__")


def test_what_each_record_says() -> None:
    stake = alert_record(StakeAtRisk("f1", 38, None, 7, 20.0, False))
    assert stake["key"] == "stake-at-risk:38:f1"
    assert stake["data"] == {
        "farmerId": "f1",
        "block": 38,
        "bestZeros": None,
        "minZeros": 7,
        "secondsBeforeWorkAt": 20.0,
        "fallbackSearch": False,
    }
    assert "no share 20 s before workAt" in str(stake["summary"])
    silent = alert_record(WorkerSilent("m1", "rig-2", T0, 10.0))
    assert silent["data"] == {
        "minerId": "m1",
        "worker": "rig-2",
        "silentSince": 1_760_000_000_000,
        "minutes": 10.0,
    }
    assert "since 08:53:20 UTC" in str(silent["summary"])
    failed = alert_record(WorkFailed(38, tuple(f"f{i}" for i in range(8)), "refused"))
    assert failed["data"] == {"block": 38, "farmers": [f"f{i}" for i in range(8)], "reason": "refused"}
    assert "f0, f1, f2, f3, f4 and 3 more" in str(failed["summary"])  # a long list is cut for people


def test_a_resolved_pairs_with_its_alert_by_key() -> None:
    down = BackendDown(T0, "status 503")
    resolved = Resolved(down, T0 + 42.5, "status 'healthy'")
    record = alert_record(resolved)
    assert record["key"] == alert_record(down)["key"] == "backend-down"
    assert record["data"] == {
        "resolves": "backend-down",
        "since": 1_760_000_000_000,
        "detail": "status 503",
        "resolvedAt": 1_760_000_042_500,
        "lastedSeconds": 42.5,
        "resolution": "status 'healthy'",
    }
    assert record["summary"] == "Backend answers again after 42 s down: status 'healthy'"
    rpc = Resolved(ChainRpcDown(T0, "refused"), T0 + 3, "")
    assert alert_record(rpc)["summary"] == "chain RPC answers again after 3 s down"
    worker = Resolved(WorkerSilent("m1", "rig", T0, 5.0), T0 + 400)
    assert worker.key == "worker-silent:m1:rig" and worker.since == T0
    assert alert_record(worker)["summary"] == "worker 'rig' of miner m1 is back after 400 s silent"


# ---------------------------------------------------------------- the webhook's queue and retries


def test_drop_oldest_keeps_the_newest_and_counts_what_it_dropped() -> None:
    q: DropOldest[int] = DropOldest(3)
    assert [q.offer(i) for i in range(3)] == [None, None, None]
    assert q.offer(3) == 0 and q.offer(4) == 1  # full: the oldest goes
    assert (len(q), q.dropped) == (3, 2)
    assert q.take() == 2 and q.clear() == [3, 4] and q.take() is None
    with pytest.raises(ValueError):
        DropOldest(0)


def test_retries_are_bounded_in_count() -> None:
    policy = RetryPolicy(attempts=3, window=1e9, backoff=Backoff(1.0, 8.0))
    # equal jitter: rng 0 is half the step, rng ~1 the whole step
    assert policy.next_delay(1, 0.0, lambda: 0.0) == 0.5
    assert policy.next_delay(2, 0.0, lambda: 0.0) == 1.0
    assert policy.next_delay(3, 0.0, lambda: 0.0) is None  # 3 attempts made: give up
    assert RetryPolicy(1, 1e9, Backoff(1.0, 8.0)).next_delay(1, 0.0, lambda: 0.5) is None  # no retry


def test_retries_are_bounded_in_time_and_capped() -> None:
    policy = RetryPolicy(attempts=100, window=10.0, backoff=Backoff(1.0, 4.0))
    assert policy.next_delay(10, 0.0, lambda: 0.999) == pytest.approx(3.998)  # capped at 4 s
    assert policy.next_delay(2, 8.5, lambda: 0.0) == 1.0  # starts at 9.5 s: inside the window
    assert policy.next_delay(2, 9.5, lambda: 0.0) is None  # would start after 10 s
    # Retry-After lengthens a wait, never shortens it, and the window still bounds it
    assert policy.next_delay(1, 0.0, lambda: 0.0, retry_after=3.0) == 3.0
    assert policy.next_delay(1, 0.0, lambda: 0.0, retry_after=0.0) == 0.5
    assert policy.next_delay(1, 0.0, lambda: 0.0, retry_after=60.0) is None
    with pytest.raises(ValueError):
        RetryPolicy(0, 1.0, Backoff(1.0, 1.0))


def _webhook(queue_size: int, outcomes: list[Outcome]) -> AlertWebhook:
    return AlertWebhook(
        "https://hooks.example/T0/secret-path",
        source={"id": "p1", "name": "Pool"},
        timeout=1.0,
        queue_size=queue_size,
        retry=RetryPolicy(2, 5.0, Backoff(0.1, 0.2)),
        on_outcome=outcomes.append,
        clock=lambda: T0,
    )


def test_offer_is_sync_and_never_refuses_a_full_queue_drops_its_oldest() -> None:
    outcomes: list[Outcome] = []
    hook = _webhook(2, outcomes)  # never started: nothing drains it
    for i in range(5):
        hook.offer(WorkFailed(i, ("f",), "x"))
    assert (hook.pending, hook.dropped, outcomes) == (2, 3, ["dropped"] * 3)
    assert [item.alert.block for item in hook._queue.clear()] == [3, 4]  # type: ignore[union-attr]
    assert hook.target == "https://hooks.example"  # what logs name: no path, no token


def test_the_body_is_the_record_in_an_envelope() -> None:
    body = webhook_body("ab12-7", T0 + 0.25, BackendDown(T0, "refused"), {"id": "p1", "name": "Pool"})
    assert body == {
        "id": "ab12-7",
        "at": 1_760_000_000_250,
        "pooler": {"id": "p1", "name": "Pool"},
        **alert_record(BackendDown(T0, "refused")),
    }
