"""Share and block history in the SQLite store: written with the batch, reloaded, pruned, migrated."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

from pooler.app.stats import StatsDesk
from pooler.core.effects import Effect, Persist, Send
from pooler.core.records import BlockHistory, BlockOnChain, HistoryBucket
from pooler.core.rewards import BlockState as ChainBlock
from pooler.stats import views
from pooler.stats.history import HOUR, MEMORY, MINUTE, History
from pooler.store.sqlite import MIGRATIONS, PRUNE_PER_COMMIT, SqliteStore
from protocol.messages import Accepted, Rejected
from tests.unit.core_support import CONFIG, T0, Rig, body, one_call

# Block(1) on chain: bounds of the score and totals, stroops beyond 2**53 (kept exactly)
CHAIN = ChainBlock(1, 2, 40, 10**7, 3 * 10**17, 4, 9, 10, 2**60 + 1)


def _cycle() -> tuple[Rig, History, list[list[Persist]], list[Effect]]:
    """One block planted, mined by two miners, worked and harvested; the batches a runner commits."""
    rig = Rig()
    history = History(rig.core.share_source)
    batches: list[list[Persist]] = []
    everything: list[Effect] = []

    def step(effects: list[Effect]) -> list[Effect]:
        history.observe(effects, rig.now)
        records = [e for e in effects if isinstance(e, Persist)]
        if records:
            batches.append(records + history.take())
        everything.extend(effects)
        return effects

    for e in (rig.join("m1", 1), rig.join("m2", 2), rig.connect(1, "m1"), rig.connect(2, "m2", "rig-b")):
        step(e)
    plant = one_call(step(rig.block(1)), "plant")
    step(rig.answer(plant, response={"successfulPlants": 2, "failedPlants": 0, "totalStaked": "10"}))
    step([Persist(BlockOnChain(1, CHAIN))])  # the monitor read Block(1) (the core's BlockUpdated)
    for _ in range(8):
        step(rig.good_share(1, 1, at=rig.now + 1))
        step(rig.good_share(2, 1))
    job = rig.jobs[1]
    step(rig.share(1, job, job.nonce_start, bytes(32)))  # a wrong hash: rejected
    work = one_call(step(rig.timer("work:1", at=T0 + CONFIG.work_delay)), "work")
    subs = body(work)["submissions"]
    assert isinstance(subs, list)
    step(rig.answer(work, response={"validNonces": len(subs), "invalidNonces": 0}))
    harvest = one_call(step(rig.block(2))[-30:], "harvest")
    step(
        rig.answer(
            harvest,
            response={
                "successfulHarvests": 2,
                "failedHarvests": 0,
                "totalRewards": "5000",
                "results": [
                    {"farmerId": "farmer-1", "ok": True, "reward": "3000"},
                    {"farmerId": "farmer-2", "ok": True, "reward": "2000"},
                ],
            },
        )
    )
    step(rig.good_share(1, 1, at=rig.now + 1))
    return rig, history, batches, everything


def _totals(
    records: list[HistoryBucket | BlockHistory], scope: str, key: str, width: int
) -> tuple[int, int, int]:
    bs = [
        r
        for r in records
        if isinstance(r, HistoryBucket) and (r.scope, r.key, r.width) == (scope, key, width)
    ]
    return sum(b.accepted for b in bs), sum(n for b in bs for _, n in b.rejected), sum(b.work for b in bs)


async def test_history_is_written_with_the_batches_and_reloads_as_it_was(tmp_path: Path) -> None:
    rig, live, batches, effects = _cycle()
    accepted = [e for e in effects if isinstance(e, Send) and isinstance(e.msg, Accepted)]
    rejected = [e for e in effects if isinstance(e, Send) and isinstance(e.msg, Rejected)]
    assert accepted and rejected
    m1 = [e for e in accepted if e.conn == 1]
    expected_work = 0
    for e in accepted:
        assert isinstance(e.msg, Accepted)
        src = rig.core.share_source(e.msg.job, e.conn)
        assert src is not None
        expected_work += 16 ** src[2]
    store = SqliteStore(tmp_path / "p.db", clock=lambda: rig.now)
    await store.open()
    for batch in batches:
        await store.commit(batch)
    await store.close()

    again = SqliteStore(tmp_path / "p.db", clock=lambda: rig.now)
    restored = (await again.open()).history
    await again.close()
    for width in (MINUTE, HOUR):
        acc, rej, work = _totals(restored, "pool", "", width)
        assert acc == len(accepted) and rej == len(rejected)
        assert _totals(restored, "miner", "m1", width)[0] == len(m1)
        assert _totals(restored, "worker", "m2/rig-b", width)[0] == len(accepted) - len(m1)
        # the work behind each accepted share: 16**(the difficulty it was checked at)
        assert work == expected_work
    # a fresh History loaded from the file answers as the live one does
    fresh = History(rig.core.share_source)
    fresh.load(restored, rig.now)
    for sk, series in live.series.items():
        got = fresh.series[sk]
        assert [(b.start, b.accepted, b.work, b.rejected) for b in got.minutes] == [
            (b.start, b.accepted, b.work, b.rejected) for b in series.minutes
        ]
    blocks = {r.block: r for r in restored if isinstance(r, BlockHistory)}
    b1 = blocks[1]
    assert b1 == live.blocks[1]
    assert (b1.planted, b1.staked, b1.harvest_total, b1.work_ok) == (2, 10, 5000, True)
    assert b1.chain == CHAIN  # the on-chain figures survive the restart
    farmers = {f.farmer_id: f for f in b1.farmers}
    assert {f: farmers[f].reward for f in farmers} == {"farmer-1": 3000, "farmer-2": 2000}
    assert all(f.worked and f.best_zeros >= 1 and f.gap_s is not None for f in farmers.values())


async def test_old_buckets_are_pruned_a_bounded_number_per_commit(tmp_path: Path) -> None:
    now = [T0 + 40 * 86400.0]
    store = SqliteStore(tmp_path / "p.db", clock=lambda: now[0])
    await store.open()
    old = [
        Persist(HistoryBucket("worker", f"m/w{i}", MINUTE, T0 + 60 * j, 1, 0, (), 16))
        for i in range(10)
        for j in range(120)
    ]
    fresh = Persist(
        HistoryBucket("pool", "", HOUR, int(now[0]) // HOUR * HOUR, 3, 0, (("invalid-hash", 1),), 48)
    )
    await store.commit(old)  # written and, being past retention, the first PRUNE_PER_COMMIT go at once
    with sqlite3.connect(tmp_path / "p.db") as db:
        left = db.execute("SELECT count(*) FROM history").fetchone()[0]
    assert left == len(old) - PRUNE_PER_COMMIT
    await store.commit([fresh])
    await store.commit([fresh])
    with sqlite3.connect(tmp_path / "p.db") as db:
        assert db.execute("SELECT count(*) FROM history").fetchone()[0] == 1
    await store.close()
    again = SqliteStore(tmp_path / "p.db", clock=lambda: now[0])
    assert (await again.open()).history == [fresh.record]
    await again.close()


async def test_a_version_2_file_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        for i, migration in enumerate(MIGRATIONS[:2]):
            db.executescript(migration)
            db.execute(f"PRAGMA user_version = {i + 1}")
        db.execute("INSERT INTO blocks VALUES (5, ?, 1700, 1700.0)", (bytes(32),))
    store = SqliteStore(path, clock=lambda: T0)
    restored = await store.open()
    assert [b.index for b in restored.snapshot.blocks] == [5] and restored.history == []
    await store.commit([Persist(BlockHistory(5, 1700, planted=1))])
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)  # the newest schema
    again = SqliteStore(path, clock=lambda: T0)
    assert (await again.open()).history == [BlockHistory(5, 1700, planted=1)]
    await again.close()


async def test_history_rows_from_before_the_online_counts_read_zero(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # a schema 5 file, its history row without the online columns
        for i, migration in enumerate(MIGRATIONS[:5]):
            db.executescript(migration)
            db.execute(f"PRAGMA user_version = {i + 1}")
        db.execute("INSERT INTO history VALUES ('pool', '', 60, ?, 3, 1, NULL, '48')", (T0 - T0 % 60,))
    store = SqliteStore(path, clock=lambda: T0)
    (old,) = (await store.open()).history
    assert old == HistoryBucket("pool", "", 60, T0 - T0 % 60, 3, 1, (), 48, 0, 0)
    new = HistoryBucket("pool", "", 60, T0 - T0 % 60 + 60, 1, 0, (), 16, 2, 3)
    await store.commit([Persist(new)])
    await store.close()
    again = SqliteStore(path, clock=lambda: T0 + 60)
    assert (await again.open()).history == [old, new]
    await again.close()


_WRITER = """
import asyncio, sys
from pooler.core.effects import Persist
from pooler.core.records import HistoryBucket
from pooler.store.sqlite import SqliteStore

