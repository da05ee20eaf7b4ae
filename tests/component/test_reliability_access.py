"""Access against a live Pooler: tokens, who may act for which farmer, CORS, the read-only stream."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import sqlite3
from pathlib import Path

import aiohttp
from websockets.asyncio.client import connect

from protocol.errors import Code
from protocol.messages import Accepted, Job, Rejected, Stats, Welcome
from tests.component.reliability_support import SECRET_SEED, Miner, find_shares, ws_url
from tests.support.system import ops_options, register_miner, running_system
from tests.support.wait import wait_until


async def test_tokens_are_random_shown_once_and_stored_hashed(tmp_path: Path) -> None:
    db = tmp_path / "pooler.db"
    async with (
        running_system(block_interval=6, profile=ops_options, store="sqlite", pooler_db=str(db)) as system,
        aiohttp.ClientSession() as http,
    ):
        pooler = system.pooler
        regs = [await register_miner(pooler.url, f"rig{i}", http=http) for i in range(3)]
        tokens = [r.token for r in regs]
        assert len(set(tokens)) == 3
        for token in tokens:
            assert len(base64.urlsafe_b64decode(token + "=")) == 32  # 32 random bytes
        # nothing hands a token out again
        async with http.get(
            f"{pooler.url}/miner/stats", headers={"Authorization": f"Bearer {tokens[0]}"}
        ) as resp:
            assert tokens[0] not in await resp.text()
        async with http.get(f"{pooler.url}/health") as resp:
            health = await resp.text()
        assert not any(t in health for t in tokens)
        assert not any(t in repr(pooler.registry.records()) for t in tokens)
    # the database holds the SHA-256 of each token, never the token
    with contextlib.closing(sqlite3.connect(db)) as con:
        cells = [
            cell
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            for row in con.execute(f"SELECT * FROM {table}")
            for cell in row
        ]
    blob = b"".join(c if isinstance(c, bytes) else str(c).encode() for c in cells)
    for token in tokens:
        assert token.encode() not in blob
        assert hashlib.sha256(token.encode()).digest() in blob


async def test_a_token_acts_only_for_its_own_miner_and_farmer() -> None:
    async with (
        running_system(block_interval=6, profile=ops_options) as system,
        aiohttp.ClientSession() as http,
    ):
        pooler = system.pooler
        a, b = (
            await register_miner(pooler.url, "alice", http=http),
            await register_miner(pooler.url, "bob", http=http),
        )
        assert a.farmer_id != b.farmer_id
        async with Miner(ws_url(pooler), a.token) as ma, Miner(ws_url(pooler), b.token) as mb:
            job_b = await mb.next(Job)
            (nonce, digest), *_ = find_shares(job_b, job_b.share_zeros, 1)
            # alice over the WebSocket, naming bob's job and farmer: refused, nothing credited
            forged = {
                "type": "share",
                "job": job_b.job,
                "nonce": str(nonce),
                "hash": digest.hex(),
                "farmerId": b.farmer_id,
                "minerId": b.miner_id,
            }
            await ma.send(forged)
            answer = await ma.next(Rejected)
            assert answer.code == Code.STALE
            # alice over REST: the same
            headers = {"Authorization": f"Bearer {a.token}"}
            async with http.post(f"{pooler.url}/miner/submit", json=forged, headers=headers) as resp:
                assert resp.status == 410 and (await resp.json())["reason"] == "stale"
            # a hello naming bob with alice's token is alice
            async with Miner(ws_url(pooler), a.token, worker=b.miner_id) as again:
                assert again.welcome is not None and again.welcome.farmer_id == a.farmer_id
            # bob's share was not burnt by the attempts: bob is credited with it once
            await mb.send({"type": "share", "job": job_b.job, "nonce": str(nonce)})
            assert isinstance(await mb.next(Accepted), Accepted)
            await mb.send({"type": "stats"})
            stats_b = await mb.next(Stats)
            await ma.send({"type": "stats"})
            stats_a = await ma.next(Stats)
            assert (stats_b.accepted, stats_a.accepted) == (1, 0)
            assert stats_a.farmer_id == a.farmer_id
            # alice leaving revokes alice only
            async with http.post(f"{pooler.url}/miner/leave", headers=headers) as resp:
                assert resp.status == 200
            await mb.send({"type": "stats"})
            assert (await mb.next(Stats)).miner_id == b.miner_id
            async with http.get(f"{pooler.url}/miner/work", headers=headers) as resp:
                assert resp.status == 401


async def test_the_dashboard_stream_carries_no_token_or_key() -> None:
    async with (
        running_system(block_interval=6, profile=ops_options) as system,
        aiohttp.ClientSession() as http,
    ):
        pooler = system.pooler
        frames: list[str] = []
        async with connect(f"ws://127.0.0.1:{pooler.port}/ws/events") as dash:

            async def read() -> None:
                async for frame in dash:
                    frames.append(str(frame))

            reader = asyncio.create_task(read())
            reg = await register_miner(pooler.url, "watched", http=http)
            async with Miner(ws_url(pooler), reg.token) as miner:
                job = await miner.next(Job)
                for nonce, _ in find_shares(job, job.share_zeros, 2):
                    await miner.send({"type": "share", "job": job.job, "nonce": str(nonce)})
                    await miner.next(Accepted)
            await wait_until(
                lambda: any('"disconnected"' in f for f in frames), "the miner's disconnected event", within=5
            )
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        text = "".join(frames)
        assert reg.miner_id in text  # the stream did show this miner
        assert reg.token not in text and not SECRET_SEED.search(text)


async def test_cors_is_closed_by_default_and_opens_only_to_configured_origins() -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    async with (
        running_system(block_interval=6, profile=ops_options) as system,
        aiohttp.ClientSession() as http,
    ):
        pooler = system.pooler
        async with http.options(f"{pooler.url}/miner/register", headers=preflight) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers
        async with http.get(f"{pooler.url}/health", headers={"Origin": "https://evil.example"}) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers
    async with (
        running_system(
            block_interval=6, profile=ops_options, cors_origins=("https://pool.example.com",)
        ) as system,
        aiohttp.ClientSession() as http,
    ):
        pooler = system.pooler
        good = {**preflight, "Origin": "https://pool.example.com"}
        async with http.options(f"{pooler.url}/miner/register", headers=good) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == "https://pool.example.com"
        async with http.options(f"{pooler.url}/miner/register", headers=preflight) as resp:
            assert resp.status == 400 and "Access-Control-Allow-Origin" not in resp.headers
        async with http.get(f"{pooler.url}/health", headers={"Origin": "https://pool.example.com"}) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == "https://pool.example.com"


async def test_welcome_names_the_tokens_own_farmer() -> None:
    async with (
        running_system(block_interval=6, profile=ops_options) as system,
        aiohttp.ClientSession() as http,
    ):
        pooler = system.pooler
        reg = await register_miner(pooler.url, http=http)
        async with Miner(ws_url(pooler), reg.token) as miner:
            assert isinstance(miner.welcome, Welcome)
            assert (miner.welcome.miner_id, miner.welcome.farmer_id) == (reg.miner_id, reg.farmer_id)
            assert miner.welcome.farmer == reg.farmer
