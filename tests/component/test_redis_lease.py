"""The leader lease and its fencing against a real redis-server and the devnet's Backend.

The local belief runs on an injected monotonic clock (a pause past the lease is a clock jump);
Redis's own expiry is played by deleting the key, which is what the expiry does.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
import redis.asyncio as aioredis

from pooler.cluster.fence import FencedBackend
from pooler.cluster.lease import LeaderLease
from pooler.devnet import Devnet
from pooler.errors import BackendFenced, BackendRejected, FencedOff
from pooler.store.keys import Keys
from tests.component.redis_support import rclient, redis_server  # noqa: F401

KEYS = Keys("kp")


class Mono:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def lease(client: aioredis.Redis, name: str, clock: Mono, ttl: float = 5.0, wall: float = 0.0) -> LeaderLease:
    return LeaderLease(client, KEYS, name, ttl, drift=0.1, monotonic=clock, wall=lambda: wall)


async def test_one_holder_at_a_time_and_epochs_only_grow(rclient: aioredis.Redis) -> None:  # noqa: F811
    clock = Mono()
    a, b = lease(rclient, "a", clock), lease(rclient, "b", clock)
    assert await a.try_acquire()
    assert not await b.try_acquire()
    assert a.held() and not b.held()
    assert await rclient.get(KEYS.lease) == f"a:{a.epoch}"
    ttl_ms = await rclient.pttl(KEYS.lease)
    assert 0 < ttl_ms <= 5000
    clock.t += 3.0
    assert await a.renew()  # renewing moves the local belief too
    clock.t += 3.0
    assert a.held()
    await rclient.delete(KEYS.lease)  # what Redis does when nobody renews in time
    assert await b.try_acquire()
    assert b.epoch == a.epoch + 1
    assert not await a.renew()  # the key holds b's token: a learns it lost
    assert not a.held()
    await b.release()
    assert await rclient.get(KEYS.lease) is None


async def test_local_belief_ends_before_redis_expiry(rclient: aioredis.Redis) -> None:  # noqa: F811
    clock = Mono()
    a = lease(rclient, "a", clock, ttl=2.0)
    assert await a.try_acquire()
    clock.t += 2.0 * 0.9 - 0.01
    assert a.held()
    clock.t += 0.02  # a paused process wakes up here: past its belief, before Redis's expiry
    assert not a.held()
    with pytest.raises(FencedOff, match="does not hold the leader lease"):
        a.check_local("backend work")
    assert a.refusals == 1


async def test_fence_asks_redis_when_the_local_belief_is_still_on(rclient: aioredis.Redis) -> None:  # noqa: F811
    clock = Mono()
    a, b = lease(rclient, "a", clock), lease(rclient, "b", clock)
    assert await a.try_acquire()
    assert await a.fence("plant") == f"a:{a.epoch}"
    await rclient.delete(KEYS.lease)
    assert await b.try_acquire()
    with pytest.raises(FencedOff, match="no longer the leader"):
        await a.fence("work")  # a believes it leads (its clock did not move): Redis says no
    assert not a.held()


async def test_a_deposed_leader_calls_nothing_on_the_backend(rclient: aioredis.Redis) -> None:  # noqa: F811
    clock = Mono()
    a, b = lease(rclient, "a", clock), lease(rclient, "b", clock)
    async with Devnet(block_interval=30, ledger_seconds=1.0) as net:
        farmer = await _backend_farmer(net.backend_url)
        index = net.contract.farm_index
        fenced_a = FencedBackend(net.backend_url, 5.0, 1, a)
        fenced_b = FencedBackend(net.backend_url, 5.0, 1, b)
        try:
            assert await a.try_acquire()
            clock.t += 10.0  # a is paused past its lease ...
            await rclient.delete(KEYS.lease)  # ... Redis expired it ...
            assert await b.try_acquire()  # ... and b took over
            payload = {"blockIndex": index, "poolerId": "p", "maxFarmersCapacity": 10}
            with pytest.raises(FencedOff):
                await fenced_a.call("plant", "POST", "/plant", payload, time.time() + 5)
            assert net.contract.get_pail(farmer, index) is None  # the request never left a
            assert fenced_a.calls["plant"] == 0
            reply = await fenced_b.call("plant", "POST", "/plant", payload, time.time() + 5)
            assert reply["successfulPlants"] == 1
            assert net.contract.get_pail(farmer, index) is not None
            assert fenced_b.calls["plant"] == 1
        finally:
            await fenced_a.aclose()
            await fenced_b.aclose()


async def test_epochs_never_fall_below_the_unix_second(rclient: aioredis.Redis) -> None:  # noqa: F811
    clock = Mono()
    a = lease(rclient, "a", clock, wall=1_800_000_000.7)
    assert await a.try_acquire() and a.epoch == 1_800_000_000
    await a.release()
    b = lease(rclient, "b", clock, wall=1_700_000_000)  # a clock behind: the counter still grows
    assert await b.try_acquire() and b.epoch == 1_800_000_001
    await b.release()
    await rclient.flushall()  # Redis restarted without persistence: the counter is gone
    c = lease(rclient, "c", clock, wall=1_800_000_060)
    assert await c.try_acquire() and c.epoch == 1_800_000_060 > b.epoch
    assert await rclient.get(KEYS.epoch) == "1800000060"


async def test_a_stalled_call_of_a_deposed_leader_is_refused_by_the_backend(
    rclient: aioredis.Redis,  # noqa: F811
) -> None:
    """The residual window of the local fence, closed by the Backend's token check: a's request
    passed a's fence, then stalled (here: held at the Backend's door) while b took over and
    called; when it goes on, the Backend refuses its older token and a stops believing it leads."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def door(_delay: float) -> None:  # the Backend's latency fault, held by the test
        arrived.set()
        await release.wait()

    clock = Mono()
    a, b = lease(rclient, "a", clock, wall=1000), lease(rclient, "b", clock, wall=1000)
    async with Devnet(block_interval=30, ledger_seconds=1.0, sleep=door) as net:
        farmer = await _backend_farmer(net.backend_url)
        index = net.contract.farm_index
        fenced_a = FencedBackend(net.backend_url, 5.0, 1, a)
        fenced_b = FencedBackend(net.backend_url, 5.0, 1, b)
        try:
            assert await a.try_acquire()
            payload = {"blockIndex": index, "poolerId": "p", "maxFarmersCapacity": 10}
            net.backend_faults.latency = 1.0
            stalled = asyncio.create_task(fenced_a.call("plant", "POST", "/plant", payload, time.time() + 30))
            await asyncio.wait_for(arrived.wait(), 15)  # a's request passed its fence and is out
            net.backend_faults.latency = 0.0
            await rclient.delete(KEYS.lease)  # a's lease expires meanwhile ...
            assert await b.try_acquire() and b.epoch > a.epoch  # ... b takes over and calls
            reply = await fenced_b.call("plant", "POST", "/plant", payload, time.time() + 5)
            assert reply["successfulPlants"] == 1 and net.contract.get_pail(farmer, index) is not None
            release.set()
            with pytest.raises(BackendRejected, match="fenced: token") as refused:
                await asyncio.wait_for(stalled, 15)
            assert refused.value.status == 409
            assert isinstance(refused.value, BackendFenced)  # told by its type, not its text
            assert net.backend.fenced == 1 and fenced_a.fenced == 1
            assert not a.held()  # a learnt it was deposed from the Backend's answer
            assert net.backend.fences == {"p": b.epoch}
        finally:
            await fenced_a.aclose()
            await fenced_b.aclose()


