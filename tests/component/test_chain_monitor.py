"""The block monitor against the devnet's Soroban RPC over real loopback sockets.

The contract model runs on a stepped fake clock the test drives; the monitor polls with a
real clock every 50 ms. Waits for events are bounded only as a failsafe (no timing asserts).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import pytest
from aiohttp import web
from stellar_sdk import Keypair

from pooler.chain.monitor import BlockMonitor
from pooler.chain.reader import BlockRecord, FarmReader
from pooler.core.events import ChainHealth, Event, FarmPaused, NewBlock
from pooler.devnet import ledger
from pooler.devnet.contract import FarmContract
from pooler.devnet.miner import find_nonce
from pooler.devnet.rpc import SorobanRpc
from pooler.devnet.serve import LoopbackServer
from tests.support.wait import wait_until

T0 = 1_700_000_000.0
POLL = 0.05
FARMERS = [Keypair.from_raw_ed25519_seed(bytes([i]) * 32).public_key for i in range(1, 5)]
E = TypeVar("E")


class FakeClock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@dataclass
class FaultyRpc:
    """The devnet RPC behind a switch: ``mode`` picks a fault, "" serves normally."""

    rpc: SorobanRpc
    mode: str = ""
    seen: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(self.mode)
        if self.mode == "429":
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "1"})
        if self.mode == "500":
            return web.Response(status=500, text="internal error")
        answer: dict[str, Any] = self.rpc.dispatch(body)
        if self.mode == "rpc-error":
            answer = {
                "jsonrpc": "2.0",
                "id": answer.get("id"),
                "error": {"code": -32603, "message": "overloaded"},
            }
        elif self.mode == "bad-xdr":
            for entry in answer["result"]["entries"]:
                entry["xdr"] = "AAAABgAAAAE="  # CONTRACT_DATA tag, then truncated
        elif self.mode == "bad-result":
            answer["result"] = {"entries": []}  # latestLedger missing
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    def server(self, port: int = 0) -> LoopbackServer:
        app = web.Application()
        app.router.add_post("/", self.handle)
        return LoopbackServer(app, port=port)


@dataclass
class Net:
    clock: FakeClock
    contract: FarmContract
    faulty: FaultyRpc
    server: LoopbackServer
    url: str

    def open_next_block(self, farmer: str = FARMERS[0]) -> int:
        """Let a block interval pass and plant: that plant opens the next block."""
        self.clock.t += self.contract.block_interval
        return self.contract.plant(farmer, 0)

    async def restart(self) -> None:
        port = self.server.port
        self.server = self.faulty.server(port)
        await self.server.start()


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    clock = FakeClock()
    contract = FarmContract(clock=clock, start_index=5, homesteader=ledger.HOMESTEADER, asset=ledger.ASSET_ID)
    for f in FARMERS:
        contract.fund(f)
    faulty = FaultyRpc(SorobanRpc(contract))
    server = faulty.server()
    url = await server.start()
    n = Net(clock, contract, faulty, server, url)
    try:
        yield n
    finally:
        await n.server.stop()


class Events:
    """The monitor's emit target: a queue the test reads in order."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.fail_next: Callable[[Event], bool] = lambda _e: False

    def emit(self, event: Event) -> None:
        if self.fail_next(event):
            self.fail_next = lambda _e: False
            raise RuntimeError("consumer refused")
        self.queue.put_nowait(event)

    async def next(self, kind: type[E], skip: tuple[type, ...] = ()) -> E:
        async with asyncio.timeout(10):  # failsafe only
            while True:
                event = await self.queue.get()
                if isinstance(event, kind):
                    return event
                assert isinstance(event, skip), f"unexpected {event!r} while waiting for {kind.__name__}"

    def drain(self) -> list[Event]:
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out


@contextlib.asynccontextmanager
async def running(monitor: BlockMonitor) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(monitor.run())
    try:
        yield task
    finally:
        assert not task.done(), "the monitor task died"
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()


def make_monitor(net: Net, events: Events, **kw: Any) -> BlockMonitor:
    kw.setdefault("backoff_cap", 0.2)
    return BlockMonitor(net.url, ledger.CONTRACT_ID, events.emit, POLL, request_timeout=2.0, **kw)


def expected_new_block(net: Net, index: int) -> NewBlock:
    block = net.contract.get_block(index)
    assert block is not None
    return NewBlock(index, block.entropy, block.timestamp, net.contract.ledger_sequence())


# ---------------------------------------------------------------- reader (one call per poll)


