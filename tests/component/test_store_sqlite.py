"""The SQLite store on a real file: migrations, group commit, reload, integrity."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pooler.core.effects import Persist
from pooler.core.records import BlockSeen, NoncesIssued, ShareCounts
from pooler.errors import StoreError
from pooler.miners import MinerRecord, hash_token
from pooler.store.sqlite import MIGRATIONS, SqliteStore
from tests.unit.core_support import CONFIG, T0, Rig, body, one_call


def _miner(i: int) -> MinerRecord:
    return MinerRecord(f"m{i}", f"f{i}", "G" + "A" * 55, f"rig{i}", hash_token(f"token-{i}"), 0.25)


async def test_miners_are_kept_hashed_and_revocations_stick(tmp_path: Path) -> None:
    path = tmp_path / "pooler.db"
    store = SqliteStore(path, clock=lambda: 1000.0)
    restored = await store.open()
    assert restored.miners == [] and restored.snapshot.blocks == ()
    await store.save_miner(_miner(1))
    await store.save_miner(_miner(2))
    await store.revoke_miner("m2")
    await store.close()
    again = SqliteStore(path)
    assert (await again.open()).miners == [_miner(1)]
    await again.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT * FROM miners").fetchall()
    # only the digest is stored, never the token
    assert rows and all("token-1" not in str(value) for row in rows for value in row)
    assert _miner(1).token_hash in {row[4] for row in rows}


def _drive_a_block_cycle() -> tuple[Rig, list[Persist]]:
    """Two blocks through the real coordinator: plant, shares, work, harvest of the first."""
    rig = Rig()
    effects = [*rig.join("m1", 1), *rig.join("m2", 2), *rig.connect(1, "m1"), *rig.connect(2, "m2")]
    effects += rig.block(1)
    plant = one_call(effects, "plant")
    effects += rig.answer(plant, response={"successfulPlants": 2, "failedPlants": 0, "totalStaked": "10"})
    for _ in range(6):
        effects += rig.good_share(1, 1, at=rig.now + 1)
        effects += rig.good_share(2, 1)
    effects += rig.timer("work:1", at=T0 + CONFIG.work_delay)
    work = one_call(effects[-20:], "work")
    subs = body(work)["submissions"]
    assert isinstance(subs, list)
    effects += rig.answer(work, response={"validNonces": len(subs), "invalidNonces": 0, "totalRewards": "0"})
    effects += rig.block(2)
    harvest = one_call(effects[-30:], "harvest")
    effects += rig.answer(
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
    effects += rig.good_share(1, 1, at=rig.now + 1)
    return rig, [e for e in effects if isinstance(e, Persist)]


async def test_what_the_coordinator_persists_rebuilds_its_snapshot(tmp_path: Path) -> None:
    rig, records = _drive_a_block_cycle()
    path = tmp_path / "pooler.db"
    store = SqliteStore(path)
    await store.open()
    # in several batches, as the runner commits them
    for i in range(0, len(records), 7):
        await store.commit(records[i : i + 7])
    assert await store.integrity_check() == "ok"
    await store.close()

    again = SqliteStore(path)
    restored = (await again.open()).snapshot
    await again.close()
    live = rig.core.snapshot()
    assert restored.blocks == live.blocks
    assert sorted(restored.bests, key=lambda b: (b.block, b.farmer_id)) == sorted(
        live.bests, key=lambda b: (b.block, b.farmer_id)
    )
    assert set(restored.tallies) == {t for t in live.tallies if t.block == 2 and (t.accepted or t.rejected)}
    assert {(s.block, s.farmer_id, s.status) for s in restored.statuses} == {
        (s.block, s.farmer_id, s.status) for s in live.statuses
    }
    assert set(restored.rewards) == set(live.rewards)
    # and a fresh coordinator accepts it
    fresh = Rig()
    fresh.core.restore(restored, rig.now)
    assert fresh.core.view(rig.now).block == 2


async def test_a_failing_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "p.db")
    await store.open()
    await store.commit([Persist(BlockSeen(1, bytes(32), 1700))])
    bad = Persist(
        NoncesIssued(1, "f", 2**64)
    )  # past the u64 space: cannot be written, the batch must roll back
    with pytest.raises(StoreError, match="store commit failed"):
        await store.commit([Persist(ShareCounts(1, "m", "w", 1, 0)), bad])
    await store.close()
    again = SqliteStore(tmp_path / "p.db")
    snapshot = (await again.open()).snapshot
    await again.close()
    assert [b.index for b in snapshot.blocks] == [1]
    assert snapshot.tallies == () and snapshot.bests == ()


async def test_schema_version_is_recorded_and_newer_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    newer = SqliteStore(path)
    with pytest.raises(StoreError, match="newer than this Pooler"):
        await newer.open()
    await newer.close()


async def test_rows_of_blocks_past_the_window_are_pruned_and_the_window_reloads(tmp_path: Path) -> None:
    """Every table keyed by block keeps the newest keep_blocks + 1 blocks: the file is bounded by
    the block window, not by the number of blocks (#18), and a restart still finds the window."""
    keep = 5
    path = tmp_path / "pooler.db"
    store = SqliteStore(path, keep_blocks=keep)
    await store.open()
    rig = Rig()
    effects = [*rig.join("m1", 1), *rig.join("m2", 2), *rig.connect(1, "m1"), *rig.connect(2, "m2")]
    blocks = 40
    for index in range(1, blocks + 1):
        effects += rig.block(index)
        plant = one_call(effects, "plant")
        effects += rig.answer(plant, response={"successfulPlants": 2, "failedPlants": 0, "totalStaked": "0"})
        effects += rig.good_share(1, 1, at=rig.now + 1)
        effects += rig.good_share(2, 1)
        await store.commit([e for e in effects if isinstance(e, Persist)])
        effects = []
    with sqlite3.connect(path) as db:
        for table in ("blocks", "bests", "shares", "calls", "farmer_status", "nonces"):
            (low,) = db.execute(f"SELECT min(block) FROM {table}").fetchone()
            assert low == blocks - keep, table
    await store.close()
    again = SqliteStore(path, keep_blocks=keep)
    restored = await again.open()
    assert [b.index for b in restored.snapshot.blocks] == list(range(blocks - keep + 1, blocks + 1))
    await again.close()
