"""``/ws/miner``: protocol v1 over a WebSocket, one connection per miner worker.

The handler is a thin driver: it decodes frames (``protocol.codec``), turns them into
coordinator events, and leaves all answers to the coordinator, which reaches the socket
only through this connection's :class:`Outbox`. When the server offers a lane
(:mod:`pooler.web.lane`, what ``Pooler`` runs), text frames after ``hello`` skip ASGI both
ways: each message is decoded as it is parsed and handed to the runner without a task
switch, and the outbox writes a batch's frames in one go; otherwise the sender task and
the ASGI receive loop do the same work.

Close codes: 1000 after ``bye``; 1008 on a bad token, no ``hello`` in time, a miner in
its invalid-share cool-down or cut off by it (the coordinator's share-quality guard says so
with ``Close`` effects), or a misbehaving peer; 1009 on a frame over the size limit;
1011 when a ping went unanswered (uvicorn's keepalive); 1013 when the client reads too
slowly to keep its outbox under the limit, or the connection limits are reached. A peer
that does not even take the close frame within ``slow_client_grace`` seconds has its TCP
connection dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from pooler.core.events import (
    Event,
    MoreRequested,
    ShareSubmitted,
    StatsRequested,
    WorkerConnected,
    WorkerDisconnected,
)
from pooler.runtime.outbox import Outbox
from pooler.web.lane import LANE, Lane
from pooler.web.limits import TokenBucket
from pooler.web.wsproto import ABORT
from protocol.codec import decode_client, encode
from protocol.errors import Code, ProtocolError
from protocol.messages import Bye, Error, Hello, More, Share, StatsRequest

if TYPE_CHECKING:
    from pooler.app.service import Pooler

log = logging.getLogger("pooler.web.ws")

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_LATER = 1013
_MAX_STRIKES = 20  # protocol errors tolerated on one connection before it is closed


def _frame(msg: Error) -> str:
    return encode(msg).decode()


async def _receive_text(ws: WebSocket) -> str | bytes | None:
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    return text if text is not None else message.get("bytes") or b""


async def _refuse(ws: WebSocket, code: Code, message: str, close_code: int, grace: float) -> None:
    """Say why (an error frame), then close with ``close_code``; the connection always ends.

    Ordering: the error frame first, then the close frame, each attempted on its own, so a
    failed error frame never skips the close (a miner must always get its close code). Both
    are bounded by ``grace``: a peer that does not take them in time has its TCP connection
    dropped (the ``pooler.abort`` extension), so a refusal never waits on a stuck peer.
    """

    async def say() -> None:
        with contextlib.suppress(Exception):  # the peer may be gone: the close is still attempted
            await ws.send_text(_frame(Error(code, message)))
        with contextlib.suppress(Exception):
            await ws.close(close_code, code.reason)

    try:
        async with asyncio.timeout(grace):  # not wait_for, which may swallow a cancel (pooler/app/observe.py)
            await say()
    except TimeoutError:
        abort = (ws.scope.get("extensions") or {}).get(ABORT)
        if callable(abort):
            log.info("miner socket: the peer took no close frame in time; dropping it")
            abort()


async def miner_socket(ws: WebSocket) -> None:
    pooler: Pooler = ws.app.state.pooler
    opts = pooler.options
    refused_by = pooler.admit(ws)
    if refused_by is not None:
        # Accepted only to say why: a bare HTTP 403 would leave the miner guessing.
        pooler.metrics.limit_hits.labels(limit=refused_by).inc()
        try:
            await ws.accept()
        except Exception:
            return  # the peer left during the handshake: there is nobody to tell
        what = "in total" if refused_by == "connections-total" else "from your address"
        await _refuse(
            ws,
            Code.RATE_LIMITED,
            f"too many connections {what}; retry later",
            CLOSE_TRY_LATER,
            opts.slow_client_grace,
        )
        return
    try:
        await ws.accept()
        try:
            async with asyncio.timeout(opts.hello_timeout):
                first = await _receive_text(ws)
        except TimeoutError:
            pooler.metrics.limit_hits.labels(limit="hello-timeout").inc()
            await _refuse(
                ws,
                Code.NO_HELLO,
                f"send 'hello' within {opts.hello_timeout:g} s of connecting",
                CLOSE_POLICY,
                opts.slow_client_grace,
            )
            return
        if first is None:
            return
        try:
            hello = decode_client(first, opts.max_frame)
        except ProtocolError as exc:
            if exc.code == Code.TOO_LARGE:
                pooler.metrics.limit_hits.labels(limit="frame-size").inc()
            await _refuse(
                ws,
                exc.code if exc.code == Code.TOO_LARGE else Code.NO_HELLO,
                exc.message,
                CLOSE_POLICY,
                opts.slow_client_grace,
            )
            return
        if not isinstance(hello, Hello):
            await _refuse(
                ws,
                Code.NO_HELLO,
                "the first message must be 'hello' with your token",
                CLOSE_POLICY,
                opts.slow_client_grace,
            )
            return
        miner = await pooler.authenticate(hello.token)
        if miner is None:
            await _refuse(
                ws,
                Code.UNAUTHORIZED,
                "unknown or revoked token; register with POST /miner/register",
                CLOSE_POLICY,
                opts.slow_client_grace,
            )
            return
        await _serve(ws, pooler, miner.miner_id, hello)
    finally:
        pooler.release(ws)


class _Reader:
    """What one connection does with each client message, for both ways in (ASGI and the lane)."""

    __slots__ = (
        "_backlog",
        "_box",
        "_bucket",
        "_conn",
        "_lane",
        "_loop",
        "_miner_id",
        "_pooler",
        "strikes",
    )

    def __init__(self, conn: int, miner_id: str, box: Outbox, pooler: Pooler, lane: Lane | None) -> None:
        self._conn = conn
        self._miner_id = miner_id
        self._box = box
        self._pooler = pooler
        self._lane = lane
        self._loop = asyncio.get_running_loop()
        opts = pooler.options
        self._bucket = TokenBucket(opts.messages_per_second, opts.message_burst, self._loop.time())
        self.strikes = 0  # protocol errors and rate-limit hits so far; too many closes the socket
        # events the lane took while the coordinator's inbox was full, submitted in order by a task
        self._backlog: list[Event] | None = None

    def event_for(self, raw: str | bytes) -> Event | None:
        """The coordinator event for one message, or None (answered or refused here)."""
        box = self._box
        pooler = self._pooler
        opts = pooler.options
        if not self._bucket.take(self._loop.time()):
            self.strikes += 1
            box.put(
                _frame(Error(Code.RATE_LIMITED, f"over {opts.messages_per_second:g} messages/s; slow down"))
            )
            if self.strikes > _MAX_STRIKES:
                pooler.metrics.limit_hits.labels(limit="rate").inc()
                box.close(CLOSE_POLICY, "rate limit")
            return None
        if isinstance(raw, bytes):
            self.strikes += 1
            box.put(
                _frame(Error(Code.MALFORMED, "binary frames are not part of protocol v1; send JSON text"))
            )
            if self.strikes > _MAX_STRIKES:
                box.close(CLOSE_POLICY, "too many protocol errors")
            return None
        try:
            msg = decode_client(raw, opts.max_frame)
        except ProtocolError as exc:
            box.put(_frame(Error(exc.code, exc.message)))
            if exc.code == Code.TOO_LARGE:
                pooler.metrics.limit_hits.labels(limit="frame-size").inc()
                box.close(CLOSE_TOO_BIG, "frame too large")
                return None
            self.strikes += 1
            if self.strikes > _MAX_STRIKES:
                box.close(CLOSE_POLICY, "too many protocol errors")
            return None
        match msg:
            case Share():
                return ShareSubmitted(self._conn, msg)
            case More(job):
                return MoreRequested(self._conn, job)
            case StatsRequest():
                return StatsRequested(self._conn, self._miner_id)
            case Bye():
                box.close(CLOSE_NORMAL, "bye")
            case Hello():
                box.put(_frame(Error(Code.MALFORMED, "'hello' was already accepted on this connection")))
        return None

    def on_lane_text(self, text: str) -> None:
        """A text message straight from the parser (no task switch): to the coordinator without waiting."""
        if self._box.closed:
            return  # like the ASGI loop, which stops reading once a close is requested
        event = self.event_for(text)
        if event is None:
            return
        if self._backlog is not None:
            self._backlog.append(event)  # keep the order behind events already waiting
        elif not self._pooler.runner.offer(event):
            # The inbox is full: stop reading this socket until the backlog is in (TCP pushes back).
            assert self._lane is not None
            self._lane.pause_reading()
            self._backlog = [event]
            task = asyncio.create_task(self._submit_backlog(), name=f"backlog-{self._conn}")
            _BACKLOG_TASKS.add(task)
            task.add_done_callback(_BACKLOG_TASKS.discard)

    async def _submit_backlog(self) -> None:
        backlog = self._backlog
        assert backlog is not None and self._lane is not None
        try:
            while backlog:
                await self._pooler.runner.submit(backlog.pop(0))
        finally:
            self._backlog = None
            self._lane.resume_reading()


# Backlog tasks (rare: only while the coordinator's inbox is full); each ends once its events are in.
_BACKLOG_TASKS: set[asyncio.Task[None]] = set()


async def _serve(ws: WebSocket, pooler: Pooler, miner_id: str, hello: Hello) -> None:
    """Read frames until the peer goes or the outbox is closed; see the module docstring.

    Ending: any close (bye, too large, a coordinator ``Close``, outbox overflow) closes the
    outbox; the sender then sends what was queued and the close frame and stops. A peer that
    does not read cannot take even that: after ``slow_client_grace`` seconds its TCP connection
    is dropped (the ``pooler.abort`` extension), so a stuck peer never keeps its slot.
    """
    opts = pooler.options
    runner = pooler.runner
    conn, box = runner.open_conn()
    pooler.miner_conns.setdefault(miner_id, set()).add(conn)
    extensions = ws.scope.get("extensions") or {}
    abort = extensions.get(ABORT)  # None on servers without our protocol class
    lane: Lane | None = extensions.get(LANE)  # None likewise: then everything goes through ASGI

    async def close(code: int, reason: str) -> None:
        if ws.application_state != WebSocketState.DISCONNECTED:
            await ws.close(code, reason)

    box_done = [False]  # set once the read loop has ended, so the callbacks leave the receiver alone
    reading = [False]  # True only while the read loop waits for a frame: safe to interrupt there
    receiver = asyncio.current_task()
    senders: list[asyncio.Task[None]] = []  # the sender task, once started (at most one)

    def stop_reading() -> None:
        # The outbox is closed (or the sender stopped): nothing more will be answered, so a read
        # loop waiting on a silent peer must not wait forever. Elsewhere the loop sees box.closed.
        if receiver is not None and reading[0] and not box_done[0]:
            receiver.cancel()

    def start_sender() -> None:
        if not senders:
            task = asyncio.create_task(box.drain(ws.send_text, close), name=f"sender-{conn}")
            task.add_done_callback(lambda _: stop_reading())
            senders.append(task)

    box.on_close = stop_reading
    if lane is None:
        start_sender()
    else:
        box.on_wake = start_sender  # with a lane, only backpressure or the close needs the task
    reader = _Reader(conn, miner_id, box, pooler, lane)
    try:
        await runner.submit(WorkerConnected(conn, miner_id, hello.worker, hello.agent))
        if lane is not None:
            # From here on text frames skip ASGI both ways; binary frames and the close still come here.
            box.attach(lane.write)
            lane.receive_with(reader.on_lane_text)
        while not box.closed:
            reading[0] = True
            try:
                raw = await _receive_text(ws)
            finally:
                reading[0] = False
            if raw is None:
                break
            event = reader.event_for(raw)
            if event is not None:
                await runner.submit(event)
    except (WebSocketDisconnect, asyncio.CancelledError):
        pass
    except Exception:
        log.exception("miner socket %d failed", conn)
    finally:
        box_done[0] = True
        if lane is not None:
            lane.receive_with(None)
            box.attach(None)
        runner.post(WorkerDisconnected(conn))
        conns = pooler.miner_conns.get(miner_id)
        if conns is not None:
            conns.discard(conn)
        # Let queued frames (a close reason, a last error) go out, but never wait on a stuck peer.
        if not box.closed:
            box.close(CLOSE_NORMAL, "")
        start_sender()
        sender = senders[0]
        try:
            async with asyncio.timeout(opts.slow_client_grace):
                await asyncio.shield(sender)
        except (TimeoutError, asyncio.CancelledError, Exception):
            stuck = not sender.done()  # still inside a send the peer's full TCP window holds up
            sender.cancel()
            if stuck and callable(abort):
                log.info("miner socket %d: the peer took no close frame in time; dropping it", conn)
                abort()
        runner.forget_conn(conn)
