"""The dashboard event stream (WebSocket ``/ws/events`` and SSE ``/events``) from the real Pooler.

A 3 s devnet block interval: the Pooler's own late plant opens block 2 a few seconds in, so the
streams carry a real ``block`` event. A miner registers, mines and leaves meanwhile; its token
must never appear in any frame of either stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson

from tests.support.system import (
    MinerSocket,
    Registration,
    System,
    bearer,
    find_nonce,
    register_miner,
    running_system,
    tap_events,
)
from tests.support.wait import FAILSAFE, wait_until

KINDS = {
    "snapshot",
    "block",
    "phase",
    "plant",
    "work",
    "harvest",
    "miner",
    "summary",
    "chain",
    "farmer",
    "gap",
    "alert",
}


async def sse_frames(http: aiohttp.ClientSession, url: str, into: list[str]) -> None:
    """Append the data of every SSE event from ``url`` to ``into`` until cancelled."""
    async with http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for line in resp.content:
            text = line.decode().rstrip("\n")
            if text.startswith("data: "):
                into.append(text[len("data: ") :])


@contextlib.asynccontextmanager
async def sse_tap(url: str) -> AsyncIterator[list[str]]:
    frames: list[str] = []
    async with aiohttp.ClientSession() as http:
        task = asyncio.create_task(sse_frames(http, url, frames))
        try:
            await wait_until(lambda: bool(frames) or task.done(), "the SSE snapshot")
            if task.done():
                task.result()
            yield frames
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def mine_then_leave(
    system: System,
    http: aiohttp.ClientSession,
    reg: Registration,
    until: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """One accepted share, then (once ``until`` is done, with the miner still connected) leave.

    The devnet's chain opens a block only when somebody plants, and a farmer whose miner left
    is not planted (``farmerIds``): a test that needs blocks to turn waits before the leave.
    """
    async with MinerSocket.open(system.ws_url) as ws:
        _, job = await ws.hello(reg.token, "dash")
        nonce, _, _ = find_nonce(job)
        await ws.request({"type": "share", "job": job["job"], "nonce": str(nonce)}, "accepted")
        if until is not None:
            await until()
        async with http.post(f"{system.url}/miner/leave", headers=bearer(reg.token)) as resp:
            assert resp.status == 200
        await ws.closed()


async def test_both_streams_start_with_a_snapshot_then_carry_blocks_and_summaries_without_tokens() -> None:
    async with (
        running_system(block_interval=3) as system,
        tap_events(system.events_url) as tap,
        sse_tap(f"{system.url}/events") as sse,
        aiohttp.ClientSession() as http,
    ):
        first_block = system.block()
        assert first_block is not None
        reg = await register_miner(system.url, "dash", http=http)

        async def new_blocks() -> None:
            await wait_until(
                lambda: tap.has("block", lambda d: d["block"] > first_block),
                "a new block on /ws/events",
                within=FAILSAFE,
            )
            await wait_until(lambda: any('"kind":"block"' in f for f in sse), "a new block on /events")

        await mine_then_leave(system, http, reg, until=new_blocks)
        # a read-only stream: what a client sends there changes nothing
        await tap_send(system, reg.token)

    sse_events = [orjson.loads(f) for f in sse]
    for events, frames in ((tap.events, tap.frames), (sse_events, sse)):
        assert events[0]["kind"] == "snapshot"
        assert {"summary", "recent", "blocks"} <= set(events[0]["data"])
        assert all(e["type"] == "event" and e["kind"] in KINDS and isinstance(e["at"], int) for e in events)
        kinds = {e["kind"] for e in events}
        assert {"block", "summary"} <= kinds
        new = next(e["data"] for e in events if e["kind"] == "block" and e["data"]["block"] > first_block)
        assert set(new) >= {"block", "entropy", "timestamp", "workAt", "blockEndsAt"}
        assert len(new["entropy"]) == 64 and new["timestamp"] < new["workAt"] < new["blockEndsAt"]
        summary = next(e["data"] for e in events if e["kind"] == "summary")
        assert set(summary) >= {
            "block",
            "phase",
            "miners",
            "workers",
            "hashrate",
            "accepted",
            "rejected",
            "bestZeros",
        }
        for frame in frames:
            assert reg.token not in frame
            assert "token" not in frame.lower()
    # the WebSocket subscriber saw the miner come and go
    assert tap.has("miner", lambda d: d["minerId"] == reg.miner_id and d["event"] == "joined")
    assert tap.has("miner", lambda d: d["minerId"] == reg.miner_id and d["event"] == "left")


async def tap_send(system: System, token: str) -> None:
    """Frames sent to /ws/events are ignored: the stream goes on, nothing is registered."""
    async with MinerSocket.open(system.events_url) as ws:
        snapshot = await ws.recv()
        assert snapshot["kind"] == "snapshot"
        await ws.send({"type": "hello", "token": token, "protocol": 1})
        await ws.send("garbage")
        nxt = await ws.recv()
        assert nxt["type"] == "event"  # the stream continues; no error, no welcome
    assert len(system.pooler.registry) == 0  # the only miner left; nothing was added


async def test_a_late_subscriber_gets_recent_events_and_block_results_in_its_snapshot() -> None:
    async with running_system(block_interval=3) as system, aiohttp.ClientSession() as http:
        reg = await register_miner(system.url, "late", http=http)
        await mine_then_leave(system, http, reg)
        async with tap_events(system.events_url) as tap:
            snapshot = tap.events[0]
        assert snapshot["kind"] == "snapshot"
        recent = snapshot["data"]["recent"]
        assert any(e["kind"] == "miner" and e["data"]["event"] == "joined" for e in recent)
        assert all(e["kind"] != "summary" for e in recent)  # summaries are state, not history
        assert snapshot["data"]["summary"]["block"] == system.block()
        assert reg.token not in orjson.dumps(snapshot).decode()
