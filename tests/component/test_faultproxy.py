"""The fault proxy (tests/support/faultproxy.py) itself, over real sockets, against the real devnet.

The RPC is driven through stellar-sdk's ``SorobanServerAsync`` (and raw aiohttp where the
bytes matter), the Backend through the Pooler's own ``BackendClient``. Each mode is shown
once at least: pass through, delay (before forwarding and after the upstream answered), drop
before / after forwarding / mid-answer, canned answers (malformed, empty, truncated, lacking a
field, a JSON-RPC error), rewritten upstream answers, replayed stale answers, connection
refused; and the programming itself: ``times``, until cleared, newest rule first, the record.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from stellar_sdk.client.aiohttp_client import AiohttpClient
from stellar_sdk.exceptions import BadResponseError, SorobanRpcErrorResponse
from stellar_sdk.exceptions import ConnectionError as SdkConnectionError
from stellar_sdk.soroban_server_async import SorobanServerAsync

from pooler.backend import BackendClient
from pooler.devnet import ledger
from pooler.errors import BackendError, BackendUnavailable, BackendUnknownOutcome
from tests.support.faultproxy import (
    Drop,
    FaultProxy,
    Forward,
    ProxiedDevnet,
    Replay,
    Respond,
    Rewrite,
    Rule,
    body_has,
    cut,
    proxied_devnet,
    without,
)
from tests.support.wait import wait_until

POOLER = "proxy-test-pooler"


@pytest.fixture
async def proxied() -> AsyncIterator[ProxiedDevnet]:
    async with proxied_devnet(block_interval=300, ledger_seconds=1.0) as p:
        yield p


@pytest.fixture
async def sdk(proxied: ProxiedDevnet) -> AsyncIterator[SorobanServerAsync]:
    client = SorobanServerAsync(proxied.rpc.url, client=AiohttpClient())
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def backend(proxied: ProxiedDevnet) -> AsyncIterator[BackendClient]:
    """One attempt per call and a short timeout: every fault reaches the test as it happened."""
    async with BackendClient(proxied.backend.url, timeout=0.5, retry_attempts=1) as client:
        yield client


async def rpc_post(url: str, method: str, params: object = None, rpc_id: int = 7) -> tuple[int, bytes]:
    """One raw JSON-RPC call: (HTTP status, body bytes)."""
    call = {"jsonrpc": "2.0", "id": rpc_id, "method": method}
    if params is not None:
        call["params"] = params
    async with aiohttp.ClientSession() as http, http.post(url, data=orjson.dumps(call)) as resp:
        return resp.status, await resp.read()


async def test_pass_through_is_transparent_and_recorded(
    proxied: ProxiedDevnet, sdk: SorobanServerAsync, backend: BackendClient
) -> None:
    network = await sdk.get_network()
    assert network.passphrase == ledger.NETWORK_PASSPHRASE
    latest = await sdk.get_latest_ledger()
    assert latest.sequence == proxied.net.contract.ledger_sequence()
    farmer = await backend.register_farmer(POOLER, 0.5)
    assert farmer["farmerId"] in proxied.net.backend.farmers
    assert (await backend.health())["status"] == "healthy"

    rpc = proxied.rpc.exchanges
    assert [e.route for e in rpc] == [("/", "getNetwork"), ("/", "getLatestLedger")]
    assert all(e.outcome == "forwarded" and e.status == e.upstream_status == 200 for e in rpc)
    assert rpc[1].json()["method"] == "getLatestLedger" and rpc[1].answer == rpc[1].upstream_body
    assert [(e.http_method, e.path) for e in proxied.backend.exchanges] == [
        ("POST", "/farmers/register"),
        ("GET", "/health"),
    ]
    assert proxied.backend.exchanges[0].status == 201
    assert proxied.backend.requests(path="/health")[0].answer_json()["status"] == "healthy"
    assert len(proxied.rpc.history("/", "getLatestLedger")) == 1


async def test_delay_before_forwarding_and_after_the_upstream_answered(
    proxied: ProxiedDevnet, backend: BackendClient
) -> None:
    # delay: the request reaches the Backend late; the client (0.5 s) has given up by then, and
    # the proxy still delivers it, as a slow network would: a POST sent and unanswered is an
    # unknown outcome (it may have acted), not a retryable failure
    late = proxied.backend.add(Rule(Forward(), path="/farmers/register", delay=1.0, times=1))
    with pytest.raises(BackendUnknownOutcome, match="no answer within"):
        await backend.register_farmer(POOLER, 0.5)
    assert proxied.net.backend.farmers == {}  # not yet: the request is still held
    (ex,) = await late.wait_spent()
    assert ex.outcome == "forwarded" and ex.upstream_status == 201
    assert ex.finished_at is not None and ex.finished_at - ex.at >= 1.0
    assert len(proxied.net.backend.farmers) == 1  # it did happen, nobody heard the answer

    # answer_delay: the Backend acts at once, the answer comes late
    slow = proxied.backend.add(Rule(Forward(), path="/farmers/register", answer_delay=1.0, times=1))
    with pytest.raises(BackendUnknownOutcome, match="no answer within"):
        await backend.register_farmer(POOLER, 0.5)
    assert len(proxied.net.backend.farmers) == 2  # acted before the client gave up
    (ex,) = await slow.wait_spent()
    assert ex.upstream_status == 201 and ex.status == 201

    # spent: the next call passes at once
    await backend.register_farmer(POOLER, 0.5)
    assert len(proxied.net.backend.farmers) == 3


async def test_drop_before_after_and_in_the_middle_of_the_answer(
    proxied: ProxiedDevnet, sdk: SorobanServerAsync, backend: BackendClient
) -> None:
    farmers = proxied.net.backend.farmers
    # a connection cut once the request was sent: from the client's side it may have acted,
    # before or after the upstream saw it, so both are unknown outcomes
    proxied.backend.add(Rule(Drop(), path="/farmers/register", times=1))
    with pytest.raises(BackendUnknownOutcome, match="connection lost after the request was sent"):
        await backend.register_farmer(POOLER, 0.5)
    assert farmers == {}  # the Backend never saw it

    proxied.backend.add(Rule(Drop(after_upstream=True), path="/farmers/register", times=1))
    with pytest.raises(BackendUnknownOutcome, match="connection lost after the request was sent"):
        await backend.register_farmer(POOLER, 0.5)
    assert len(farmers) == 1  # the request happened, the answer was lost

    proxied.backend.add(Rule(Drop(after_upstream=True, partial=10), path="/farmers/register", times=1))
    with pytest.raises(BackendUnknownOutcome, match="payload is not completed"):
        await backend.register_farmer(POOLER, 0.5)
    assert len(farmers) == 2

    proxied.rpc.add(Rule(Drop(), rpc="getLatestLedger", times=1))
    with pytest.raises(SdkConnectionError, match="disconnected"):
        await sdk.get_latest_ledger()
    await sdk.get_latest_ledger()  # spent: answered again

    outcomes = [(e.outcome, e.forwarded, e.status) for e in proxied.backend.exchanges]
    assert outcomes == [("dropped-before", False, None), ("dropped-after", True, None), ("cut", True, 201)]
    assert proxied.backend.exchanges[2].answer is not None and len(proxied.backend.exchanges[2].answer) == 10
    assert [e.outcome for e in proxied.rpc.exchanges] == ["dropped-before", "forwarded"]


@pytest.mark.parametrize(
    ("answer", "kind", "error"),
    [
        (Respond(200, b"{not json"), BackendUnknownOutcome, "body is not JSON: b'{not json'"),
        (Respond(200, b""), BackendUnknownOutcome, "body is not JSON: b''"),
        (
            Respond.truncated({"farmerId": "f", "custodialWallet": "G", "poolerId": "p"}),
            BackendUnknownOutcome,
            "body is not JSON",
        ),
        (
            Respond.json({"farmerId": "f", "custodialWallet": "G", "poolerId": POOLER}),
            BackendUnknownOutcome,
            "lacks field 'status'",
        ),
        (Respond.json({}, status=201), BackendUnknownOutcome, "lacks field 'farmerId'"),
        (Respond(503, b"injected", "text/plain"), BackendUnavailable, "HTTP 503: injected"),
    ],
    ids=["malformed", "empty", "truncated", "lacks-a-field", "empty-object", "503"],
)
async def test_canned_answers_never_reach_the_upstream(
    proxied: ProxiedDevnet, backend: BackendClient, answer: Respond, kind: type[BackendError], error: str
) -> None:
    # a 2xx that cannot be read is an unknown outcome (here the upstream never acted, which only
    # the chain or the upstream itself can tell); a 503 is a failure worth retrying
    rule = proxied.backend.add(Rule(answer, path="/farmers/register", times=1))
    with pytest.raises(kind, match=re.escape(error)):
        await backend.register_farmer(POOLER, 0.5)
    (ex,) = rule.exchanges
    assert ex.outcome == "responded" and not ex.forwarded and ex.status == answer.status
    assert proxied.net.backend.farmers == {}
    assert not rule.active  # times=1: spent and removed


async def test_canned_rpc_answers_carry_the_callers_id(
    proxied: ProxiedDevnet, sdk: SorobanServerAsync
) -> None:
    proxied.rpc.add(Rule(Respond.rpc_error(-32603, "injected"), rpc="getLatestLedger", times=1))
    with pytest.raises(SorobanRpcErrorResponse, match="injected"):
        await sdk.get_latest_ledger()
    proxied.rpc.add(Rule(Respond(503, b"overloaded", "text/plain"), rpc="getHealth", times=1))
    with pytest.raises(BadResponseError):
        await sdk.get_health()
    proxied.rpc.add(Rule(Respond.rpc_result({"status": "sick"}), rpc="getHealth", times=1))
    status, raw = await rpc_post(proxied.rpc.url, "getHealth", rpc_id=41)
    assert status == 200 and orjson.loads(raw) == {"jsonrpc": "2.0", "id": 41, "result": {"status": "sick"}}
    assert not any(e.forwarded for e in proxied.rpc.exchanges)


async def test_rewrite_forwards_then_mangles_the_answer(
    proxied: ProxiedDevnet, sdk: SorobanServerAsync, backend: BackendClient
) -> None:
    farmers = proxied.net.backend.farmers
    cases: list[tuple[Rewrite, type[BackendError], str]] = [
        (Rewrite(edit=without("status")), BackendUnknownOutcome, "lacks field 'status'"),
        (Rewrite(edit=lambda _: {}), BackendUnknownOutcome, "lacks field 'farmerId'"),
        (Rewrite(raw=lambda _: b""), BackendUnknownOutcome, "body is not JSON: b''"),
        (Rewrite(raw=cut(0.5)), BackendUnknownOutcome, "body is not JSON"),
        (Rewrite(status=500), BackendUnavailable, "HTTP 500"),
    ]
    for n, (rewrite, kind, error) in enumerate(cases, start=1):
        proxied.backend.add(Rule(rewrite, path="/farmers/register", times=1))
        with pytest.raises(kind, match=error):
            await backend.register_farmer(POOLER, 0.5)
        assert len(farmers) == n  # every one of them registered a farmer upstream
    assert all(e.outcome == "rewritten" and e.upstream_status == 201 for e in proxied.backend.exchanges)
    body = orjson.loads(proxied.backend.exchanges[0].upstream_body or b"")
    assert body["status"] == "active" and "status" not in proxied.backend.exchanges[0].answer_json()

    # a nested key of a JSON-RPC result: the SDK refuses the answer
    proxied.rpc.add(Rule(Rewrite(edit=without("result.sequence")), rpc="getLatestLedger", times=1))
    with pytest.raises(ValueError, match="sequence"):
        await sdk.get_latest_ledger()
    (ex,) = proxied.rpc.requests(rpc="getLatestLedger")
    assert "sequence" in orjson.loads(ex.upstream_body or b"")["result"]
    assert "sequence" not in ex.answer_json()["result"]


async def test_replay_answers_a_stale_recorded_answer(
    proxied: ProxiedDevnet, sdk: SorobanServerAsync
) -> None:
    contract = proxied.net.contract
    first = (await sdk.get_latest_ledger()).sequence
    await wait_until(lambda: contract.ledger_sequence() > first, "the next ledger")
    second = (await sdk.get_latest_ledger()).sequence
    assert second > first
    await wait_until(lambda: contract.ledger_sequence() > second, "another ledger")

    frozen = proxied.rpc.add(Rule(Replay(), rpc="getLatestLedger"))  # until cleared: the latest
    assert [(await sdk.get_latest_ledger()).sequence for _ in range(2)] == [second, second]
    proxied.rpc.add(Rule(Replay(index=0), rpc="getLatestLedger", times=1))  # newer rule first
    assert (await sdk.get_latest_ledger()).sequence == first
    frozen.clear()
    assert (await sdk.get_latest_ledger()).sequence == contract.ledger_sequence() > second
    assert [e.outcome for e in proxied.rpc.exchanges] == [
        "forwarded",
        "forwarded",
        "replayed #2",
        "replayed #2",
        "replayed #1",
        "forwarded",
    ]

    # same_request: only an answer to the same call (here: the same ledger keys) is replayed
    keys = [ledger.instance_key().to_xdr()]
    _, fresh = await rpc_post(proxied.rpc.url, "getLedgerEntries", {"keys": keys}, rpc_id=1)
    await rpc_post(proxied.rpc.url, "getLedgerEntries", {"keys": [ledger.block_key(1).to_xdr()]}, rpc_id=2)
    proxied.rpc.add(Rule(Replay(same_request=True), rpc="getLedgerEntries", times=1))
    _, stale = await rpc_post(proxied.rpc.url, "getLedgerEntries", {"keys": keys}, rpc_id=3)
    assert orjson.loads(stale) == {**orjson.loads(fresh), "id": 3}


async def test_replay_with_nothing_recorded_is_a_problem_of_the_test(proxied: ProxiedDevnet) -> None:
    proxied.backend.add(Rule(Replay(), path="/plant", times=1))
    async with aiohttp.ClientSession() as http, http.post(f"{proxied.backend.url}/plant", data=b"{}") as resp:
        assert resp.status == 502
    assert proxied.backend.exchanges[0].outcome == "proxy-problem"
    with pytest.raises(AssertionError, match=r"Replay\(-1\) but 0 answer\(s\) recorded"):
        proxied.backend.check()
    proxied.backend.problems.clear()  # seen: do not fail the fixture's exit


async def test_rules_times_order_clear_and_condition_waits(
    proxied: ProxiedDevnet, sdk: SorobanServerAsync, backend: BackendClient
) -> None:
    rpc = proxied.rpc
    outage = rpc.add(Rule(Respond(503, b"down", "text/plain")))  # every route, until cleared
    rpc.add(Rule(Forward(), rpc="getHealth", times=2))  # newer: overrides it for two getHealth
    for _ in range(2):
        assert (await sdk.get_health()).status == "healthy"
    with pytest.raises(BadResponseError):
        await sdk.get_health()  # the override is spent: the outage again
    with pytest.raises(BadResponseError):
        await sdk.get_latest_ledger()
    assert outage.hits == 2 and outage.active
    rpc.clear()
    assert not outage.active
    assert (await sdk.get_health()).status == "healthy"

    # a bounded wait on the record, woken by each request: two registrations seen, both answered
    proxied.backend.add(Rule(Forward(), path="/farmers/register", http_method="GET", times=1))  # never fits
    for _ in range(2):
        await backend.register_farmer(POOLER, 0.5)
    seen = await proxied.backend.wait_for(
        lambda e: e.path == "/farmers/register" and e.finished, count=2, what="two registrations"
    )
    assert [e.outcome for e in seen] == ["forwarded", "forwarded"] and all(e.rule is None for e in seen)
    with pytest.raises(AssertionError, match="gave up waiting for a plant"):
        await proxied.backend.wait_for(lambda e: e.path == "/plant", what="a plant", within=0.2)

    # when: a test of the request itself, here its JSON body (one that raises does not fit)
    only_half = proxied.backend.add(
        Rule(Respond(200, b""), path="/farmers/register", when=body_has(stakePercentage=0.5))
    )
    await backend.register_farmer(POOLER, 0.25)
    with pytest.raises(BackendUnknownOutcome, match="not JSON"):
        await backend.register_farmer(POOLER, 0.5)
    assert only_half.hits == 1 and len(proxied.net.backend.farmers) == 3


async def test_refuse_and_accept_connections_on_the_same_port(
    proxied: ProxiedDevnet, sdk: SorobanServerAsync
) -> None:
    port = proxied.rpc.port
    await proxied.rpc.refuse_connections()
    with pytest.raises(SdkConnectionError):
        await sdk.get_health()
    await proxied.rpc.accept_connections()
    assert proxied.rpc.port == port
    assert (await sdk.get_health()).status == "healthy"


async def test_an_unreachable_upstream_is_a_502_recorded_as_such() -> None:
    async with proxied_devnet(block_interval=300, ledger_seconds=1.0) as p:
        dead = p.net.backend_url
    async with FaultProxy(dead) as proxy, BackendClient(proxy.url, timeout=0.5, retry_attempts=1) as client:
        with pytest.raises(BackendUnavailable, match="HTTP 502"):
            await client.health()
        (ex,) = proxy.exchanges
        assert ex.outcome == "upstream-failed" and "upstream" in ex.problem and ex.status == 502
