"""A connection refused by the miners' connection limits sees exactly: 101, error 28, close 1013, end.

The limits count a socket once its ``hello`` carried a valid token (a socket that never says
hello is one of the gate's pending connections: test_reliability_lockouts.py), so each refused
connection sends a valid hello. Read at the byte level with a sans-I/O client, so the test sees
each event in the order the server wrote it (a library client would hide the order, and would
wait forever if the close frame or the end of the TCP stream never came). Variants: a client
that sends its ``hello`` alone, one that sends a ``stats`` right behind it (the server then has a
frame queued that it never reads), and one that closes on its own before reading. The slots of
the limits stay as they were: a refused connection is never counted, so the admitted ones keep
theirs and a slot freed by one of them is open to the next connection.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from protocol.codec import decode_server
from protocol.errors import Code
from protocol.messages import Error, Welcome
from tests.component.reliability_support import ws_url
from tests.support.system import ops_options, register_miner, running_system
from tests.support.wait import wait_until

pytestmark = pytest.mark.usefixtures("miner_socket")  # each test on both /ws/miner paths

FAILSAFE_S = 15.0  # a missing frame or end of stream fails the test instead of hanging it (not a timing)
HELLO = orjson.dumps({"type": "hello", "token": "x", "protocol": 1})


def hello(token: str) -> bytes:
    return orjson.dumps({"type": "hello", "token": token, "protocol": 1})


async def refused_exchange(url: str, port: int, token: str, *, hello_first: bool) -> list[str]:
    """Everything one connection sees, in order, until the server ends the TCP stream."""
    proto = ClientProtocol(parse_uri(url))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    seen: list[str] = []
    try:
        proto.send_request(proto.connect())
        writer.write(b"".join(proto.data_to_send()))
        sent_hello = False
        while True:
            data = await asyncio.wait_for(reader.read(65536), FAILSAFE_S)
            if not data:
                seen.append("end")
                return seen
            proto.receive_data(data)
            for event in proto.events_received():
                if isinstance(event, Response):
                    seen.append(f"http {event.status_code}")
                    if not sent_hello and proto.state is State.OPEN:
                        proto.send_text(hello(token))
                        if hello_first:  # a second frame at once: the server gets it queued
                            proto.send_text(orjson.dumps({"type": "stats"}))
                        sent_hello = True
                elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    msg = decode_server(bytes(event.data))
                    assert isinstance(msg, Error), msg
                    seen.append(f"error {int(msg.code)}")
                elif isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    seen.append(f"close {Close.parse(event.data).code}")
            writer.write(b"".join(proto.data_to_send()))  # the hello, and the echo of the close
    finally:
        writer.close()
        await writer.wait_closed()


async def miner_socket(url: str, token: str) -> ClientConnection:
    """A socket whose hello was welcomed (it holds a slot of the limits)."""
    ws = await connect(url)
    await ws.send(hello(token).decode())
    assert isinstance(decode_server(await asyncio.wait_for(ws.recv(), FAILSAFE_S)), Welcome)
    return ws


@pytest.mark.parametrize("hello_first", [False, True], ids=["hello-alone", "hello-then-stats"])
async def test_a_refused_connection_gets_its_error_then_its_close_then_the_end(hello_first: bool) -> None:
    async with running_system(block_interval=6, profile=ops_options, max_connections_per_ip=2) as system:
        pooler = system.pooler
        url = ws_url(pooler)
        token = (await register_miner(pooler.url, "rig")).token
        one, two = await miner_socket(url, token), await miner_socket(url, token)
        async with one, two:
            for _ in range(3):  # again and again: nothing is left over from one refusal to the next
                seen = await refused_exchange(url, pooler.port, token, hello_first=hello_first)
                assert seen == ["http 101", f"error {int(Code.RATE_LIMITED)}", "close 1013", "end"]
            assert pooler.connections.open == 2  # the refused ones never held a slot
            await one.close()
            await wait_until(lambda: pooler.connections.open == 1, "one slot to be freed", within=FAILSAFE_S)
            async with connect(url) as third:  # the freed slot is the next connection's
                await third.send(HELLO.decode())
                answer = decode_server(await asyncio.wait_for(third.recv(), FAILSAFE_S))
                assert isinstance(answer, Error) and answer.code == Code.UNAUTHORIZED
        await wait_until(lambda: pooler.connections.open == 0, "every slot to be released", within=FAILSAFE_S)
    assert pooler.metrics.limit_hits.labels(limit="connections-per-ip")._value.get() == 3


async def test_a_refused_peer_that_leaves_at_once_leaves_nothing_behind() -> None:
    async with running_system(block_interval=6, profile=ops_options, max_concurrent_miners=1) as system:
        pooler = system.pooler
        url = ws_url(pooler)
        token = (await register_miner(pooler.url, "rig")).token
        async with await miner_socket(url, token):
            for _ in range(5):
                proto = ClientProtocol(parse_uri(url))
                _, writer = await asyncio.open_connection("127.0.0.1", pooler.port)
                proto.send_request(proto.connect())
                writer.write(b"".join(proto.data_to_send()))
                writer.close()  # gone before the server could answer
                await writer.wait_closed()
            # the server is still whole: a refused connection that stays is answered as always
            assert (await refused_exchange(url, pooler.port, token, hello_first=False)) == [
                "http 101",
                f"error {int(Code.RATE_LIMITED)}",
                "close 1013",
                "end",
            ]
            assert pooler.connections.open == 1
        await wait_until(lambda: pooler.connections.open == 0, "every slot to be released", within=FAILSAFE_S)