async def test_reader_reads_what_the_model_holds_in_one_call(net: Net) -> None:
    from stellar_sdk.client.aiohttp_client import AiohttpClient
    from stellar_sdk.soroban_server_async import SorobanServerAsync

    # give FarmBlock and Block(5) real observations: plant, then work two ledgers later
    net.contract.plant(FARMERS[0], 50_0000000)
    net.clock.t += 10
    block5 = net.contract.get_block(5)
    assert block5 is not None
    nonce, digest = find_nonce(5, block5.entropy, FARMERS[0], 1, exact=False)
    net.contract.work(FARMERS[0], digest, nonce)

    async with SorobanServerAsync(net.url, client=AiohttpClient()) as sdk:
        reader = FarmReader(sdk, ledger.CONTRACT_ID)
        first = await reader.read()
        assert first.rpc_calls == 2  # index unknown before the first read
        assert first.state.index == 5 and first.state.paused is False
        fb = net.contract.farm_block
        assert fb is not None and first.state.farm_block == BlockRecord(
            fb.timestamp,
            fb.min_gap,
            fb.min_stake,
            fb.min_zeros,
            fb.max_gap,
            fb.max_stake,
            fb.max_zeros,
            fb.entropy,
            fb.staked_total,
            fb.normalized_total,
        )
        assert first.state.farm_block.entropy == digest  # the last work hash is the next entropy
        assert first.block is not None and first.block.entropy == block5.entropy
        assert first.block.staked_total == 0 and first.block.normalized_total > 0
        assert first.ledger == net.contract.ledger_sequence()

        assert (await reader.read()).rpc_calls == 1  # steady state
        net.open_next_block(FARMERS[1])
        nxt = await reader.read()
        assert (nxt.rpc_calls, nxt.state.index) == (1, 6)  # Block(last+1) rode along
        assert nxt.block is not None and nxt.block.entropy == digest

        for f in FARMERS[2:4]:
            net.open_next_block(f)
        jump = await reader.read()
        assert (jump.rpc_calls, jump.state.index) == (2, 8)  # a jump of two needs the fallback call
        assert jump.block == BlockRecord(**_fields(net.contract.get_block(8)))


async def test_read_pails_tells_the_ledger_it_reflects(net: Net) -> None:
    """A reconciliation trusts "not done" only from a read past the failure: the read says its ledger."""
    net.contract.plant(FARMERS[0], 50_0000000)
    net.clock.t += 10
    monitor = make_monitor(net, Events())
    async with monitor:
        pails, at = await monitor.read_pails(5, (("f0", FARMERS[0]), ("f1", FARMERS[1])))
        assert set(pails) == {"f0"} and pails["f0"].stake == 50_0000000  # f1 never planted: absent
        assert at == net.contract.ledger_sequence()
        net.clock.t += 10
        assert (await monitor.read_pails(5, (("f0", FARMERS[0]),)))[1] == net.contract.ledger_sequence() > at


def _fields(block: Any) -> dict[str, Any]:
    return {k: getattr(block, k) for k in BlockRecord.__slots__}


# ---------------------------------------------------------------- monitor events


async def test_first_read_announces_the_current_block(net: Net) -> None:
    events = Events()
    async with make_monitor(net, events) as monitor:
        assert await monitor.poll_once() is True
        assert events.drain() == [expected_new_block(net, 5)]
        assert await monitor.poll_once() is True
        assert events.drain() == []  # nothing changed, nothing said
        assert monitor.last_state is not None and monitor.last_state.rpc_calls == 1
        assert monitor.consecutive_failures == 0 and monitor.last_ok_at is not None and monitor.healthy


async def test_a_plant_that_opens_the_next_block_is_seen(net: Net) -> None:
    events = Events()
    monitor = make_monitor(net, events)
    async with running(monitor):
        assert await events.next(NewBlock) == expected_new_block(net, 5)
        assert net.open_next_block() == 6
        want = expected_new_block(net, 6)
        assert await events.next(NewBlock) == want
        # the next block's entropy is the previous FarmBlock's (all zeros here: nobody worked)
        assert want.entropy == bytes(32)
        assert net.open_next_block(FARMERS[1]) == 7
        assert (await events.next(NewBlock)).index == 7
        # a jump over a block announces only the current one
        net.open_next_block(FARMERS[2])
        net.open_next_block(FARMERS[3])
        assert await events.next(NewBlock) == expected_new_block(net, 9)
        assert monitor.last_state is not None and monitor.last_state.state.index == 9


async def test_pause_and_unpause_are_announced(net: Net) -> None:
    events = Events()
    async with running(make_monitor(net, events)):
        await events.next(NewBlock)
        net.contract.pause()
        assert await events.next(FarmPaused) == FarmPaused(True)
        net.contract.unpause()
        assert await events.next(FarmPaused) == FarmPaused(False)


