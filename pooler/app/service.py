"""The Pooler's lifecycle: the parts the wiring built (pooler/app/wiring.py), started and stopped.

``async with Pooler(options) as pooler:`` starts everything on the running loop and stops it
in reverse order; ``pooler.port`` is the port actually bound (``port=0`` picks a free one).
A single Pooler and a group member (``options.cluster``) differ only in what the wiring built.

Start-up with a store: miners and the coordinator's snapshot are reloaded before the server
listens, so a miner reconnecting with its token resumes the open block where it was.
Shutdown (:meth:`Pooler.aclose`, bounded by ``shutdown_timeout``): stop listening, let the
runner answer what it already received (acks committed first), close every miner socket
with 1012, stop uvicorn, then the monitor and the runner, give the alert webhook a moment for what
it still holds, and flush and close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import uvicorn

from pooler.app.descriptors import connection_budget, raise_open_files_limit
from pooler.app.listen import bind
from pooler.app.options import PoolerOptions
from pooler.app.wiring import build, joined
from pooler.core.effects import Effect
from pooler.miners import MinerRecord
from pooler.runtime.event_codec import summary_data
from pooler.runtime.tasks import TaskSet, cancel_and_wait
from pooler.web.httpproto import gated_http
from pooler.web.lane import AVAILABLE as LANE_AVAILABLE
from pooler.web.lane import LaneProtocol
from pooler.web.picows_ws import MinerPath
from pooler.web.wsproto import AbortableWebSocketProtocol, with_close_grace

log = logging.getLogger("pooler")

CLOSE_SERVICE_RESTART = 1012


class Pooler:
    """One running Pooler: the parts :func:`pooler.app.wiring.build` made, started and stopped."""

    def __init__(self, options: PoolerOptions, *, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock
        parts = build(options, clock=clock)
        self.parts = parts  # everything built, for whoever needs a part not named below
        self.metrics = parts.metrics
        self.hub = parts.hub
        self.registry = parts.registry
        self.core = parts.core
        self.store = parts.store
        self.observer = parts.observer
        self.backend = parts.backend
        self.runner = parts.runner
        self.monitor = parts.monitor
        self.cluster = parts.group  # a group member's cluster node (pooler/cluster), else None
        self.connections = parts.connections  # open miner sockets, against the limits
        self.gate = parts.gate  # every connection, against the pending and descriptor limits
        self.app = parts.app
        self._server: uvicorn.Server | None = None
        # the block monitor, the observer, the Backend probe: stopped together after the server
        self._services = TaskSet("pooler")
        self._serve_task: asyncio.Task[None] | None = None  # uvicorn's: stopped first, gracefully
        self.miner_path: MinerPath | None = None  # MINER_SOCKET=picows: its sockets, pinged and closed here
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
            self.parts.readiness.store_open = True
            for record in restored.miners:
                self.registry.add(record)
            resume = self.core.restore(restored.snapshot, self.clock())
            self.parts.history.load(restored.history, self.clock())
        await self.backend.__aenter__()
        await self.runner.__aenter__()
        await self.runner.perform(resume)
        for record in self.registry.records():
            self.runner.post(joined(record))
        if self.cluster is not None:
            await self.cluster.start()
        if self.parts.webhook is not None:
            self.parts.webhook.start()
        self._services.spawn(self.monitor.run(), "block-monitor")
        self._services.spawn(self.observer.run(), "observer")
        self._services.spawn(self.parts.probe.run(), "backend-health")
        # the open-files limit up to its hard limit; connections get what FD_RESERVE leaves
        limit = raise_open_files_limit()
        self.gate.max_open = connection_budget(limit, self.options.fd_reserve)
        if self.options.miner_socket == "picows":  # /ws/miner framed by picows (pooler/web/picows_ws.py)
            self.miner_path = MinerPath(
                self.app.state.miner_socket.endpoint,
                ping_interval=self.options.ws_ping_interval,
                ping_timeout=self.options.ws_ping_timeout,
                close_timeout=self.options.slow_client_grace,
            )
        config = uvicorn.Config(
            self.app,
            host=self.options.host,
            port=self.options.port,
            # httptools with the connection gate and the request read timeout (pooler/web/httpproto.py)
            http=gated_http(self.gate, self.options.http_read_timeout, self.miner_path),
            # websockets-sansio that can drop a peer that stopped reading, plus the miner socket's direct
            # lane (pooler/web/lane.py) where this uvicorn has what the lane builds on; a peer whose
            # ping went unanswered gets SLOW_CLIENT_GRACE to take the close, then it is dropped
            ws=with_close_grace(
                LaneProtocol if LANE_AVAILABLE else AbortableWebSocketProtocol, self.options.slow_client_grace
            ),
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
        # PROCESSES > 1: our own sockets with SO_REUSEPORT, beside the other processes' (pooler/app/listen.py)
        sockets = bind(self.options.host, self.options.port, listen=True) if self.options.reuse_port else None
        self._server = _Server(config)
        self._serve_task = serving = asyncio.create_task(self._server.serve(sockets), name="uvicorn")
        while not self._server.started:
            if serving.done():
                serving.result()  # raises the bind error
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
        if self.miner_path is not None:  # uvicorn does not know its sockets: close them here
            await asyncio.sleep(0)  # let senders flush the close frames
            await self.miner_path.aclose(budget / 2)
        serving = self._serve_task
        if serving is not None:
            if server is not None and not serving.done():
                await asyncio.sleep(0)  # let senders flush the close frames
                server.should_exit = True
                try:  # uvicorn waits for connections up to timeout_graceful_shutdown itself
                    async with asyncio.timeout(budget):  # not wait_for: pooler/runtime/tasks.py
                        await asyncio.shield(serving)
                except TimeoutError:
                    log.error("the web server did not stop within %.1f s; cancelling it", budget)
                    server.force_exit = True
                except asyncio.CancelledError:
                    if not serving.cancelled():
                        raise  # we are being cancelled ourselves
                except Exception:
                    pass  # its failure is logged just below
            await cancel_and_wait(serving)  # ended, or cancelled now; a failure of it is logged
        await self._services.stop()  # the monitor, the observer, the Backend probe
        await self.runner.drain(min(1.0, budget / 4))  # events of the closing sockets: counts kept
        await self.runner.aclose()
        if self.parts.webhook is not None:  # last: what the runner's last effects raised is queued
            await self.parts.webhook.aclose(min(1.0, budget / 4))
        if self.store is not None:
            self.parts.readiness.store_open = False
            try:  # before a group's node closes the Redis client its store writes through
                await self.runner.flush()
            except Exception:
                log.exception("%d records could not be written before the store closed", self.runner.unsaved)
        if self.cluster is not None:
            await self.cluster.aclose()
        await self.backend.__aexit__(None, None, None)
        if self.store is not None:
            await self.store.close()

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    # ------------------------------------------------------------ what tools and tests call

    async def register_miner(
        self, name: str, stake_percentage: float, metadata: Mapping[str, Any] | None
    ) -> tuple[MinerRecord, str]:
        return await self.parts.miners.register(name, stake_percentage, metadata)

    def summary(self) -> dict[str, Any]:
        """The coordinator's summary as dashboards get it."""
        return summary_data(self.core.summary(self.clock()))

    def health(self) -> dict[str, Any]:
        """Readiness parts and a summary (what /health answers)."""
        return self.parts.readiness.health()


class _Server(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handlers: the Pooler's owner (``pooler serve``)
    decides when to stop, so the shutdown order above holds whatever signal arrives."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
