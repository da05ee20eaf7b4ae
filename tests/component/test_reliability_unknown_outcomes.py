"""Wrong answers from the systems the Pooler depends on (#18 items 1-4), against a live Pooler.

The fault proxy (tests/support/faultproxy.py) sits in front of the devnet's Backend and chain
RPC. Each test reproduces one failure of the issue; what must hold is that an answer that
cannot be read is an unknown outcome reconciled with the chain (the farmers' pails), never a
failure by itself:

1. a ``/work`` answered 200 lacking a field (never reaching the Backend) is sent again and lands;
2. a ``/plant`` that landed but was answered with an empty body is planted, and the block worked;
3. a ``/harvest`` that happened but was answered ``{}`` is recorded: ``/miner/stats`` rewards
   equal the Backend's own ``totalEarnings``;
4. while the chain RPC is down no ``/plant`` goes out (the late-plant timer waits for the
   chain); once it is back the next block opens and is worked.

No miner is needed: the Pooler's local fallback search finds a nonce for a planted farmer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from tests.component.redis_support import redis_server  # noqa: F401
from tests.redis_server import RedisServer
from tests.support.faultproxy import Drop, ProxiedDevnet, Respond, Rewrite, Rule, proxied_devnet
from tests.support.system import Registration, System, bearer, ops_options, register_miner, running_system
from tests.support.wait import wait_until

INTERVAL = 6  # seconds per block: workAt at 3.6 s, deadline margin 1 s


@asynccontextmanager
async def proxied_system(**settings: Any) -> AsyncIterator[tuple[ProxiedDevnet, System, Registration]]:
    """A devnet with a fault proxy in front of its Backend and RPC, a Pooler using both proxies,
    and one registered miner (its farmer is planted from the next plant on); ``settings``
    override Settings fields (a group's store, say)."""
    async with (
        proxied_devnet(block_interval=INTERVAL, ledger_seconds=1.0) as p,
        running_system(
            net=p.net,
            block_interval=INTERVAL,
            profile=ops_options,
            backend_api_url=p.backend.url,
            stellar_rpc_url=p.rpc.url,
            **settings,
        ) as system,
    ):
        reg = await register_miner(system.url, "unknown-outcomes")
        yield p, system, reg


def status(system: System, block: int, farmer_id: str) -> str:
    for b in system.pooler.core.view(system.pooler.clock()).blocks:
        if b.block == block and farmer_id in b.farmers:
            return b.farmers[farmer_id].status
    return ""


def blocks_with(system: System, farmer_id: str, wanted: str) -> list[int]:
    return [
        b.block
        for b in system.pooler.core.view(system.pooler.clock()).blocks
        if farmer_id in b.farmers and b.farmers[farmer_id].status == wanted
    ]


def unknown_ops(system: System, op: str) -> float:
    value: float = system.pooler.metrics.block_ops.labels(op=op, outcome="unknown")._value.get()
    return value


def work_of(p: ProxiedDevnet, block: int) -> list[str]:
    """The outcome of each ``/work`` of ``block`` the proxy saw, in order."""
    return [e.outcome for e in p.backend.requests(path="/work") if e.json().get("blockIndex") == block]


async def test_work_answered_200_lacking_a_field_is_sent_again_and_lands() -> None:
    async with proxied_system() as (p, system, reg):
        lacking = {"poolerId": "ops-pooler", "totalSubmissions": 1, "validNonces": 1}  # no blockIndex
        rule = p.backend.add(Rule(Respond.json(lacking), path="/work", times=1))
        (first,) = await rule.wait_spent()
        block = first.json()["blockIndex"]
        await wait_until(
            lambda: status(system, block, reg.farmer_id) == "worked", "the work to land", within=15
        )
        assert work_of(p, block)[:2] == ["responded", "forwarded"]  # refused nothing, sent again
        assert unknown_ops(system, "work") >= 1
        assert system.pooler.runner.failures == 0


async def test_in_a_group_the_leader_reconciles_a_work_answered_200_lacking_a_field(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """The same fault with ``STORE=redis`` (a group of one): the leader's cycle runner reads the
    pails through the monitor and sends the work again; the chain shows it landed."""
    group = {
        "store": "redis",
        "redis_url": redis_server.url,
        "pooler_instance_id": "a",
        "leader_lease_ms": 2000,
    }
    async with proxied_system(**group) as (p, _system, reg):
        lacking = {"poolerId": "ops-pooler", "totalSubmissions": 1, "validNonces": 1}
        rule = p.backend.add(Rule(Respond.json(lacking), path="/work", times=1))
        (first,) = await rule.wait_spent(within=30)
        block = first.json()["blockIndex"]
        address = p.net.backend.farmers[reg.farmer_id].address

        def landed() -> bool:
            pail = p.net.contract.get_pail(address, block)
            return pail is not None and pail.zeros is not None

        await wait_until(landed, "the work on chain", within=15)
        assert work_of(p, block)[:2] == ["responded", "forwarded"]


async def test_plant_that_landed_with_an_empty_answer_is_planted_and_worked() -> None:
    async with proxied_system() as (p, system, reg):
        rule = p.backend.add(Rule(Rewrite(raw=lambda _: b""), path="/plant", times=1))
        (first,) = await rule.wait_spent()
        block = first.json()["blockIndex"]
        assert first.upstream_status == 200 and first.answer == b""  # it planted, nobody could read it
        await wait_until(
            lambda: status(system, block, reg.farmer_id) == "worked", "the block worked", within=20
        )
        assert unknown_ops(system, "plant") >= 1
        assert not blocks_with(system, reg.farmer_id, "failed")


async def test_harvest_answered_empty_is_recorded_with_the_backends_rewards() -> None:
    async with proxied_system() as (p, system, reg), aiohttp.ClientSession() as http:
        rule = p.backend.add(Rule(Rewrite(edit=lambda _: {}), path="/harvest", times=1))
        (first,) = await rule.wait_spent(within=40)
        block = first.json()["blockIndex"]
        upstream = orjson.loads(first.upstream_body or b"{}")
        assert upstream["successfulHarvests"] >= 1  # the harvest happened upstream
        await wait_until(
            lambda: status(system, block, reg.farmer_id) == "harvested", "the harvest recorded", within=15
        )
        farmer = p.net.backend.farmers[reg.farmer_id]
        async with http.get(f"{system.url}/miner/stats", headers=bearer(reg.token)) as resp:
            stats = await resp.json()
        earned = farmer.total_earnings
        # every harvest so far went through the Pooler: its record equals the Backend's own total
        assert earned > 0 and int(stats["rewards"]) == earned
        assert unknown_ops(system, "harvest") == 1


async def test_no_plant_while_the_chain_rpc_is_down_then_the_next_block_is_worked() -> None:
    async with proxied_system() as (p, system, reg):
        pooler = system.pooler
        await wait_until(
            lambda: bool(blocks_with(system, reg.farmer_id, "worked")), "a block worked", within=20
        )
        view = pooler.core.view(pooler.clock())
        assert view.block is not None and view.block_ends_at is not None
        current, ends = view.block, view.block_ends_at / 1000
        await p.rpc.refuse_connections()
        down_at = len(p.backend.exchanges)
        await wait_until(lambda: not pooler.monitor.healthy, "the RPC seen down", within=10)
        # past the block's end, its late-plant grace and three late-plant retries
        await wait_until(lambda: pooler.clock() > ends + 0.5 + 3 * 1.0, "three late-plant retries", within=20)
        during = [e for e in p.backend.exchanges[down_at:] if e.path == "/plant"]
        assert during == []  # before: one blind /plant every retry, into blocks nobody could see
        await p.rpc.accept_connections()
        await wait_until(
            lambda: status(system, current + 1, reg.farmer_id) == "worked", "the next block worked", within=20
        )
        assert pooler.runner.failures == 0


@pytest.mark.parametrize("op", ["plant", "work"])
async def test_an_answer_lost_after_the_backend_acted_is_reconciled(op: str) -> None:
    """The connection is cut once the Backend answered: plant or work did happen."""

    async with proxied_system() as (p, system, reg):
        rule = p.backend.add(Rule(Drop(after_upstream=True), path=f"/{op}", times=1))
        (first,) = await rule.wait_spent(within=20)
        block = first.json()["blockIndex"]
        assert first.upstream_status == 200
        await wait_until(
            lambda: status(system, block, reg.farmer_id) == "worked", "the block worked", within=20
        )
        assert unknown_ops(system, op) >= 1
