"""The Backend client against the devnet's reference Phase-1 Backend over real loopback sockets.

Time is a fake clock shared by the devnet and the client; the client's backoff sleeps advance
it, so outage windows and deadlines play out in no real time and with no timing asserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pooler.backend import BackendClient
from pooler.devnet import Devnet
from pooler.devnet.miner import find_nonce
from pooler.devnet.serve import LoopbackServer
from pooler.errors import (
    BackendDeadline,
    BackendError,
    BackendRejected,
    BackendUnavailable,
    BackendUnknownOutcome,
)
from protocol.work import count_zeros

T0 = 1_700_000_000.0
POOLER = "pooler-test"
START = 10


class FakeTime:
    """Unix clock for the devnet and the client; ``sleep`` advances it (and yields once)."""

    def __init__(self) -> None:
        self.t = T0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[int], None] = lambda _n: None

    def __call__(self) -> float:
        return self.t

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.t += delay
        self.on_sleep(len(self.sleeps))
        await asyncio.sleep(0)  # the fake sleep: no time passes, the loop turns once


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def net(ft: FakeTime) -> AsyncIterator[Devnet]:
    async with Devnet(block_interval=20, ledger_seconds=1, clock=ft, start_index=START) as n:
        yield n


Observed = list[tuple[str, float, str]]


@pytest.fixture
def observed() -> Observed:
    return []


@pytest.fixture
async def client(net: Devnet, ft: FakeTime, observed: Observed) -> AsyncIterator[BackendClient]:
    async with BackendClient(
        net.backend_url,
        timeout=5.0,
        retry_attempts=10,
        sleep=ft.sleep,
        clock=ft,
        rng=lambda: 0.5,
        observe=lambda op, secs, outcome: observed.append((op, secs, outcome)),
    ) as c:
        yield c


async def register_farmers(client: BackendClient, n: int) -> list[dict[str, Any]]:
    """``n`` custodial farmers, registered through the client under test (``/farmers/register``)."""
    return [await client.register_farmer(POOLER, 0.5, {"name": f"farmer-{i}"}) for i in range(n)]


# ---------------------------------------------------------------- the Phase-1 round trip


async def test_register_plant_work_harvest_round_trip(
    net: Devnet, client: BackendClient, ft: FakeTime, observed: Observed
) -> None:
    farmers = await register_farmers(client, 2)
    for f in farmers:
        assert f["status"] == "active" and f["poolerId"] == POOLER and f["stakePercentage"] == 0.5
        assert f["custodialWallet"].startswith("G") and f["currentBalance"] == str(1000_0000000)

    planted = await client.plant(START, POOLER, 10, deadline=ft() + 30)
    assert (planted["successfulPlants"], planted["failedPlants"]) == (2, 0)
    assert planted["totalStaked"] == str(2 * 500_0000000)

    ft.t += 3  # a few ledgers later: the gap must be > 0
    block = net.contract.get_block(START)
    assert block is not None
    submissions = []
    for f in farmers:
        nonce, digest = find_nonce(START, block.entropy, f["custodialWallet"], 1, exact=False)
        submissions.append(
            {
                "farmerId": f["farmerId"],
                "nonce": nonce,
                "timestamp": int(ft() * 1000),
                "hash": digest,
                "zeros": count_zeros(digest),
            }
        )
    worked = await client.work(START, POOLER, submissions, deadline=ft() + 30)
    assert (worked["totalSubmissions"], worked["validNonces"], worked["invalidNonces"]) == (2, 2, 0)

    ft.t += net.contract.block_interval  # the next plant opens block START + 1
    assert (await client.plant(START + 1, POOLER, 10, deadline=ft() + 30))["successfulPlants"] == 2
    assert net.contract.farm_index == START + 1

    harvested = await client.harvest(START, POOLER, deadline=ft() + 30)
    assert (harvested["totalEligible"], harvested["successfulHarvests"], harvested["failedHarvests"]) == (
        2,
        2,
        0,
    )
    assert int(harvested["totalRewards"]) > 0

    health = await client.health()
    assert health["status"] == "healthy"
    assert [(op, outcome) for op, _s, outcome in observed] == [
        ("register", "ok"),
        ("register", "ok"),
        ("plant", "ok"),
        ("work", "ok"),
        ("plant", "ok"),
        ("harvest", "ok"),
        ("health", "ok"),
    ]
    assert ft.sleeps == []  # nothing needed a retry


# ---------------------------------------------------------------- retries


async def test_a_503_outage_that_ends_before_the_deadline_is_retried(
    net: Devnet, client: BackendClient, ft: FakeTime
) -> None:
    await register_farmers(client, 1)
    net.backend_faults.outage_for(4.0, ft())
    start = ft()
    planted = await client.plant(START, POOLER, 10, deadline=start + 30)
    assert planted["successfulPlants"] == 1
    assert len(ft.sleeps) >= 2 and ft() - start >= 4.0
    assert all(d >= 1.0 for d in ft.sleeps)  # the devnet's Retry-After: 1 is honoured


@contextlib.asynccontextmanager
async def dead_port() -> AsyncIterator[int]:
    """A loopback port nothing listens on (bound, then closed)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield port


