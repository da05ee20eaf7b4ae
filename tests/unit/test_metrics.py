"""Metrics: the exposition parses with prometheus-client's own parsers and shows a block cycle."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from pooler import metrics as metrics_module
from pooler.metrics import BLOCK_OPS, OP_OUTCOMES, PHASES, SHARE_REASONS, Metrics, metrics_response

ROOT = Path(__file__).resolve().parents[2]


def samples(m: Metrics, accept: str | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, keyed by (name, labels), read back by the real parser."""
    body, content_type = metrics_response(accept, m)
    assert content_type.startswith("text/plain")
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def run_block_cycle(m: Metrics) -> None:
    """What the runtime records for one block: plant, shares, work, then harvest on the next block."""
    m.describe(version="0.1.0", pooler_id="pool-1", network="devnet", contract="C...")
    m.miners_connected.set(3)
    m.workers_connected.labels(transport="ws").set(7)
    m.rpc_up.set(1)
    m.backend_up.set(1)
    m.block_index.set(41)
    m.block_timestamp.set(1_754_000_000)
    m.new_block_detect_latency.observe(0.8)
    m.new_block_push_latency.observe(0.0007)
    m.block_phase.state("planting")
    m.backend_latency.labels(op="plant").observe(0.12)
    m.block_ops.labels(op="plant", outcome="ok").inc()
    m.block_phase.state("mining")
    for reason in ("ok", "ok", "ok", "stale", "duplicate", "low-zeros"):
        m.share(reason)
    m.pool_hashrate.set(2.5e6)
    m.farmer_hashrate.labels(farmer_id="farmer-a").set(1.5e6)
    m.farmer_hashrate.labels(farmer_id="farmer-b").set(1.0e6)
    m.store_commit_latency.observe(0.002)
    m.block_phase.state("submitting")
    m.backend_errors.labels(op="work", kind="unavailable").inc()  # first attempt: 503
    m.backend_latency.labels(op="work").observe(0.05)
    m.backend_latency.labels(op="work").observe(0.2)
    m.block_ops.labels(op="work", outcome="ok").inc()
    m.block_phase.state("worked")
    m.block_index.set(42)  # the next block opens
    m.block_phase.state("planting")
    m.block_ops.labels(op="plant", outcome="ok").inc()
    m.backend_latency.labels(op="harvest").observe(0.3)
    m.block_ops.labels(op="harvest", outcome="ok").inc()
    with m.rpc_latency.labels(method="getLedgerEntries").time():
        pass
    m.rpc_errors.labels(method="getLedgerEntries", kind="rpc-error").inc()
    m.record_loop_lag(0.004)
    m.limit_hits.labels(limit="rate").inc()


def test_exposition_parses_and_shows_a_completed_block_cycle() -> None:
    m = Metrics(process=False)
    run_block_cycle(m)
    s = samples(m)
    for op in BLOCK_OPS:
        assert s[key("pooler_block_ops_total", op=op, outcome="ok")] >= 1, f"{op} not recorded"
    assert s[key("pooler_block_ops_total", op="plant", outcome="ok")] == 2
    assert s[key("pooler_block_ops_total", op="work", outcome="failed")] == 0
    assert s[key("pooler_block_index")] == 42
    assert s[key("pooler_block_phase", pooler_block_phase="planting")] == 1
    assert sum(s[key("pooler_block_phase", pooler_block_phase=p)] for p in PHASES) == 1
    assert s[key("pooler_shares_total", result="accepted", reason="ok")] == 3
    assert s[key("pooler_shares_total", result="rejected", reason="stale")] == 1
    assert s[key("pooler_shares_total", result="rejected", reason="invalid-hash")] == 0
    assert s[key("pooler_farmer_hashes_per_second", farmer_id="farmer-a")] == 1.5e6
    assert s[key("pooler_pool_hashes_per_second")] == 2.5e6
    assert s[key("pooler_miners_connected")] == 3
    assert s[key("pooler_workers_connected", transport="ws")] == 7
    assert s[key("pooler_backend_request_duration_seconds_count", op="work")] == 2
    assert s[key("pooler_backend_request_duration_seconds_bucket", op="work", le="0.1")] == 1
    assert s[key("pooler_backend_errors_total", op="work", kind="unavailable")] == 1
    assert s[key("pooler_rpc_request_duration_seconds_count", method="getLedgerEntries")] == 1
    assert s[key("pooler_rpc_errors_total", method="getLedgerEntries", kind="rpc-error")] == 1
    assert s[key("pooler_new_block_push_seconds_bucket", le="0.001")] == 1
    assert s[key("pooler_new_block_detect_seconds_count")] == 1
    assert s[key("pooler_store_commit_duration_seconds_count")] == 1
    assert s[key("pooler_event_loop_lag_last_seconds")] == 0.004
    assert s[key("pooler_event_loop_lag_seconds_count")] == 1
    assert s[key("pooler_limit_hits_total", limit="rate")] == 1
    info = key("pooler_info", version="0.1.0", pooler_id="pool-1", network="devnet", contract="C...")
    assert s[info] == 1


def test_openmetrics_is_served_when_asked_and_parses() -> None:
    m = Metrics(process=False)
    run_block_cycle(m)
    body, content_type = metrics_response("application/openmetrics-text; version=1.0.0", m)
    assert content_type.startswith("application/openmetrics-text")
    families = {f.name: f for f in parse_openmetrics(body.decode())}
    assert families["pooler_block_phase"].type == "stateset"
    assert families["pooler_shares"].type == "counter"
    assert families["pooler_new_block_push_seconds"].type == "histogram"


def test_every_enumerated_series_exists_from_the_start() -> None:
    s = samples(Metrics(process=False))
    for reason in SHARE_REASONS:
        result = "accepted" if reason == "ok" else "rejected"
        assert s[key("pooler_shares_total", result=result, reason=reason)] == 0
    for op in BLOCK_OPS:
        for outcome in OP_OUTCOMES:
            assert s[key("pooler_block_ops_total", op=op, outcome=outcome)] == 0
    assert s[key("pooler_block_phase", pooler_block_phase="idle")] == 1
    assert not any(name.endswith("_created") for name, _ in s), "_created series are disabled"


def test_forget_farmer_drops_its_series_and_is_idempotent() -> None:
    m = Metrics(process=False)
    m.farmer_hashrate.labels(farmer_id="gone").set(5)
    m.forget_farmer("gone")
    m.forget_farmer("never-seen")
    assert not any(name == "pooler_farmer_hashes_per_second" for name, _ in samples(m))


def test_unknown_phase_is_refused() -> None:
    with pytest.raises(ValueError):
        Metrics(process=False).block_phase.state("harvest-ish")


def test_registries_are_separate_and_the_process_one_has_process_metrics() -> None:
    a, b = Metrics(process=False), Metrics(process=False)
    a.share("ok")
    assert samples(b)[key("pooler_shares_total", result="accepted", reason="ok")] == 0
    body, _ = metrics_response(None)  # the process-wide METRICS
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_gc_objects_collected"} <= names
    assert metrics_module.METRICS.registry is not a.registry


def test_every_metric_is_documented() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    body, _ = metrics_response(None, Metrics(process=False))
    for family in text_string_to_metric_families(body.decode()):
        shown = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{shown}`" in doc, f"{shown} is not documented in docs/operations.md"
        assert family.documentation, f"{family.name} has no HELP text"
