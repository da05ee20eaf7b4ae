"""``MINER_SOCKET=picows`` at shutdown (pooler/web/picows_ws.py): every handler is owned and ended.

A handler may outlive its connection (the miner socket's handler settles its events after the
disconnect), and an upgrade may complete while the sockets are being closed: ``MinerPath.aclose``
must still wait for or cancel every handler, and start none after it began. On real loopback
sockets with picows' own handshake; the hand-off here is a bare asyncio protocol, and the
Pooler's (pooler/web/httpproto.py) is tested below it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pooler.web.picows_ws import MinerPath, PicowsWire
from tests.support.system import running_system
from tests.support.wait import FAILSAFE, wait_until

UPGRADE = (
    b"GET /ws/miner HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class _HandOff(asyncio.Protocol):
    """Reads one request and hands the connection to ``path``, as the HTTP protocol does."""

    def __init__(self, path: MinerPath) -> None:
        self.path = path
        self.transport: asyncio.Transport | None = None  # set at connection_made
        self.request = bytearray()  # the request read so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.request += data
        if b"\r\n\r\n" in self.request and self.transport is not None:
            peer = self.transport.get_extra_info("peername")
            self.path.take_over(self.transport, bytes(self.request), None, (peer[0], peer[1]))


class _Handlers:
    """The endpoint: records each socket, reads it to its end, then holds until released."""

    def __init__(self) -> None:
        self.entered: list[PicowsWire] = []  # every socket whose handler started
        self.release = asyncio.Event()  # never set: a held handler ends only when cancelled

    async def endpoint(self, wire: PicowsWire) -> None:
        await wire.accept()
        self.entered.append(wire)
        while (await wire.receive())["type"] != "websocket.disconnect":
            pass
        await self.release.wait()  # like a handler settling after its connection ended


@pytest.fixture
async def served() -> AsyncIterator[tuple[MinerPath, _Handlers, int]]:
    handlers = _Handlers()
    path = MinerPath(handlers.endpoint, ping_interval=20.0, ping_timeout=20.0, close_timeout=0.5)
    server = await asyncio.get_running_loop().create_server(lambda: _HandOff(path), "127.0.0.1", 0)
    async with server:
        yield path, handlers, server.sockets[0].getsockname()[1]
        await path.aclose(0.1)  # a failed test leaves nothing behind either


def _miner_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "miner-socket" and not t.done()]


async def _close_code(reader: asyncio.StreamReader) -> int | None:
    """Read a server's answer to the end: the close frame's code, if one came (unmasked, short)."""
    data = b""
    while chunk := await asyncio.wait_for(reader.read(65536), FAILSAFE):
        data += chunk
    head, _, frames = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), data
    if len(frames) >= 4 and frames[0] == 0x88:
        return int.from_bytes(frames[2:4], "big")
    return None


async def test_aclose_owns_every_handler_and_starts_none_after_it_began(
    served: tuple[MinerPath, _Handlers, int],
) -> None:
    path, handlers, port = served
    # one socket that comes and goes: its connection is gone, its handler still runs
    async with connect(f"ws://127.0.0.1:{port}/ws/miner") as gone:
        await wait_until(lambda: handlers.entered, "the first handler")
    await gone.wait_closed()
    await wait_until(lambda: path.sockets == 0, "the first socket's disconnect")
    assert path.handlers == 1 and len(_miner_tasks()) == 1
    # one open socket, served until the shutdown closes it
    served_ws = await connect(f"ws://127.0.0.1:{port}/ws/miner")
    await wait_until(lambda: len(handlers.entered) == 2, "the second handler")
    assert path.handlers == 2
    # one that has sent half its upgrade when the shutdown begins
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(UPGRADE[:40])
    await writer.drain()

    closing = asyncio.create_task(path.aclose(0.5))
    await wait_until(lambda: path.closing, "aclose to begin")
    assert not closing.done()  # both handlers hold it: the upgrade below completes during shutdown
    writer.write(UPGRADE[40:])
    assert await _close_code(reader) == 1012  # handshake done by picows, closed at once
    writer.close()
    await writer.wait_closed()
    await asyncio.wait_for(closing, FAILSAFE)

    assert len(handlers.entered) == 2  # no handler for the socket that came during shutdown
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(served_ws.recv(), FAILSAFE)
    assert served_ws.close_code == 1012
    assert path.handlers == 0 and path.sockets == 0
    assert _miner_tasks() == []  # the held handlers were cancelled, none is left pending


async def test_an_upgrade_while_the_pooler_closes_its_miner_sockets_gets_503() -> None:
    async with running_system(share_zeros=0, miner_socket="picows") as system:
        pooler = system.pooler
        path = pooler.miner_path
        assert path is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", pooler.port)
        writer.write(UPGRADE[:40])
        await writer.drain()
        await path.aclose(1.0)  # what Pooler.aclose does first (it does again: nothing is left)
        writer.write(UPGRADE[40:])
        answer = await asyncio.wait_for(reader.read(4096), FAILSAFE)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert await asyncio.wait_for(reader.read(4096), FAILSAFE) == b""  # and closed
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: pooler.gate.open == 0, "the connection's gate place back")
        assert path.handlers == 0
