"""A real devnet and a real Pooler on loopback, and the clients the tests drive them with.

``running_system()`` is the one way a test starts an in-process Pooler on the devnet: it starts
:class:`pooler.devnet.Devnet` (Soroban RPC + Phase-1 Backend), or takes one the test started, and
:class:`pooler.app.service.Pooler` (uvicorn on port 0) with short timings, and stops them in
reverse order. Nothing is mocked: the tests talk HTTP/WebSocket to the Pooler, which talks HTTP
to the devnet's RPC and Backend. (A ``pooler serve`` child process is the other kind of Pooler,
started by :func:`tests.support.processes.start_pooler`.)

``register_miner()`` is the one way a test registers a miner at a Pooler (``POST /miner/register``).
Waiting is always on a condition (:func:`tests.support.wait.wait_until`) with a generous failsafe
bound; no test asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from pooler.app.options import PoolerOptions, Tuning
from pooler.app.service import Pooler
from pooler.config import Settings
from pooler.devnet import Devnet
from protocol.work import WorkTemplate, address_bytes
from tests.support import config
from tests.support.wait import FAILSAFE, wait_until

POOLER_ID = "test-pooler"


# ---------------------------------------------------------------- options: two profiles


def system_settings(
    net: Devnet, block_interval: int, *, share_zeros: int = 1, vardiff: bool = False, **overrides: Any
) -> Settings:
    """Settings for a Pooler on ``net`` with coordinator timings scaled to ``block_interval`` seconds.

    Without ``vardiff`` the share difficulty is pinned (min = initial = max), so no ``difficulty``
    message interleaves with the answers a component test expects. ``overrides`` are Settings fields.
    """
    timings: dict[str, Any] = {
        "pooler_id": POOLER_ID,
        "backend_api_url": net.backend_url,
        "stellar_rpc_url": net.rpc_url,
        "kale_contract_id": net.contract_id,
        "block_poll_interval_ms": 100,
        "block_interval_seconds": block_interval,
        "optimal_work_delay_ms": round(block_interval * 600),
        "work_safety_margin_ms": round(max(1.0, block_interval * 0.15) * 1000),
        "late_plant_grace_ms": 500,
        "share_zeros_initial": share_zeros,
        "share_zeros_min": 1 if vardiff else share_zeros,
        "share_zeros_max": 8 if vardiff else share_zeros,
        "vardiff_target_seconds": 1.0,
        "summary_interval_ms": 500,
    }
    return config.settings(**{**timings, **overrides})


def system_tuning(block_interval: int, **overrides: Any) -> Tuning:
    """Short retry delays and searches for ``block_interval`` seconds; ``overrides`` are Tuning fields."""
    fast: dict[str, Any] = {
        "late_plant_retry": 1.0,
        "backend_retry_delay": 0.5,
        "harvest_retry_delay": 1.0,
        "local_search_lead": max(1.0, block_interval * 0.2),
        "local_search_max_hashes": 50_000,
        "vardiff_window": 4.0,
        "vardiff_grace": 2.0,
        "shutdown_timeout": 1.0,
    }
    return config.tuning(**{**fast, **overrides})


def component_options(
    net: Devnet,
    block_interval: int,
    *,
    share_zeros: int = 1,
    vardiff: bool = False,
    rpc_url: str | None = None,
    tuning: Mapping[str, Any] | None = None,
    **settings: Any,
) -> PoolerOptions:
    """The component tests' profile (the default of :func:`running_system`): pinned share
    difficulty unless ``vardiff``; ``rpc_url`` points the Pooler at another chain RPC (a dead
    port, say) than the devnet's; ``settings`` override Settings fields, ``tuning`` Tuning fields."""
    if rpc_url is not None:
        settings["stellar_rpc_url"] = rpc_url
    chosen = system_settings(net, block_interval, share_zeros=share_zeros, vardiff=vardiff, **settings)
    return config.options(chosen, system_tuning(block_interval, **(tuning or {})))