async def test_the_devnet_backend_checks_fencing_tokens_only_when_sent() -> None:
    async with Devnet(block_interval=30, ledger_seconds=1.0) as net, aiohttp.ClientSession() as http:
        await _backend_farmer(net.backend_url)
        body = {"blockIndex": net.contract.farm_index, "poolerId": "p"}

        async def harvest(token: str | None) -> tuple[int, dict[str, object]]:
            headers = {} if token is None else {"X-Fencing-Token": token}
            async with http.post(f"{net.backend_url}/harvest", json=body, headers=headers) as resp:
                return resp.status, await resp.json()

        assert (await harvest("7"))[0] == 200
        assert (await harvest("7"))[0] == 200  # the same leader again
        status, err = await harvest("6")
        assert status == 409 and str(err["message"]).startswith("fenced: token 6")
        assert err["error"] == "fenced"  # the kind a client tells the refusal by
        assert (await harvest(None))[0] == 200  # no token: a single Pooler, not fenced
        status, err = await harvest("x7")
        assert status == 400 and "X-Fencing-Token must be a decimal integer" in str(err["message"])
        assert net.backend.fences == {"p": 7} and net.backend.fenced == 1


async def _backend_farmer(backend_url: str) -> str:
    """A custodial farmer registered at the Backend directly (``/farmers/register``): its address."""
    from pooler.backend import BackendClient

    async with BackendClient(backend_url, 5.0, 1) as client:
        reply = await client.register_farmer("p", 0.5)
    address: str = reply["custodialWallet"]
    return address