async def test_a_429_window_is_retried(net: Devnet, client: BackendClient, ft: FakeTime) -> None:
    await register_farmers(client, 1)
    net.backend_faults.error_rate = 1.0
    net.backend_faults.error_status = 429
    ft.on_sleep = lambda n: net.backend_faults.clear() if n == 2 else None  # the window ends
    assert (await client.plant(START, POOLER, 10, deadline=ft() + 30))["successfulPlants"] == 1
    assert len(ft.sleeps) == 2


async def test_a_post_cut_after_sending_is_an_unknown_outcome_not_retried(
    net: Devnet, client: BackendClient, ft: FakeTime, observed: Observed
) -> None:
    """The devnet drops the connection once it read the request: it may have acted, so the client
    neither retries (it could act twice) nor calls it a failure; the core reconciles it."""
    await register_farmers(client, 1)
    net.backend_faults.outage_for(2.0, ft(), mode="refuse")
    with pytest.raises(BackendUnknownOutcome, match="connection lost after the request was sent"):
        await client.plant(START, POOLER, 10, deadline=ft() + 30)
    assert ft.sleeps == [] and observed[-1][2] == "unknown"


async def test_connection_refused_is_retried(net: Devnet, ft: FakeTime) -> None:
    """Nothing listens: the request never reached a Backend, so it is retried until the deadline."""
    async with (
        dead_port() as port,
        BackendClient(f"http://127.0.0.1:{port}", 1.0, 3, sleep=ft.sleep, clock=ft, rng=lambda: 0.0) as c,
    ):
        with pytest.raises(
            BackendUnavailable, match=r"gave up after 3 attempt\(s\); last error: network error"
        ):
            await c.plant(START, POOLER, 10, deadline=ft() + 30)
    assert len(ft.sleeps) == 2


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_attempts_are_bounded_by_retry_attempts(net: Devnet, ft: FakeTime, status: int) -> None:
    net.backend_faults.error_rate = 1.0
    net.backend_faults.error_status = status
    async with BackendClient(net.backend_url, 5.0, 3, sleep=ft.sleep, clock=ft, rng=lambda: 0.0) as c:
        with pytest.raises(
            BackendUnavailable, match=rf"gave up after 3 attempt\(s\); last error: HTTP {status}"
        ) as e:
            await c.harvest(START, POOLER, deadline=ft() + 300)
    assert e.value.status == status
    assert not isinstance(e.value, BackendDeadline)  # out of attempts, not of time
    assert len(ft.sleeps) == 2


async def test_the_deadline_cuts_retries(
    net: Devnet, client: BackendClient, ft: FakeTime, observed: Observed
) -> None:
    net.backend_faults.outage_for(1000.0, ft())
    deadline = ft() + 5
    with pytest.raises(BackendUnavailable, match="deadline") as e:
        await client.plant(START, POOLER, 10, deadline=deadline)
    assert e.value.status == 503
    assert isinstance(e.value, BackendDeadline)  # the kind is the type: the cycle reads it as missed
    assert ft() < deadline  # no sleep ran past it
    assert observed[-1][0] == "plant" and observed[-1][2] == "unavailable"


