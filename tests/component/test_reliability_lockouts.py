"""Lock-outs (issue #18, items 5-9), tried against a live Pooler the way an attacker would.

Real uvicorn on 127.0.0.1 and real clients; "other addresses" are the loopback addresses
127.0.0.2 and up (a client binds to one before it connects), so per-address limits see them as
different clients. Counts are bounded (hundreds of connections, not thousands) and every wait
is on a condition. Each test first builds the situation that locked miners out before the fix
(slow or silent sockets held, non-reading dashboards, sybil registrations, token guessing),
then checks that a real miner is still served and that the attackers' connections end.
docs/reliability.md ("Lock-outs") has the figures these tests print.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from pooler.app.service import Pooler
from protocol.codec import decode_server
from protocol.errors import Code
from protocol.messages import Error, Job, Welcome
from tests.component.reliability_support import Miner, ws_url
from tests.support.processes import start_pooler
from tests.support.system import bearer, ops_options, register_miner, running_system
from tests.support.wait import FAILSAFE, wait_until


def other(i: int) -> str:
    """The i-th other client address (127.0.0.2, 127.0.0.3, ...)."""
    return f"127.0.0.{2 + i}"


def hits(pooler: Pooler, limit: str) -> int:
    return int(pooler.metrics.limit_hits.labels(limit=limit)._value.get())


@contextlib.asynccontextmanager
async def session_from(address: str, limit: int = 100) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client whose connections come from ``address``."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=limit)
    async with aiohttp.ClientSession(connector=connector) as http:
        yield http


class SlowClient:
    """A raw TCP client from ``address`` that sends a request ``head`` and then a byte at a time,
    ``pace`` seconds apart, never finishing (slowloris); it records what the server answered and
    whether the server ended the connection."""

    def __init__(self, address: str, port: int, head: bytes, pace: float) -> None:
        self.address = address
        self.port = port
        self.head = head
        self.pace = pace
        self.answer = b""  # what the server sent back
        self.ended = False  # the server closed (or reset) the connection
        self.connected = False

    async def run(self) -> None:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", self.port, local_addr=(self.address, 0)
            )
        except OSError:
            self.ended = True
            return
        self.connected = True

        async def drip() -> None:
            writer.write(self.head)
            while True:
                await asyncio.sleep(self.pace)  # paces the slow client (a byte every `pace` s), not a wait
                writer.write(b"x")

        dripping = asyncio.create_task(drip())
        try:
            while chunk := await reader.read(4096):
                self.answer += chunk
        except OSError:
            pass  # reset: the server dropped it
        finally:
            self.ended = True
            dripping.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await dripping
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


# On the default path only: a slow client never finishes its request, so it never reaches the
# /ws/miner hand-off where the two paths differ (uvicorn's httptools reads it either way); the miner
# that must still get in is served by both paths in the tests around this one.
async def test_slowloris_connections_are_bounded_timed_out_and_never_keep_a_miner_out() -> None:
    # 300 slow clients from 6 addresses (50 each, the per-address bound), against 200 pending
    # connections in all: before the fix every one of them stayed open for good.
    async with (
        running_system(
            block_interval=6,
            profile=ops_options,
            http_read_timeout_ms=15_000,
            max_pending_connections=200,
            max_connections_per_ip=50,
        ) as system,
        aiohttp.ClientSession() as http,
    ):
        pooler = system.pooler
        reg = await register_miner(pooler.url, "honest", http=http)
        slow_headers = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "
        slow_body = b"POST /miner/register HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"
        clients = [
            SlowClient(other(i % 6), pooler.port, slow_body if i % 10 == 0 else slow_headers, 0.5)
            for i in range(300)
        ]
        tasks = [asyncio.create_task(c.run()) for c in clients]
        try:
            await wait_until(
                lambda: all(c.connected or c.ended for c in clients), "the slow clients to connect"
            )
            await wait_until(lambda: pooler.gate.pending >= 150, lambda: f"held: {pooler.gate.pending}")
            held = pooler.gate.pending
            assert held <= 200  # the bound on connections that have not authenticated
            # while they are held: a miner connects and mines, /health and registration answer
            async with Miner(ws_url(pooler), reg.token) as miner:
                assert isinstance(await miner.next(Job, within=FAILSAFE), Job)
                async with http.get(f"{pooler.url}/health") as resp:
                    assert resp.status == 200
                new = await register_miner(pooler.url, "newcomer", http=http)
                assert new.token
                assert pooler.gate.pending <= 200
            # every slow client ends: dropped for a newcomer, or timed out (408)
            await wait_until(lambda: all(c.ended for c in clients), "every slow client to be closed")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        timed_out = sum(1 for c in clients if c.answer.startswith(b"HTTP/1.1 408"))
        refused = sum(1 for c in clients if c.answer.startswith(b"HTTP/1.1 503"))
        print(
            f"slowloris: 300 slow clients, {held} held at once (bound 200), {timed_out} answered 408,"
            f" {refused} answered 503, {hits(pooler, 'pending-dropped')} dropped for newcomers,"
            f" read timeouts {hits(pooler, 'read-timeout')}"
        )
        assert timed_out > 0 and hits(pooler, "read-timeout") >= timed_out
        await wait_until(lambda: pooler.gate.pending == 0, "no connection left pending")


@pytest.mark.usefixtures("miner_socket")  # on both /ws/miner paths
async def test_sockets_that_never_say_hello_do_not_count_against_the_miners_cap() -> None:
    # 60 sockets from 5 addresses that never say hello, against MAX_CONCURRENT_MINERS=20: before
    # the fix they took every slot and a registered miner got error 28 "too many connections in total".
    async with running_system(
        block_interval=6,
        profile=ops_options,
        max_concurrent_miners=20,
        max_pending_connections=100,
        hello_timeout_ms=6_000,  # room for 60 connects and one miner's job; the wait is the test's cost
    ) as system:
        pooler = system.pooler
        reg = await register_miner(pooler.url, "honest")
        silent: list[ClientConnection] = []
        try:
            for i in range(60):
                silent.append(await connect(ws_url(pooler), local_addr=(other(i % 5), 0)))
            assert pooler.gate.pending >= 60 and pooler.connections.open == 0
            async with Miner(ws_url(pooler), reg.token) as miner:
                assert miner.welcome is not None
                assert isinstance(await miner.next(Job, within=FAILSAFE), Job)
                assert pooler.connections.open == 1  # the miner's socket, and only it
            # the silent ones are closed by the hello timeout: error 25, then 1008
            codes = []
            for ws in silent:
                answer = decode_server(await asyncio.wait_for(ws.recv(), FAILSAFE))
                assert isinstance(answer, Error) and answer.code == Code.NO_HELLO
                try:
                    await asyncio.wait_for(ws.recv(), FAILSAFE)
                except ConnectionClosed as closed:
                    codes.append(closed.rcvd.code if closed.rcvd is not None else None)
            assert codes == [1008] * 60
        finally:
            for ws in silent:
                await ws.close()
        assert hits(pooler, "hello-timeout") == 60
        await wait_until(lambda: pooler.gate.pending == 0, "no connection left pending")


_UPGRADE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


def _non_reader(port: int, path: str) -> socket.socket:
    """A TCP client that opens the stream at ``path`` (SSE, or a WebSocket at /ws/...) and never
    reads (its receive buffer kept small)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.bind((other(0), 0))
    sock.connect(("127.0.0.1", port))
    extra = _UPGRADE if path.startswith("/ws/") else "Accept: text/event-stream\r\n"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    return sock


