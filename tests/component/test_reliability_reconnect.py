"""1,000 miner sockets dropping at once and coming back at once, from one asyncio client.

Bounded: 1,000 loopback sockets (50 miners x 20 workers). The server is ``pooler serve`` in
its own process (devnet in-process, uvloop), so the client and the server each have a core.
The test asserts that the server holds and every reconnect is accepted with its token and
given the current job; the time each took is measured and printed (``-s``), not asserted
(docs/reliability.md has the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect

from protocol.codec import decode_server
from protocol.messages import Job, Welcome
from tests.support.processes import start_pooler
from tests.support.system import register_miner
from tests.support.wait import wait_until

MINERS = 50
WORKERS = 20  # per miner: 1,000 sockets


@dataclass
class Outcome:
    ws: ClientConnection | None
    seconds: float  # from sending hello (socket open) to holding the current job
    total: float = 0.0  # from the start of the wave to holding the current job
    error: str = ""


async def join(url: str, token: str, worker: str, block: int, wave: float) -> Outcome:
    try:
        # proxy=None: no proxy lookup (it scans the environment, per connection)
        ws = await connect(url, open_timeout=30, ping_interval=None, close_timeout=1, proxy=None)
    except Exception as exc:
        return Outcome(None, 0.0, error=f"connect: {exc!r}")
    started = time.perf_counter()
    try:
        await ws.send(
            orjson.dumps({"type": "hello", "token": token, "worker": worker, "protocol": 1}).decode()
        )
        welcome = decode_server(await asyncio.wait_for(ws.recv(), 30))
        if not isinstance(welcome, Welcome):
            return Outcome(ws, 0.0, error=f"no welcome: {welcome!r}")
        job = decode_server(await asyncio.wait_for(ws.recv(), 30))
        if not isinstance(job, Job) or job.block != block or not job.clean:
            return Outcome(ws, 0.0, error=f"not the current job: {job!r}")
    except Exception as exc:
        return Outcome(ws, 0.0, error=f"hello: {exc!r}")
    done = time.perf_counter()
    return Outcome(ws, done - started, done - wave)


def report(label: str, outcomes: list[Outcome]) -> tuple[int, float]:
    ok = sorted(o.seconds for o in outcomes if not o.error)
    failed = len(outcomes) - len(ok)
    within = sum(1 for s in ok if s <= 1.0)
    p50 = ok[len(ok) // 2] if ok else float("nan")
    p99 = ok[int(len(ok) * 0.99) - 1] if ok else float("nan")
    wave = max((o.total for o in outcomes if not o.error), default=float("nan"))
    print(
        f"{label}: {len(outcomes)} sockets, {failed} failed ({failed / len(outcomes):.2%}); "
        f"hello->current job: within 1 s {within / len(outcomes):.1%}, p50 {p50 * 1e3:.0f} ms, "
        f"p99 {p99 * 1e3:.0f} ms, max {ok[-1] * 1e3 if ok else float('nan'):.0f} ms; "
        f"whole wave (all sockets holding the job) {wave:.2f} s"
    )
    return failed, within / len(outcomes)


@contextlib.asynccontextmanager
async def pooler_serve(tmp: Path) -> AsyncIterator[str]:
    """``pooler serve`` in its own process (uvloop, as deployed), on an in-process devnet; it must
    stop cleanly on SIGTERM."""
    settings = {
        "STELLAR_NETWORK": "devnet",
        "BLOCK_INTERVAL_SECONDS": "120",
        "PORT": "0",
        "STORE": "memory",
        "LOG_LEVEL": "WARNING",
        "MAX_CONNECTIONS_PER_IP": str(2 * MINERS * WORKERS),
        "MAX_PENDING_CONNECTIONS": str(2 * MINERS * WORKERS),  # the whole wave says hello at once
        "REGISTRATIONS_PER_IP_PER_HOUR": "0",
        "WORK_SAFETY_MARGIN_MS": "5000",
    }
    pooler = await start_pooler(tmp, settings, within=30)
    try:
        yield pooler.url
    finally:
        code, _took = await pooler.stop(signal.SIGTERM, within=15)  # never left behind: killed if slower
    assert code == 0


async def health(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/health") as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def test_a_thousand_miners_drop_and_reconnect_at_once(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = MINERS * WORKERS + 512  # the server's process inherits it too
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    try:
        async with pooler_serve(tmp_path) as url, aiohttp.ClientSession() as http:
            await _run(http, url)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _run(http: aiohttp.ClientSession, url: str) -> None:
    tokens = [(await register_miner(url, f"m{i}", http=http)).token for i in range(MINERS)]
    block = (await health(http, url))["block"]
    assert block is not None
    ws = url.replace("http://", "ws://") + "/ws/miner"
    slots = [(token, f"w{j}") for token in tokens for j in range(WORKERS)]

    wave = time.perf_counter()
    first = await asyncio.gather(*(join(ws, t, w, block, wave) for t, w in slots))
    failed, _ = report("connect", first)
    assert failed == 0, [o.error for o in first if o.error][:5]
    assert (await health(http, url))["workers"] == len(slots)

    # all drop at once, without a close handshake (a network blip)
    for o in first:
        assert o.ws is not None
        o.ws.transport.abort()

    async def none_left() -> bool:
        return bool((await health(http, url))["workers"] == 0)

    await wait_until(none_left, "the server to see every socket gone")
    assert (await health(http, url))["workers"] == 0

    # all come back at once, with their tokens
    wave = time.perf_counter()
    again = await asyncio.gather(*(join(ws, t, w, block, wave) for t, w in slots))
    failed, _ = report("reconnect", again)
    assert failed == 0, [o.error for o in again if o.error][:5]
    state = await health(http, url)
    assert state["workers"] == len(slots) and state["minersOnline"] == MINERS

    # and leave at once, politely
    await asyncio.gather(*(o.ws.close() for o in again if o.ws is not None))
