"""The miner socket's direct lane (pooler/web/lane.py) on a real Pooler, and the outbox's two ways out.

What must hold with the lane exactly as without it: every share answered, in the order sent;
protocol errors answered on the socket; binary frames refused; ``bye`` closes with 1000; and
the frames on the wire are byte for byte what the websockets library would have written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from pooler.app.service import Pooler
from pooler.runtime.outbox import Flusher, Outbox
from pooler.web.lane import AVAILABLE, text_frames
from protocol.codec import decode_server, encode
from protocol.errors import Code
from protocol.messages import Accepted, Bye, Error, Hello, Job, ServerMessage, Share, Welcome
from tests.support.system import register_miner, running_system
from tests.support.wait import wait_until


async def _next(ws: ClientConnection, *kinds: type[ServerMessage]) -> ServerMessage:
    while True:
        msg = decode_server(await asyncio.wait_for(ws.recv(), 10))
        if isinstance(msg, kinds):
            return msg


@pytest.fixture
async def pooler(miner_socket: str) -> AsyncIterator[Pooler]:  # on both /ws/miner paths
    async with running_system(share_zeros=0) as system:  # every nonce is a share: no hashing in the test
        yield system.pooler


async def _hello(pooler: Pooler, name: str) -> tuple[ClientConnection, Job]:
    reg = await register_miner(pooler.url, name)
    ws = await connect(pooler.url.replace("http://", "ws://") + "/ws/miner")
    await ws.send(encode(Hello(reg.token, "w1")).decode())
    assert isinstance(await _next(ws, Welcome), Welcome)
    job = await _next(ws, Job)
    assert isinstance(job, Job)
    return ws, job


@pytest.mark.skipif(not AVAILABLE, reason="this uvicorn lacks what the lane builds on")
async def test_a_burst_of_shares_is_answered_in_order_through_the_lane(pooler: Pooler) -> None:
    ws, job = await _hello(pooler, "burst")
    async with ws:
        assert [box.direct for box in pooler.runner.conns.values()] == [True]
        nonces = [job.nonce_start + i for i in range(200)]
        for nonce in nonces:  # no waiting between shares: many land in one batch and one write
            await ws.send(encode(Share(job.job, nonce)).decode())
        acks = [await _next(ws, Accepted) for _ in nonces]
        assert [a.nonce for a in acks if isinstance(a, Accepted)] == nonces
        await ws.send(encode(Share(job.job, nonces[0])).decode())  # a replay: rejected, not lost
        again = decode_server(await asyncio.wait_for(ws.recv(), 10))
        assert getattr(again, "code", None) == Code.DUPLICATE


async def test_errors_binary_frames_and_bye_behave_as_without_the_lane(pooler: Pooler) -> None:
    ws, job = await _hello(pooler, "rude")
    async with ws:
        await ws.send("{not json")
        err = await _next(ws, Error)
        assert isinstance(err, Error) and err.code == Code.MALFORMED
        await ws.send(b"\x00\x01")  # binary: not part of protocol v1
        err = await _next(ws, Error)
        assert isinstance(err, Error) and err.code == Code.MALFORMED and "binary" in err.message
        await ws.send(encode(Hello("x" * 10, "again")).decode())
        err = await _next(ws, Error)
        assert isinstance(err, Error) and "already" in err.message
        await ws.send(encode(Share(job.job, job.nonce_start)).decode())
        assert isinstance(await _next(ws, Accepted), Accepted)
        await ws.send(encode(Bye()).decode())
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1000


async def test_the_setting_selects_who_frames_the_miner_socket(pooler: Pooler, miner_socket: str) -> None:
    ws, _ = await _hello(pooler, "which")
    async with ws:
        if miner_socket == "picows":
            assert pooler.miner_path is not None and pooler.miner_path.sockets == 1
        else:
            assert pooler.miner_path is None
    if pooler.miner_path is not None:
        await wait_until(
            lambda: pooler.miner_path is not None and pooler.miner_path.sockets == 0, "the close"
        )


async def test_fragmented_messages_are_reassembled_and_pings_answered(pooler: Pooler) -> None:
    reg = await register_miner(pooler.url, "fragments")
    ws = await connect(pooler.url.replace("http://", "ws://") + "/ws/miner")
    async with ws:
        hello = encode(Hello(reg.token, "w1")).decode()
        await ws.send([hello[:5], hello[5:20], hello[20:]])  # one message in three frames
        assert isinstance(await _next(ws, Welcome), Welcome)
        job = await _next(ws, Job)
        assert isinstance(job, Job)
        share = encode(Share(job.job, job.nonce_start)).decode()
        await ws.send([share[:1], share[1:]])
        assert isinstance(await _next(ws, Accepted), Accepted)
        pong = await ws.ping()
        await asyncio.wait_for(pong, 10)


async def test_invalid_utf8_in_a_text_frame_is_closed_1007(pooler: Pooler) -> None:
    ws, _ = await _hello(pooler, "utf8")
    async with ws:
        await ws.send(b"\xff\xfe", text=True)  # a text frame whose bytes are not UTF-8
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1007


async def test_a_stopping_pooler_closes_every_miner_socket_with_1012(miner_socket: str) -> None:
    async with running_system(share_zeros=0) as system:
        ws, _ = await _hello(system.pooler, "served")
        pending = await connect(system.pooler.url.replace("http://", "ws://") + "/ws/miner")  # no hello yet
    for sock in (ws, pending):  # the Pooler has stopped
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(sock.recv(), 10)
        assert sock.close_code == 1012


async def test_a_refused_upgrade_gets_an_http_error_and_gives_its_gate_place_back(pooler: Pooler) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", pooler.port)
    writer.write(
        b"GET /ws/miner HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 12\r\n\r\n"  # not 13
    )
    answer = await asyncio.wait_for(reader.read(4096), 10)
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer
    writer.close()
    await writer.wait_closed()
    await wait_until(lambda: pooler.gate.open == 0 and pooler.gate.pending == 0, "the gate place back")


def test_lane_frames_are_the_librarys_bytes() -> None:
    texts = ["", "a", "x" * 125, "y" * 126, "z" * 65535, "w" * 65536, '{"type":"accepted","nonce":"1"}']
    expected = b"".join(Frame(Opcode.TEXT, t.encode()).serialize(mask=False) for t in texts)
    assert text_frames(texts) == expected


async def test_outbox_uses_the_sender_task_while_the_lane_refuses_and_keeps_the_order() -> None:
    flusher = Flusher()
    box = Outbox(limit=100, flusher=flusher)
    wire: list[str] = []
    open_ = [False]  # the lane refuses until the "transport" drains

    def lane(frames: Iterable[str]) -> bool:
        if not open_[0]:
            return False
        wire.extend(frames)
        return True

    started: list[asyncio.Task[None]] = []

    async def send(frame: str) -> None:
        await asyncio.sleep(0)  # a send that yields to the loop once, as a real socket write may
        wire.append(frame)

    async def close(code: int, reason: str) -> None:
        wire.append(f"close {code}")

    def start() -> None:
        if not started:
            started.append(asyncio.create_task(box.drain(send, close)))

    box.on_wake = start
    box.attach(lane)
    assert box.put("1") and box.put("2")
    flusher.flush()  # refused: the sender task takes these two
    assert started and wire == []
    assert box.put("3")  # queued behind them while the sender works
    await wait_until(lambda: len(wire) >= 3, "the sender task to write three frames")
    assert wire == ["1", "2", "3"]
    open_[0] = True
    assert box.put("4") and box.put("5")
    flusher.flush()
    assert wire == ["1", "2", "3", "4", "5"]  # the direct way, in one call
    box.close(1000, "bye")
    await asyncio.wait_for(started[0], 1)
    assert wire[-1] == "close 1000"
