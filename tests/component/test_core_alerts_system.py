"""The coordinator's own alerts from a real in-process Pooler on the devnet, received by a real
HTTP receiver on 127.0.0.1: a planted farmer nobody mines for raises ``stake-at-risk`` before
workAt; a worker that sent a share and went quiet raises ``worker-silent`` after the silence
threshold. ALERT_WORKER_SILENT_MINUTES counts whole minutes (one at least); this test sets the core's
threshold to a few seconds in the built options instead, so the alert's path from the core to the
webhook is the real one without a minute of waiting (the setting's conversion has a unit test)."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
import pytest

from pooler.app.options import PoolerOptions
from pooler.devnet import Devnet
from tests.support.system import (
    MinerSocket,
    component_options,
    find_nonce,
    register_miner,
    running_system,
)
from tests.support.wait import wait_until
from tests.support.webhook_receiver import WebhookReceiver

BLOCK_INTERVAL = 6
SILENT_AFTER = 4.0  # seconds of silence before worker-silent


def quick_silence(net: Devnet, interval: int, **overrides: Any) -> PoolerOptions:
    opts = component_options(net, interval, **overrides)
    return dataclasses.replace(opts, core=dataclasses.replace(opts.core, worker_silent_after=SILENT_AFTER))


async def test_stake_at_risk_and_worker_silent_reach_the_webhook() -> None:
    async with (
        WebhookReceiver() as receiver,
        running_system(
            block_interval=BLOCK_INTERVAL,
            alert_webhook_url=receiver.url,
            profile=quick_silence,
            alert_stake_lead_ms=2500,
        ) as system,
        aiohttp.ClientSession() as http,
    ):
        idle = await register_miner(system.url, "idle", http=http)  # planted, never mined for
        busy = await register_miner(system.url, "busy", http=http)
        async with MinerSocket.open(system.ws_url) as miner:
            _, job = await miner.hello(busy.token, worker="rig-1")
            nonce, _, _ = find_nonce(job)
            await miner.send({"type": "share", "job": job["job"], "nonce": str(nonce)})
            await miner.expect("accepted")

            def stake(body: dict[str, object]) -> bool:
                data = body["data"]
                return (
                    body["kind"] == "stake-at-risk"
                    and isinstance(data, dict)
                    and data["farmerId"] == idle.farmer_id
                )

            await wait_until(lambda: any(map(stake, receiver.delivered())), "stake-at-risk", within=30)
            risk = next(filter(stake, receiver.delivered()))
            assert risk["severity"] == "critical"
            assert risk["data"]["bestZeros"] is None and risk["data"]["fallbackSearch"] is False
            assert risk["data"]["secondsBeforeWorkAt"] > 0

            def silent(body: dict[str, object]) -> bool:
                return body["kind"] == "worker-silent"

            await wait_until(lambda: any(map(silent, receiver.delivered())), "worker-silent", within=30)
            quiet = next(filter(silent, receiver.delivered()))
            assert quiet["data"]["minerId"] == busy.miner_id and quiet["data"]["worker"] == "rig-1"
            assert quiet["data"]["minutes"] == pytest.approx(SILENT_AFTER / 60)
        sample = system.pooler.metrics.registry.get_sample_value
        assert (sample("pooler_alerts_total", {"kind": "stake-at-risk"}) or 0) >= 1
        assert sample("pooler_alerts_total", {"kind": "worker-silent"}) == 1
