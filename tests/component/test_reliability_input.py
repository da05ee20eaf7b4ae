"""Bad input and protective limits against a live Pooler: each answered with its code, and the
connection kept or closed as docs/protocol.md says; other miners notice nothing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from pooler.app.service import Pooler
from pooler.devnet import Devnet
from protocol.codec import decode_server
from protocol.errors import Code
from protocol.messages import Accepted, Error, Job, Rejected, Stats
from tests.component.reliability_support import Miner, find_low, find_shares, ws_url
from tests.support.system import ops_options, register_miner, running_system
from tests.support.wait import wait_until

pytestmark = pytest.mark.usefixtures("miner_socket")  # each test on both /ws/miner paths

HEX = "ab" * 32

# stats requests whose answers (~5 MB) the zero-window peer never reads: more than the kernel's
# send buffer takes (tcp_wmem allows 4 MB), so the close frame waits in the transport behind them
STATS_FLOOD = 20_000

FAILSAFE_S = 15.0  # a lost frame fails the test instead of hanging the run (no timing is asserted)


@pytest.fixture
async def pool() -> AsyncIterator[tuple[Devnet, Pooler]]:
    async with running_system(
        block_interval=6, profile=ops_options, messages_per_second=20.0, messages_burst=40
    ) as system:
        yield system.net, system.pooler


async def stats(miner: Miner) -> Stats:
    await miner.send({"type": "stats"})
    return await miner.next(Stats)


# frame -> the code it must be answered with; the connection stays open for all of these
BAD_FRAMES: list[tuple[str, str | bytes | dict[str, Any], Code]] = [
    ("not JSON", "{type: share", Code.MALFORMED),
    ("a JSON array", "[1, 2]", Code.MALFORMED),
    ("a JSON string", '"share"', Code.MALFORMED),
    ("a JSON number", "42", Code.MALFORMED),
    ("no type", {"job": "x", "nonce": "1"}, Code.MALFORMED),
    ("unknown type", {"type": "submit", "job": "x", "nonce": "1"}, Code.MALFORMED),
    ("type not a string", {"type": 7}, Code.MALFORMED),
    ("job not a string", {"type": "share", "job": 5, "nonce": "1"}, Code.MALFORMED),
    ("nonce missing", {"type": "share", "job": "J"}, Code.MALFORMED),
    ("nonce a list", {"type": "share", "job": "J", "nonce": [1]}, Code.MALFORMED),
    ("nonce a boolean", {"type": "share", "job": "J", "nonce": True}, Code.MALFORMED),
    ("nonce negative", {"type": "share", "job": "J", "nonce": -1}, Code.MALFORMED),
    ("nonce fractional", {"type": "share", "job": "J", "nonce": 1.5}, Code.MALFORMED),
    ("nonce 2^64 as a string", {"type": "share", "job": "J", "nonce": str(2**64)}, Code.MALFORMED),
    ("nonce 2^64 as JSON", '{"type":"share","job":"J","nonce":18446744073709551616}', Code.MALFORMED),
    ("nonce 1e400", '{"type":"share","job":"J","nonce":1e400}', Code.MALFORMED),
    ("nonce of 100 digits", {"type": "share", "job": "J", "nonce": "9" * 100}, Code.MALFORMED),
    ("nonce with a sign", {"type": "share", "job": "J", "nonce": "+5"}, Code.MALFORMED),
    ("nonce hex without 0x", {"type": "share", "job": "J", "nonce": "ff"}, Code.MALFORMED),
    ("nonce in full-width digits", {"type": "share", "job": "J", "nonce": "\uff11\uff12"}, Code.MALFORMED),
    ("nonce in Arabic-Indic digits", {"type": "share", "job": "J", "nonce": "\u0661\u0662"}, Code.MALFORMED),
    ("hash not hex", {"type": "share", "job": "J", "nonce": "1", "hash": "zz" * 32}, Code.MALFORMED),
    ("hash short", {"type": "share", "job": "J", "nonce": "1", "hash": "abcd"}, Code.MALFORMED),
    ("hash a number", {"type": "share", "job": "J", "nonce": "1", "hash": 12}, Code.MALFORMED),
    ("job with a right-to-left override", {"type": "share", "job": "J\u202e1", "nonce": "1"}, Code.MALFORMED),
    ("job with a zero-width space", {"type": "share", "job": "J\u200b", "nonce": "1"}, Code.MALFORMED),
    ("job with a NUL", {"type": "share", "job": "J\x00", "nonce": "1"}, Code.MALFORMED),
    ("job empty", {"type": "share", "job": "", "nonce": "1"}, Code.MALFORMED),
    ("job too long", {"type": "share", "job": "J" * 65, "nonce": "1"}, Code.MALFORMED),
    ("lone surrogate", '{"type":"share","job":"\\ud800","nonce":"1"}', Code.MALFORMED),
    ("a second hello", {"type": "hello", "token": "x", "protocol": 1}, Code.MALFORMED),
    ("more with a numeric job", {"type": "more", "job": 3}, Code.MALFORMED),
    ("binary frame", b"\x00\x01\x02", Code.MALFORMED),
    ("binary JSON", b'{"type":"stats"}', Code.MALFORMED),
    ("unknown job", {"type": "share", "job": "nope", "nonce": "1"}, Code.STALE),
]


def _malformed_shares() -> int:
    """The bad frames meant as shares (text that is no JSON, or a JSON ``share``) refused as malformed."""

    def meant_as_share(frame: object) -> bool:
        if isinstance(frame, bytes):
            return False  # a binary frame is refused before it is read as a message
        if isinstance(frame, dict):
            return frame.get("type") == "share"
        try:
            obj = orjson.loads(str(frame))
        except orjson.JSONDecodeError:
            return True
        return isinstance(obj, dict) and obj.get("type") == "share"

    return sum(1 for _, frame, code in BAD_FRAMES if code is Code.MALFORMED and meant_as_share(frame))


async def test_each_bad_frame_gets_its_code_and_nothing_is_applied(pool: tuple[Devnet, Pooler]) -> None:
    _, pooler = pool
    async with aiohttp.ClientSession() as http:
        bad, calm = (
            await register_miner(pooler.url, "bad", http=http),
            await register_miner(pooler.url, "calm", http=http),
        )
    async with Miner(ws_url(pooler), bad.token) as miner, Miner(ws_url(pooler), calm.token) as other:
        await miner.next(Job)
        await other.next(Job)
        before = await stats(miner)
        for i, (what, frame, code) in enumerate(BAD_FRAMES):
            if i and i % 15 == 0:
                await asyncio.sleep(0.8)  # stay under 20 messages/s: this test is about content, not rate
            await miner.send(frame)
            answer = await miner.recv()
            assert isinstance(answer, Error | Rejected), (what, answer)
            assert answer.code == code, (what, answer)
            assert answer.message, what
            if i % 10 == 9:  # the errors count as strikes; stay under the limit, as a sane client would
                await asyncio.sleep(0.1)  # paces the client (a pause before it reconnects), waits for nothing
                miner = await _reconnect(miner, pooler, bad.token)
        after = await stats(miner)
        # nothing was accepted; the stale share and every share frame that did not decode are
        # counted as rejected (#15: a malformed submit is a rejected share), nothing else is
        assert (after.accepted, after.rejected) == (
            before.accepted,
            before.rejected + 1 + _malformed_shares(),
        )
        # the other miner saw nothing but its own answers
        assert other.inbox == []
        assert isinstance(await stats(other), Stats) and other.inbox == []
    assert pooler.runner.failures == 0


async def _reconnect(miner: Miner, pooler: Pooler, token: str) -> Miner:
    await miner.__aexit__(None, None, None)
    fresh = Miner(ws_url(pooler), token)
    await fresh.__aenter__()
    await fresh.next(Job)
    return fresh


async def test_too_many_protocol_errors_close_the_connection(pool: tuple[Devnet, Pooler]) -> None:
    _, pooler = pool
    async with aiohttp.ClientSession() as http:
        reg = await register_miner(pooler.url, http=http)
    async with Miner(ws_url(pooler), reg.token) as miner:
        assert miner.ws is not None
        for _ in range(25):
            await miner.send("[]")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await miner.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_one_mebibyte_frame_is_too_large_and_closes_1009(pool: tuple[Devnet, Pooler]) -> None:
    _, pooler = pool
    async with aiohttp.ClientSession() as http:
        reg, calm = (
            await register_miner(pooler.url, http=http),
            await register_miner(pooler.url, "calm", http=http),
        )
        async with (
            Miner(ws_url(pooler), reg.token) as miner,
            Miner(ws_url(pooler), calm.token) as other,
        ):
            await miner.send(
                orjson.dumps({"type": "share", "job": "J", "nonce": "1", "pad": "x" * 2**20}).decode()
            )
            answer = await miner.next(Error)
            assert answer.code == Code.TOO_LARGE
            miner.inbox.clear()  # the job that came before
            with pytest.raises(ConnectionClosed) as closed:
                await miner.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            assert isinstance(await stats(other), Stats)
        # the REST body limit: refused without being buffered whole
        headers = {"Authorization": f"Bearer {reg.token}"}
        async with http.post(f"{pooler.url}/miner/submit", data=b"x" * 2**20, headers=headers) as resp:
            assert resp.status == 413 and (await resp.json())["code"] == Code.TOO_LARGE
    assert pooler.metrics.limit_hits.labels(limit="frame-size")._value.get() >= 2


async def test_a_flood_of_more_is_rate_limited_then_closed(pool: tuple[Devnet, Pooler]) -> None:
    _, pooler = pool
    async with aiohttp.ClientSession() as http:
        reg, calm = (
            await register_miner(pooler.url, http=http),
            await register_miner(pooler.url, "calm", http=http),
        )
    async with Miner(ws_url(pooler), reg.token) as miner, Miner(ws_url(pooler), calm.token) as other:
        first = await miner.next(Job)
        await other.next(Job)
        for _ in range(400):
            try:
                await miner.send({"type": "more", "job": first.job})
            except ConnectionClosed:
                break
        jobs = limited = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                msg = await miner.recv()
                jobs += isinstance(msg, Job)
                limited += isinstance(msg, Error) and msg.code == Code.RATE_LIMITED
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert limited >= 1
        assert jobs <= 45  # the burst (40) and what the rate refilled meanwhile, not 400 ranges
        # the calm miner noticed nothing and still gets fresh ranges
        assert other.inbox == []
        await other.send({"type": "more"})
        assert isinstance(await other.next(Job), Job)
        assert isinstance(await stats(other), Stats) and other.inbox == []


async def test_every_spelling_of_one_nonce_is_credited_once(pool: tuple[Devnet, Pooler]) -> None:
    _, pooler = pool
    async with aiohttp.ClientSession() as http:
        reg = await register_miner(pooler.url, http=http)
        async with Miner(ws_url(pooler), reg.token) as miner:
            job = await miner.next(Job)
            (nonce, digest), *_ = find_shares(job, job.share_zeros, 1)
            spellings: list[Any] = [
                nonce,
                str(nonce),
                "000" + str(nonce),
                hex(nonce),
                "0X" + format(nonce, "X"),
                "0x" + format(nonce, "X"),
                "0x000" + format(nonce, "x"),
            ]
            answers = []
            for spelling in spellings:
                await miner.send(
                    {"type": "share", "job": job.job, "nonce": spelling, "hash": digest.hex().upper()}
                )
                answers.append(await miner.recv())
            headers = {"Authorization": f"Bearer {reg.token}"}
            for spelling in spellings:
                async with http.post(
                    f"{pooler.url}/miner/submit", json={"job": job.job, "nonce": spelling}, headers=headers
                ) as resp:
                    assert resp.status == 409, await resp.text()
            assert isinstance(answers[0], Accepted)
            assert all(isinstance(a, Rejected) and a.code == Code.DUPLICATE for a in answers[1:]), answers
            assert (await stats(miner)).accepted == 1


async def test_connection_limits_answer_with_rate_limited_and_1013() -> None:
    async with running_system(block_interval=6, profile=ops_options, max_connections_per_ip=2) as system:
        pooler = system.pooler
        url = ws_url(pooler)
        token = (await register_miner(pooler.url, "rig")).token
        async with Miner(url, token), Miner(url, token), connect(url) as three:
            await three.send(orjson.dumps({"type": "hello", "token": token, "protocol": 1}).decode())
            answer = decode_server(await asyncio.wait_for(three.recv(), FAILSAFE_S))
            assert isinstance(answer, Error) and answer.code == Code.RATE_LIMITED
            assert "from your address" in answer.message
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(three.recv(), FAILSAFE_S)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        assert pooler.metrics.limit_hits.labels(limit="connections-per-ip")._value.get() == 1
    async with running_system(block_interval=6, profile=ops_options, max_concurrent_miners=1) as system:
        pooler = system.pooler
        url = ws_url(pooler)
        token = (await register_miner(pooler.url, "rig")).token
        async with Miner(url, token), connect(url) as second:
            await second.send(orjson.dumps({"type": "hello", "token": token, "protocol": 1}).decode())
            answer = decode_server(await asyncio.wait_for(second.recv(), FAILSAFE_S))
            assert isinstance(answer, Error) and "in total" in answer.message
        # released: a new socket is admitted again
        await wait_until(lambda: pooler.connections.open == 0, "the slot to be released", within=5)
        async with Miner(url, token) as third:
            assert third.welcome is not None


async def test_no_hello_in_time_is_answered_and_closed() -> None:
    async with (
        running_system(block_interval=6, profile=ops_options, hello_timeout_ms=300) as system,
        connect(system.ws_url) as ws,
    ):
        pooler = system.pooler
        answer = decode_server(await asyncio.wait_for(ws.recv(), 5))
        assert isinstance(answer, Error) and answer.code == Code.NO_HELLO
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert pooler.metrics.limit_hits.labels(limit="hello-timeout")._value.get() == 1


async def test_a_peer_that_never_answers_pings_is_closed_by_the_idle_timeout() -> None:
    async with (
        running_system(
            block_interval=6,
            profile=ops_options,
            ws_ping_interval_ms=200,
            idle_timeout_ms=500,
            # the deaf peer never echoes our close either: it is dropped this long after it
            tuning={"slow_client_grace": 1.0},
        ) as system,
        aiohttp.ClientSession() as http,
    ):
        pooler = system.pooler
        reg = await register_miner(pooler.url, http=http)
        async with Miner(ws_url(pooler), reg.token, worker="answers-pings") as alive:
            # a sans-I/O client whose pongs are never written: it reads, but is deaf to pings
            proto = ClientProtocol(parse_uri(ws_url(pooler)))
            reader, writer = await asyncio.open_connection("127.0.0.1", pooler.port)
            proto.send_request(proto.connect())
            writer.write(b"".join(proto.data_to_send()))
            hello = {"type": "hello", "token": reg.token, "worker": "deaf", "protocol": 1}
            sent_hello = False
            close_code = None
            while True:
                # bounded well above the 0.5 s ping timeout plus the 1 s close grace
                data = await asyncio.wait_for(reader.read(65536), 10)
                if not data:
                    break
                proto.receive_data(data)
                for event in proto.events_received():
                    if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                        close_code = Close.parse(event.data).code
                if not sent_hello and proto.state is State.OPEN:
                    proto.send_text(orjson.dumps(hello))
                    sent_hello = True
                    writer.write(b"".join(proto.data_to_send()))
                else:
                    proto.data_to_send()  # pongs (and the close echo) are dropped on purpose
            writer.close()
            await writer.wait_closed()
            assert sent_hello and close_code == 1011
            # the one answering pings is still there
            assert isinstance(await stats(alive), Stats)
        await wait_until(
            lambda: pooler.connections.open == 0, "the deaf peer's slot to be released", within=5
        )


async def test_a_peer_that_stops_reading_is_dropped_within_the_ping_timeout_and_grace() -> None:
    # A zero-window peer: it stops reading entirely, so our pings and then our close frame sit
    # in the send buffers; the close handshake can never finish and the connection must be
    # dropped, not closed gracefully (a graceful close waits for a flush that never comes).
    ping_interval, idle_timeout, grace = 0.2, 0.5, 1.0
    async with running_system(
        block_interval=6,
        profile=ops_options,
        ws_ping_interval_ms=round(ping_interval * 1000),
        idle_timeout_ms=round(idle_timeout * 1000),
        messages_per_second=100_000.0,
        messages_burst=100_000,
        outbox_size=100_000,  # the answers wait in the outbox: no 1013 for a slow reader first
        tuning={"slow_client_grace": grace},
    ) as system:
        pooler = system.pooler
        reg = await register_miner(pooler.url)
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # set before connecting, so the window it offers stays a few KB
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", pooler.port))
            proto = ClientProtocol(parse_uri(ws_url(pooler)))
            proto.send_request(proto.connect())
            await loop.sock_sendall(sock, b"".join(proto.data_to_send()))
            while proto.state is not State.OPEN:  # the handshake is read; nothing after it
                data = await asyncio.wait_for(loop.sock_recv(sock, 1), FAILSAFE_S)
                assert data, "closed during the handshake"
                proto.receive_data(data)
            hello = {"type": "hello", "token": reg.token, "worker": "zero", "protocol": 1}
            proto.send_text(orjson.dumps(hello))
            # their answers fill our window, the kernel's send buffer and then the transport's
            for _ in range(STATS_FLOOD):
                proto.send_text(b'{"type":"stats"}')
            await loop.sock_sendall(sock, b"".join(proto.data_to_send()))
            await wait_until(lambda: pooler.connections.open == 1, "the zero-window peer to be admitted")
            await wait_until(
                lambda: pooler.connections.open == 0 and pooler.gate.open == 0,
                "the zero-window peer to be dropped and its slots released",
                # the ping timeout and the close grace (about 1.7 s here), plus slack for a busy
                # machine; before the fix the ASGI path never dropped it (uvicorn's graceful close
                # waited for a flush)
                within=idle_timeout + grace + 4.0,
            )
            # what did reach us: some answers, never the close frame (it sat behind them, unsent)
            received = bytearray()
            with contextlib.suppress(ConnectionError):
                while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), FAILSAFE_S):
                    received += chunk
            proto.receive_data(bytes(received))
            frames = [e for e in proto.events_received() if isinstance(e, Frame)]
            assert not any(f.opcode is Opcode.CLOSE for f in frames)
            assert sum(1 for f in frames if f.opcode is Opcode.TEXT) < STATS_FLOOD
        finally:
            sock.close()


async def test_mostly_invalid_shares_warn_then_close_then_refuse() -> None:
    async with (
        running_system(
            block_interval=6,
            profile=ops_options,
            invalid_share_window=10,
            invalid_share_ratio=0.5,
            invalid_share_cooldown_ms=60_000,
        ) as system,
        aiohttp.ClientSession() as http,
    ):
        pooler = system.pooler
        bad, calm = (
            await register_miner(pooler.url, "bad", http=http),
            await register_miner(pooler.url, "calm", http=http),
        )
        headers = {"Authorization": f"Bearer {bad.token}"}
        async with Miner(ws_url(pooler), calm.token) as other:
            calm_job = await other.next(Job)
            start = 0
            for step in ("warn", "close", "refuse"):
                async with Miner(ws_url(pooler), bad.token) as miner:
                    job = await miner.next(Job)
                    nonce = job.nonce_start + start
                    for _ in range(10):
                        nonce = find_low(_shifted(job, nonce), 1)
                        await miner.send({"type": "share", "job": job.job, "nonce": str(nonce)})
                        nonce += 1
                    start = nonce - job.nonce_start
                    rejected = [await miner.next(Rejected) for _ in range(10)]
                    assert all(r.code == Code.LOW_ZEROS for r in rejected)
                    warning = await miner.next(Error)
                    assert warning.code == Code.RATE_LIMITED and "invalid" in warning.message
                    if step == "warn":
                        assert "warning" in warning.message
                        assert isinstance(await stats(miner), Stats)  # still connected
                    else:
                        with pytest.raises(ConnectionClosed) as closed:
                            await miner.recv()
                        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            # refused for the cool-down, on both surfaces
            async with connect(ws_url(pooler)) as ws:
                await ws.send(orjson.dumps({"type": "hello", "token": bad.token, "protocol": 1}).decode())
                refused = decode_server(await ws.recv())
                assert isinstance(refused, Error) and refused.code == Code.RATE_LIMITED
                assert "refused for" in refused.message
            async with http.get(f"{pooler.url}/miner/work", headers=headers) as resp:
                assert resp.status == 429
            async with http.get(f"{pooler.url}/miner/stats", headers=headers) as resp:
                assert resp.status == 200  # it may still look at its figures
            # the calm miner mined on throughout
            (good, _), *_ = find_shares(calm_job, calm_job.share_zeros, 1)
            await other.send({"type": "share", "job": calm_job.job, "nonce": str(good)})
            assert isinstance(await other.next(Accepted), Accepted)
            assert not any(isinstance(m, Error) for m in other.inbox)
    assert pooler.metrics.limit_hits.labels(limit="invalid-shares")._value.get() >= 3


def _shifted(job: Job, start: int) -> Job:
    return Job(
        job.job,
        job.block,
        job.entropy,
        job.farmer,
        start,
        job.nonce_end,
        job.share_zeros,
        job.clean,
        job.work_at,
        job.block_ends_at,
    )
