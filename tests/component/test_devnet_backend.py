"""The devnet's Phase-1 Backend over real sockets: a three-farmer cycle, every error path, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from pooler.devnet import Devnet
from pooler.devnet.miner import find_nonce

T0 = 1_700_000_000.0
KALE = 10_000_000


class FakeClock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


class FakeSleep:
    """Records the latency the Backend adds instead of waiting it out."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
async def net(clock: FakeClock, sleep: FakeSleep) -> AsyncIterator[Devnet]:
    async with Devnet(clock=clock, sleep=sleep, faucet=1000 * KALE) as n:
        yield n


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def call(
    http: aiohttp.ClientSession,
    net: Devnet,
    method: str,
    path: str,
    body: Any = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    kwargs: dict[str, Any] = (
        {"data": raw} if raw is not None else ({"json": body} if body is not None else {})
    )
    async with http.request(method, net.backend_url + path, **kwargs) as resp:
        return resp.status, await resp.json()


async def register_farmer(
    http: aiohttp.ClientSession, net: Devnet, pooler: str, pct: float
) -> dict[str, Any]:
    """The devnet Backend's ``POST /farmers/register`` (a custodial farmer; not a Pooler's miner)."""
    status, body = await call(
        http, net, "POST", "/farmers/register", {"poolerId": pooler, "stakePercentage": pct}
    )
    assert status == 201, body
    return dict(body)


def assert_error_body(status: int, body: Any, expected: int, words: str) -> None:
    assert status == expected, body
    assert set(body) == {"error", "message", "timestamp"}
    assert words in body["message"], body["message"]
    assert body["timestamp"].endswith("Z")


# ---------------------------------------------------------------- the cycle


async def test_three_farmer_cycle_mints_what_the_formula_predicts(
    net: Devnet, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    a = await register_farmer(http, net, "pool-1", 0.1)
    b = await register_farmer(http, net, "pool-1", 0.2)
    c = await register_farmer(http, net, "pool-1", 0.3)
    other = await register_farmer(http, net, "pool-2", 0.5)
    assert a["status"] == "active" and a["currentBalance"] == str(1000 * KALE) and a["totalEarnings"] == "0"
    assert a["custodialWallet"].startswith("G") and "secret" not in str(a).lower()

    status, plant = await call(
        http, net, "POST", "/plant", {"blockIndex": 1, "poolerId": "pool-1", "maxFarmersCapacity": 10}
    )
    assert status == 200
    assert (plant["totalRequested"], plant["successfulPlants"], plant["failedPlants"]) == (3, 3, 0)
    assert plant["totalStaked"] == str(600 * KALE)  # 10 % + 20 % + 30 % of 1000 KALE
    assert [r["stake"] for r in plant["results"]] == [str(100 * KALE), str(200 * KALE), str(300 * KALE)]
    assert net.contract.get_pail(other["custodialWallet"], 1) is None  # another pooler's farmer

    # a second plant in the same block: every farmer refused by the contract (#8), nothing burned twice
    _, again = await call(
        http, net, "POST", "/plant", {"blockIndex": 1, "poolerId": "pool-1", "maxFarmersCapacity": 10}
    )
    assert again["failedPlants"] == 3 and {r["errorCode"] for r in again["results"]} == {8}

    clock.t += 5  # one ledger: gap 1
    entropy = bytes(32)  # genesis block
    nonce_a, hash_a = find_nonce(1, entropy, a["custodialWallet"], 1)
    nonce_b, hash_b = find_nonce(1, entropy, b["custodialWallet"], 2)
    subs = [
        # Phase-1 shape, unchanged
        {"farmerId": a["farmerId"], "nonce": str(nonce_a), "timestamp": 1_700_000_005_000},
        # with the extra fields the Pooler may send
        {
            "farmerId": b["farmerId"],
            "nonce": str(nonce_b),
            "timestamp": 1_700_000_005_000,
            "hash": hash_b.hex(),
            "zeros": 2,
        },
    ]
    status, work = await call(
        http, net, "POST", "/work", {"blockIndex": 1, "poolerId": "pool-1", "submissions": subs}
    )
    assert status == 200
    assert (work["totalSubmissions"], work["validNonces"], work["invalidNonces"], work["submittedWork"]) == (
        2,
        2,
        0,
        2,
    )
    assert work["totalRewards"] == "0"
    assert [(r["ok"], r["zeros"], r["gap"], r["hash"]) for r in work["results"]] == [
        (True, 1, 1, hash_a.hex()),
        (True, 2, 1, hash_b.hex()),
    ]
    # an invalid one: a hash that is not this nonce's, and a resubmission with no more zeros
    bad = [
        {"farmerId": a["farmerId"], "nonce": str(nonce_a + 1), "timestamp": 0, "hash": hash_a.hex()},
        {"farmerId": b["farmerId"], "nonce": str(nonce_b), "timestamp": 0},
    ]
    _, work2 = await call(
        http, net, "POST", "/work", {"blockIndex": 1, "poolerId": "pool-1", "submissions": bad}
    )
    assert (work2["validNonces"], work2["invalidNonces"]) == (0, 2)
    assert work2["results"][0]["error"] == "HashMismatch"
    assert work2["results"][1]["errorCode"] == 7

    # harvest too early: the block is still current (#14), nothing minted
    _, early = await call(http, net, "POST", "/harvest", {"blockIndex": 1, "poolerId": "pool-1"})
    assert early["successfulHarvests"] == 0 and {r["errorCode"] for r in early["results"]} == {14}

    clock.t = T0 + 300
    _, plant2 = await call(
        http, net, "POST", "/plant", {"blockIndex": 2, "poolerId": "pool-1", "maxFarmersCapacity": 1}
    )
    assert plant2["totalRequested"] == 1 and plant2["results"][0]["blockIndex"] == 2  # opened block 2
    assert net.contract.farm_index == 2

    status, harvest = await call(http, net, "POST", "/harvest", {"blockIndex": 1, "poolerId": "pool-1"})
    assert status == 200
    # Block 1 had no earlier observations: every score is 1 + 1 + 1, normalized_total 6.
    # C never worked, so its 300 KALE stay in staked_total and are shared out:
    # reward = 3 * (25050000000 + 3000000000) / 6 = 14025000000 each.
    assert (harvest["totalEligible"], harvest["successfulHarvests"], harvest["failedHarvests"]) == (3, 2, 1)
    assert harvest["totalRewards"] == "28050000000"
    by_id = {r["farmerId"]: r for r in harvest["results"]}
    assert by_id[a["farmerId"]]["reward"] == "14025000000" and by_id[a["farmerId"]]["stake"] == str(
        100 * KALE
    )
    assert by_id[b["farmerId"]]["reward"] == "14025000000"
    assert by_id[c["farmerId"]]["errorCode"] == 10 and by_id[c["farmerId"]]["ok"] is False

    _, a_now = await call(http, net, "GET", f"/farmers/{a['farmerId']}")
    _, b_now = await call(http, net, "GET", f"/farmers/{b['farmerId']}")
    # A: 1000 - 100 (block 1) + 1402.5 + 100 (stake back) - 90 (10 % of 900 planted into block 2)
    assert a_now["currentBalance"] == str(1000 * KALE - 100 * KALE + 14_025_000_000 + 100 * KALE - 90 * KALE)
    assert a_now["totalEarnings"] == "14025000000"
    assert b_now["currentBalance"] == str(1000 * KALE + 14_025_000_000)
    # harvested Pails are gone: a second harvest finds nobody eligible but C
    _, again_h = await call(http, net, "POST", "/harvest", {"blockIndex": 1, "poolerId": "pool-1"})
    assert again_h["totalEligible"] == 1 and again_h["totalRewards"] == "0"


async def test_plant_respects_capacity_and_an_empty_pool(net: Devnet, http: aiohttp.ClientSession) -> None:
    for _ in range(3):
        await register_farmer(http, net, "p", 0.0)
    _, body = await call(
        http, net, "POST", "/plant", {"blockIndex": 1, "poolerId": "p", "maxFarmersCapacity": 2}
    )
    assert (body["totalRequested"], body["successfulPlants"], body["totalStaked"]) == (2, 2, "0")
    _, empty = await call(
        http, net, "POST", "/plant", {"blockIndex": 1, "poolerId": "nobody", "maxFarmersCapacity": 5}
    )
    assert (empty["totalRequested"], empty["successfulPlants"], empty["results"]) == (0, 0, [])


async def test_plant_with_farmer_ids_plants_only_those_and_checks_them_first(
    net: Devnet, http: aiohttp.ClientSession
) -> None:
    """``farmerIds`` (the Pooler's active farmers): only they are planted; an unknown or another
    pooler's id refuses the whole request before anything is planted."""
    farmers = [(await register_farmer(http, net, "p", 0.0))["farmerId"] for _ in range(3)]
    other = (await register_farmer(http, net, "q", 0.0))["farmerId"]
    base = {"blockIndex": 1, "poolerId": "p", "maxFarmersCapacity": 10}
    for ids, expected, words in (
        ("x", 400, "farmerIds must be an array"),
        ([farmers[0], 7], 400, "farmerIds[1] must be a non-empty string"),
        ([farmers[0], "nope"], 404, "farmerIds[1] 'nope' is not a registered farmer"),
        ([farmers[0], other], 403, "belongs to another pooler"),
    ):
        status, body = await call(http, net, "POST", "/plant", {**base, "farmerIds": ids})
        assert_error_body(status, body, expected, words)
    assert not net.contract._pails  # nothing was planted by the refused requests
    _, body = await call(http, net, "POST", "/plant", {**base, "farmerIds": farmers[1:]})
    assert sorted(r["farmerId"] for r in body["results"]) == sorted(farmers[1:])
    assert (body["totalRequested"], body["successfulPlants"]) == (2, 2)
    _, none = await call(http, net, "POST", "/plant", {**base, "farmerIds": []})
    assert (none["totalRequested"], none["results"]) == (0, [])


async def test_health(net: Devnet, http: aiohttp.ClientSession, clock: FakeClock) -> None:
    clock.t += 42
    status, body = await call(http, net, "GET", "/health")
    assert status == 200
    assert body["status"] == "healthy" and body["uptime"] == 42
    assert set(body["services"]) == {"plant", "work", "harvest", "wallet"} and body["version"]


# ---------------------------------------------------------------- error paths


@pytest.mark.parametrize(
    ("path", "body", "expected", "words"),
    [
        ("/farmers/register", {"stakePercentage": 0.5}, 400, "poolerId is required"),
        ("/farmers/register", {"poolerId": "", "stakePercentage": 0.5}, 400, "poolerId must be"),
        ("/farmers/register", {"poolerId": "p", "stakePercentage": 1.5}, 400, "stakePercentage must be"),
        ("/farmers/register", {"poolerId": "p", "stakePercentage": "0.5"}, 400, "stakePercentage must be"),
        ("/farmers/register", {"poolerId": "p", "stakePercentage": True}, 400, "stakePercentage must be"),
        ("/farmers/register", {"poolerId": "p", "stakePercentage": -0.1}, 400, "stakePercentage must be"),
        ("/farmers/register", {"poolerId": "p", "stakePercentage": 0.1, "metadata": [1]}, 400, "metadata"),
        ("/farmers/register", [1, 2], 400, "JSON object"),
        ("/plant", {"poolerId": "p", "maxFarmersCapacity": 1}, 400, "blockIndex is required"),
        ("/plant", {"blockIndex": -1, "poolerId": "p", "maxFarmersCapacity": 1}, 400, "blockIndex must be"),
        ("/plant", {"blockIndex": 1.5, "poolerId": "p", "maxFarmersCapacity": 1}, 400, "blockIndex must be"),
        (
            "/plant",
            {"blockIndex": 2**32, "poolerId": "p", "maxFarmersCapacity": 1},
            400,
            "blockIndex must be",
        ),
        ("/plant", {"blockIndex": 1, "poolerId": "p"}, 400, "maxFarmersCapacity is required"),
        ("/plant", {"blockIndex": 1, "poolerId": 5, "maxFarmersCapacity": 1}, 400, "poolerId must be"),
        ("/work", {"blockIndex": 1, "poolerId": "p"}, 400, "submissions must be an array"),
        (
            "/work",
            {"blockIndex": 1, "poolerId": "p", "submissions": [7]},
            400,
            "submissions[0] must be an object",
        ),
        ("/work", {"blockIndex": 1, "poolerId": "p", "submissions": [{"nonce": "1"}]}, 400, "farmerId"),
        (
            "/work",
            {"blockIndex": 1, "poolerId": "p", "submissions": [{"farmerId": "nope", "nonce": "1"}]},
            404,
            "not a registered farmer",
        ),
        ("/harvest", {"poolerId": "p"}, 400, "blockIndex is required"),
        ("/harvest", {"blockIndex": "1", "poolerId": "p"}, 400, "blockIndex must be"),
    ],
)
async def test_bad_shapes_get_a_4xx_with_the_error_body(
    net: Devnet, http: aiohttp.ClientSession, path: str, body: Any, expected: int, words: str
) -> None:
    status, answer = await call(http, net, "POST", path, body)
    assert_error_body(status, answer, expected, words)


async def test_bad_json_unknown_route_and_method(net: Devnet, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, net, "POST", "/plant", raw=b"{nope")
    assert_error_body(status, body, 400, "not valid JSON")
    status, body = await call(http, net, "POST", "/plant", raw=b"")
    assert_error_body(status, body, 400, "not valid JSON")
    status, body = await call(http, net, "GET", "/nowhere")
    assert_error_body(status, body, 404, "/nowhere")
    status, body = await call(http, net, "GET", "/plant")
    assert status == 405 and set(body) == {"error", "message", "timestamp"}
    status, body = await call(http, net, "GET", "/farmers/unknown-id")
    assert_error_body(status, body, 404, "unknown farmerId")


async def test_a_bad_submission_rejects_the_whole_batch_before_any_work(
    net: Devnet, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    a = await register_farmer(http, net, "pool-1", 0.1)
    stranger = await register_farmer(http, net, "pool-2", 0.1)
    await call(http, net, "POST", "/plant", {"blockIndex": 1, "poolerId": "pool-1", "maxFarmersCapacity": 5})
    clock.t += 5
    nonce, digest = find_nonce(1, bytes(32), a["custodialWallet"], 1)
    good = {"farmerId": a["farmerId"], "nonce": str(nonce), "timestamp": 0}
    cases = [
        ({"farmerId": stranger["farmerId"], "nonce": "1", "timestamp": 0}, 403, "another pooler"),
        ({"farmerId": "ghost", "nonce": "1", "timestamp": 0}, 404, "not a registered farmer"),
        ({"farmerId": a["farmerId"], "nonce": "abc", "timestamp": 0}, 400, "nonce must be"),
        ({"farmerId": a["farmerId"], "nonce": str(2**64), "timestamp": 0}, 400, "nonce"),
        ({"farmerId": a["farmerId"], "nonce": "1", "timestamp": "now"}, 400, "timestamp"),
        ({"farmerId": a["farmerId"], "nonce": "1", "hash": "zz"}, 400, "hash must be 64 hex"),
        ({"farmerId": a["farmerId"], "nonce": "1", "zeros": 99}, 400, "zeros"),
    ]
    for bad, expected, words in cases:
        body = {"blockIndex": 1, "poolerId": "pool-1", "submissions": [good, bad]}
        status, answer = await call(http, net, "POST", "/work", body)
        assert_error_body(status, answer, expected, words)
        pail = net.contract.get_pail(a["custodialWallet"], 1)
        assert pail is not None and pail.zeros is None  # the good one was not applied either
    _, ok = await call(
        http, net, "POST", "/work", {"blockIndex": 1, "poolerId": "pool-1", "submissions": [good]}
    )
    assert ok["validNonces"] == 1 and ok["results"][0]["hash"] == digest.hex()


async def test_work_on_a_block_that_is_not_on_chain(net: Devnet, http: aiohttp.ClientSession) -> None:
    a = await register_farmer(http, net, "pool-1", 0.1)
    body = {
        "blockIndex": 9,
        "poolerId": "pool-1",
        "submissions": [{"farmerId": a["farmerId"], "nonce": "1", "timestamp": 0}],
    }
    status, answer = await call(http, net, "POST", "/work", body)
    assert status == 200 and answer["invalidNonces"] == 1 and answer["results"][0]["errorCode"] == 11


# ---------------------------------------------------------------- faults


async def test_latency_is_added_through_the_injected_sleep(
    net: Devnet, http: aiohttp.ClientSession, sleep: FakeSleep
) -> None:
    net.backend_faults.latency = 0.25
    status, _ = await call(http, net, "GET", "/health")
    assert status == 200 and sleep.slept == [0.25]


async def test_error_share_answers_5xx_and_429(net: Devnet, http: aiohttp.ClientSession) -> None:
    net.backend_faults.error_rate = 1.0
    net.backend_faults.error_status = 429
    async with http.get(net.backend_url + "/health") as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "1"
        assert_error_body(resp.status, await resp.json(), 429, "injected")
    net.backend_faults.error_status = 500
    status, body = await call(
        http, net, "POST", "/plant", {"blockIndex": 1, "poolerId": "p", "maxFarmersCapacity": 1}
    )
    assert_error_body(status, body, 500, "injected")
    # half the requests, repeatably with a seed
    status, _ = await call(
        http, net, "POST", "/_devnet/faults", {"errorRate": 0.5, "errorStatus": 503, "seed": 1}
    )
    assert status == 200
    statuses = [(await call(http, net, "GET", "/health"))[0] for _ in range(40)]
    assert set(statuses) == {200, 503} and 10 < statuses.count(503) < 30


async def test_outage_window_answers_503_until_it_ends(
    net: Devnet, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    net.backend_faults.outage_for(30, now=clock())
    status, body = await call(http, net, "GET", "/health")
    assert_error_body(status, body, 503, "outage")
    # the control route still answers, and reports the window
    status, faults = await call(http, net, "GET", "/_devnet/faults")
    assert status == 200 and faults["outageRemainingSeconds"] == 30
    clock.t += 30
    status, _ = await call(http, net, "GET", "/health")
    assert status == 200


async def test_outage_can_drop_connections(
    net: Devnet, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    status, _ = await call(
        http, net, "POST", "/_devnet/faults", {"outageSeconds": 10, "outageMode": "refuse"}
    )
    assert status == 200
    with pytest.raises(aiohttp.ClientConnectionError):
        await call(http, net, "GET", "/health")
    status, _ = await call(http, net, "POST", "/_devnet/faults", {"clear": True, "outageSeconds": 0})
    assert status == 200
    status, _ = await call(http, net, "GET", "/health")
    assert status == 200


async def test_fault_control_rejects_bad_settings(net: Devnet, http: aiohttp.ClientSession) -> None:
    for bad, words in [
        ({"errorRate": 2}, "errorRate"),
        ({"errorStatus": 404}, "errorStatus"),
        ({"outageMode": "flaky"}, "outageMode"),
        ({"latency": 5}, "unknown fault fields"),
    ]:
        status, body = await call(http, net, "POST", "/_devnet/faults", bad)
        assert_error_body(status, body, 400, words)
    assert net.backend_faults.error_rate == 0 and net.backend_faults.outage_mode == "503"
