"""#18 item 11: with SQLite only the newest block summaries stay in memory (its block window); the
stats API's block pages, blocks and farmers' rewards answer from the store exactly what a History
holding every block answers."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from pooler.app.stats import FARMERS_FRESH_S, StatsDesk
from pooler.core.effects import Effect, Persist
from pooler.core.records import BlockHistory, BlockSeen, FarmerOfBlock, FarmerStatusChanged
from pooler.stats import views
from pooler.stats.history import BLOCKS_KEEP, History
from pooler.store.sqlite import SqliteStore

FARMERS = ("GA", "GB", "GC", "GD")
BLOCKS = 30
NOW = 1_700_000_000.0


def _block(n: int) -> list[Effect]:
    """Block n opens, some farmers are planted in it; the previous block is harvested (some
    farmers rewarded, and every fourth block one reward is told again, summed by a retry)."""
    out: list[Effect] = [Persist(BlockSeen(n, bytes(32), int(NOW) + 300 * n))]
    out += [Persist(FarmerStatusChanged(f, n, "planted")) for j, f in enumerate(FARMERS) if (n + j) % 3]
    for j, f in enumerate(FARMERS):
        if n > 1 and (n - 1 + j) % 3 == 1:
            out.append(Persist(FarmerStatusChanged(f, n - 1, "harvested", reward=10**6 * (n + j))))
    if n % 4 == 0 and n > 1:
        out.append(Persist(FarmerStatusChanged(FARMERS[0], n - 1, "harvested", reward=7 * 10**6 + n)))
    return out


async def _same(desk: StatsDesk, everything: History) -> int:
    """Every page, block and farmer answer of ``desk`` against the full history; the answers compared."""
    compared = 0
    for limit in (1, 2, 3, 5, 7, 10, 100):
        for before in (None, BLOCKS + 5, BLOCKS, BLOCKS - 3, BLOCKS - 4, BLOCKS - 5, 12, 2, 1, 0):
            got = await desk.blocks(limit, before)
            assert got == views.blocks(everything, limit, before), (limit, before)
            compared += 1
        # walking the pages by nextBefore reaches every block once, newest first
        seen: list[int] = []
        page: dict[str, Any] = await desk.blocks(limit, None)
        while True:
            seen += [b["block"] for b in page["blocks"]]
            if page["nextBefore"] is None:
                break
            page = await desk.blocks(limit, page["nextBefore"])
        assert seen == sorted(everything.blocks, reverse=True)
    for index in range(BLOCKS + 3):
        assert await desk.block(index) == views.block(everything, index), index
    assert await desk.farmers() == views.farmers(everything)
    for f in (*FARMERS, "GUNKNOWN"):
        for limit in (1, 3, 100):
            assert await desk.farmer(f, limit) == views.farmer(everything, f, limit), (f, limit)
    return compared + BLOCKS + 3


async def test_paged_blocks_and_rewards_answer_the_same_with_five_blocks_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = SqliteStore(path, clock=lambda: NOW)
    await store.open()
    recent = History(lambda job, conn: None, blocks_memory=5)
    everything = History(lambda job, conn: None, durable=False)
    try:
        for n in range(1, BLOCKS + 1):
            effects = _block(n)
            recent.observe(effects, NOW + 300 * n)
            everything.observe(effects, NOW + 300 * n)
            await store.commit(recent.take())
        assert list(recent.blocks) == list(range(BLOCKS - 4, BLOCKS + 1))  # the newest 5 only
        assert len(everything.blocks) == BLOCKS
        # rewards of blocks that left memory are answered from the store only
        assert any(b < BLOCKS - 4 for per in everything.rewards.values() for b in per)
        assert {b for per in recent.rewards.values() for b in per} <= set(recent.blocks)
        assert sum(len(per) for per in everything.rewards.values()) > 20  # rewards to compare
        assert await _same(StatsDesk(recent, lambda: NOW, store), everything) > 50
    finally:
        await store.close()

    # a restart: the store reloads the newest summaries only; answers stay the same
    store = SqliteStore(path, clock=lambda: NOW)
    again = History(lambda job, conn: None, blocks_memory=5)
    try:
        again.load((await store.open()).history, NOW + 300 * BLOCKS)
        assert list(again.blocks) == list(range(BLOCKS - 4, BLOCKS + 1))
        await _same(StatsDesk(again, lambda: NOW, store), everything)
    finally:
        await store.close()

    # a store from before the farmers' tables (schema 4): the migration fills them from block_history
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TABLE farmer_rewards; DROP TABLE farmer_totals; PRAGMA user_version = 4;"
        # and without schema 6's online columns, as a schema 4 file is
        " ALTER TABLE history DROP COLUMN miners; ALTER TABLE history DROP COLUMN workers;"
    )
    db.close()
    store = SqliteStore(path, clock=lambda: NOW)
    try:
        again = History(lambda job, conn: None, blocks_memory=5)
        again.load((await store.open()).history, NOW + 300 * BLOCKS)
        await _same(StatsDesk(again, lambda: NOW, store), everything)
    finally:
        await store.close()


async def test_summaries_past_retention_leave_the_farmers_totals_with_them(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "p.db", clock=lambda: NOW)
    await store.open()
    try:
        rewarded = (FarmerOfBlock("GA", reward=5), FarmerOfBlock("GB"))
        await store.commit([Persist(BlockHistory(1, farmers=rewarded))])
        assert await store.farmer_totals() == [("GA", 1, 5), ("GB", 0, 0)]
        # the same block told again with a summed reward: the totals move by the difference
        await store.commit([Persist(BlockHistory(1, farmers=(FarmerOfBlock("GA", reward=9),)))])
        assert await store.farmer_rewards("GA", 10) == (9, [(1, 9)])
        # a block BLOCKS_KEEP + 1 later: block 1 is past retention, pruned with its rewards
        newest = BlockHistory(2 + BLOCKS_KEEP, farmers=(FarmerOfBlock("GA", reward=7),))
        await store.commit([Persist(newest)])
        assert await store.block_summary(1) is None
        assert await store.farmer_totals() == [("GA", 1, 7), ("GB", 0, 0)]
        assert await store.farmer_rewards("GA", 10) == (7, [(2 + BLOCKS_KEEP, 7)])
        assert await store.block_page(10, None) == [newest]
    finally:
        await store.close()


async def test_the_farmers_totals_read_from_the_store_are_served_again_for_a_few_seconds(
    tmp_path: Path,
) -> None:
    """The store's one thread also commits the shares: a polled /stats/farmers reads it at most
    once per FARMERS_FRESH_S, and the next read after that sees what was written meanwhile."""
    store = SqliteStore(tmp_path / "p.db", clock=lambda: NOW)
    await store.open()
    history = History(lambda job, conn: None, blocks_memory=5)
    now = [NOW]
    desk = StatsDesk(history, lambda: now[0], store)
    try:
        for n in range(1, 4):
            history.observe(_block(n), NOW + 300 * n)
            await store.commit(history.take())
        first = await desk.farmers()
        assert first["farmers"]
        for n in range(4, 8):
            history.observe(_block(n), NOW + 300 * n)
            await store.commit(history.take())
        moved = await StatsDesk(history, lambda: now[0], store).farmers()  # a desk with no copy
        assert moved != first  # the later harvests moved the store's totals
        now[0] += FARMERS_FRESH_S / 2
        assert await desk.farmers() == first  # served again, no read
        now[0] += FARMERS_FRESH_S
        assert await desk.farmers() == moved  # read again
    finally:
        await store.close()