def ops_options(
    net: Devnet, interval: int, *, tuning: dict[str, Any] | None = None, **settings: Any
) -> PoolerOptions:
    """The operations and reliability tests' profile: ``interval`` s blocks and fast ticks
    (metrics, snapshots and health polls every 0.1-0.2 s, a 2 s Backend timeout); ``settings``
    override Settings fields, ``tuning`` Tuning fields."""
    chosen = config.settings(
        **{
            "pooler_id": "ops-pooler",
            "backend_api_url": net.backend_url,
            "stellar_rpc_url": net.rpc_url,
            "kale_contract_id": net.contract_id,
            "block_poll_interval_ms": 100,
            "backend_timeout_ms": 2000,
            "block_interval_seconds": interval,
            "optimal_work_delay_ms": round(interval * 600),
            "work_safety_margin_ms": 1000,
            "late_plant_grace_ms": 500,
            "summary_interval_ms": 1000,
            "share_zeros_initial": 1,
            "share_zeros_min": 1,
            "share_zeros_max": 4,
            "vardiff_target_seconds": 1.0,
            "health_interval_ms": 200,
            **settings,
        }
    )
    fast = config.tuning(
        **{
            "late_plant_retry": 1.0,
            "backend_retry_delay": 0.3,
            "harvest_retry_delay": 0.5,
            "local_search_lead": 0.5,
            "metrics_interval": 0.1,
            "snapshot_interval": 0.2,
            "shutdown_timeout": 1.0,
            **(tuning or {}),
        }
    )
    return config.options(chosen, fast)


# Builds a Pooler's options from a devnet, a block interval and the profile's own keyword
# arguments: component_options or ops_options.
Profile = Callable[..., PoolerOptions]


# ---------------------------------------------------------------- the system


@dataclass
class System:
    """A started devnet and Pooler."""

    net: Devnet
    pooler: Pooler

    @property
    def url(self) -> str:
        return self.pooler.url

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.pooler.port}/ws/miner"

    @property
    def events_url(self) -> str:
        return f"ws://127.0.0.1:{self.pooler.port}/ws/events"

    def block(self) -> int | None:
        """The block the Pooler currently works on (None before the first NewBlock)."""
        return self.pooler.core.view(time.time()).block


# The /ws/miner path (MINER_SOCKET) running_system serves unless a test says; the ``miner_socket``
# fixture (tests/component/conftest.py) runs a test once per path.
miner_socket = "asgi"


@asynccontextmanager
async def running_system(
    *,
    block_interval: int = 300,
    profile: Profile = component_options,
    net: Devnet | None = None,
    paused: bool = False,
    wait_for_block: bool = True,
    prepare: Callable[[Pooler], None] | None = None,
    **overrides: Any,
) -> AsyncIterator[System]:
    """An in-process Pooler on a devnet, on loopback, until the block ends.

    ``profile`` builds the options from the devnet, ``block_interval`` and ``overrides`` (the
    component tests' :func:`component_options` by default, or the operations tests'
    :func:`ops_options`; both take Settings fields, a ``tuning`` mapping of Tuning fields and a
    few of their own). ``net`` runs the Pooler on a devnet the test started (and stops), for a
    proxy in front of it or a second Pooler on the same chain; otherwise one with this
    ``block_interval`` is started. ``paused`` pauses the farm before the Pooler first looks;
    ``prepare`` adjusts the built Pooler before it starts (what it opens at start, say);
    ``wait_for_block`` returns once the Pooler has seen the chain's first block.

    With the default 300 s interval no block turns over during a component test, so a job
    stays current for the whole test.
    """
    async with contextlib.AsyncExitStack() as stack:
        if net is None:
            net = await stack.enter_async_context(Devnet(block_interval=block_interval, ledger_seconds=1.0))
        if paused:
            net.contract.pause()
        overrides.setdefault("miner_socket", miner_socket)
        pooler = Pooler(profile(net, block_interval, **overrides))
        if prepare is not None:
            prepare(pooler)
        async with pooler:
            system = System(net, pooler)
            if wait_for_block:
                await wait_until(lambda: system.block() is not None, "the Pooler to see the first block")
            yield system


# ---------------------------------------------------------------- HTTP


@dataclass(frozen=True, slots=True)
class Registration:
    """A miner the Pooler registered: the ``201`` body of ``POST /miner/register``."""

    miner_id: str
    token: str  # the bearer token, shown this once
    farmer_id: str  # the Backend's custodial farmer the Pooler created for the miner
    farmer: str  # that farmer's Stellar address (G...)


