"""A Pooler whose store cannot commit: no share is acknowledged, shares are "pending" (code 30), it
stays up, and it catches up: the pending share counts, as its answer said.

The failure is real: another connection holds SQLite's write lock (as an operator's ``sqlite3``
shell or a slow backup can) past the store's busy timeout.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

from pooler.app.service import Pooler
from pooler.store.sqlite import SqliteStore
from protocol.codec import decode_server, encode
from protocol.errors import Code
from protocol.messages import Accepted, Hello, Job, Rejected, ServerMessage, Share, Welcome
from protocol.work import WorkTemplate, address_bytes
from tests.support.system import bearer, register_miner, running_system


async def _next(ws: ClientConnection, *kinds: type[ServerMessage]) -> ServerMessage:
    while True:
        msg = decode_server(await ws.recv())
        if isinstance(msg, kinds):
            return msg


class Shares:
    """Real shares of one job, one after another."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.template = WorkTemplate(job.block, job.entropy, address_bytes(job.farmer))
        self.nonce = job.nonce_start

    def next(self) -> Share:
        while True:
            nonce, self.nonce = self.nonce, self.nonce + 1
            if self.template.verify(nonce)[1] >= self.job.share_zeros:
                return Share(self.job.job, nonce)


def _fail_fast(pooler: Pooler) -> None:
    assert isinstance(pooler.store, SqliteStore)
    pooler.store.busy_timeout = 0.1  # fail fast while the lock is held (read when the store opens)


async def test_failed_commits_refuse_the_ack_keep_running_and_catch_up(tmp_path: Path) -> None:
    db = tmp_path / "pooler.db"
    # share zeros pinned at 1 (no vardiff): no difficulty changes, every share below is a plain ack
    async with running_system(store="sqlite", pooler_db=str(db), prepare=_fail_fast) as system:
        pooler = system.pooler
        assert pooler.store is not None
        reg = await register_miner(pooler.url, "locked-out")
        ws_url = pooler.url.replace("http://", "ws://") + "/ws/miner"
        async with connect(ws_url) as ws, aiohttp.ClientSession() as http:
            await ws.send(encode(Hello(reg.token, "w1")).decode())
            assert isinstance(await _next(ws, Welcome), Welcome)
            job = await _next(ws, Job)
            assert isinstance(job, Job)
            shares = Shares(job)
            for _ in range(2):
                await ws.send(encode(shares.next()).decode())
                assert isinstance(await _next(ws, Accepted, Rejected), Accepted)

            blocker = sqlite3.connect(db, isolation_level=None)
            try:
                blocker.execute("BEGIN IMMEDIATE")
                refused = shares.next()
                await ws.send(encode(refused).decode())
                answer = await _next(ws, Accepted, Rejected)
                assert isinstance(answer, Rejected), answer
                assert (answer.job, answer.nonce, answer.code) == (
                    refused.job,
                    refused.nonce,
                    Code.UNAVAILABLE,
                )
                assert answer.message.startswith("pending:") and "storage" in answer.message
                async with http.get(f"{pooler.url}/health") as resp:
                    assert (await resp.json())["checks"]["store"] == "failing"
                assert pooler.runner.refused_acks == 1 and pooler.runner.unsaved > 0
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()

            # the Pooler is still serving; the next commit carries the refused share's records too
            await ws.send(encode(shares.next()).decode())
            assert isinstance(await _next(ws, Accepted, Rejected), Accepted)
            async with http.get(f"{pooler.url}/health") as resp:
                assert (await resp.json())["checks"]["store"] == "ok"
            assert pooler.runner.unsaved == 0
            # pending, as code 30 says: the share counts, so resending it is a duplicate
            await ws.send(encode(refused).decode())
            again = await _next(ws, Accepted, Rejected)
            assert isinstance(again, Rejected) and again.code is Code.DUPLICATE, again
            async with http.get(f"{pooler.url}/miner/stats", headers=bearer(reg.token)) as resp:
                assert (await resp.json())["accepted"] == 4
        assert await pooler.store.integrity_check() == "ok"
    with sqlite3.connect(db) as check:
        [(accepted,)] = check.execute(
            "SELECT accepted FROM shares WHERE miner_id = ? AND worker = 'w1'", (reg.miner_id,)
        ).fetchall()
    assert accepted == 4  # durable now, though its ack was refused: the store never holds less than acked
