"""The Pooler assembled: coordinator runner, block monitor, Backend client, web app, server.

``async with Pooler(options) as pooler:`` starts everything on the running loop and stops it
in reverse order; ``pooler.port`` is the port actually bound (``port=0`` picks a free one).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.websockets import WebSocket

from pooler.backend import BackendClient
from pooler.chain.monitor import BlockMonitor
from pooler.core.config import CoreConfig
from pooler.core.coordinator import Coordinator
from pooler.core.effects import Effect
from pooler.core.events import MinerJoined, MinerLeft
from pooler.miners import MinerRecord, MinerRegistry
from pooler.runtime.hub import EventHub
from pooler.runtime.runner import Runner
from pooler.store.sqlite import SqliteStore
from pooler.web.app import create_app
from pooler.web.wsproto import AbortableWebSocketProtocol

log = logging.getLogger("pooler")

CLOSE_SERVICE_RESTART = 1012


@dataclass(frozen=True, slots=True)
class PoolerOptions:
    """Everything the running service needs; ``pooler serve`` fills it from Settings."""

    backend_url: str
    rpc_url: str
    contract_id: str
    pooler_id: str = "kale-pooler"
    pooler_name: str = "KALE pool"
    host: str = "127.0.0.1"
    port: int = 3001
    backend_timeout: float = 10.0
    retry_attempts: int = 3
    poll_interval: float = 1.0
    core: CoreConfig = field(default_factory=lambda: CoreConfig(pooler_id="kale-pooler"))
    max_frame: int = 4096
    hello_timeout: float = 10.0
    messages_per_second: float = 200.0
    message_burst: float = 400.0
    max_connections: int = 20_000
    max_connections_per_ip: int = 20_000
    outbox_size: int = 256
    slow_client_grace: float = 5.0  # seconds a peer that fell behind gets to take its close frame
    default_stake_percentage: float = 0.1
    ws_ping_interval: float | None = 20.0
    shutdown_timeout: float = 5.0
    db_path: str | None = None  # SQLite file; None keeps nothing across restarts (tests, the bare demo)


class Pooler:
    def __init__(self, options: PoolerOptions, *, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock
        self.started_at = clock()
        self.hub = EventHub(clock)
        self.registry = MinerRegistry(options.pooler_id)
        # A per-start job-id prefix: a job id from before a restart can never name a job of this run.
        self.core = Coordinator(dataclasses.replace(options.core, job_id_prefix=f"{int(clock()) % 46656:x}."))
        self.backend = BackendClient(
            options.backend_url,
            options.backend_timeout,
            options.retry_attempts,
            observe=self._observe_backend,
        )
        self.backend_ok = True  # last Backend call reached it (or none was made yet): /health's "backend"
        self.store = SqliteStore(options.db_path, clock=clock) if options.db_path else None
        self.runner = Runner(
            self.core, self.backend, self.hub, store=self.store, clock=clock, outbox_size=options.outbox_size
        )
        self.monitor = BlockMonitor(
            options.rpc_url, options.contract_id, emit=self.runner.post, poll_interval=options.poll_interval
        )
        self.app = create_app(self)
        self.miner_conns: dict[str, set[int]] = {}  # miner id -> its live socket conns (leave closes them)
        self._per_ip: collections.Counter[str] = (
            collections.Counter()
        )  # open miner sockets per client address
        self._open = 0  # open miner sockets in total, against max_connections
        self._server: uvicorn.Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self.port = options.port  # the bound port once started

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Pooler:
        resume: list[Effect] = []
        if self.store is not None:
            restored = await self.store.open()
            for record in restored.miners:
                self.registry.add(record)
            resume = self.core.restore(restored.snapshot, self.clock())
        await self.backend.__aenter__()
        await self.runner.__aenter__()
        await self.runner.perform(resume)
        for record in self.registry.records():
            self.runner.post(_joined(record))
        self._monitor_task = asyncio.create_task(self.monitor.run(), name="block-monitor")
        config = uvicorn.Config(
            self.app,
            host=self.options.host,
            port=self.options.port,
            ws=AbortableWebSocketProtocol,  # websockets-sansio that can also drop a peer that stopped reading
            ws_max_size=2 * 1024 * 1024,  # our own limit answers with error 29; this only stops abuse
            ws_ping_interval=self.options.ws_ping_interval,
            ws_ping_timeout=self.options.ws_ping_interval,
            ws_per_message_deflate=False,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=max(1, round(self.options.shutdown_timeout)),
        )
        self._server = uvicorn.Server(config)
        self._serve_task = asyncio.create_task(self._server.serve(), name="uvicorn")
        while not self._server.started:
            if self._serve_task.done():
                self._serve_task.result()  # raises the bind error
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        # Tell miners first so they reconnect elsewhere/later instead of seeing a dropped socket.
        for box in list(self.runner.conns.values()):
            box.close(CLOSE_SERVICE_RESTART, "server restart")
        if self._server is not None and self._serve_task is not None:
            await asyncio.sleep(0)  # let senders flush the close frames
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._serve_task
        if self._monitor_task is not None:
            self._monitor_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor_task
        await self.runner.aclose()
        await self.backend.__aexit__(None, None, None)
        if self.store is not None:
            await self.store.close()

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    # ------------------------------------------------------------ miners

    async def register_miner(
        self, name: str, stake_percentage: float, metadata: Mapping[str, Any] | None
    ) -> tuple[MinerRecord, str]:
        record, token = await self.registry.register(self.backend, name, stake_percentage, metadata)
        if self.store is not None:
            try:
                await self.store.save_miner(record)
            except Exception:
                self.registry.revoke(record.miner_id)  # a token we could forget must not be handed out
                raise
        await self.runner.submit(_joined(record))
        return record, token

    def admit(self, ws: WebSocket) -> bool:
        host = ws.client.host if ws.client else "?"
        if (
            self._open >= self.options.max_connections
            or self._per_ip[host] >= self.options.max_connections_per_ip
        ):
            return False
        self._open += 1
        self._per_ip[host] += 1
        ws.scope["pooler.admitted"] = host
        return True

    def release(self, ws: WebSocket) -> None:
        host = ws.scope.pop("pooler.admitted", None)
        if host is None:
            return
        self._open -= 1
        self._per_ip[host] -= 1
        if self._per_ip[host] <= 0:
            del self._per_ip[host]

    async def remove_miner(self, miner_id: str) -> None:
        self.registry.revoke(miner_id)
        if self.store is not None:
            await self.store.revoke_miner(miner_id)
        await self.runner.submit(MinerLeft(miner_id))

    def _observe_backend(self, op: str, seconds: float, outcome: str) -> None:
        """Every Backend call's outcome: /health reports the Backend down after a call found it so."""
        if outcome == "cancelled":
            return  # the caller gave up: says nothing about the Backend
        ok = outcome != "unavailable"
        if ok != self.backend_ok:
            self.backend_ok = ok
            detail = f"Backend {'reachable again' if ok else 'unavailable'} ({op})"
            (log.info if ok else log.warning)("%s", detail)
            self.hub.publish("chain", {"ok": ok, "detail": detail})

    # ------------------------------------------------------------ views

    def summary(self) -> dict[str, Any]:
        return self.core.summary(self.clock())

    def health(self) -> dict[str, Any]:
        now = self.clock()
        view = self.core.view(now)
        rpc_ok = self.monitor.healthy
        checks = {
            "rpc": "ok" if rpc_ok else "down",
            "backend": "ok" if self.backend_ok else "down",
            "store": "ok",
        }
        if not rpc_ok and view.block is None:
            status = "down"  # no block known: no work to hand out
        else:
            status = "ok" if rpc_ok and self.backend_ok else "degraded"
        return {
            "status": status,
            "checks": checks,
            "block": view.block,
            "phase": view.phase,
            "minersOnline": len(self.miner_conns) and sum(1 for c in self.miner_conns.values() if c),
            "workers": self._open,
            "uptime": round(now - self.started_at, 3),
            "timestamp": int(now * 1000),
        }


def _joined(record: MinerRecord) -> MinerJoined:
    return MinerJoined(record.miner_id, record.farmer_id, record.farmer, record.name)