async def test_a_paused_farm_at_start_is_announced_before_its_block(net: Net) -> None:
    net.contract.pause()
    events = Events()
    async with make_monitor(net, events) as monitor:
        await monitor.poll_once()
        assert events.drain() == [FarmPaused(True), expected_new_block(net, 5)]


async def test_the_rpc_going_away_and_coming_back(net: Net) -> None:
    events = Events()
    monitor = make_monitor(net, events)
    async with running(monitor) as task:
        await events.next(NewBlock)
        await net.server.stop()
        down = await events.next(ChainHealth)
        assert down.ok is False and "connection failed" in down.detail
        # the task lives on, backing off, with the last known state kept
        await wait_until(lambda: monitor.consecutive_failures >= 3, "three failed polls", within=10)
        assert not task.done()
        assert monitor.last_state is not None and monitor.last_state.state.index == 5
        assert not monitor.healthy
        net.open_next_block()  # the chain moves on while the RPC is away
        await net.restart()
        up = await events.next(ChainHealth)
        assert up.ok is True and "recovered" in up.detail
        assert await events.next(NewBlock) == expected_new_block(net, 6)
        assert monitor.consecutive_failures == 0 and monitor.healthy


@pytest.mark.parametrize(
    ("mode", "detail"),
    [
        ("429", "HTTP 429"),
        ("500", "HTTP 500"),
        ("rpc-error", "JSON-RPC error -32603: overloaded"),
        ("bad-xdr", "not LedgerEntryData"),
        ("bad-result", "not a valid result"),
    ],
)
async def test_rpc_faults_are_survived(net: Net, mode: str, detail: str) -> None:
    events = Events()
    monitor = make_monitor(net, events)
    async with running(monitor):
        await events.next(NewBlock)
        net.faulty.mode = mode
        down = await events.next(ChainHealth)
        assert down.ok is False and detail in down.detail, down.detail
        await wait_until(lambda: monitor.consecutive_failures >= 2, "two failed polls", within=10)
        net.open_next_block()
        net.faulty.mode = ""
        assert (await events.next(ChainHealth)).ok is True
        assert (await events.next(NewBlock)).index == 6


async def test_an_event_the_consumer_refused_is_offered_again(net: Net) -> None:
    events = Events()
    events.fail_next = lambda e: isinstance(e, NewBlock)
    async with make_monitor(net, events) as monitor:
        assert await monitor.poll_once() is True  # the read worked; the emit did not
        assert events.drain() == []
        assert await monitor.poll_once() is True
        assert events.drain() == [expected_new_block(net, 5)]


async def test_missing_block_entry_waits_without_announcing(net: Net) -> None:
    net.contract.remove_block(5)  # as if evicted
    events = Events()
    async with make_monitor(net, events) as monitor:
        assert await monitor.poll_once() is True
        assert events.drain() == []
        # the next plant bumps past the evicted block (contract rule) and the monitor follows
        net.contract.plant(FARMERS[0], 0)
        assert await monitor.poll_once() is True
        assert events.drain() == [expected_new_block(net, 6)]


async def test_wrong_contract_id_is_a_chain_data_error_not_a_crash(net: Net) -> None:
    events = Events()
    other = "CDL74RF5BLYR2YBLCCI7F5FB6TPSCLKEJUBSD2RSVWZ4YHF3VMFAIGWA"
    async with BlockMonitor(net.url, other, events.emit, POLL) as monitor:
        assert await monitor.poll_once() is False
        (event,) = events.drain()
        assert isinstance(event, ChainHealth) and not event.ok and "has no instance entry" in event.detail
        assert monitor.consecutive_failures == 1 and monitor.last_state is None


async def test_through_the_public_devnet_a_backend_plant_opening_a_block_is_seen() -> None:
    from pooler.backend import BackendClient
    from pooler.devnet import Devnet

    clock = FakeClock()
    events = Events()
    async with Devnet(block_interval=20, ledger_seconds=1, clock=clock, start_index=3) as dn:
        monitor = BlockMonitor(dn.rpc_url, dn.contract_id, events.emit, POLL)
        async with BackendClient(dn.backend_url, 5.0, 3, clock=clock) as backend, running(monitor):
            first = await events.next(NewBlock)
            assert first.index == 3
            await backend.register_farmer("p", 0.1)
            clock.t += 20
            assert (await backend.plant(4, "p", 5, deadline=clock() + 30))["successfulPlants"] == 1
            seen = await events.next(NewBlock)
            block = dn.contract.get_block(4)
            assert block is not None
            assert (seen.index, seen.entropy, seen.timestamp) == (4, block.entropy, block.timestamp)