async def test_event_stream_subscribers_that_never_read_are_dropped_over_their_backlog() -> None:
    # 20 /events and 10 /ws/events subscribers that never read: before the fix the SSE ones stayed
    # subscribed for good, hundreds of KiB queued each (the WebSocket stream's were closed only by
    # the ping timeout).
    async with (
        running_system(
            block_interval=6, profile=ops_options, event_stream_backlog=20, summary_interval_ms=100
        ) as system,
        aiohttp.ClientSession() as http,
    ):
        pooler = system.pooler
        hub = pooler.hub
        before = hub.subscribers
        readers = [_non_reader(pooler.port, "/events" if i < 20 else "/ws/events") for i in range(30)]
        try:
            await wait_until(lambda: hub.subscribers >= before + 30, "the 30 subscribers")
            # a reading dashboard beside them keeps its stream
            async with http.get(f"{pooler.url}/events") as stream:
                reg = await register_miner(pooler.url, "churn", http=http)

                async def churn() -> None:  # miner events (connected, disconnected) to fill the backlogs
                    while True:
                        async with Miner(ws_url(pooler), reg.token):
                            pass

                churning = asyncio.create_task(churn())
                try:
                    await wait_until(
                        lambda: hits(pooler, "event-stream-backlog") >= 30,
                        lambda: f"dropped {hits(pooler, 'event-stream-backlog')} of 30",
                        within=120,
                    )
                finally:
                    churning.cancel()
                    await asyncio.gather(churning, return_exceptions=True)
                line = await asyncio.wait_for(stream.content.readline(), FAILSAFE)
                assert line.startswith(b"data: ")  # the reader is still served
            await wait_until(lambda: hub.subscribers <= before, "the non-readers to be unsubscribed")
        finally:
            for sock in readers:
                sock.close()
        print(
            "event streams: 20 /events and 10 /ws/events subscribers that never read, all dropped over"
            f" a backlog of 20 events; {hits(pooler, 'event-stream-backlog')} drops counted"
        )


