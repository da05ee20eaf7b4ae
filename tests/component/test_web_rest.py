"""The REST fallback, /health and /openapi.json against the real Pooler and the devnet (aiohttp client).

Status codes and bodies are the ones docs/protocol.md documents. Each test starts its own
devnet + Pooler; the 300 s block interval keeps the first block open for the whole test unless
the test asks for a short one.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from protocol.work import count_zeros
from tests.support.system import (
    MinerSocket,
    System,
    bearer,
    find_nonce,
    register_miner,
    running_system,
    tap_events,
)
from tests.support.wait import wait_until

REJECTED_KEYS = {"type", "job", "nonce", "code", "reason", "message"}
ERROR_KEYS = {"error", "message", "timestamp", "code"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None = None, **kwargs: Any
) -> tuple[int, Any]:
    headers = bearer(token) if token is not None else {}
    headers.update(kwargs.pop("headers", {}))
    async with http.request(method, url, headers=headers, **kwargs) as resp:
        assert resp.content_type == "application/json", (resp.status, await resp.text())
        return resp.status, await resp.json()


async def get_job(
    http: aiohttp.ClientSession, system: System, token: str, worker: str = "rest"
) -> dict[str, Any]:
    status, job = await call(http, "GET", f"{system.url}/miner/work?worker={worker}", token)
    assert status == 200, job
    return dict(job)


async def submit(
    http: aiohttp.ClientSession, system: System, token: str | None, body: Any
) -> tuple[int, dict[str, Any]]:
    status, answer = await call(http, "POST", f"{system.url}/miner/submit", token, json=body)
    return status, dict(answer)


# ---------------------------------------------------------------- register


async def test_register_answers_201_with_the_documented_shape(http: aiohttp.ClientSession) -> None:
    async with running_system() as system:
        status, body = await call(
            http,
            "POST",
            f"{system.url}/miner/register",
            json={"name": "rig", "stakePercentage": 0.25, "metadata": {"gpu": "none"}},
        )
        assert status == 201
        assert set(body) == {"minerId", "token", "farmerId", "farmer"}
        assert body["farmer"].startswith("G") and len(body["farmer"]) == 56
        farmer = system.net.backend.farmers[body["farmerId"]]  # the Backend created it, custodial
        assert farmer.address == body["farmer"]
        assert farmer.stake_percentage == 0.25
        assert farmer.metadata == {"gpu": "none"}
        other = await register_miner(system.url, None, http=http)  # an empty body is fine too (defaults)
        assert other.miner_id != body["minerId"] and other.token != body["token"]
        assert system.net.backend.farmers[other.farmer_id].stake_percentage == pytest.approx(
            system.pooler.options.default_stake_percentage
        )


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ({"name": "x" * 65}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"stakePercentage": 1.5}, "stakePercentage"),
        ({"stakePercentage": "0.5"}, "stakePercentage"),
        ({"stakePercentage": True}, "stakePercentage"),
        ({"metadata": [1]}, "metadata"),
        ("not json", "JSON"),
        ([1, 2], "object"),
    ],
)
async def test_register_refuses_bad_input_with_400(http: aiohttp.ClientSession, body: Any, word: str) -> None:
    async with running_system() as system:
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, str) else {"json": body}
        status, answer = await call(http, "POST", f"{system.url}/miner/register", **kwargs)
        assert status == 400
        assert set(answer) == ERROR_KEYS and answer["error"] == "malformed" and answer["code"] == 20
        assert word in answer["message"]
        assert system.net.backend.farmers == {}  # nothing half-applied


async def test_register_is_503_when_the_backend_is_down(http: aiohttp.ClientSession) -> None:
    async with running_system(retry_attempts=1) as system:
        system.net.backend_faults.outage_for(60, time.time())
        status, answer = await call(http, "POST", f"{system.url}/miner/register", json={})
        assert status == 503
        assert answer["error"] == "backend-unavailable" and "Backend" in answer["message"]


ADMIN_TOKEN = "operator-secret-0123456789"


async def test_register_needs_the_admin_token_when_the_operator_set_one(http: aiohttp.ClientSession) -> None:
    async with running_system(admin_token=ADMIN_TOKEN) as system:
        url = f"{system.url}/miner/register"
        for headers in ({}, {"Authorization": "Basic b3BlcmF0b3I="}, {"Authorization": "Bearer "}):
            async with http.post(url, json={"name": "rig"}, headers=headers) as resp:
                assert resp.status == 401, headers
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                answer = await resp.json()
            assert set(answer) == ERROR_KEYS and (answer["error"], answer["code"]) == ("unauthorized", 24)
            assert "Authorization: Bearer <ADMIN_TOKEN>" in answer["message"]
        status, answer = await call(http, "POST", url, "not-the-admin-token-at-all", json={"name": "rig"})
        assert status == 403
        assert set(answer) == {"error", "message", "timestamp"} and answer["error"] == "forbidden"
        assert "ADMIN_TOKEN" in answer["message"]
        assert system.net.backend.farmers == {}  # refused before the Backend was asked
        # the operator registers; the miner works with the token it is handed
        status, reg = await call(http, "POST", url, ADMIN_TOKEN, json={"name": "rig"})
        assert status == 201 and set(reg) == {"minerId", "token", "farmerId", "farmer"}
        assert (await get_job(http, system, reg["token"]))["farmer"] == reg["farmer"]
        # a miner's own token does not register another one
        status, answer = await call(http, "POST", url, reg["token"], json={"name": "sybil"})
        assert (status, answer["error"]) == (403, "forbidden")
        assert list(system.net.backend.farmers) == [reg["farmerId"]]


# ---------------------------------------------------------------- work


async def test_work_gives_fresh_disjoint_jobs_and_needs_a_token(http: aiohttp.ClientSession) -> None:
    async with running_system() as system:
        reg = await register_miner(system.url, http=http)
        first = await get_job(http, system, reg.token, "rig-a")
        second = await get_job(http, system, reg.token, "rig-a")
        other = await get_job(http, system, reg.token, "rig-b")
        for job in (first, second, other):
            assert set(job) == {
                "type", "job", "block", "entropy", "farmer", "nonceStart", "nonceEnd",
                "shareZeros", "clean", "workAt", "blockEndsAt",
            }  # fmt: skip
            assert job["type"] == "job" and job["farmer"] == reg.farmer and job["block"] == system.block()
        assert (first["clean"], second["clean"], other["clean"]) == (True, False, True)
        ranges = sorted((int(j["nonceStart"]), int(j["nonceEnd"])) for j in (first, second, other))
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(ranges)), ranges

        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {reg.token}"}):
            status, answer = await call(http, "GET", f"{system.url}/miner/work", headers=headers)
            assert status == 401
            assert set(answer) == ERROR_KEYS and (answer["error"], answer["code"]) == ("unauthorized", 24)
        status, answer = await call(http, "GET", f"{system.url}/miner/work?worker={'w' * 65}", reg.token)
        assert (status, answer["error"]) == (400, "malformed") and "worker" in answer["message"]


async def test_work_is_503_with_an_error_body_while_no_block_is_open(http: aiohttp.ClientSession) -> None:
    async with running_system(paused=True) as system:
        reg = await register_miner(system.url, http=http)
        status, answer = await call(http, "GET", f"{system.url}/miner/work", reg.token)
        assert status == 503
        assert {"error", "message", "timestamp"} <= set(answer)
        assert "no block is open" in answer["message"]
        system.net.contract.unpause()
        await wait_until(lambda: system.pooler.core.view(time.time()).phase != "paused", "the farm to resume")
        job = await get_job(http, system, reg.token)
        assert job["block"] == system.block()


# ---------------------------------------------------------------- submit


async def test_submit_statuses_and_bodies(http: aiohttp.ClientSession) -> None:
    async with running_system() as system:
        reg = await register_miner(system.url, http=http)
        token = reg.token
        job = await get_job(http, system, token)
        jid = job["job"]
        nonce, digest, zeros = find_nonce(job)

        status, ok = await submit(
            http, system, token, {"job": jid, "nonce": str(nonce), "hash": digest.hex()}
        )
        assert status == 200
        assert ok == {"type": "accepted", "job": jid, "nonce": str(nonce), "zeros": zeros, "best": True}

        for spelling in (nonce, str(nonce), "00" + str(nonce), hex(nonce), "0X" + format(nonce, "X")):
            status, rej = await submit(http, system, token, {"job": jid, "nonce": spelling})
            assert status == 409
            assert set(rej) == REJECTED_KEYS
            assert (rej["type"], rej["code"], rej["reason"], rej["nonce"]) == (
                "rejected",
                22,
                "duplicate",
                str(nonce),
            )

        cases: list[tuple[dict[str, Any], int, int]] = [
            ({"job": "unknown", "nonce": "1"}, 410, 21),
            ({"job": jid, "nonce": job["nonceEnd"]}, 400, 27),
            ({"job": jid, "nonce": str(find_nonce(job, skip={nonce})[0]), "hash": "00" * 32}, 400, 26),
            ({"job": jid, "nonce": str(find_nonce(job, at_least=0, below=1)[0])}, 400, 23),
        ]
        for body, want_status, want_code in cases:
            status, rej = await submit(http, system, token, body)
            assert (status, rej["code"]) == (want_status, want_code), (body, rej)
            assert set(rej) == REJECTED_KEYS and rej["type"] == "rejected" and rej["job"] == body["job"]
            assert rej["message"]

        # malformed shares: 400 with the rejected body too, saying what is wrong
        for body, word in (
            ({"job": jid, "nonce": "abc"}, "nonce"),
            ({"job": jid}, "nonce"),
            ({"nonce": "5"}, "job"),
            ({"job": jid, "nonce": "5", "hash": "xyz"}, "hash"),
        ):
            status, rej = await submit(http, system, token, body)
            assert status == 400, rej
            assert set(rej) == REJECTED_KEYS and (rej["code"], rej["reason"]) == (20, "malformed"), rej
            assert rej["nonce"] is None
            assert word in rej["message"]
        for raw, word in ((b"{not json", "JSON"), (b"[1]", "object")):
            status, rej = await call(
                http,
                "POST",
                f"{system.url}/miner/submit",
                token,
                data=raw,
                headers={"Content-Type": "application/json"},
            )
            assert (status, rej["code"]) == (400, 20) and set(rej) == REJECTED_KEYS and word in rej["message"]
        status, rej = await call(
            http, "POST", f"{system.url}/miner/submit", token, json={"job": "x" * 5000, "nonce": "1"}
        )
        assert (status, rej["code"], rej["reason"]) == (413, 29, "too-large") and set(rej) == REJECTED_KEYS

        status, rej = await submit(http, system, None, {"job": jid, "nonce": str(nonce)})
        assert (status, rej["code"], rej["reason"]) == (401, 24, "unauthorized")

        # one nonce space per farmer and block, across transports: WS after REST is a duplicate
        async with MinerSocket.open(system.ws_url) as ws:
            await ws.hello(token)
            rej = await ws.request({"type": "share", "job": jid, "nonce": str(nonce)}, "rejected")
            assert rej["code"] == 22

        status, stats = await call(http, "GET", f"{system.url}/miner/stats", token)
        assert status == 200
        assert stats["type"] == "stats" and stats["minerId"] == reg.miner_id
        assert stats["accepted"] == 1 and stats["bestZeros"] == zeros == count_zeros(digest)
        assert stats["stale"] == 1
        # duplicates, the four cases, the six malformed bodies (counted too), the WS duplicate
        assert stats["rejected"] == 5 + 4 + 6 + 1
        assert stats["shareZeros"] is not None  # over REST too (it used to be always null)
        status, answer = await call(http, "GET", f"{system.url}/miner/stats", "bad-token")
        assert (status, answer["code"]) == (401, 24)


async def test_rest_requests_over_the_rate_limit_get_429(http: aiohttp.ClientSession) -> None:
    async with running_system(messages_per_second=0.001, messages_burst=3) as system:
        reg = await register_miner(system.url, http=http)
        job = await get_job(http, system, reg.token)  # 1
        await call(http, "GET", f"{system.url}/miner/stats", reg.token)  # 2
        status, _ = await submit(
            http, system, reg.token, {"job": job["job"], "nonce": job["nonceStart"]}
        )  # 3
        assert status in (200, 400)
        status, rej = await submit(http, system, reg.token, {"job": job["job"], "nonce": job["nonceStart"]})
        assert (status, rej["code"], rej["reason"]) == (429, 28, "rate-limited") and set(rej) == REJECTED_KEYS
        status, answer = await call(http, "GET", f"{system.url}/miner/work", reg.token)
        assert (status, answer["error"], answer["code"]) == (429, "rate-limited", 28)
        other = await register_miner(system.url, http=http)  # the limit is per miner
        assert (await get_job(http, system, other.token))["farmer"] == other.farmer


# ---------------------------------------------------------------- leave


async def test_leave_revokes_the_token_closes_sockets_and_still_submits_accepted_work(
    http: aiohttp.ClientSession,
) -> None:
    # Paused first: the miner registers before the block opens, so unpausing plants it at once.
    async with running_system(block_interval=8, paused=True) as system, tap_events(system.events_url) as tap:
        reg = await register_miner(system.url, http=http)
        token, farmer_id = reg.token, reg.farmer_id
        async with MinerSocket.open(system.ws_url) as ws:
            await ws.send({"type": "hello", "token": token, "protocol": 1, "worker": "w"})
            await ws.expect("welcome")
            system.net.contract.unpause()
            job = await ws.expect("job")
            nonce, _, zeros = find_nonce(job)
            await ws.request({"type": "share", "job": job["job"], "nonce": str(nonce)}, "accepted")
            await wait_until(
                lambda: tap.has("farmer", lambda d: d["farmerId"] == farmer_id and d["status"] == "planted"),
                "the farmer to be planted",
            )
            status, left = await call(http, "POST", f"{system.url}/miner/leave", token)
            assert status == 200 and left["minerId"] == reg.miner_id and left["left"] is True
            code, frames = await ws.closed()
        assert code == 1000 and frames == []
        for method, path in (("GET", "/miner/work"), ("GET", "/miner/stats"), ("POST", "/miner/leave")):
            status, answer = await call(http, method, f"{system.url}{path}", token)
            assert (status, answer["code"]) == (401, 24), path
        status, rej = await submit(http, system, token, {"job": job["job"], "nonce": str(nonce)})
        assert status == 401 and rej["code"] == 24
        async with MinerSocket.open(system.ws_url) as again:
            await again.send({"type": "hello", "token": token, "protocol": 1})
            code, frames = await again.closed()
        assert code == 1008 and frames[0]["code"] == 24
        assert tap.has("miner", lambda d: d["minerId"] == reg.miner_id and d["event"] == "left")

        # the share accepted before leaving is still the farmer's work at workAt
        block = job["block"]
        await wait_until(
            lambda: tap.has("work", lambda d: d["block"] == block and d["ok"]), "the block's work submission"
        )
        work = tap.first("work", lambda d: d["block"] == block and d["ok"])
        assert work["at"] >= job["workAt"]
        assert [(s["farmerId"], s["nonce"], s["zeros"]) for s in work["data"]["submissions"]] == [
            (farmer_id, str(nonce), zeros)
        ]
        pail = system.net.contract.get_pail(reg.farmer, block)
        assert pail is not None and pail.zeros == zeros


# ---------------------------------------------------------------- health and OpenAPI


async def test_health_reports_chain_backend_block_and_miners_online(http: aiohttp.ClientSession) -> None:
    async with running_system(retry_attempts=1) as system:
        # the first health poll answers soon after start (until then the Backend is "unknown"),
        # and the plant of the block seen at start is answered (until then the phase is "planting")
        await wait_until(
            lambda: (
                system.pooler.observer.backend_check() != "unknown"
                and system.pooler.summary()["phase"] != "planting"
            ),
            "a first health poll and the first plant's answer",
        )
        status, health = await call(http, "GET", f"{system.url}/health")
        assert status == 200
        assert health["status"] == "ok"
        assert health["checks"]["rpc"] == "ok" and health["checks"]["backend"] == "ok"
        assert health["block"] == system.net.contract.farm_index
        assert health["phase"] == "mining"
        assert health["minersOnline"] == 0 and health["workers"] == 0
        reg = await register_miner(system.url, http=http)
        async with MinerSocket.open(system.ws_url) as a, MinerSocket.open(system.ws_url) as b:
            await a.hello(reg.token, "a")
            await b.hello(reg.token, "b")
            status, health = await call(http, "GET", f"{system.url}/health")
            assert (health["minersOnline"], health["workers"]) == (1, 2)
        status, live = await call(http, "GET", f"{system.url}/health/live")
        assert (status, live["status"]) == (200, "ok")
        status, ready = await call(http, "GET", f"{system.url}/health/ready")
        assert (status, ready["status"]) == (200, "ready")

        # the Backend goes down: the next call fails and /health says so (degraded, still serving)
        system.net.backend_faults.outage_for(60, time.time())
        status, _ = await call(http, "POST", f"{system.url}/miner/register", json={})
        assert status == 503
        status, health = await call(http, "GET", f"{system.url}/health")
        assert status == 200
        assert (health["status"], health["checks"]["backend"]) == ("degraded", "down")
        status, ready = await call(http, "GET", f"{system.url}/health/ready")
        assert (status, ready["status"]) == (503, "not-ready")
        system.net.backend_faults.clear()
        # the newest evidence, whatever a poll said during the outage
        await register_miner(system.url, http=http)
        status, health = await call(http, "GET", f"{system.url}/health")
        assert (health["status"], health["checks"]["backend"]) == ("ok", "ok")


async def test_health_is_503_when_the_pooler_cannot_serve(http: aiohttp.ClientSession) -> None:
    with socket.socket() as dead:  # a port nobody listens on: the chain RPC is unreachable
        dead.bind(("127.0.0.1", 0))
        rpc = f"http://127.0.0.1:{dead.getsockname()[1]}"
        async with running_system(rpc_url=rpc, wait_for_block=False) as system:
            await wait_until(lambda: not system.pooler.monitor.healthy, "the monitor to notice the dead RPC")
            status, health = await call(http, "GET", f"{system.url}/health")
            assert status == 503
            assert (
                health["status"] == "down" and health["checks"]["rpc"] == "down" and health["block"] is None
            )
            reg = await register_miner(system.url, http=http)
            status, answer = await call(http, "GET", f"{system.url}/miner/work", reg.token)
            assert status == 503 and "no block" in answer["message"]


async def test_the_page_and_health_show_the_pools_name(http: aiohttp.ClientSession) -> None:
    name = 'Pool <b>"one"</b> & co'
    async with running_system(pooler_name=name) as system:
        status, health = await call(http, "GET", f"{system.url}/health")
        assert status == 200 and health["name"] == name
        escaped = "Pool &lt;b&gt;&quot;one&quot;&lt;/b&gt; &amp; co"
        for path in ("/", "/index.html"):
            async with http.get(f"{system.url}{path}") as resp:
                assert resp.status == 200 and resp.content_type == "text/html"
                page = await resp.text()
            assert f"<title>{escaped}</title>" in page
            assert f'<h1 id="pooler-name">{escaped}</h1>' in page
            assert name not in page and "KALE Pooler" not in page
        async with http.get(f"{system.url}/app.js") as resp:  # the other files are served as they are
            assert resp.status == 200 and "javascript" in resp.content_type


async def test_openapi_is_valid_openapi_3_and_lists_every_rest_route(http: aiohttp.ClientSession) -> None:
    async with running_system() as system:
        status, spec = await call(http, "GET", f"{system.url}/openapi.json")
        assert status == 200
        validate(spec)  # raises on anything that is not valid OpenAPI 3
        assert spec["openapi"].startswith("3.")
        served = {
            (route.path, method.lower())
            for route in system.pooler.app.routes
            if isinstance(route, Route) and route.path != "/openapi.json"
            for method in (route.methods or set()) - {"HEAD"}
        }
        described = {(path, method) for path, item in spec["paths"].items() for method in item}
        assert served == described
        for path in ("/miner/work", "/miner/submit", "/miner/stats", "/miner/leave"):
            op = next(iter(spec["paths"][path].values()))
            assert op["security"] == [{"bearer": []}]
            assert "401" in op["responses"]
        submit_responses = spec["paths"]["/miner/submit"]["post"]["responses"]
        assert set(submit_responses) >= {"200", "400", "401", "409", "410", "413", "429"}

        # the real answers have the fields the description promises, and no others
        schemas = spec["components"]["schemas"]

        def fits(name: str, body: dict[str, Any]) -> None:
            schema = schemas[name]
            assert set(body) <= set(schema["properties"]), (name, set(body) - set(schema["properties"]))
            assert set(schema.get("required", [])) <= set(body), name

        status, reg = await call(http, "POST", f"{system.url}/miner/register", json={"name": "spec"})
        fits("Registered", reg)
        job = await get_job(http, system, reg["token"])
        fits("Job", job)
        nonce, _, _ = find_nonce(job)
        fits(
            "Accepted",
            (await submit(http, system, reg["token"], {"job": job["job"], "nonce": str(nonce)}))[1],
        )
        fits(
            "Rejected",
            (await submit(http, system, reg["token"], {"job": job["job"], "nonce": str(nonce)}))[1],
        )
        fits("Stats", (await call(http, "GET", f"{system.url}/miner/stats", reg["token"]))[1])
        fits("Health", (await call(http, "GET", f"{system.url}/health"))[1])
        fits("Left", (await call(http, "POST", f"{system.url}/miner/leave", reg["token"]))[1])
        fits("Error", (await call(http, "GET", f"{system.url}/miner/stats", reg["token"]))[1])
