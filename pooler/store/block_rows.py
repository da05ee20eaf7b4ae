"""SQLite's side of the block summaries the stats API pages through (pooler.stats.history).

A History on SQLite keeps in memory only the summaries of the store's block window
(``SqliteStore.keep_blocks``, 300 by default); older pages of ``/stats/blocks``,
``/stats/blocks/{block}`` and a farmer's rewards per block are read here. ``block_history``
holds each block's summary as JSON; ``farmer_rewards`` (farmer, block) -> stroops and
``farmer_totals`` (per farmer: rewarded blocks and their sum) are kept beside it as each summary
is written, so a farmer's page is one index range and the farmer list one row per farmer, however
many blocks the store keeps (:data:`~pooler.stats.history.BLOCKS_KEEP`). All functions run on
the store's own thread.
"""

from __future__ import annotations

import sqlite3

import orjson

from pooler.core.records import BlockHistory
from pooler.stats.history import BLOCKS_KEEP
from pooler.store.codec import block_history_from

# migration 5: the per-farmer tables, filled from the summaries already stored
MIGRATION = """
    CREATE TABLE farmer_rewards (
        farmer_id TEXT NOT NULL,
        block INTEGER NOT NULL,
        reward INTEGER NOT NULL,
        PRIMARY KEY (farmer_id, block)
    ) WITHOUT ROWID;
    CREATE INDEX farmer_rewards_block ON farmer_rewards (block);
    CREATE TABLE farmer_totals (
        farmer_id TEXT PRIMARY KEY,
        blocks INTEGER NOT NULL,
        rewards INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT OR REPLACE INTO farmer_rewards
        SELECT json_extract(f.value, '$.farmerId'), b.block,
            CAST(json_extract(f.value, '$.reward') AS INTEGER)
        FROM block_history b, json_each(b.data, '$.farmers') f
        WHERE json_extract(f.value, '$.reward') IS NOT NULL;
    INSERT OR IGNORE INTO farmer_totals
        SELECT DISTINCT json_extract(f.value, '$.farmerId'), 0, 0
        FROM block_history b, json_each(b.data, '$.farmers') f;
    UPDATE farmer_totals SET
        blocks = (SELECT count(*) FROM farmer_rewards r WHERE r.farmer_id = farmer_totals.farmer_id),
        rewards = (SELECT coalesce(sum(reward), 0) FROM farmer_rewards r
            WHERE r.farmer_id = farmer_totals.farmer_id);
"""


def write_rewards(db: sqlite3.Connection, record: BlockHistory) -> None:
    """A block summary's farmers into farmer_rewards / farmer_totals (called as it is written).
    A reward only appears or changes (a retry's part summed), never goes: the totals move by the
    difference to what was stored."""
    for f in record.farmers:
        db.execute("INSERT OR IGNORE INTO farmer_totals VALUES (?, 0, 0)", (f.farmer_id,))
        if f.reward is None:
            continue
        row = db.execute(
            "SELECT reward FROM farmer_rewards WHERE farmer_id = ? AND block = ?", (f.farmer_id, record.block)
        ).fetchone()
        if row is not None and row[0] == f.reward:
            continue
        db.execute(
            "INSERT OR REPLACE INTO farmer_rewards VALUES (?, ?, ?)", (f.farmer_id, record.block, f.reward)
        )
        db.execute(
            "UPDATE farmer_totals SET blocks = blocks + ?, rewards = rewards + ? WHERE farmer_id = ?",
            (1 if row is None else 0, f.reward - (0 if row is None else row[0]), f.farmer_id),
        )


def prune(db: sqlite3.Connection, left: int) -> int:
    """Delete at most ``left`` rows of blocks past retention (BLOCKS_KEEP below the newest
    summary): farmer_rewards (the totals lose them) first, then block_history. The rows deleted."""
    (top,) = db.execute("SELECT max(block) FROM block_history").fetchone()
    if top is None:
        return 0
    floor = top - BLOCKS_KEEP
    gone = db.execute(
        "SELECT farmer_id, block, reward FROM farmer_rewards WHERE block < ? LIMIT ?", (floor, left)
    ).fetchall()
    for farmer_id, block, reward in gone:
        db.execute("DELETE FROM farmer_rewards WHERE farmer_id = ? AND block = ?", (farmer_id, block))
        db.execute(
            "UPDATE farmer_totals SET blocks = blocks - 1, rewards = rewards - ? WHERE farmer_id = ?",
            (reward, farmer_id),
        )
    left -= len(gone)
    if left <= 0:
        return len(gone)
    cur = db.execute(
        "DELETE FROM block_history WHERE block IN (SELECT block FROM block_history WHERE block < ? LIMIT ?)",
        (floor, left),
    )
    return len(gone) + max(cur.rowcount, 0)


def newest(db: sqlite3.Connection, count: int) -> list[BlockHistory]:
    """The newest ``count`` summaries, oldest first (what a History keeps in memory at start)."""
    rows = db.execute("SELECT data FROM block_history ORDER BY block DESC LIMIT ?", (count,)).fetchall()
    return [block_history_from(orjson.loads(data)) for (data,) in reversed(rows)]


def page(db: sqlite3.Connection, limit: int, before: int | None) -> list[BlockHistory]:
    """Up to ``limit`` summaries below ``before`` (None: from the newest), newest first."""
    rows = db.execute(
        "SELECT data FROM block_history WHERE block < ? ORDER BY block DESC LIMIT ?",
        (2**63 - 1 if before is None else before, limit),
    )
    return [block_history_from(orjson.loads(data)) for (data,) in rows]


def one(db: sqlite3.Connection, block: int) -> BlockHistory | None:
    row = db.execute("SELECT data FROM block_history WHERE block = ?", (block,)).fetchone()
    return None if row is None else block_history_from(orjson.loads(row[0]))


def totals(db: sqlite3.Connection) -> list[tuple[str, int, int]]:
    """(farmer id, rewarded blocks, stroops) of every farmer a stored summary names, by id."""
    rows = db.execute("SELECT farmer_id, blocks, rewards FROM farmer_totals ORDER BY farmer_id")
    return [(str(f), int(b), int(r)) for f, b, r in rows]


def farmer(db: sqlite3.Connection, farmer_id: str, limit: int) -> tuple[int, list[tuple[int, int]]] | None:
    """A farmer's stroops over the stored blocks and its newest ``limit`` (block, reward)."""
    row = db.execute("SELECT rewards FROM farmer_totals WHERE farmer_id = ?", (farmer_id,)).fetchone()
    if row is None:
        return None
    rows = db.execute(
        "SELECT block, reward FROM farmer_rewards WHERE farmer_id = ? ORDER BY block DESC LIMIT ?",
        (farmer_id, limit),
    )
    return int(row[0]), [(int(b), int(r)) for b, r in rows]