async def test_registrations_are_limited_per_address_and_in_total() -> None:
    # before the fix: 10,000 registrations from one address, all 201
    async with running_system(
        block_interval=6, profile=ops_options, registrations_per_ip_per_hour=5, registrations_per_hour=8
    ) as system:
        pooler = system.pooler
        url = f"{pooler.url}/miner/register"
        async with session_from(other(0)) as sybil:
            statuses = []
            for i in range(50):
                async with sybil.post(url, json={"name": f"sybil{i}"}) as resp:
                    statuses.append(resp.status)
                    if resp.status == 429:
                        body = await resp.json()
                        assert body["error"] == "rate-limited" and body["code"] == int(Code.RATE_LIMITED)
                        assert body["limit"] == "registrations-per-ip"
                        assert (
                            body["retryAfter"] >= 1 and int(resp.headers["Retry-After"]) == body["retryAfter"]
                        )
            assert statuses == [201] * 5 + [429] * 45
        honest = await register_miner(pooler.url, "honest")  # another address: its own allowance
        async with session_from(other(1)) as second:
            answers = []
            for i in range(4):
                async with second.post(url, json={"name": f"b{i}"}) as resp:
                    answers.append((resp.status, (await resp.json()).get("limit")))
        # the total of 8 is reached: the answer names the limit in a field (not only in its message)
        assert answers == [
            (201, None),
            (201, None),
            (429, "registrations-total"),
            (429, "registrations-total"),
        ]
        async with session_from(other(2)) as third, third.post(url, json={"name": "c"}) as resp:
            assert resp.status == 429
        assert (hits(pooler, "registrations-per-ip"), hits(pooler, "registrations-total")) == (45, 3)
        async with Miner(ws_url(pooler), honest.token) as miner:  # the honest miner is served
            assert miner.welcome is not None


@pytest.mark.usefixtures("miner_socket")  # on both /ws/miner paths
async def test_wrong_tokens_back_the_address_off_over_rest_and_websocket() -> None:
    # before the fix: 10,000 wrong tokens over REST in 1.2 s, all answered
    async with running_system(
        block_interval=6, profile=ops_options, auth_failures_allowed=5, auth_backoff_ms=60_000
    ) as system:
        pooler = system.pooler
        reg = await register_miner(pooler.url, "honest")
        stats = f"{pooler.url}/miner/stats"
        async with session_from(other(0)) as guesser:
            statuses = []
            for i in range(200):
                async with guesser.get(stats, headers=bearer(f"guess-{i}")) as resp:
                    statuses.append(resp.status)
                    if resp.status == 429:
                        assert int(resp.headers["Retry-After"]) >= 1
            assert statuses == [401] * 5 + [429] * 195
            # backed off: even a good token from that address waits (the token is not looked at)
            async with guesser.get(stats, headers=bearer(reg.token)) as resp:
                assert resp.status == 429
        async with aiohttp.ClientSession() as http, http.get(stats, headers=bearer(reg.token)) as resp:
            assert resp.status == 200  # another address is not affected
        # the WebSocket hello: 5 wrong tokens answered 26 + 1008, then 21 + 1013 without a check
        seen = []
        for i in range(10):
            async with connect(ws_url(pooler), local_addr=(other(1), 0)) as ws:
                await ws.send(orjson.dumps({"type": "hello", "token": f"guess-{i}", "protocol": 1}).decode())
                answer = decode_server(await asyncio.wait_for(ws.recv(), FAILSAFE))
                assert isinstance(answer, Error)
                try:
                    await asyncio.wait_for(ws.recv(), FAILSAFE)
                except ConnectionClosed as closed:
                    seen.append((int(answer.code), closed.rcvd.code if closed.rcvd is not None else None))
        unauthorized, limited = (int(Code.UNAUTHORIZED), 1008), (int(Code.RATE_LIMITED), 1013)
        assert seen == [unauthorized] * 5 + [limited] * 5
        async with Miner(ws_url(pooler), reg.token) as miner:  # from 127.0.0.1: welcomed
            assert miner.welcome is not None
        assert hits(pooler, "auth-backoff") == 195 + 1 + 5


