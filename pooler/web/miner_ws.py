"""``/ws/miner``: protocol v1 over a WebSocket, one connection per miner worker.

The handler is a thin driver: it decodes frames (``protocol.codec``), turns them into
coordinator events, and leaves all answers to the coordinator, which reaches the socket
only through this connection's :class:`Outbox`. When the server offers a lane
(:mod:`pooler.web.lane`, what ``Pooler`` runs), text frames after ``hello`` skip ASGI both
ways: each message is decoded as it is parsed and handed to the runner without a task
switch, and the outbox writes a batch's frames in one go; otherwise the sender task and
the ASGI receive loop do the same work. What it may do beyond the socket comes through
its ports (pooler/web/ports.py): the connection limits, token checks, the invalid-share
cool-down, its outbox, the coordinator's inbox and the limit counters.

A socket counts against the miners' limits (``Admission``: MAX_CONCURRENT_MINERS,
MAX_CONNECTIONS_PER_IP) only once its ``hello`` carried a valid token; before that it is one of
the gate's pending connections (pooler/web/gate.py), closed after ``hello_timeout``. Wrong
tokens back the client's address off (``AuthBackoff``, shared with REST): then error 28 and 1013.

Close codes: 1000 after ``bye``; 1008 on a bad token, no ``hello`` in time, a miner in
its invalid-share cool-down or cut off by it (the coordinator's share-quality guard says so
with ``Close`` effects), or a misbehaving peer; 1009 on a frame over the size limit;
1011 when a ping went unanswered (uvicorn's keepalive); 1013 when the client reads too
slowly to keep its outbox under the limit, the connection limits are reached, or its address
is backed off after wrong tokens. A peer
that does not even take the close frame within ``slow_client_grace`` seconds has its TCP
connection dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import MutableMapping
from typing import Any, Protocol

import orjson
from starlette.datastructures import Address
from starlette.websockets import WebSocketDisconnect, WebSocketState

from pooler.core.events import (
    Event,
    HashrateReported,
    MalformedSubmitted,
    MoreRequested,
    ShareSubmitted,
    StatsRequested,
    WorkerConnected,
    WorkerDisconnected,
)
from pooler.runtime.outbox import Outbox
from pooler.web.gate import CONNECTION, Ticket
from pooler.web.lane import LANE, DirectLane
from pooler.web.limits import AuthBackoff, TokenBucket
from pooler.web.ports import Admission, EventSink, LimitHits, Miners, MinerSockets, WebSettings
from pooler.web.wsproto import ABORT
from protocol.codec import decode_client, encode
from protocol.errors import Code, ProtocolError
from protocol.messages import Bye, Error, Hello, More, Report, Share, StatsRequest

log = logging.getLogger("pooler.web.ws")

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_LATER = 1013
_MAX_STRIKES = 20  # protocol errors tolerated on one connection before it is closed


class Wire(Protocol):
    """What the handler uses of a socket: Starlette's ``WebSocket`` (``MINER_SOCKET=asgi``) or
    :class:`~pooler.web.picows_ws.PicowsWire` (``MINER_SOCKET=picows``)."""

    scope: MutableMapping[str, Any]
    application_state: WebSocketState

    @property
    def client(self) -> Address | None: ...

    async def accept(self) -> None: ...

    async def receive(self) -> MutableMapping[str, Any]: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


def _is_share(raw: str) -> bool:
    """Whether a frame that failed to decode was meant as a ``share`` (not JSON at all counts:
    a mangled share is the likely frame of a miner after ``hello``)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return True
    return isinstance(obj, dict) and obj.get("type") == "share"


def _frame(msg: Error) -> str:
    return encode(msg).decode()


async def _receive_text(ws: Wire) -> str | bytes | None:
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    return text if text is not None else message.get("bytes") or b""


async def _refuse(ws: Wire, code: Code, message: str, close_code: int, grace: float) -> None:
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
        async with asyncio.timeout(grace):  # not wait_for: pooler/runtime/tasks.py
            await say()
    except TimeoutError:
        abort = (ws.scope.get("extensions") or {}).get(ABORT)
        if callable(abort):
            log.info("miner socket: the peer took no close frame in time; dropping it")
            abort()


