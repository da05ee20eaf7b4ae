"""``MINER_SOCKET=picows``: ``/ws/miner`` framed by picows (C), on the same port as everything else.

Why: the websockets-sansio frame parser and writer under uvicorn are pure Python; on the miner
socket's hot paths (a job to every socket at a new block, shares in and acks out) they were
most of the Pooler's cost per frame (docs/benchmarks.md). picows parses and writes RFC 6455
frames in Cython on the same asyncio transport; its figures against the ASGI path are in
docs/benchmarks.md.

How: uvicorn's HTTP protocol (pooler/web/httpproto.py) still reads every request; when an
upgrade asks for ``/ws/miner`` it hands the connection over (:meth:`MinerPath.take_over`):
picows' server protocol gets the same request bytes, validates the upgrade and writes the 101;
from then on every frame in and out is picows'. The connection keeps its gate
:class:`~pooler.web.gate.Ticket`. Each socket is a :class:`PicowsWire`, which offers the handler
(:class:`~pooler.web.miner_ws.MinerSocket`, unchanged) the surface of Starlette's ``WebSocket``
it uses (accept, receive, send_text, close, client, scope) plus the scope extensions of the
ASGI path: the lane (:data:`~pooler.web.lane.LANE`, synchronous text frames both ways), abort,
the send-buffer bound and the connection's ticket. So both paths share every rule: limits,
hello timeout, back-off, close codes, 1013 for a slow reader, the protocol's errors.

What uvicorn did for an upgraded socket and this module does instead: pings (one timer for all
sockets, :class:`MinerPath`; no pong within the timeout closes with 1011, like uvicorn's
keepalive), the close handshake (answer the peer's close; after ours, wait ``close_timeout``
for the peer's, then drop the TCP connection), fragmented messages (reassembled, bounded),
invalid UTF-8 (1007), and closing the sockets at shutdown (1012; :meth:`MinerPath.aclose` owns
every handler task, also one that outlives its connection, and starts none once it began). The
socket's client address is the one the ASGI path's scope has (pooler/web/httpproto.py applies
uvicorn's proxy-headers rule at the hand-off). It relies on one picows
internal, the ``WSProtocol`` constructor ``ws_create_server`` uses (picows is pinned; the
component tests run every ``/ws/miner`` test on both paths).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport
from picows.picows import WSAutoPingStrategy, WSProtocol  # type: ignore[attr-defined]
from starlette.datastructures import Address
from starlette.websockets import WebSocketState

from pooler.web.gate import CONNECTION, Ticket
from pooler.web.lane import LANE, Receiver
from pooler.web.wsproto import ABORT, SEND_BUFFER, limit_send_buffer, reset_when_stuck

log = logging.getLogger("pooler.web.picows")
# An adapter, not the Logger: picows makes a child Logger per connection from a Logger (~0.5 KB a
# socket, kept for its life) but uses any other logging object as it is, shared by every socket.
_PICOWS_LOG = logging.LoggerAdapter(logging.getLogger("pooler.web.picows.protocol"))
# The upgrade's request and response stay on picows' transport for the socket's life; their
# header maps (~1 KB a socket) are read by nobody after the handshake, so they are swapped for
# this shared empty, read-only one.
_NO_HEADERS = CIMultiDictProxy(CIMultiDict[str]())

PATH = b"/ws/miner"
MAX_MESSAGE = 2 * 1024 * 1024  # as uvicorn's ws_max_size; MAX_FRAME_BYTES answers with error 29
READ_BUFFER = 2048  # picows' initial read buffer (its default 16 KB is most of a socket's memory)
_QUEUE_PAUSE = 16  # messages waiting for the handler before the socket's reading pauses
# uvloop keeps a reference to the previous protocol's data_received when the next one is a pure
# BufferedProtocol (picows'); switching through this stub first leaves it only the stub.
_STUB = asyncio.Protocol()

Endpoint = Callable[["PicowsWire"], Awaitable[None]]


class PeerGoneError(ConnectionError):
    """A frame was to be sent on a socket that is closed or closing."""


class PicowsWire(WSListener):
    """One ``/ws/miner`` socket on picows: picows' listener, and the handler's WebSocket."""

    __slots__ = (
        "_close_timer",
        "_fragments",
        "_fragments_text",
        "_lane_paused",
        "_loop",
        "_path",
        "_queue",
        "_queue_paused",
        "_ticket",
        "_waiter",
        "_writable",
        "application_state",
        "client",
        "disconnected",
        "last_ping",
        "peer_closed",
        "ping_sent",
        "receiver",
        "scope",
        "task",
        "transport",
        "write_paused",
    )

    def __init__(self, path: MinerPath, ticket: Ticket | None, client: tuple[str, int] | None) -> None:
        self._path = path
        self._ticket = ticket  # the connection's place in the gate, given back when it ends
        self.client = Address(*client) if client is not None else None  # the peer (limits count per address)
        self.application_state = WebSocketState.CONNECTING  # the handler's view (Starlette's states)
        self.scope: MutableMapping[str, Any] = {"type": "websocket", "path": PATH.decode(), "extensions": {}}
        self.transport: WSTransport | None = None  # set when picows completed the handshake
        self._loop = asyncio.get_running_loop()  # for futures and timers, without a lookup per frame
        # messages for receive(): a list, not a deque (a deque's first block is ~0.6 KB a socket);
        # it holds a few messages at most (reading pauses at _QUEUE_PAUSE), so pop(0) is cheap
        self._queue: list[dict[str, Any]] = []
        self._waiter: asyncio.Future[None] | None = None  # receive() waiting for a message
        self._fragments: bytearray | None = None  # a fragmented message being reassembled
        self._fragments_text = False  # ... and whether it is text
        self.receiver: Receiver | None = None  # the lane's receiver: complete text messages, synchronously
        self._lane_paused = False  # reading paused by the lane's owner (its consumer is full)
        self._queue_paused = False  # reading paused because the handler has not taken queued messages
        self.write_paused = False  # the transport is over its high-water mark (the peer is not reading)
        self._writable: asyncio.Event | None = None  # set on resume_writing; created by the first waiter
        self.peer_closed = False  # the peer's close frame arrived
        self.disconnected = False  # the TCP connection is gone
        self.ping_sent: float | None = None  # when the unanswered ping went out (None: none pending)
        self.last_ping = self._loop.time()  # when the last ping went out (or the socket opened)
        self._close_timer: asyncio.TimerHandle | None = None  # drops the TCP connection after our close
        self.task: asyncio.Task[None] | None = None  # the handler, owned by the path

    # picows' side
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        for done in (transport.request, transport.response):  # the handshake is over: see _NO_HEADERS
            if done is not None:
                done.headers = _NO_HEADERS  # type: ignore[assignment]  # read-only on purpose
        underlying = transport.underlying_transport
        ext = self.scope["extensions"]
        ext[ABORT] = underlying.abort
        ext[SEND_BUFFER] = lambda size: limit_send_buffer(underlying, size)
        ext[LANE] = PicowsLane(self)
        if self._ticket is not None:
            ext[CONNECTION] = self._ticket
        self._path.opened(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if self._fragments is not None:
                self._fail(WSCloseCode.PROTOCOL_ERROR, "expected a continuation frame")
            elif frame.fin:
                self._message(kind is WSMsgType.TEXT, frame.get_payload_as_bytes())
            else:
                self._fragments = bytearray(frame.get_payload_as_memoryview())
                self._fragments_text = kind is WSMsgType.TEXT
        elif kind is WSMsgType.CONTINUATION:
            parts = self._fragments
            if parts is None:
                self._fail(WSCloseCode.PROTOCOL_ERROR, "a continuation frame without a message")
                return
            parts += frame.get_payload_as_memoryview()
            if len(parts) > MAX_MESSAGE:
                self._fragments = None
                self._fail(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
            elif frame.fin:
                self._fragments = None
                self._message(self._fragments_text, bytes(parts))
        elif kind is WSMsgType.PONG:
            self.ping_sent = None
        elif kind is WSMsgType.CLOSE:
            self._peer_close(transport, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected = True
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._ticket is not None:
            self._ticket.close()
        self._wake_writers()
        self._deliver({"type": "websocket.disconnect", "code": 1006})
        self._path.closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writers()

    def _message(self, text: bool, data: bytes) -> None:
        if not text:
            self._deliver({"type": "websocket.receive", "bytes": data})
            return
        try:
            decoded = data.decode()
        except UnicodeDecodeError:
            self._fail(WSCloseCode.INVALID_TEXT, "invalid UTF-8")
            return
        receiver = self.receiver
        if receiver is not None and not self.closing:
            try:
                receiver(decoded)
            except Exception:  # never into picows' callback: log, and the socket lives on
                log.exception("miner socket receiver failed")
            return
        self._deliver({"type": "websocket.receive", "text": decoded})

    def _deliver(self, message: dict[str, Any]) -> None:
        self._queue.append(message)
        if len(self._queue) >= _QUEUE_PAUSE and not self._queue_paused and not self.disconnected:
            self._queue_paused = True
            self._set_reading()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _peer_close(self, transport: WSTransport, frame: WSFrame) -> None:
        self.peer_closed = True
        code = frame.get_close_code()
        if not transport.is_close_frame_sent:  # answer it (the peer started the close)
            answer = WSCloseCode.OK if code is WSCloseCode.NO_INFO else code
            with contextlib.suppress(ValueError):
                transport.send_close(answer)
        transport.disconnect()
        self._deliver({"type": "websocket.disconnect", "code": code.value or 1005})

    def _fail(self, code: WSCloseCode, reason: str) -> None:
        transport = self.transport
        if transport is not None and not transport.is_close_frame_sent:
            transport.send_close(code, reason.encode())
            self._close_timer = self._loop.call_later(self._path.close_timeout, self._drop)
        self.peer_closed = True  # nothing more is read from a peer that broke the protocol
        self._deliver({"type": "websocket.disconnect", "code": code.value})

    def ping_timed_out(self) -> None:
        """No pong in time: close 1011, tell the handler now, and drop the connection if the peer
        does not answer the close within ``close_timeout`` (a peer that stopped reading keeps
        neither its descriptor nor its gate place)."""
        self.application_state = WebSocketState.DISCONNECTED
        if self.transport is not None:  # bytes the peer never took: its close is a reset
            reset_when_stuck(self.transport.underlying_transport)
        self._fail(WSCloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def shut(self) -> None:
        """Shutdown's close: 1012 and the connection closed once it is flushed (see :meth:`abort`)."""
        transport = self.transport
        if transport is not None and not self.closing:
            self.application_state = WebSocketState.DISCONNECTED
            transport.send_close(WSCloseCode.SERVICE_RESTART, b"server restart")
            transport.disconnect()

    def abort(self) -> None:
        """Shutdown's last word: the connection ends now, flushed or not."""
        transport = self.transport
        if transport is not None and not self.disconnected:
            transport.underlying_transport.abort()

    def _drop(self) -> None:
        self._close_timer = None
        transport = self.transport
        if transport is None or self.disconnected:
            return
        underlying = transport.underlying_transport
        if underlying.get_write_buffer_size():  # the peer does not even take our close frame
            underlying.abort()
        else:
            transport.disconnect()

    def _set_reading(self) -> None:
        transport = self.transport
        if transport is None or self.disconnected:
            return
        underlying = transport.underlying_transport
        if self._lane_paused or self._queue_paused:
            underlying.pause_reading()
        else:
            underlying.resume_reading()

    def _wake_writers(self) -> None:
        if self._writable is not None:
            self._writable.set()

    @property
    def closing(self) -> bool:
        """Nothing more goes out: our close was sent, the peer's came, or the connection is gone."""
        transport = self.transport
        return (
            transport is None
            or self.disconnected
            or self.peer_closed
            or transport.is_close_frame_sent
            or self.application_state is WebSocketState.DISCONNECTED
        )

    async def _until_writable(self) -> None:
        while self.write_paused and not self.disconnected:
            if self._writable is None:
                self._writable = asyncio.Event()
            self._writable.clear()
            await self._writable.wait()

    def lane_pause(self, paused: bool) -> None:
        self._lane_paused = paused
        self._set_reading()

    # the handler's side (the surface of Starlette's WebSocket that pooler/web/miner_ws.py uses)
    async def accept(self) -> None:
        self.application_state = WebSocketState.CONNECTED  # picows already answered the upgrade

    async def receive(self) -> dict[str, Any]:
        while not self._queue:
            self._waiter = waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        message = self._queue.pop(0)
        if self._queue_paused and len(self._queue) < _QUEUE_PAUSE // 2:
            self._queue_paused = False
            self._set_reading()
        return message

    async def send_text(self, data: str) -> None:
        await self._until_writable()  # like uvicorn: a frame waits for the transport to drain
        transport = self.transport
        if self.closing or transport is None:
            raise PeerGoneError("the miner socket is closed")
        transport.send(WSMsgType.TEXT, data.encode())

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if self.application_state is WebSocketState.DISCONNECTED:
            return
        self.application_state = WebSocketState.DISCONNECTED
        await self._until_writable()  # a peer that does not read: the handler's grace then aborts
        transport = self.transport
        if transport is None or self.disconnected or self.peer_closed or transport.is_close_frame_sent:
            return
        try:
            close_code = WSCloseCode(code)
        except ValueError:
            close_code = WSCloseCode.POLICY_VIOLATION
        transport.send_close(close_code, (reason or "").encode())
        self._close_timer = self._loop.call_later(self._path.close_timeout, self._drop)