async def _hello_answer(pooler: Pooler, token: str, *, forwarded_for: str, local: str = "127.0.0.1") -> Any:
    """A socket from ``local`` whose upgrade says ``X-Forwarded-For: forwarded_for`` sends ``hello``
    with ``token``: the first answer, and the close code if the Pooler then closed it (else None)."""
    headers = {"X-Forwarded-For": forwarded_for}
    async with connect(ws_url(pooler), local_addr=(local, 0), additional_headers=headers) as ws:
        await ws.send(orjson.dumps({"type": "hello", "token": token, "protocol": 1}).decode())
        answer = decode_server(await asyncio.wait_for(ws.recv(), FAILSAFE))
        if not isinstance(answer, Error):
            return answer, None
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), FAILSAFE)
        return int(answer.code), ws.close_code


@pytest.mark.usefixtures("miner_socket")  # on both /ws/miner paths
async def test_behind_a_trusted_proxy_both_paths_count_the_forwarded_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # uvicorn trusts X-Forwarded-For from FORWARDED_ALLOW_IPS (default 127.0.0.1,::1). Before the
    # fix the picows hand-off counted the proxy (127.0.0.1) instead: the address REST backs off
    # was not the one the socket was backed off as, and every client behind the proxy shared one.
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    async with running_system(
        block_interval=6, profile=ops_options, auth_failures_allowed=2, auth_backoff_ms=60_000
    ) as system:
        pooler = system.pooler
        reg = await register_miner(pooler.url, "behind-proxy")
        guesser, neighbour = "203.0.113.7", "203.0.113.8"
        wrong = [await _hello_answer(pooler, f"guess-{i}", forwarded_for=guesser) for i in range(3)]
        unauthorized, limited = (int(Code.UNAUTHORIZED), 1008), (int(Code.RATE_LIMITED), 1013)
        assert wrong == [unauthorized, unauthorized, limited]
        # REST (always the ASGI app) sees the same forwarded address backed off, the proxy itself not
        stats = f"{pooler.url}/miner/stats"
        async with aiohttp.ClientSession() as http:
            async with http.get(stats, headers={**bearer(reg.token), "X-Forwarded-For": guesser}) as resp:
                assert resp.status == 429
            async with http.get(stats, headers=bearer(reg.token)) as resp:
                assert resp.status == 200
        # another client behind the same proxy is served
        welcome, closed = await _hello_answer(pooler, reg.token, forwarded_for=neighbour)
        assert isinstance(welcome, Welcome) and closed is None
        # from an untrusted peer the header is not believed: it is counted as itself, and served
        welcome, closed = await _hello_answer(pooler, reg.token, forwarded_for=guesser, local=other(0))
        assert isinstance(welcome, Welcome) and closed is None
        assert hits(pooler, "auth-backoff") == 2


async def test_a_keep_alive_rest_connection_settles_at_its_first_good_token() -> None:
    async with running_system(block_interval=6, profile=ops_options) as system:
        pooler = system.pooler
        reg = await register_miner(pooler.url, "rest")
        async with session_from(other(0), limit=1) as http:  # one connection, kept alive
            async with http.get(f"{pooler.url}/health") as resp:
                assert resp.status == 200
            await wait_until(lambda: pooler.gate.pending == 1, "only this connection, anonymous so far")
            for _ in range(3):
                async with http.get(f"{pooler.url}/miner/stats", headers=bearer(reg.token)) as resp:
                    assert resp.status == 200
                    await resp.read()
            assert pooler.gate.open >= 1 and pooler.gate.pending == 0  # open, and settled
        await wait_until(lambda: pooler.gate.open == 0, "the connection to be closed")


