"""Durability's price: the SQLite store's commit rate and latency, and shares/s through Runner + store.

python -m bench.store [--seconds 2] [--shares 100000] [--workers 64]

1. ``SqliteStore.commit`` (WAL, synchronous=FULL: one fsync per commit) for batch sizes 1..4096:
   records/s, commits/s and commit latency p50/p99. "distinct" batches hold records of
   different keys (nothing coalesces: the worst case); "64 workers" batches hold the share
   records a busy Pooler produces (one per share, absolute counts of 64 workers: they
   coalesce to at most 64 rows a commit).
2. Shares/s through the real ``Runner`` + ``Coordinator`` (every share verified, acked into
   an outbox) with no store and with the SQLite store on a file, and the average number of
   shares one commit covered (group commit: the inbox gathers while a commit runs).

The database lives in a temporary directory on the same file system as ``--dir`` (default:
the system's temporary directory); fsync cost depends on that disk.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pooler.app.options import TUNING, core_config
from pooler.config import Settings
from pooler.core.coordinator import Coordinator
from pooler.core.effects import Persist, Send
from pooler.core.events import MinerJoined, NewBlock, ShareSubmitted, WorkerConnected
from pooler.core.records import ShareCounts
from pooler.runtime.hub import EventHub
from pooler.runtime.runner import Runner
from pooler.store.sqlite import SqliteStore
from protocol import strkey
from protocol.messages import Job, Share

T0 = 1_700_000_000


def _distinct(batch: int, start: int) -> list[Persist]:
    return [Persist(ShareCounts(1, f"m{(start + i) % 1000}", f"w{start + i}", 1, 0)) for i in range(batch)]


def _workers(batch: int, start: int) -> list[Persist]:
    return [Persist(ShareCounts(1, "m", f"w{(start + i) % 64}", start + i, 0)) for i in range(batch)]


async def bench_commits(directory: str, seconds: float) -> None:
    print("SqliteStore.commit (WAL, synchronous=FULL)")
    print(f"{'batch':>6} {'kind':>10} {'records/s':>12} {'commits/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for kind, make in (("distinct", _distinct), ("64 workers", _workers)):
        for batch in (1, 10, 100, 1000, 4096):
            with tempfile.TemporaryDirectory(dir=directory) as tmp:
                store = SqliteStore(Path(tmp) / "bench.db")
                await store.open()
                latencies: list[float] = []
                sent = 0
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    records = make(batch, sent)
                    c0 = time.perf_counter()
                    await store.commit(records)
                    latencies.append(time.perf_counter() - c0)
                    sent += batch
                elapsed = time.perf_counter() - t0
                await store.close()
            latencies.sort()
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(
                f"{batch:>6} {kind:>10} {sent / elapsed:>12,.0f} {len(latencies) / elapsed:>10,.0f}"
                f" {statistics.median(latencies) * 1000:>8.2f} {p99 * 1000:>8.2f}"
            )


class _NoBackend:
    """The plant call of the bench's block answers at once; nothing else calls the Backend."""

    async def call(
        self, op: str, method: str, path: str, payload: Mapping[str, object] | None, deadline: float
    ) -> dict[str, Any]:
        return {}


async def bench_runner(directory: str, shares: int, workers: int) -> None:
    print(f"\nRunner + Coordinator: {shares:,} shares from {workers} WebSocket workers, every one acked")
    print(f"{'store':>8} {'shares/s':>10} {'commits':>8} {'shares/commit':>14}")
    for with_store in (False, True):
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            store = SqliteStore(Path(tmp) / "bench.db") if with_store else None
            if store is not None:
                await store.open()
            config = core_config(
                Settings(share_zeros_initial=0, share_zeros_min=0),
                dataclasses.replace(TUNING, vardiff_window=1e9, range_default=1 << 40),
            )
            core = Coordinator(config)
            runner = Runner(core, _NoBackend(), EventHub(time.time), store=store, outbox_size=shares + 1000)
            now = time.time()
            for m in range(4):
                core.handle(MinerJoined(f"m{m}", f"f{m}", strkey.encode("G", bytes([m + 1]) * 32)), now)
            conns = [runner.open_conn()[0] for _ in range(workers)]
            for i, conn in enumerate(conns):
                core.handle(WorkerConnected(conn, f"m{i % 4}", f"w{i}"), now)
            jobs = {
                e.conn: e.msg
                for e in core.handle(NewBlock(1, bytes(range(32)), int(now), 4), now)
                if isinstance(e, Send) and isinstance(e.msg, Job)
            }
            events = [
                ShareSubmitted(conn, Share(jobs[conn].job, jobs[conn].nonce_start + n))
                for n in range(shares // workers)
                for conn in conns
            ]
            async with runner:
                base = runner.handled
                t0 = time.perf_counter()
                for ev in events:
                    await runner.submit(ev)
                await runner.drain(600)  # every share handled, its records committed, its ack queued
                assert runner.handled >= base + len(events)
                elapsed = time.perf_counter() - t0
            commits = store.commits if store is not None else 0
            if store is not None:
                await store.close()
            per = f"{len(events) / commits:,.0f}" if commits else "-"
            name = "sqlite" if with_store else "none"
            print(f"{name:>8} {len(events) / elapsed:>10,.0f} {commits:>8} {per:>14}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="per batch size (default 2)")
    parser.add_argument("--shares", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--dir", default=None, help="where the temporary database goes")
    args = parser.parse_args()
    directory = args.dir or tempfile.gettempdir()

    async def run() -> None:
        await bench_commits(directory, args.seconds)
        await bench_runner(directory, args.shares, args.workers)

    asyncio.run(run())


if __name__ == "__main__":
    main()
