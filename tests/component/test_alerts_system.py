"""Alerts from a real in-process Pooler on the devnet: the devnet's Backend goes away (an injected
outage: every request answered 503), and a real HTTP receiver on 127.0.0.1 gets ``backend-down``
once the hold has passed, then ``resolved`` when it is back; the dashboard stream and /metrics
say the same. The same for the chain RPC, failed by a fault proxy in front of it."""

from __future__ import annotations

from typing import Any

import pytest

from pooler.devnet import Devnet
from tests.support.faultproxy import FaultProxy, Respond, Rule
from tests.support.system import POOLER_ID, running_system, tap_events
from tests.support.wait import wait_until
from tests.support.webhook_receiver import WebhookReceiver

HOLD_MS = 300


async def test_a_backend_outage_raises_backend_down_then_resolved() -> None:
    async with (
        WebhookReceiver() as receiver,
        running_system(
            alert_webhook_url=receiver.url, alert_down_after_ms=HOLD_MS, health_interval_ms=100
        ) as system,
        tap_events(system.events_url) as tap,
    ):
        pooler, net = system.pooler, system.net
        await wait_until(lambda: pooler.observer.backend_ok is True, "a first healthy poll of the Backend")
        net.backend_faults.outage_for(3600, net.contract.now())
        # exactly one backend-down (a second would fail the wait), and nothing about the RPC
        await wait_until(lambda: receiver.kinds() == ["backend-down"], "backend-down at the receiver")
        assert not pooler.observer.backend_ok
        net.backend_faults.clear()
        await wait_until(lambda: receiver.kinds() == ["backend-down", "resolved"], "resolved at the receiver")
        await wait_until(lambda: len(tap.of("alert")) == 2, "both alerts on the dashboard stream")

    down, up = receiver.delivered()
    assert down["pooler"] == up["pooler"] == {"id": POOLER_ID, "name": "KALE Pooler"}
    assert (down["status"], down["severity"], down["key"]) == ("firing", "critical", "backend-down")
    assert "health check" in down["data"]["detail"] and "Backend down since" in down["summary"]
    assert (up["status"], up["key"], up["data"]["resolves"]) == ("resolved", "backend-down", "backend-down")
    since, resolved_at = down["data"]["since"], up["data"]["resolvedAt"]
    assert up["data"]["since"] == since
    # raised no earlier than the hold after the first failure; resolved after it was raised
    assert down["at"] - since >= HOLD_MS and resolved_at >= down["at"]
    assert up["data"]["lastedSeconds"] == pytest.approx((resolved_at - since) / 1000, abs=0.002)
    assert down["id"] != up["id"]

    # the dashboard got the same objects, without the webhook's envelope
    def record(body: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k not in ("id", "at", "pooler")}

    assert [e["data"] for e in tap.of("alert")] == [record(down), record(up)]

    sample = pooler.metrics.registry.get_sample_value
    assert sample("pooler_alerts_total", {"kind": "backend-down"}) == 1
    assert sample("pooler_alerts_total", {"kind": "resolved"}) == 1
    assert sample("pooler_alerts_total", {"kind": "chain-rpc-down"}) == 0
    assert sample("pooler_alert_webhook_total", {"outcome": "sent"}) == 2
    assert sample("pooler_alert_webhook_total", {"outcome": "dropped"}) == 0
    # the flip of the Backend's evidence is news on the stream once each way (no flapping)
    backend_news = [e["data"]["ok"] for e in tap.of("chain") if "Backend" in e["data"]["detail"]]
    assert backend_news == [False, True]


async def test_a_chain_rpc_outage_raises_chain_rpc_down_then_resolved() -> None:
    async with (
        WebhookReceiver() as receiver,
        Devnet(block_interval=300, ledger_seconds=1.0) as net,
        FaultProxy(net.rpc_url, name="rpc proxy") as rpc,
        running_system(
            net=net,
            block_interval=300,
            stellar_rpc_url=rpc.url,
            alert_webhook_url=receiver.url,
            alert_down_after_ms=HOLD_MS,
        ) as system,
    ):
        pooler = system.pooler
        await wait_until(lambda: pooler.monitor.healthy, "a first good poll of the chain")
        fault = rpc.add(Rule(Respond.json({"error": "injected"}, status=500)))  # every request, until cleared
        await wait_until(lambda: receiver.kinds() == ["chain-rpc-down"], "chain-rpc-down at the receiver")
        fault.clear()
        await wait_until(lambda: receiver.kinds() == ["chain-rpc-down", "resolved"], "resolved")
        sample = pooler.metrics.registry.get_sample_value
        assert sample("pooler_alerts_total", {"kind": "chain-rpc-down"}) == 1
        assert sample("pooler_alerts_total", {"kind": "backend-down"}) == 0
    down, up = receiver.delivered()
    detail = down["data"]["detail"]
    assert "getLedgerEntries" in detail and "\n" not in detail  # the first line of the error, for people
    assert down["key"] == up["key"] == "chain-rpc-down"
    assert up["data"]["resolves"] == "chain-rpc-down" and "failed" in up["data"]["resolution"]
    assert down["at"] - down["data"]["since"] >= HOLD_MS
