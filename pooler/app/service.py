"""The Pooler assembled: coordinator runner, block monitor, Backend client, web app, server.

``async with Pooler(options) as pooler:`` starts everything on the running loop and stops it
in reverse order; ``pooler.port`` is the port actually bound (``port=0`` picks a free one).

Start-up with a store: miners and the coordinator's snapshot are reloaded before the server
listens, so a miner reconnecting with its token resumes the open block where it was.
Shutdown (:meth:`Pooler.aclose`, bounded by ``shutdown_timeout``): stop listening, let the
runner answer what it already received (acks committed first), close every miner socket
with 1012, stop uvicorn, then the monitor and the runner, and flush and close the store.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import gc
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.websockets import WebSocket

from pooler import __version__
from pooler.app.observe import ObservedMonitor, Observer
from pooler.app.options import PoolerOptions
from pooler.backend import BackendClient
from pooler.core.coordinator import Coordinator
from pooler.core.effects import Effect
from pooler.core.events import MinerJoined, MinerLeft
from pooler.metrics import Metrics
from pooler.miners import MinerRecord, MinerRegistry
from pooler.runtime.hub import EventHub
from pooler.runtime.runner import BackendPort, Runner
from pooler.store import Store
from pooler.store.sqlite import SqliteStore
from pooler.web.app import create_app
from pooler.web.lane import AVAILABLE as LANE_AVAILABLE
from pooler.web.lane import LaneProtocol
from pooler.web.limits import InvalidShareGuard
from pooler.web.miner_ws import enforce_share_quality
from pooler.web.wsproto import AbortableWebSocketProtocol

if TYPE_CHECKING:
    from pooler.cluster.node import ClusterNode

log = logging.getLogger("pooler")

CLOSE_SERVICE_RESTART = 1012


class Pooler:
    def __init__(self, options: PoolerOptions, *, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock
        self.started_at = clock()
        self.hub = EventHub(clock)
        self.registry = MinerRegistry(options.pooler_id)
        # A per-start job-id prefix: a job id from before a restart can never name a job of this run
        # (random: two starts within one clock second must differ too).
        core_config = dataclasses.replace(options.core, job_id_prefix=f"{secrets.token_hex(3)}.")
        self.core = Coordinator(core_config)
        self.metrics = Metrics()  # this Pooler's registry: /metrics serves exactly it
        self.metrics.describe(
            version=__version__,
            pooler_id=options.pooler_id,
            network=options.network,
            contract=options.contract_id,
        )
        self.observer = Observer(
            self,
            self.metrics,
            interval=options.metrics_interval,
            snapshot_interval=options.snapshot_interval,
            health_interval=options.health_interval,
            clock=clock,
        )
        self.backend = BackendClient(
            options.backend_url,
            options.backend_timeout,
            options.retry_attempts,
            observe=self.observer.backend_call,
        )
        self.store: Store | None = SqliteStore(options.db_path, clock=clock) if options.db_path else None
        # Scale-out hook (pooler/cluster): the node swaps in its hub, coordinator, store and Backend port.
        self.cluster: ClusterNode | None = None
        runner_backend: BackendPort = self.backend
        if options.cluster is not None:
            from pooler.cluster.node import ClusterNode

            self.cluster = ClusterNode(options.cluster, options.core, clock=clock)
            self.hub = self.cluster.hub
            self.core = self.cluster.coordinator(core_config)
            self.store = self.cluster.store
            runner_backend = self.cluster.follower_backend
        self.runner = Runner(
            self.core,
            runner_backend,
            self.hub,
            store=self.store,
            clock=clock,
            outbox_size=options.outbox_size,
            review=self.cluster.store.review if self.cluster is not None else None,
            observer=self.observer,
        )
        self.monitor = ObservedMonitor(
            options.rpc_url,
            options.contract_id,
            emit=self.cluster.emit if self.cluster is not None else self.runner.post,
            poll_interval=options.poll_interval,
            metrics=self.metrics,
        )
        # Escalation against miners sending mostly invalid shares (pooler/web/limits.py).
        self.guard = InvalidShareGuard(
            options.invalid_share_window, options.invalid_share_ratio, options.invalid_share_cooldown
        )
        self.app = create_app(self)
        self.miner_conns: dict[str, set[int]] = {}  # miner id -> its live socket conns (leave closes them)
        self.conn_miner: dict[int, str] = {}  # live socket conn -> its miner (share-quality guard)
        self.store_open = False  # the store was opened and not closed yet (readiness)
        self._per_ip: collections.Counter[str] = (
            collections.Counter()
        )  # open miner sockets per client address
        self._open = 0  # open miner sockets in total, against max_connections
        self._server: uvicorn.Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._observer_task: asyncio.Task[None] | None = None
        self.port = options.port  # the bound port once started

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Pooler:
        try:
            return await self._start()
        except BaseException:
            await self.aclose()  # whatever did start (store, runner, monitor) stops again
            raise

    async def _start(self) -> Pooler:
        resume: list[Effect] = []
        if self.store is not None:
            restored = await self.store.open()
            self.store_open = True
            for record in restored.miners:
                self.registry.add(record)
            resume = self.core.restore(restored.snapshot, self.clock())
        await self.backend.__aenter__()
        await self.runner.__aenter__()
        await self.runner.perform(resume)
        for record in self.registry.records():
            self.runner.post(_joined(record))
        if self.cluster is not None:
            await self.cluster.start(self)
        self._monitor_task = asyncio.create_task(self.monitor.run(), name="block-monitor")
        self._observer_task = asyncio.create_task(self.observer.run(), name="observer")
        config = uvicorn.Config(
            self.app,
            host=self.options.host,
            port=self.options.port,
            # websockets-sansio that can drop a peer that stopped reading, plus the miner socket's direct
            # lane (pooler/web/lane.py) where this uvicorn has what the lane builds on
            ws=LaneProtocol if LANE_AVAILABLE else AbortableWebSocketProtocol,
            ws_max_size=2 * 1024 * 1024,  # our own limit answers with error 29; this only stops abuse
            ws_ping_interval=self.options.ws_ping_interval,
            ws_ping_timeout=self.options.ws_ping_timeout,
            ws_per_message_deflate=False,
            lifespan="off",
            log_config=None,  # uvicorn's loggers propagate to ours (setup_logging: text or JSON)
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=max(1, round(self.options.shutdown_timeout)),
        )
        self._server = _Server(config)
        self._serve_task = asyncio.create_task(self._server.serve(), name="uvicorn")
        while not self._server.started:
            if self._serve_task.done():
                self._serve_task.result()  # raises the bind error
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        if self.options.gc_freeze:
            gc.collect()
            gc.freeze()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop gracefully within about ``shutdown_timeout`` seconds (see the module docstring)."""
        budget = self.options.shutdown_timeout
        server = self._server
        if server is not None:
            for listener in getattr(server, "servers", ()):  # stop accepting; connections stay
                listener.close()
        # Answer what was received (its acks are committed before they are queued), so the
        # close frame follows the last ack; then tell miners to come back later.
        await self.runner.drain(min(1.0, budget / 4))
        for box in list(self.runner.conns.values()):
            box.close(CLOSE_SERVICE_RESTART, "server restart")
        if server is not None and self._serve_task is not None and not self._serve_task.done():
            await asyncio.sleep(0)  # let senders flush the close frames
            server.should_exit = True
            try:  # uvicorn waits for connections up to timeout_graceful_shutdown itself
                await asyncio.wait_for(asyncio.shield(self._serve_task), budget)
            except TimeoutError:
                log.error("the web server did not stop within %.1f s; cancelling it", budget)
                server.force_exit = True
                self._serve_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._serve_task
            except asyncio.CancelledError:
                if not self._serve_task.cancelled():
                    raise  # we are being cancelled ourselves
            except Exception:
                log.exception("the web server failed while stopping")
        for task in (self._monitor_task, self._observer_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.runner.drain(min(1.0, budget / 4))  # events of the closing sockets: counts kept
        if self.cluster is not None:
            await self.cluster.aclose()
        await self.runner.aclose()
        await self.backend.__aexit__(None, None, None)
        if self.store is not None:
            self.store_open = False
            try:
                await self.runner.flush()
            except Exception:
                log.exception("%d records could not be written before the store closed", self.runner.unsaved)
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
            # durable first: a token we could forget must not work, and in a group a miner known
            # here but not yet in Redis would read as revoked elsewhere to a resync of the miners
            await self.store.save_miner(record)
        self.registry.add(record)
        if self.cluster is not None:
            await self.cluster.on_registered(record)
        await self.runner.submit(_joined(record))
        return record, token

    async def authenticate(self, token: str) -> MinerRecord | None:
        """The miner of ``token``; in a group, also one registered on another instance a moment
        ago whose announcement has not arrived yet."""
        miner = self.registry.authenticate(token)
        if miner is None and self.cluster is not None:
            miner = await self.cluster.admit_unknown(token)
        return miner

    def admit(self, ws: WebSocket) -> str | None:
        """Count a new miner socket in; None when admitted, else the limit that refused it."""
        host = ws.client.host if ws.client else "?"
        if self._open >= self.options.max_connections:
            return "connections-total"
        if self._per_ip[host] >= self.options.max_connections_per_ip:
            return "connections-per-ip"
        self._open += 1
        self._per_ip[host] += 1
        ws.scope["pooler.admitted"] = host
        return None

    def release(self, ws: WebSocket) -> None:
        host = ws.scope.pop("pooler.admitted", None)
        if host is None:
            return
        self._open -= 1
        self._per_ip[host] -= 1
        if self._per_ip[host] <= 0:
            del self._per_ip[host]

    def judge_share(self, miner_id: str, reason: str) -> None:
        """Count one answered share of ``miner_id`` against the invalid-share guard, and act on it."""
        verdict = self.guard.record(miner_id, reason)
        if verdict != "ok":
            enforce_share_quality(self, miner_id, verdict)

    async def remove_miner(self, miner_id: str) -> None:
        self.guard.forget(miner_id)
        self.registry.revoke(miner_id)
        if self.store is not None:
            await self.store.revoke_miner(miner_id)
        await self.runner.submit(MinerLeft(miner_id))

    # ------------------------------------------------------------ views

    def summary(self) -> dict[str, Any]:
        return self.core.summary(self.clock())

    def health(self) -> dict[str, Any]:
        """Readiness parts and a summary; cheap (no view, no I/O): the Backend is polled on a timer."""
        now = self.clock()
        rpc_ok = self.monitor.healthy
        backend = self.observer.backend_check()
        backend_ok = backend == "ok"
        store_ok = self.store is None or (
            self.store_open
            and self.observer.store_ok
            and not getattr(self.store, "last_error", None)
            and not self.runner.unsaved
        )
        checks = {
            "rpc": "ok" if rpc_ok else "down",
            "backend": backend,
            "store": "ok" if store_ok else "failing",
        }
        summary = self.core.summary(now)
        block = summary["block"]
        ready = rpc_ok and backend_ok and store_ok
        # Degraded: it still holds a block and serves miners while a dependency is away.
        status = "ok" if ready else ("degraded" if block is not None else "down")
        body = {
            "name": self.options.pooler_name,
            "status": status,
            "checks": checks,
            "block": block,
            "phase": summary["phase"],
            "minersOnline": sum(1 for c in self.miner_conns.values() if c),
            "workers": self._open,
            "uptime": round(now - self.started_at, 3),
            "timestamp": int(now * 1000),
        }
        if self.cluster is not None:
            body["cluster"] = self.cluster.status()
        return body


class _Server(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handlers: the Pooler's owner (``pooler serve``)
    decides when to stop, so the shutdown order above holds whatever signal arrives."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _joined(record: MinerRecord) -> MinerJoined:
    return MinerJoined(record.miner_id, record.farmer_id, record.farmer, record.name)