async def test_a_deadline_already_past_makes_no_request(
    net: Devnet, client: BackendClient, ft: FakeTime
) -> None:
    with pytest.raises(BackendUnavailable, match=r"deadline passed after 0 attempt\(s\)") as e:
        await client.harvest(START, POOLER, deadline=ft() - 1)
    assert isinstance(e.value, BackendDeadline)


async def test_each_attempt_is_bounded_by_the_timeout(net: Devnet, ft: FakeTime) -> None:
    net.backend_faults.latency = 0.5  # real seconds: the devnet sleeps before answering
    async with BackendClient(net.backend_url, 0.05, 2, sleep=ft.sleep, clock=ft) as c:
        # a POST sent and unanswered may have acted: an unknown outcome, not retried here
        with pytest.raises(BackendUnknownOutcome, match=r"no answer within 0\.05 s"):
            await c.plant(START, POOLER, 1, deadline=ft() + 30)
        # a GET is retried on a timeout
        with pytest.raises(BackendUnavailable, match=r"timed out after 0\.05 s"):
            await c.call("health", "GET", "/health", None, ft() + 30)


# ---------------------------------------------------------------- no retry on 4xx


async def test_a_4xx_is_rejected_at_once_with_the_backends_message(
    net: Devnet, client: BackendClient, ft: FakeTime, observed: Observed
) -> None:
    submissions = [{"farmerId": "nobody", "nonce": "1", "timestamp": 1}]
    with pytest.raises(
        BackendRejected, match=r"work: HTTP 404: Not Found: .*'nobody' is not a registered"
    ) as e:
        await client.work(START, POOLER, submissions, deadline=ft() + 30)
    assert e.value.status == 404
    with pytest.raises(BackendRejected, match="HTTP 400") as e:
        await client.plant(-1, POOLER, 1, deadline=ft() + 30)
    assert e.value.status == 400
    assert ft.sleeps == []
    assert [o for _op, _s, o in observed] == ["rejected", "rejected"]


# ---------------------------------------------------------------- bad bodies


async def test_a_2xx_with_a_bad_body_is_an_error_and_not_retried(ft: FakeTime) -> None:
    served: list[str] = []
    bodies = {
        "/plant": web.json_response({"blockIndex": 1, "poolerId": "p"}),
        "/work": web.Response(text="<html>ok</html>"),
        "/harvest": web.json_response([1, 2]),
    }

    async def handle(request: web.Request) -> web.StreamResponse:
        served.append(request.path)
        return bodies[request.path]

    app = web.Application()
    app.router.add_post("/{op}", handle)
    server = LoopbackServer(app)
    url = await server.start()
    try:
        async with BackendClient(url, 5.0, 5, sleep=ft.sleep, clock=ft) as c:
            with pytest.raises(BackendError, match="plant: response lacks field 'totalRequested'"):
                await c.plant(1, "p", 1, deadline=ft() + 30)
            with pytest.raises(BackendError, match="work: HTTP 200 body is not JSON"):
                await c.work(1, "p", [], deadline=ft() + 30)
            with pytest.raises(BackendError, match="harvest: HTTP 200 body is not a JSON object"):
                await c.harvest(1, "p", deadline=ft() + 30)
    finally:
        await server.stop()
    assert served == ["/plant", "/work", "/harvest"]
    assert ft.sleeps == []


async def test_a_given_session_is_used_and_left_open(net: Devnet) -> None:
    async with aiohttp.ClientSession() as session:
        async with BackendClient(net.backend_url, 5.0, 1, session=session) as c:
            assert (await c.health())["status"] == "healthy"
        assert not session.closed


async def test_bad_arguments_are_refused_before_any_request(client: BackendClient, ft: FakeTime) -> None:
    with pytest.raises(ValueError, match=r"stakePercentage must be within 0\.\.1"):
        await client.register_farmer(POOLER, 1.5)
    with pytest.raises(ValueError, match=r"submissions\[0\]\.nonce"):
        await client.work(
            START, POOLER, [{"farmerId": "f", "nonce": "0x1", "timestamp": 1}], deadline=ft() + 9
        )