class MinerSocket:
    """The ``/ws/miner`` endpoint (:meth:`endpoint`) with the ports it works through."""

    def __init__(
        self,
        settings: WebSettings,
        *,
        admission: Admission,
        miners: Miners,
        sockets: MinerSockets,
        inbox: EventSink,
        limits: LimitHits,
        backoff: AuthBackoff,
    ) -> None:
        self._settings = settings
        self._backoff = backoff  # wrong tokens per address, shared with REST
        self._admission = admission  # connection limits
        self._miners = miners  # token checks
        self._sockets = sockets  # each socket's outbox, and its miner
        self._inbox = inbox  # events to the coordinator
        self._limits = limits  # refusals, counted

    async def endpoint(self, ws: Wire) -> None:
        """Accept, wait for ``hello`` (a socket without one counts against the gate's pending
        connections only, pooler/web/gate.py), check its token (wrong ones back the address off),
        then count the socket against the miners' limits and serve it."""
        opts = self._settings
        host = ws.client.host if ws.client else "?"
        await ws.accept()
        miner_id, hello = await self._hello(ws, host)
        if hello is None:
            return
        ticket = (ws.scope.get("extensions") or {}).get(CONNECTION)
        if isinstance(ticket, Ticket):
            ticket.settle()  # authenticated: no longer one of the pending connections
        refused_by = self._admission.admit(host)
        if refused_by is not None:
            self._limits.hit(refused_by)
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
            await self._serve(ws, miner_id, hello)
        finally:
            self._admission.release(host)

    async def _hello(self, ws: Wire, host: str) -> tuple[str, Hello | None]:
        """The miner and its ``hello``; ``("", None)`` when the socket was refused (and closed)."""
        opts = self._settings
        grace = opts.slow_client_grace
        try:
            async with asyncio.timeout(opts.hello_timeout):
                first = await _receive_text(ws)
        except TimeoutError:
            self._limits.hit("hello-timeout")
            why = f"send 'hello' within {opts.hello_timeout:g} s of connecting"
            await _refuse(ws, Code.NO_HELLO, why, CLOSE_POLICY, grace)
            return "", None
        if first is None:
            return "", None
        try:
            hello = decode_client(first, opts.max_frame)
        except ProtocolError as exc:
            if exc.code == Code.TOO_LARGE:
                self._limits.hit("frame-size")
            code = exc.code if exc.code == Code.TOO_LARGE else Code.NO_HELLO
            await _refuse(ws, code, exc.message, CLOSE_POLICY, grace)
            return "", None
        if not isinstance(hello, Hello):
            why = "the first message must be 'hello' with your token"
            await _refuse(ws, Code.NO_HELLO, why, CLOSE_POLICY, grace)
            return "", None
        now = asyncio.get_running_loop().time()
        backed_off = self._backoff.check(host, now)
        if backed_off is not None:
            self._limits.hit(backed_off.limit)
            why = f"too many wrong tokens from your address; try again in {backed_off.retry_seconds} s"
            await _refuse(ws, Code.RATE_LIMITED, why, CLOSE_TRY_LATER, grace)
            return "", None
        miner = await self._miners.authenticate(hello.token)
        if miner is None:
            self._backoff.failed(host, now)
            why = "unknown or revoked token; register with POST /miner/register"
            await _refuse(ws, Code.UNAUTHORIZED, why, CLOSE_POLICY, grace)
            return "", None
        return miner.miner_id, hello

    async def _serve(self, ws: Wire, miner_id: str, hello: Hello) -> None:
        """Read frames until the peer goes or the outbox is closed; see the module docstring.

        Ending: any close (bye, too large, a coordinator ``Close``, outbox overflow) closes the
        outbox; the sender then sends what was queued and the close frame and stops. A peer that
        does not read cannot take even that: after ``slow_client_grace`` seconds its TCP
        connection is dropped (the ``pooler.abort`` extension), so a stuck peer never keeps its
        slot. The connection owns its tasks (the sender, a backlog's submitter) and ends them.
        """
        opts = self._settings
        inbox = self._inbox
        conn, box = self._sockets.open(miner_id)
        extensions = ws.scope.get("extensions") or {}
        abort = extensions.get(ABORT)  # None on servers without our protocol class
        lane: DirectLane | None = extensions.get(LANE)  # None likewise: then everything goes through ASGI

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
        reader = _Reader(conn, miner_id, box, inbox, opts, self._limits, lane)
        try:
            await inbox.submit(
                WorkerConnected(conn, miner_id, hello.worker, hello.agent, hello.hashrate, hello.features)
            )
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
                    await inbox.submit(event)
        except (WebSocketDisconnect, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("miner socket %d failed", conn)
        finally:
            box_done[0] = True
            if lane is not None:
                lane.receive_with(None)
                box.attach(None)
            # the events the lane took while the inbox was full go in before the disconnect
            await reader.settle(opts.slow_client_grace)
            self._sockets.detach(conn)
            inbox.post(WorkerDisconnected(conn))
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
            self._sockets.forget(conn)


class _Reader:
    """What one connection does with each client message, for both ways in (ASGI and the lane)."""

    __slots__ = (
        "_backlog",
        "_backlog_task",
        "_box",
        "_bucket",
        "_conn",
        "_inbox",
        "_lane",
        "_limits",
        "_loop",
        "_miner_id",
        "_settings",
        "strikes",
    )

    def __init__(
        self,
        conn: int,
        miner_id: str,
        box: Outbox,
        inbox: EventSink,
        settings: WebSettings,
        limits: LimitHits,
        lane: DirectLane | None,
    ) -> None:
        self._conn = conn
        self._miner_id = miner_id
        self._box = box
        self._inbox = inbox
        self._settings = settings
        self._limits = limits
        self._lane = lane
        self._loop = asyncio.get_running_loop()
        self._bucket = TokenBucket(settings.messages_per_second, settings.message_burst, self._loop.time())
        self.strikes = 0  # protocol errors and rate-limit hits so far; too many closes the socket
        # events the lane took while the coordinator's inbox was full, submitted in order by a task
        self._backlog: list[Event] | None = None
        # that task, owned by this connection: the socket's end waits for it (settle)
        self._backlog_task: asyncio.Task[None] | None = None

    def event_for(self, raw: str | bytes) -> Event | None:
        """The coordinator event for one message, or None (answered or refused here)."""
        box = self._box
        opts = self._settings
        if not self._bucket.take(self._loop.time()):
            self.strikes += 1
            box.put(
                _frame(Error(Code.RATE_LIMITED, f"over {opts.messages_per_second:g} messages/s; slow down"))
            )
            if self.strikes > _MAX_STRIKES:
                self._limits.hit("rate")
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
                self._limits.hit("frame-size")
                box.close(CLOSE_TOO_BIG, "frame too large")
                return None
            self.strikes += 1
            if self.strikes > _MAX_STRIKES:
                box.close(CLOSE_POLICY, "too many protocol errors")
            # a share that did not decode counts as a rejected share (reason malformed)
            return MalformedSubmitted(self._miner_id) if _is_share(raw) else None
        match msg:
            case Share():
                return ShareSubmitted(self._conn, msg)
            case More(job):
                return MoreRequested(self._conn, job)
            case StatsRequest():
                return StatsRequested(self._conn, self._miner_id)
            case Report(hashrate):
                return HashrateReported(self._conn, hashrate)
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
        elif not self._inbox.offer(event):
            # The inbox is full: stop reading this socket until the backlog is in (TCP pushes back).
            assert self._lane is not None
            self._lane.pause_reading()
            self._backlog = [event]
            self._backlog_task = asyncio.create_task(self._submit_backlog(), name=f"backlog-{self._conn}")

    async def _submit_backlog(self) -> None:
        backlog = self._backlog
        assert backlog is not None and self._lane is not None
        try:
            while backlog:
                await self._inbox.submit(backlog.pop(0))
        finally:
            self._backlog = None
            self._lane.resume_reading()

    async def settle(self, within: float) -> None:
        """Let a backlog still waiting for the inbox go in, for at most ``within`` seconds; then
        (or if the socket's end is itself cancelled) stop it."""
        task, self._backlog_task = self._backlog_task, None
        if task is None:
            return
        try:
            async with asyncio.timeout(within):
                await asyncio.shield(task)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()  # its events are dropped: the socket is gone, nobody takes their answers
        except Exception:
            log.exception("miner socket %d: its backlog failed", self._conn)
