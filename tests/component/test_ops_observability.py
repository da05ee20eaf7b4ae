"""Operations against a real Pooler on the devnet: /metrics, JSON logs, readiness.

One run covers a whole block cycle (block 2 planted, worked, harvested when block 3 opens)
with one WebSocket miner, then a Backend outage flipping readiness and back.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from pooler import __version__
from pooler.app.service import Pooler
from pooler.logs import setup_logging
from tests.component.reliability_support import SECRET_SEED, Miner, mine, ws_url
from tests.support.system import ops_options, register_miner, running_system
from tests.support.wait import wait_until


@contextlib.contextmanager
def json_log_capture() -> Iterator[io.StringIO]:
    """Everything logged while inside, as ``LOG_FORMAT=json`` lines (the real handler and filter)."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = setup_logging(level="INFO", fmt="json", stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


Table = dict[tuple[str, frozenset[tuple[str, str]]], float]  # (metric, labels) -> value


def samples(body: str) -> Table:
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(table: Table, name: str, **labels: str) -> float:
    return table[(name, frozenset(labels.items()))]


async def scrape(http: aiohttp.ClientSession, pooler: Pooler) -> str:
    async with http.get(f"{pooler.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return await resp.text()


async def scrape_after_a_snapshot(http: aiohttp.ClientSession, pooler: Pooler) -> Table:
    """The metrics, scraped once the observer has taken a gauge snapshot since this call.

    Each observer tick counts in the loop-lag histogram and a snapshot comes every
    ``snapshot_interval``: that many ticks (and one more) after the first scrape, one was taken.
    """
    ticks = pooler.observer.snapshot_interval / pooler.observer.interval
    start = value(samples(await scrape(http, pooler)), "pooler_event_loop_lag_seconds_count")

    async def after_a_snapshot() -> Table | None:
        table = samples(await scrape(http, pooler))
        return table if value(table, "pooler_event_loop_lag_seconds_count") >= start + ticks + 1 else None

    return await wait_until(after_a_snapshot, "a metrics snapshot")


async def test_a_block_cycle_shows_in_metrics_logs_and_readiness() -> None:
    with json_log_capture() as logs:
        async with (
            running_system(block_interval=6, profile=ops_options) as system,
            aiohttp.ClientSession() as http,
        ):
            net, pooler = system.net, system.pooler
            reg = await register_miner(pooler.url, "ops-rig", http=http)
            stop = asyncio.Event()
            async with Miner(ws_url(pooler), reg.token) as miner:
                task = asyncio.create_task(mine(miner, stop))
                # block 2 is the first planted one; block 3 opening triggers block 2's harvest
                await wait_until(
                    lambda: pooler.core.view(pooler.clock()).block == 3, "block 3 to open", within=20
                )
                await wait_until(
                    lambda: any(b.block == 2 and b.harvest == "done" for b in pooler.core.view(0).blocks),
                    "block 2's harvest",
                )
                table = await scrape_after_a_snapshot(http, pooler)  # the gauges include the harvest
                stop.set()
                await task

            # the cycle, as a scraper sees it
            for op in ("plant", "work", "harvest"):
                assert value(table, "pooler_block_ops_total", op=op, outcome="ok") >= 1, op
                assert value(table, "pooler_block_ops_total", op=op, outcome="failed") == 0, op
            assert value(table, "pooler_shares_total", result="accepted", reason="ok") >= 3
            assert value(table, "pooler_block_index") >= 3
            assert value(table, "pooler_new_block_push_seconds_count") >= 2
            assert value(table, "pooler_new_block_detect_seconds_count") >= 2
            assert value(table, "pooler_backend_request_duration_seconds_count", op="work") >= 1
            assert value(table, "pooler_backend_up") == 1
            assert value(table, "pooler_rpc_up") == 1
            assert value(table, "pooler_rpc_request_duration_seconds_count", method="getLedgerEntries") >= 10
            assert value(table, "pooler_event_loop_lag_seconds_count") >= 10
            assert value(table, "pooler_miners_connected") == 1
            assert value(table, "pooler_workers_connected", transport="ws") == 1
            assert ("pooler_farmer_hashes_per_second", frozenset({("farmer_id", reg.farmer_id)})) in table
            phases = [
                labels for (name, labels), v in table.items() if name == "pooler_block_phase" and v == 1
            ]
            assert len(phases) == 1
            info = {"version": __version__, "pooler_id": "ops-pooler", "network": "devnet"}
            assert value(table, "pooler_info", contract=net.contract_id, **info) == 1

            # readiness follows the Backend's health, polled on a timer
            async with http.get(f"{pooler.url}/health/ready") as resp:
                assert resp.status == 200
            net.backend_faults.outage_for(60, net.contract.now())
            await wait_until(
                lambda: pooler.observer.backend_ok is False, "readiness to see the outage", within=5
            )
            async with http.get(f"{pooler.url}/health/ready") as resp:
                body = await resp.json()
                assert resp.status == 503 and body["checks"]["backend"] == "down", body
            async with http.get(f"{pooler.url}/health/live") as resp:
                assert resp.status == 200
            async with http.get(f"{pooler.url}/health") as resp:
                assert (await resp.json())["status"] == "degraded"
            net.backend_faults.clear()
            await wait_until(
                lambda: pooler.observer.backend_ok is True, "readiness to see the recovery", within=5
            )
            async with http.get(f"{pooler.url}/health/ready") as resp:
                assert resp.status == 200 and (await resp.json())["checks"] == {
                    "rpc": "ok",
                    "backend": "ok",
                    "store": "ok",
                }

    # the log: one JSON object a line, with context, and never a token or a key
    text = logs.getvalue()
    assert reg.token not in text
    assert not SECRET_SEED.search(text)
    lines = [orjson.loads(line) for line in text.splitlines()]
    for line in lines:
        assert {"ts", "level", "logger", "event"} <= line.keys(), line
    events: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        events.setdefault(line["event"], []).append(line)
    joined = events["miner joined"][0]
    assert joined["minerId"] == reg.miner_id and joined["farmerId"] == reg.farmer_id
    connected = events["worker connected"][0]
    assert connected["worker"] == "w1" and connected["minerId"] == reg.miner_id and "block" in connected
    assert {line["block"] for line in events["new block"]} >= {2, 3}
    for ok in ("plant ok", "work ok", "harvest ok"):
        assert any(line["block"] == 2 for line in events[ok]), ok
    assert events["backend down"][0]["level"] == "warning"
    assert "backend up" in events