class PicowsLane:
    """The lane (:class:`~pooler.web.lane.DirectLane`) of a picows socket: frames written now."""

    __slots__ = ("_wire", "paused")

    def __init__(self, wire: PicowsWire) -> None:
        self._wire = wire
        self.paused = False  # reading paused by the lane's owner

    def write(self, frames: Iterable[str]) -> bool:
        """Send text frames now; False (nothing sent) if the caller must wait instead."""
        wire = self._wire
        transport = wire.transport
        if transport is None or wire.write_paused or wire.closing:
            return False
        send = transport.send
        for frame in frames:
            send(WSMsgType.TEXT, frame.encode())
        return True

    def receive_with(self, receiver: Receiver | None) -> None:
        self._wire.receiver = receiver

    def pause_reading(self) -> None:
        if not self.paused:
            self.paused = True
            self._wire.lane_pause(True)

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            self._wire.lane_pause(False)


class MinerPath:
    """The picows ``/ws/miner`` sockets of one server: the hand-off, their pings, their shutdown."""

    def __init__(
        self, endpoint: Endpoint, *, ping_interval: float, ping_timeout: float, close_timeout: float
    ) -> None:
        self._endpoint = endpoint  # MinerSocket.endpoint, the same handler as the ASGI path
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout  # no pong this long after a ping: closed with 1011
        self.close_timeout = close_timeout  # after our close frame, how long the peer has to answer
        self._wires: set[PicowsWire] = set()  # open sockets (handshake done, not yet disconnected)
        # every handler still running, owned here: a socket's handler may outlive its connection
        # (it settles its events after the disconnect), and aclose() must still wait for it
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False  # aclose() began: no new socket, no new handler
        self._timer: asyncio.TimerHandle | None = None  # the ping sweep, while sockets are open

    @property
    def sockets(self) -> int:
        """picows sockets open now (handshake done, not yet disconnected)."""
        return len(self._wires)

    @property
    def handlers(self) -> int:
        """Handlers still running (a socket's may outlive its connection by its settling)."""
        return len(self._tasks)

    @property
    def closing(self) -> bool:
        """:meth:`aclose` began: an upgrade now is refused (the HTTP protocol answers 503)."""
        return self._closing

    def take_over(
        self,
        transport: asyncio.Transport,
        request: bytes,
        ticket: Ticket | None,
        client: tuple[str, int] | None,
    ) -> None:
        """Hand ``transport`` (an HTTP connection whose ``request`` asks for the upgrade) to picows;
        ``client`` is the peer as the ASGI path would see it (pooler/web/httpproto.py: behind a
        trusted proxy, the address it forwarded)."""
        try:
            self._take_over(transport, request, ticket, client)
        except BaseException:  # the connection's gate place is given back, whatever failed
            if ticket is not None:
                ticket.close()
            transport.abort()
            raise

    def _take_over(
        self,
        transport: asyncio.Transport,
        request: bytes,
        ticket: Ticket | None,
        client: tuple[str, int] | None,
    ) -> None:
        wire = PicowsWire(self, ticket, client)
        proto = WSProtocol(
            None,  # host_port: server side
            None,  # ws_path
            False,  # is_client_side
            lambda _request: wire,
            _PICOWS_LOG,
            True,  # disconnect_on_exception
            None,  # handshake timeout: uvicorn's read timeout already applied to this request
            False,  # picows' auto-ping: a task per socket; MinerPath sweeps them all with one timer
            20.0,
            20.0,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            True,  # answer pings
            MAX_MESSAGE,
            None,  # extra headers
            READ_BUFFER,
        )
        transport.set_protocol(_STUB)
        transport.set_protocol(proto)
        proto.connection_made(transport)
        view = memoryview(request)
        while view:
            buf = proto.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            view = view[n:]
            proto.buffer_updated(n)
        if wire.transport is None:
            # picows refused the upgrade (it answered 4xx): no socket, so the connection's gate
            # place goes back now (on_ws_disconnected never runs for it) and the connection ends.
            if ticket is not None:
                ticket.close()
            if not transport.is_closing():
                transport.close()

    def opened(self, wire: PicowsWire) -> None:
        if self._closing:  # the handshake finished as shutdown began: closed, no handler started
            wire.shut()
            return
        self._wires.add(wire)
        wire.task = task = asyncio.create_task(self._serve(wire), name="miner-socket")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._timer is None:
            self._arm()

    def closed(self, wire: PicowsWire) -> None:
        self._wires.discard(wire)
        if not self._wires and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _serve(self, wire: PicowsWire) -> None:
        try:
            await self._endpoint(wire)
        except Exception:
            log.exception("miner socket handler failed")
        finally:
            if not wire.disconnected:
                await wire.close(1011, "")

    def _arm(self) -> None:
        period = min(self.ping_interval, self.ping_timeout)
        self._timer = asyncio.get_running_loop().call_later(period, self._sweep)

    def _sweep(self) -> None:
        """Ping every ``ping_interval``; close (1011) a socket whose ping went unanswered too long."""
        now = asyncio.get_running_loop().time()
        for wire in list(self._wires):
            transport = wire.transport
            if transport is None or wire.closing:
                continue
            if wire.ping_sent is not None:
                if now - wire.ping_sent >= self.ping_timeout:
                    wire.ping_sent = None
                    wire.ping_timed_out()
            elif now - wire.last_ping >= self.ping_interval:
                wire.ping_sent = wire.last_ping = now
                transport.send_ping()
        self._arm()

    async def aclose(self, within: float) -> None:
        """At shutdown: no new socket from now on; close the sockets still open (1012), wait up
        to ``within`` seconds for every handler (also those whose connection already ended),
        cancel the rest, and drop the connections whose peer never took the close."""
        self._closing = True
        wires = list(self._wires)
        for wire in wires:
            wire.shut()
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=within)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        self._tasks -= tasks  # done: their callbacks have run, this only says so
        for wire in wires:  # a peer that never took our close frame: its connection ends here
            wire.abort()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