async def main() -> None:
    store = SqliteStore(sys.argv[1], clock=lambda: 1_700_000_000.0)
    await store.open()
    n = 0
    while True:
        n += 1
        await store.commit([Persist(HistoryBucket("pool", "", 60, 1_700_000_000 - 60, n, 0, (), 16 * n))])
        print(n, flush=True)

asyncio.run(main())
"""


async def test_a_killed_writer_loses_no_committed_bucket(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WRITER, str(path), stdout=asyncio.subprocess.PIPE, cwd=os.getcwd()
    )
    assert proc.stdout is not None
    acked = 0
    while acked < 40:
        acked = int(await proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)  # no close, no checkpoint: what the WAL holds must do
    await proc.wait()
    store = SqliteStore(path, clock=lambda: 1_700_000_000.0)
    history = (await store.open()).history
    assert await store.integrity_check() == "ok"
    await store.close()
    [bucket] = history
    assert (
        isinstance(bucket, HistoryBucket) and bucket.accepted >= acked and bucket.work == 16 * bucket.accepted
    )


async def test_a_range_older_than_memory_is_read_from_the_store_and_answers_the_same(tmp_path: Path) -> None:
    """#15: with MEMORY only the recent buckets stay in memory; /stats ranges reaching further read
    the older part from SQLite, and answer exactly what a History holding everything answers."""
    now = float(T0 - T0 % HOUR + 30 * HOUR + 17 * MINUTE)
    rows = [
        Persist(HistoryBucket(scope, key, width, int(now) - int(now) % width - i * width, i + 1, i % 2,
                              (("low-zeros", i),) if i % 3 else (), (i + 1) * 16**5))
        for scope, key in (("pool", ""), ("miner", "m1"), ("worker", "m1/rig"))
        for width, count in ((MINUTE, 1440), (HOUR, 30 * 24))
        for i in range(count)
    ]  # fmt: skip
    store = SqliteStore(tmp_path / "p.db", clock=lambda: now)
    await store.open()
    await store.commit(rows)
    await store.close()
    store = SqliteStore(tmp_path / "p.db", clock=lambda: now)
    restored = (await store.open()).history
    everything, recent = History(lambda job, conn: None), History(lambda job, conn: None, memory=MEMORY)
    everything.load(restored, now)
    recent.load(restored, now)
    kept = sum(len(s.minutes) + len(s.hours) for s in recent.series.values())
    assert kept <= 3 * (16 + 28) < sum(len(s.minutes) + len(s.hours) for s in everything.series.values()) / 10
    desk = StatsDesk(recent, lambda: now, store)
    try:
        for range_ in ("1h", "24h", "7d", "30d"):
            assert await desk.pool(range_) == views.pool(everything, now, range_), range_
            assert await desk.miner("m1", range_) == views.miner(everything, "m1", now, range_), range_
        # new shares land in memory and show at once, beside the stored part
        recent.observe([Send(1, Accepted("j", 1, 3, False))], now + 1)
        everything.observe([Send(1, Accepted("j", 1, 3, False))], now + 1)
        assert await desk.pool("24h") == views.pool(everything, now, "24h")
        assert views.stored_part(recent, "pool", "", now, "30d") is not None
        assert views.stored_part(everything, "pool", "", now, "30d") is None  # KEEP: all in memory
    finally:
        await store.close()