async def register_miner(
    pooler_url: str,
    name: str | None = "rig",
    *,
    stake_percentage: float | None = None,
    http: aiohttp.ClientSession | None = None,
) -> Registration:
    """``POST /miner/register`` at the Pooler ``pooler_url``; fails the test unless it answers 201.

    ``name`` None and no ``stake_percentage`` send an empty body (the Pooler's defaults). ``http``
    is the test's session, if it has one (else a session for this one request).
    """
    body: dict[str, Any] = {} if name is None else {"name": name}
    if stake_percentage is not None:
        body["stakePercentage"] = stake_percentage
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(aiohttp.ClientSession())
        async with http.post(f"{pooler_url}/miner/register", json=body) as resp:
            reply = await resp.json()
            assert resp.status == 201, reply
    return Registration(reply["minerId"], reply["token"], reply["farmerId"], reply["farmer"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------- mining


def template(job: dict[str, Any]) -> WorkTemplate:
    return WorkTemplate(job["block"], bytes.fromhex(job["entropy"]), address_bytes(job["farmer"]))


def find_nonce(
    job: dict[str, Any],
    *,
    at_least: int | None = None,
    below: int | None = None,
    start: int | None = None,
    skip: set[int] | None = None,
) -> tuple[int, bytes, int]:
    """The first nonce of the job's range (from ``start``) with zeros in bounds: (nonce, hash, zeros)."""
    tpl = template(job)
    lo, hi = int(job["nonceStart"]), int(job["nonceEnd"])
    need = job["shareZeros"] if at_least is None else at_least
    for nonce in range(lo if start is None else start, hi):
        if skip and nonce in skip:
            continue
        digest, zeros = tpl.verify(nonce)
        if zeros >= need and (below is None or zeros < below):
            return nonce, digest, zeros
    raise AssertionError(f"no nonce with {need} zeros in the job's range")


# ---------------------------------------------------------------- WebSocket clients


class MinerSocket:
    """A protocol v1 client on ``/ws/miner`` speaking raw JSON, for tests that check every frame."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str, **kwargs: Any) -> AsyncIterator[MinerSocket]:
        async with connect(url, open_timeout=FAILSAFE, close_timeout=2, **kwargs) as conn:
            yield cls(conn)

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, dict):
            await self.conn.send(orjson.dumps(message).decode())
        else:
            await self.conn.send(message)

    async def recv(self, within: float = FAILSAFE) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv(), within)
        value = orjson.loads(raw)
        assert isinstance(value, dict), raw
        return value

    async def expect(self, kind: str, within: float = FAILSAFE) -> dict[str, Any]:
        msg = await self.recv(within)
        assert msg["type"] == kind, f"expected {kind!r}, got {msg}"
        return msg

    async def hello(self, token: str, worker: str = "w1") -> tuple[dict[str, Any], dict[str, Any]]:
        """hello -> (welcome, the first job); a block must be open."""
        await self.send({"type": "hello", "token": token, "worker": worker, "protocol": 1, "agent": "tests"})
        welcome = await self.expect("welcome")
        job = await self.expect("job")
        return welcome, job

    async def request(self, message: dict[str, Any], kind: str) -> dict[str, Any]:
        await self.send(message)
        return await self.expect(kind)

    async def closed(self, within: float = FAILSAFE) -> tuple[int | None, list[dict[str, Any]]]:
        """Read until the server closes: (close code it sent, frames read before the close)."""
        frames: list[dict[str, Any]] = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                frames.append(await self.recv(within))
        rcvd = self.conn.close_code
        return rcvd, frames


@dataclass
class EventTap:
    """Everything a ``/ws/events`` subscriber receives, decoded, in order."""

    frames: list[str] = field(default_factory=list)  # raw text, to look for leaked secrets
    events: list[dict[str, Any]] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]

    def first(self, kind: str, match: Callable[[dict[str, Any]], bool] = lambda d: True) -> dict[str, Any]:
        for e in self.events:
            if e["kind"] == kind and match(e["data"]):
                return e
        raise LookupError(kind)

    def has(self, kind: str, match: Callable[[dict[str, Any]], bool] = lambda d: True) -> bool:
        return any(e["kind"] == kind and match(e["data"]) for e in self.events)


@asynccontextmanager
async def tap_events(url: str) -> AsyncIterator[EventTap]:
    """Subscribe to ``/ws/events`` for the duration of the block; the frames pile up in the tap."""
    tap = EventTap()
    async with connect(url, open_timeout=FAILSAFE, close_timeout=2, max_size=None) as conn:

        async def pump() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for raw in conn:
                    text = raw if isinstance(raw, str) else raw.decode()
                    tap.frames.append(text)
                    tap.events.append(orjson.loads(text))

        task = asyncio.create_task(pump())
        try:
            await wait_until(lambda: bool(tap.events), "the snapshot event")
            yield tap
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def gather_bounded(*aws: Awaitable[Any], within: float = FAILSAFE) -> list[Any]:
    """``asyncio.gather`` with a failsafe timeout."""
    return list(await asyncio.wait_for(asyncio.gather(*aws), within))
