"""Clients and readers for the crash and restart tests (their processes: tests/support/processes.py).

- :data:`FAST_SETTINGS`: a ``pooler serve``'s settings for short blocks and cheap shares;
- :class:`StreamMiner`: a protocol v1 WebSocket worker that mines real nonces and records
  every ``accepted`` it got, keyed as the store keys them;
- :func:`read_store`: what the database file holds, read with plain sqlite3 (the Pooler is dead
  or still running: WAL readers never block the writer).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol.codec import decode_server, encode
from protocol.messages import Accepted, Difficulty, Hello, Job, More, Rejected, Share, Welcome
from protocol.work import WorkTemplate, address_bytes
from tests.support.system import Registration

# Settings for short blocks and cheap shares; a test adds POOLER_DB and the chain's variables.
FAST_SETTINGS: dict[str, str] = {
    "PORT": "0",
    "HOST": "127.0.0.1",
    "LOG_LEVEL": "WARNING",
    "BLOCK_POLL_INTERVAL_MS": "200",
    "SHARE_ZEROS_INITIAL": "1",
    "SHARE_ZEROS_MIN": "1",
    "SHARE_ZEROS_MAX": "4",
    "VARDIFF_TARGET_SECONDS": "0.5",
    "SUMMARY_INTERVAL_MS": "1000",
    "MESSAGES_PER_SECOND": "20000",
    "MESSAGES_BURST": "40000",
    "LATE_PLANT_GRACE_MS": "500",
    "BACKEND_TIMEOUT_MS": "3000",
}


# ---------------------------------------------------------------- miners


@dataclass
class Acks:
    """What the clients were told, keyed as the store keys it."""

    # (block, miner id, worker) -> shares acknowledged as accepted
    accepted: collections.Counter[tuple[int, str, str]] = field(default_factory=collections.Counter)
    # (block, farmer id) -> the most zeros of any accepted share (the farmer's best is at least that)
    best: dict[tuple[int, str], int] = field(default_factory=dict)
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)  # reason -> count
    welcomes: int = 0
    close_codes: list[int | None] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)  # every job received, in order


class StreamMiner:
    """One worker: hashes its job's range, streams every share, counts the acks it receives."""

    def __init__(self, url: str, reg: Registration, worker: str, acks: Acks, *, in_flight: int = 32) -> None:
        self.url = url
        self.reg = reg
        self.worker = worker
        self.acks = acks
        self._limit = in_flight  # shares sent and not answered yet, at most
        self._pending: dict[tuple[str, int], tuple[int, int]] = {}  # (job, nonce) -> (block, zeros)
        self._blocks: dict[str, int] = {}  # job id -> block
        self._job: Job | None = None  # the range being hashed
        self._next = 0  # next nonce of that range
        self._zeros = 1  # current share target
        self._changed = asyncio.Event()  # a new job or an answer arrived

    async def run(self, stop: asyncio.Event) -> None:
        """Mine until ``stop`` is set or the server goes away (both end it quietly)."""
        try:
            async with connect(self.url, open_timeout=10, close_timeout=1) as ws:
                reader = asyncio.create_task(self._read(ws))
                try:
                    await ws.send(encode(Hello(self.reg.token, self.worker)).decode())
                    await self._mine(ws, stop, reader)
                except ConnectionClosed:
                    pass
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                        await reader
                self.acks.close_codes.append(ws.close_code)  # None: we stopped first
        except (ConnectionClosed, OSError, TimeoutError):
            self.acks.close_codes.append(None)

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            msg = decode_server(raw)
            match msg:
                case Welcome():
                    self.acks.welcomes += 1
                case Job():
                    self.acks.jobs.append(msg)
                    self._blocks[msg.job] = msg.block
                    if msg.clean or self._job is None:
                        self._job, self._next = msg, msg.nonce_start
                    self._zeros = msg.share_zeros
                case Difficulty(zeros):
                    self._zeros = zeros
                case Accepted(job, nonce, zeros, _):
                    block, _sent = self._pending.pop((job, nonce), (self._blocks.get(job, -1), zeros))
                    self.acks.accepted[(block, self.reg.miner_id, self.worker)] += 1
                    key = (block, self.reg.farmer_id)
                    self.acks.best[key] = max(self.acks.best.get(key, 0), zeros)
                case Rejected(job, nonce, code):
                    self._pending.pop((job or "", nonce or 0), None)
                    self.acks.rejected[code.reason] += 1
            self._changed.set()

    async def _mine(self, ws: ClientConnection, stop: asyncio.Event, reader: asyncio.Task[None]) -> None:
        template: WorkTemplate | None = None
        for_job: Job | None = None
        while not stop.is_set() and not reader.done():
            job = self._job
            if job is None or len(self._pending) >= self._limit:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.05)
                continue
            if job is not for_job:
                template = WorkTemplate(job.block, job.entropy, address_bytes(job.farmer))
                for_job = job
            assert template is not None
            start = self._next
            end = min(start + 64, job.nonce_end)
            for nonce in range(start, end):
                _digest, zeros = template.verify(nonce)
                if zeros >= self._zeros:
                    self._pending[(job.job, nonce)] = (job.block, zeros)
                    await ws.send(encode(Share(job.job, nonce)).decode())
            self._next = end
            if end >= job.nonce_end:
                self._job = None
                await ws.send(encode(More(job.job)).decode())
            await asyncio.sleep(0)  # a turn of the loop between batches (the reader's answers)


# ---------------------------------------------------------------- the database file


@dataclass
class StoreView:
    integrity: str
    accepted: dict[tuple[int, str, str], int]  # (block, miner id, worker) -> accepted
    best: dict[tuple[int, str], int]  # (block, farmer id) -> zeros
    statuses: list[tuple[int, str, str]]  # (block, farmer id, status), oldest first
    calls: list[tuple[str, int, int]]  # (op, block, ok), oldest first
    nonces: dict[tuple[int, str], int]  # (block, farmer id) -> next


def read_store(path: Path) -> StoreView:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        accepted = {
            (b, m, w): n for b, m, w, n in db.execute("SELECT block, miner_id, worker, accepted FROM shares")
        }
        best = {(b, f): z for b, f, z in db.execute("SELECT block, farmer_id, zeros FROM bests")}
        statuses = list(db.execute("SELECT block, farmer_id, status FROM farmer_status ORDER BY id"))
        calls = list(db.execute("SELECT op, block, ok FROM calls ORDER BY id"))
        nonces = {(b, f): int(n) for b, f, n in db.execute("SELECT block, farmer_id, next FROM nonces")}
    finally:
        db.close()
    return StoreView(integrity, accepted, best, statuses, calls, nonces)


def lost_acks(view: StoreView, acks: Acks) -> list[str]:
    """Every acknowledged count or best the store does not hold (empty: nothing lost)."""
    lost = [
        f"shares {key}: {n} acknowledged, {view.accepted.get(key, 0)} stored"
        for key, n in acks.accepted.items()
        if view.accepted.get(key, 0) < n
    ]
    lost += [
        f"best {key}: {z} zeros acknowledged, {view.best.get(key)} stored"
        for key, z in acks.best.items()
        if view.best.get(key, -1) < z
    ]
    return lost