# On the default path only, like the slowloris test: the 700 connections that use up the budget are
# slow HTTP requests that never reach the /ws/miner hand-off, and the one miner that must still get in
# is served by both paths in the tests around this one (the picows variant cost 33 s of CI for it).
async def test_at_the_open_files_limit_the_pooler_keeps_descriptors_for_its_own_work(
    tmp_path: Path,
) -> None:
    # A `pooler serve` whose open-files limit is 600, soft and hard (a systemd unit's is 1,024 soft),
    # against 700 slow connections: before the fix the connections took every descriptor, new miners
    # and /health were refused and the local search died with EMFILE, losing the farmers' block.
    settings = {
        "STELLAR_NETWORK": "devnet",
        "BLOCK_INTERVAL_SECONDS": "8",
        "WORK_SAFETY_MARGIN_MS": "2000",
        "PORT": "0",
        "STORE": "sqlite",
        "POOLER_DB": str(tmp_path / "pooler.db"),
        "LOG_LEVEL": "WARNING",
        "FD_RESERVE": "150",
        "MAX_PENDING_CONNECTIONS": "100000",  # only the descriptor budget binds
        "MAX_CONNECTIONS_PER_IP": "100000",
        "HTTP_READ_TIMEOUT_MS": "120000",
    }
    pooler = await start_pooler(tmp_path, settings, within=30, open_files=600)
    port = int(pooler.url.rsplit(":", 1)[1])
    frames: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as http:
            reg = await register_miner(
                pooler.url, "planted", http=http
            )  # mines nothing: the local search does
            async with http.get(f"{pooler.url}/events") as stream:

                async def tail() -> None:
                    async for line in stream.content:
                        if line.startswith(b"data: "):
                            frames.append(orjson.loads(line[6:]))

                tailing = asyncio.create_task(tail())
                head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "
                clients = [SlowClient(other(i % 10), port, head, 1.0) for i in range(700)]
                tasks = [asyncio.create_task(c.run()) for c in clients]
                try:
                    await wait_until(lambda: all(c.connected or c.ended for c in clients), "the clients")
                    dropped = sum(1 for c in clients if c.ended)
                    # at the limit: /health, a new miner and the block cycle all still work
                    async with http.get(f"{pooler.url}/health") as resp:
                        assert resp.status == 200
                    async with Miner(pooler.ws_url, reg.token) as miner:
                        assert isinstance(await miner.next(Job, within=FAILSAFE), Job)
                    seen = len(frames)

                    def worked() -> bool:
                        return any(
                            f["kind"] == "work"
                            and f["data"]["ok"]
                            and any(s["farmerId"] == reg.farmer_id for s in f["data"]["submissions"])
                            for f in frames[seen:]
                        )

                    await wait_until(
                        worked, "a block worked for the planted farmer during the flood", within=60
                    )
                    held = sum(1 for c in clients if not c.ended)
                finally:
                    tailing.cancel()
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(tailing, *tasks, return_exceptions=True)
        assert pooler.running
        errors = pooler.err.read_text() + pooler.out.read_text()
        assert "Too many open files" not in errors and "EMFILE" not in errors, errors[-2000:]
        print(
            f"descriptors: limit 600, FD_RESERVE 150; 700 slow connections: {held} held at the end,"
            f" {dropped} dropped or refused while connecting; /health, a new miner and the local"
            " search's block worked; no EMFILE"
        )
    finally:
        await pooler.stop(signal.SIGTERM, within=15)


async def test_wrong_admin_tokens_back_the_address_off_too() -> None:
    admin = "the-operators-own-admin-token"
    async with running_system(
        block_interval=6,
        profile=ops_options,
        admin_token=admin,
        auth_failures_allowed=3,
        auth_backoff_ms=60_000,
        registrations_per_ip_per_hour=5,
    ) as system:
        url = f"{system.pooler.url}/miner/register"
        async with session_from(other(0)) as guesser:
            statuses = []
            for i in range(6):
                async with guesser.post(
                    url, json={"name": "x"}, headers=bearer(f"guess-{i}-{admin}")
                ) as resp:
                    statuses.append(resp.status)
            assert statuses == [403] * 3 + [429] * 3
            async with guesser.post(url, json={"name": "x"}, headers=bearer(admin)) as resp:
                assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1  # not even compared
        async with aiohttp.ClientSession() as http:  # the operator, from its own address
            for i in range(
                30
            ):  # more than the 5 an hour an address may register: the operator is not limited
                async with http.post(url, json={"name": f"rig{i}"}, headers=bearer(admin)) as resp:
                    assert resp.status == 201
