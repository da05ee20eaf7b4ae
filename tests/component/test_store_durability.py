"""The SQLite store's newer duties: nonce counters, workers, coalescing, and telling failures apart."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from pooler.core.backend_calls import WorkReply
from pooler.core.effects import Persist, Send
from pooler.core.records import (
    Best,
    BestFound,
    BlockSeen,
    FarmerStatusChanged,
    NoncesIssued,
    ShareCounts,
    WorkCalled,
    WorkerSeen,
)
from pooler.errors import StoreError, StoreUnavailable
from pooler.miners import MinerRecord, hash_token
from pooler.store import coalesce
from pooler.store.sqlite import SqliteStore
from protocol.messages import Job
from tests.unit.core_support import Rig, persists, sends

BLOCK = Persist(BlockSeen(7, bytes.fromhex("11" * 32), 1700))


def _shares(n: int, worker: str = "w") -> Persist:
    return Persist(ShareCounts(7, "m", worker, n, 0))


def _best(zeros: int, nonce: int) -> Persist:
    return Persist(BestFound(7, "f", Best(nonce, bytes(32), zeros, 1700.0, "", "")))


def _nonces(nxt: int) -> Persist:
    return Persist(NoncesIssued(7, "f", nxt))


def test_coalesce_keeps_what_the_tables_would_end_with() -> None:
    status = Persist(FarmerStatusChanged("f", 7, "planted"))
    work = Persist(WorkCalled(7, (), WorkReply()))
    records = [
        BLOCK,
        _shares(1),
        _best(3, 10),
        _shares(2),
        status,
        _shares(1, "other"),
        _best(5, 11),
        _best(5, 12),  # a tie keeps the first, as the SQL upsert does
        _nonces(500),
        _nonces(300),
        work,
        _shares(3),
    ]
    assert coalesce(records) == [
        BLOCK,
        _shares(3),
        _best(5, 11),
        status,
        _shares(1, "other"),
        _nonces(500),
        work,
    ]


async def test_nonce_counters_survive_a_restart_so_ranges_never_overlap(tmp_path: Path) -> None:
    rig = Rig()
    effects = [*rig.join("m1", 1), *rig.connect(1, "m1", "w1")]
    opened = rig.block(1)
    effects += opened
    [first] = sends(opened, Job)
    # the counter is persisted before the job that hands the range out
    at_persist = next(
        i for i, e in enumerate(opened) if isinstance(e, Persist) and isinstance(e.record, NoncesIssued)
    )
    at_job = next(i for i, e in enumerate(opened) if isinstance(e, Send) and isinstance(e.msg, Job))
    assert at_persist < at_job
    assert persists(opened, "nonces") == [{"block": 1, "farmerId": "farmer-1", "next": first.nonce_end}]

    store = SqliteStore(tmp_path / "p.db")
    await store.open()
    await store.commit([e for e in effects if isinstance(e, Persist)])
    await store.close()
    again = SqliteStore(tmp_path / "p.db")
    snapshot = (await again.open()).snapshot
    await again.close()
    assert snapshot.nonce_next == {"farmer-1": first.nonce_end}

    fresh = Rig(now=rig.now + 1)
    fresh.core.restore(snapshot, fresh.now)
    fresh.join("m1", 1)
    [resumed] = sends(fresh.connect(1, "m1", "w1"), Job)
    assert resumed.block == 1 and resumed.nonce_start >= first.nonce_end


async def test_counters_near_the_top_of_the_u64_space_round_trip(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "p.db")
    await store.open()
    top = 2**64 - 1
    await store.commit([BLOCK, _nonces(top)])
    # a smaller later value never lowers it (text compared as zero-padded digits)
    await store.commit([_nonces(9)])
    with pytest.raises(StoreError, match="nonce counter"):
        await store.commit([_nonces(2**64)])
    await store.close()
    again = SqliteStore(tmp_path / "p.db")
    assert (await again.open()).snapshot.nonce_next == {"f": top}
    await again.close()


async def test_workers_and_farmers_are_recorded(tmp_path: Path) -> None:
    clock = iter([10.0, 11.0, 12.0, 13.0, 14.0])
    store = SqliteStore(tmp_path / "p.db", clock=lambda: next(clock))
    await store.open()
    for i in (1, 2):
        await store.save_miner(
            MinerRecord(f"m{i}", "f1", "G" + "B" * 55, f"rig{i}", hash_token(f"t{i}"), 0.1)
        )
    await store.commit([Persist(WorkerSeen("m1", "gpu0", "kale-miner/1"))])
    await store.commit([Persist(WorkerSeen("m1", "gpu0", None))])
    await store.close()
    with sqlite3.connect(tmp_path / "p.db") as db:
        assert db.execute(
            "SELECT miner_id, worker, agent, first_seen, last_seen FROM workers"
        ).fetchall() == [("m1", "gpu0", "kale-miner/1", 12.0, 13.0)]
        assert db.execute("SELECT farmer_id, miners FROM farmers").fetchall() == [("f1", 2)]


async def test_a_locked_database_is_unavailable_and_a_bad_record_is_not(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = SqliteStore(path, busy_timeout=0.05)
    await store.open()
    await store.commit([BLOCK])
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # an operator's shell holding the write lock
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.commit([_shares(1)])
        assert store.failures == 1 and "locked" in store.last_error
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await store.commit([_shares(2)])
    assert store.last_error == ""
    with pytest.raises(StoreError) as caught:
        await store.commit([_nonces(-1)])  # a record that can never be written
    assert not isinstance(caught.value, StoreUnavailable)
    await store.close()


async def test_an_online_backup_while_commits_run_is_consistent(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "p.db")
    await store.open()
    await store.commit([BLOCK, _shares(1)])

    def backup() -> tuple[str, int]:  # what `sqlite3 pooler.db ".backup backup.db"` does
        with sqlite3.connect(tmp_path / "p.db") as source, sqlite3.connect(tmp_path / "backup.db") as target:
            source.backup(target)
            [(accepted,)] = target.execute("SELECT accepted FROM shares").fetchall()
            return target.execute("PRAGMA integrity_check").fetchone()[0], accepted

    writer = asyncio.gather(*(store.commit([_shares(n)]) for n in range(2, 60)))
    integrity, accepted = await asyncio.to_thread(backup)
    await writer  # the backup (a reader) never made a commit fail
    assert integrity == "ok" and 1 <= accepted <= 59
    await store.close()
    again = SqliteStore(tmp_path / "backup.db")
    restored = (await again.open()).snapshot
    await again.close()
    assert [b.index for b in restored.blocks] == [7]
