"""SQLite store: WAL mode, ``synchronous=FULL``, one writer thread, group commit.

Why a thread: sqlite3 calls block, and the event loop must not. One dedicated thread owns
the connection (sqlite connections are not shared across threads), so batches are
applied in order and no sqlite call ever runs on the loop. Each ``commit`` is one
transaction: a batch is durable entirely or not at all (WAL + ``synchronous=FULL`` fsyncs
the log before COMMIT returns), and the runner sends no ``accepted`` until it returns.

Records of one batch are coalesced first (:func:`coalesce`): share counts are absolute and
bests only grow, so of 4000 share records of one worker only the last is written.

Failures: a commit that could not write now (locked, I/O error, disk full) raises
:class:`StoreUnavailable` (the runner keeps the records and retries them with the next
batch); a record that can never be written raises :class:`StoreError`.

Backup: ``sqlite3 pooler.db ".backup backup.db"`` (or ``VACUUM INTO``) is safe while the
Pooler runs; copying the file alone is not (the WAL holds the newest commits). See
docs/storage.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import orjson

from pooler.core.effects import Persist
from pooler.core.records import (
    BestFound,
    BlockHistory,
    BlockOnChain,
    BlockSeen,
    FarmerStatusChanged,
    HarvestCalled,
    HistoryBucket,
    MinerCounts,
    NonceCredited,
    NoncesIssued,
    PlantCalled,
    Record,
    RestJobIssued,
    ShareCounts,
    WorkCalled,
    WorkerSeen,
)
from pooler.core.snapshot import (
    BestRecord,
    BlockRecord,
    CoreSnapshot,
    CountsRecord,
    RewardRecord,
    StatusRecord,
    TallyRecord,
)
from pooler.errors import StoreError, StoreUnavailable
from pooler.miners import MinerRecord
from pooler.stats.history import KEEP
from pooler.store import Restored, block_rows, coalesce
from pooler.store.codec import block_history_data, ms, record_data, record_kind

T = TypeVar("T")

# Each migration takes the schema from version i to i+1. Append; never edit a shipped one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE miners (
        miner_id TEXT PRIMARY KEY,
        farmer_id TEXT NOT NULL,
        farmer TEXT NOT NULL,
        name TEXT NOT NULL,
        token_hash BLOB NOT NULL UNIQUE,
        stake_percentage REAL NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE blocks (
        block INTEGER PRIMARY KEY,
        entropy BLOB NOT NULL,
        timestamp INTEGER NOT NULL,
        seen_at REAL NOT NULL
    );
    CREATE TABLE bests (
        block INTEGER NOT NULL,
        farmer_id TEXT NOT NULL,
        nonce TEXT NOT NULL,
        hash BLOB NOT NULL,
        zeros INTEGER NOT NULL,
        found_at REAL NOT NULL,
        miner_id TEXT NOT NULL,
        worker TEXT NOT NULL,
        PRIMARY KEY (block, farmer_id)
    );
    CREATE TABLE shares (
        block INTEGER NOT NULL,
        miner_id TEXT NOT NULL,
        worker TEXT NOT NULL,
        accepted INTEGER NOT NULL,
        rejected INTEGER NOT NULL,
        PRIMARY KEY (block, miner_id, worker)
    );
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        op TEXT NOT NULL,
        block INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        request TEXT,
        response TEXT,
        error TEXT,
        at REAL NOT NULL
    );
    CREATE INDEX calls_block ON calls (block, op);
    CREATE TABLE farmer_status (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        farmer_id TEXT NOT NULL,
        block INTEGER,
        status TEXT NOT NULL,
        reason TEXT,
        zeros INTEGER,
        reward TEXT,
        at REAL NOT NULL
    );
    CREATE INDEX farmer_status_block ON farmer_status (block, farmer_id);
    """,
    # 2: nonce counters (a restart never re-issues a range), workers seen, farmers as a view.
    # `next` is a u64 (up to 2**64 - 1, past SQLite's signed INTEGER): 20-digit zero-padded
    # text, so max() and ORDER BY compare it numerically.
    """
    CREATE TABLE nonces (
        block INTEGER NOT NULL,
        farmer_id TEXT NOT NULL,
        next TEXT NOT NULL,
        PRIMARY KEY (block, farmer_id)
    );
    CREATE TABLE workers (
        miner_id TEXT NOT NULL,
        worker TEXT NOT NULL,
        agent TEXT,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        PRIMARY KEY (miner_id, worker)
    );
    CREATE VIEW farmers AS
        SELECT farmer_id, farmer, count(*) AS miners, min(created_at) AS first_seen
        FROM miners GROUP BY farmer_id, farmer;
    """,
    # 3: share history buckets (1-minute for 24 h, 1-hour for 30 days) and block summaries
    # (pooler.stats). `work` is decimal text: sums of 16**zeros pass SQLite's INTEGER.
    """
    CREATE TABLE history (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        width INTEGER NOT NULL,
        start INTEGER NOT NULL,
        accepted INTEGER NOT NULL,
        stale INTEGER NOT NULL,
        rejected TEXT,
        work TEXT NOT NULL,
        PRIMARY KEY (scope, key, width, start)
    ) WITHOUT ROWID;
    CREATE INDEX history_age ON history (width, start);
    CREATE TABLE block_history (
        block INTEGER PRIMARY KEY,
        data TEXT NOT NULL
    );
    """,
    # 4: each miner's /miner/stats counters, absolute since it registered (they outlive the
    # block window the per-block tables are pruned to); a revoked miner's row goes with it
    """
    CREATE TABLE miner_counts (
        miner_id TEXT PRIMARY KEY,
        accepted INTEGER NOT NULL,
        rejected INTEGER NOT NULL,
        stale INTEGER NOT NULL
    );
    """,
    # 5: each farmer's rewards per block and totals, beside block_history (pooler/store/block_rows.py)
    block_rows.MIGRATION,
    # 6: the pool's miners / workers online per history bucket (the most sampled in it); rows
    # written before read as 0 (the DEFAULT)
    """
    ALTER TABLE history ADD COLUMN miners INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE history ADD COLUMN workers INTEGER NOT NULL DEFAULT 0;
    """,
]

# history rows deleted per commit at most: pruning is bounded work, spread over commits
PRUNE_PER_COMMIT = 500
# the tables keyed by block: rows of blocks older than the newest - keep_blocks are deleted
# (PRUNE_PER_COMMIT per table and commit at most), so the file stops growing with the block count
BLOCK_TABLES = ("blocks", "bests", "shares", "calls", "farmer_status", "nonces")


class SqliteStore:
    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        keep_blocks: int = 300,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = str(path)
        self.keep_blocks = keep_blocks  # blocks reloaded at start: a KALE block's entries live ~288 blocks
        # how long a write waits for a lock someone else holds (a backup, an operator's sqlite3
        # shell) before the commit fails with StoreUnavailable; the runner waits that long at most
        self.busy_timeout = busy_timeout
        self._clock = clock
        self._db: sqlite3.Connection | None = None  # owned by the writer thread only
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")  # the one writer
        self.commits = 0  # transactions committed (metrics, benchmarks)
        self.records = 0  # records written (after coalescing)
        self.failures = 0  # commits that failed (metrics, /health)
        self.last_error = ""  # why the newest commit failed; "" once one succeeds again (/health)
        # the newest block written (writer thread): rows below it - keep_blocks are pruned
        self._newest = -1
        # rows below the window may be left (a new block came, or the last pass hit its limit)
        self._prune_blocks = False

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> Restored:
        return await self._run(self._open)

    def _open(self) -> Restored:
        try:
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            self._db = db
            self._migrate(db)
            return self._load(db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this Pooler knows ({len(MIGRATIONS)})"
            )
        for i in range(version, len(MIGRATIONS)):
            db.execute("BEGIN IMMEDIATE")
            for statement in filter(str.strip, MIGRATIONS[i].split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {i + 1}")
            db.execute("COMMIT")

    async def close(self) -> None:
        def _close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(_close)
        self._thread.shutdown(wait=True)

    # ------------------------------------------------------------ writes

    async def commit(self, records: list[Persist]) -> None:
        await self._run(lambda: self._commit(records))

    def _commit(self, records: list[Persist]) -> None:
        now = self._clock()
        records = coalesce(records)

        newest = max((p.record.index for p in records if isinstance(p.record, BlockSeen)), default=-1)

        def write(db: sqlite3.Connection) -> None:
            for p in records:
                _write(db, p.record, now)
            self._prune(db, now)
            if newest > self._newest or self._prune_blocks:
                self._prune_blocks = self._prune_old_blocks(db, max(newest, self._newest))

        self._transaction("store commit", write)
        self._newest = max(newest, self._newest)
        self.commits += 1
        self.records += len(records)

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        """Delete at most PRUNE_PER_COMMIT history rows past retention (index range scans only)."""
        left = PRUNE_PER_COMMIT
        for width, keep in KEEP.items():
            if left <= 0:
                break
            cur = db.execute(
                "DELETE FROM history WHERE (scope, key, width, start) IN (SELECT scope, key, width, start"
                " FROM history WHERE width = ? AND start < ? LIMIT ?)",
                (width, int(now - keep) - width, left),
            )
            left -= max(cur.rowcount, 0)
        if left > 0:
            block_rows.prune(db, left)

    def _prune_old_blocks(self, db: sqlite3.Connection, newest: int) -> bool:
        """Delete rows of blocks before ``newest - keep_blocks`` (at most PRUNE_PER_COMMIT a table);
        True when some table may hold more (the next commit goes on)."""
        floor = newest - self.keep_blocks
        more = False
        for table in BLOCK_TABLES:
            cur = db.execute(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE block < ? LIMIT ?)",
                (floor, PRUNE_PER_COMMIT),
            )
            more = more or cur.rowcount >= PRUNE_PER_COMMIT
        return more

    def _transaction(self, what: str, body: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``body`` in one write transaction; errors become StoreUnavailable or StoreError."""
        db = self._require()
        try:
            db.execute("BEGIN IMMEDIATE")
            body(db)
            db.execute("COMMIT")
        except Exception as exc:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # a failed ROLLBACK must not hide why
                    db.execute("ROLLBACK")
            self.failures += 1
            self.last_error = f"{what} failed: {exc}"
            if isinstance(exc, sqlite3.OperationalError):  # locked, I/O error, disk full: may pass
                raise StoreUnavailable(f"{what} failed, will retry: {exc}") from exc
            raise StoreError(f"{what} failed: {exc}") from exc
        self.last_error = ""

    async def save_miner(self, record: MinerRecord) -> None:
        def insert(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO miners VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    record.miner_id,
                    record.farmer_id,
                    record.farmer,
                    record.name,
                    record.token_hash,
                    record.stake_percentage,
                    self._clock(),
                ),
            )

        await self._run(lambda: self._transaction(f"saving miner {record.miner_id}", insert))

    async def revoke_miner(self, miner_id: str) -> None:
        def revoke(db: sqlite3.Connection) -> None:
            db.execute("UPDATE miners SET revoked_at = ? WHERE miner_id = ?", (self._clock(), miner_id))
            db.execute("DELETE FROM miner_counts WHERE miner_id = ?", (miner_id,))

        await self._run(lambda: self._transaction(f"revoking miner {miner_id}", revoke))

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    # ------------------------------------------------------------ reads

    def _load(self, db: sqlite3.Connection) -> Restored:
        miners = [
            MinerRecord(
                miner_id=r[0],
                farmer_id=r[1],
                farmer=r[2],
                name=r[3],
                token_hash=bytes(r[4]),
                stake_percentage=r[5],
            )
            for r in db.execute(
                "SELECT miner_id, farmer_id, farmer, name, token_hash, stake_percentage FROM miners"
                " WHERE revoked_at IS NULL ORDER BY created_at"
            )
        ]
        # Blocks whose temporary entries may still live: only those can still be harvested or shown.
        blocks = [
            BlockRecord(r[0], bytes(r[1]), r[2])
            for r in db.execute(
                "SELECT block, entropy, timestamp FROM blocks ORDER BY block DESC LIMIT ?",
                (self.keep_blocks,),
            )
        ][::-1]
        history = self._load_history(db)
        counts = tuple(
            CountsRecord(*r)
            for r in db.execute(
                "SELECT c.miner_id, c.accepted, c.rejected, c.stale FROM miner_counts c"
                " JOIN miners m ON m.miner_id = c.miner_id WHERE m.revoked_at IS NULL ORDER BY c.miner_id"
            )
        )
        if not blocks:
            return Restored(miners, CoreSnapshot(counts=counts), history)
        first, last = blocks[0].index, blocks[-1].index
        self._newest, self._prune_blocks = last, True  # a file from before pruning: catch up
        bests = tuple(
            BestRecord(r[0], r[1], int(r[2]), bytes(r[3]), r[4], r[5], r[6], r[7])
            for r in db.execute(
                "SELECT block, farmer_id, nonce, hash, zeros, found_at, miner_id, worker FROM bests"
                " WHERE block >= ? ORDER BY block",
                (first,),
            )
        )
        tallies = tuple(
            TallyRecord(r[0], r[1], r[2], r[3], r[4])
            for r in db.execute(
                "SELECT block, miner_id, worker, accepted, rejected FROM shares WHERE block = ?", (last,)
            )
        )
        nonce_next = {
            farmer_id: int(next_text)
            for farmer_id, next_text in db.execute(
                "SELECT farmer_id, next FROM nonces WHERE block = ?", (last,)
            )
        }
        latest = (
            "SELECT block, farmer_id, status, reason, zeros, reward FROM farmer_status WHERE id IN"
            " (SELECT max(id) FROM farmer_status WHERE block >= ? GROUP BY block, farmer_id) ORDER BY id"
        )
        statuses: list[StatusRecord] = []
        rewards: list[RewardRecord] = []
        for block, farmer_id, status, reason, zeros, reward in db.execute(latest, (first,)):
            statuses.append(StatusRecord(block, farmer_id, status, reason or "", zeros))
            if status == "harvested" and reward is not None:
                rewards.append(RewardRecord(block, farmer_id, int(reward)))
        for block, response in db.execute(
            "SELECT block, response FROM calls WHERE op = 'harvest' AND ok = 1 AND block >= ? ORDER BY id",
            (first,),
        ):
            total = orjson.loads(response).get("totalRewards") if response else None
            if isinstance(total, int | str) and str(total).isdigit():
                rewards.append(RewardRecord(block, "", int(total)))
        snapshot = CoreSnapshot(
            blocks=tuple(blocks),
            bests=bests,
            tallies=tallies,
            statuses=tuple(statuses),
            rewards=tuple(rewards),
            nonce_next=nonce_next,
            counts=counts,
        )
        return Restored(miners, snapshot, history)

    def _load_history(self, db: sqlite3.Connection) -> list[HistoryBucket | BlockHistory]:
        out: list[HistoryBucket | BlockHistory] = []
        for width, keep in KEEP.items():
            # within retention of the newest bucket (History.load prunes against the clock again)
            (newest,) = db.execute("SELECT max(start) FROM history WHERE width = ?", (width,)).fetchone()
            if newest is None:
                continue
            now = newest + width
            for sc, key, wd, start, acc, stale, rej, work, mi, wo in db.execute(
                "SELECT scope, key, width, start, accepted, stale, rejected, work, miners, workers"
                " FROM history"
                " WHERE width = ? AND start >= ? ORDER BY scope, key, start",
                (width, int(now - keep) - width),
            ):
                rejected = tuple(sorted(orjson.loads(rej).items())) if rej else ()
                out.append(HistoryBucket(sc, key, wd, start, acc, stale, rejected, int(work), mi, wo))
        # the block window's summaries only (what the History keeps): older ones are paged from
        # the store (pooler.app.stats.StatsDesk)
        out.extend(block_rows.newest(db, self.keep_blocks))
        return out

    async def history_range(
        self, scope: str, key: str, width: int, since: int, until: int
    ) -> list[HistoryBucket]:
        """One series' buckets starting in ``[since, until)``, oldest first: the part of a stats
        range older than what the History keeps in memory (pooler.stats.history.MEMORY). A range
        scan of the primary key (at most 1,440 rows: a day of minutes)."""

        def read() -> list[HistoryBucket]:
            rows = self._require().execute(
                "SELECT start, accepted, stale, rejected, work, miners, workers FROM history"
                " WHERE scope = ? AND key = ? AND width = ? AND start >= ? AND start < ? ORDER BY start",
                (scope, key, width, since, until),
            )
            return [
                HistoryBucket(
                    scope,
                    key,
                    width,
                    start,
                    acc,
                    stale,
                    tuple(sorted(orjson.loads(rej).items())) if rej else (),
                    int(work),
                    miners,
                    workers,
                )
                for start, acc, stale, rej, work, miners, workers in rows
            ]

        return await self._run(read)

    async def block_page(self, limit: int, before: int | None) -> list[BlockHistory]:
        """Up to ``limit`` block summaries below ``before``, newest first (older /stats/blocks pages)."""
        return await self._run(lambda: block_rows.page(self._require(), limit, before))

    async def block_summary(self, block: int) -> BlockHistory | None:
        return await self._run(lambda: block_rows.one(self._require(), block))

    async def farmer_totals(self) -> list[tuple[str, int, int]]:
        """(farmer id, rewarded blocks, stroops) per farmer over the stored blocks, by id."""
        return await self._run(lambda: block_rows.totals(self._require()))

    async def farmer_rewards(self, farmer_id: str, limit: int) -> tuple[int, list[tuple[int, int]]] | None:
        """A farmer's stroops over the stored blocks and its newest ``limit`` (block, reward)."""
        return await self._run(lambda: block_rows.farmer(self._require(), farmer_id, limit))

    async def integrity_check(self) -> str:
        return await self._run(lambda: str(self._require().execute("PRAGMA integrity_check").fetchone()[0]))


def _json(value: object) -> str | None:
    return None if value is None else orjson.dumps(value, default=_default).decode()


def _default(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store {type(value).__name__}")


def _write(db: sqlite3.Connection, record: Record, now: float) -> None:
    """One record into its table (the schema is MIGRATIONS')."""
    match record:
        case BlockSeen(index, entropy, timestamp):
            db.execute("INSERT OR IGNORE INTO blocks VALUES (?, ?, ?, ?)", (index, entropy, timestamp, now))
        case BestFound(block, farmer_id, best):
            db.execute(
                "INSERT INTO bests VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (block, farmer_id) DO UPDATE SET"
                " nonce = excluded.nonce, hash = excluded.hash, zeros = excluded.zeros,"
                " found_at = excluded.found_at, miner_id = excluded.miner_id, worker = excluded.worker"
                " WHERE excluded.zeros > bests.zeros",
                (
                    block,
                    farmer_id,
                    str(best.nonce),
                    best.hash,
                    best.zeros,
                    ms(best.found_at) / 1000,  # kept at the millisecond the wire has
                    best.miner_id,
                    best.worker,
                ),
            )
        case ShareCounts(block, miner_id, worker, accepted, rejected):
            db.execute(
                "INSERT INTO shares VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (block, miner_id, worker) DO UPDATE SET"
                " accepted = max(shares.accepted, excluded.accepted),"
                " rejected = max(shares.rejected, excluded.rejected)",
                (block, miner_id, worker, accepted, rejected),
            )
        case MinerCounts(miner_id, accepted, rejected, stale):
            db.execute(
                "INSERT INTO miner_counts VALUES (?, ?, ?, ?) ON CONFLICT (miner_id) DO UPDATE SET"
                " accepted = max(miner_counts.accepted, excluded.accepted),"
                " rejected = max(miner_counts.rejected, excluded.rejected),"
                " stale = max(miner_counts.stale, excluded.stale)",
                (miner_id, accepted, rejected, stale),
            )
        case PlantCalled() | WorkCalled() | HarvestCalled():
            _w_call(db, record, now)
        case FarmerStatusChanged(farmer_id, block, status, reason, zeros, reward):
            db.execute(
                "INSERT INTO farmer_status (farmer_id, block, status, reason, zeros, reward, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    farmer_id,
                    block,
                    status,
                    reason or None,
                    zeros,
                    None if reward is None else str(reward),
                    now,
                ),
            )
        case NoncesIssued(block, farmer_id, nxt):
            db.execute(
                "INSERT INTO nonces VALUES (?, ?, ?) ON CONFLICT (block, farmer_id) DO UPDATE SET"
                " next = max(nonces.next, excluded.next)",
                (block, farmer_id, _u64_text(nxt)),
            )
        case WorkerSeen(miner_id, worker, agent):
            db.execute(
                "INSERT INTO workers VALUES (?, ?, ?, ?, ?) ON CONFLICT (miner_id, worker) DO UPDATE SET"
                " agent = coalesce(excluded.agent, workers.agent), last_seen = excluded.last_seen",
                (miner_id, worker, agent, now, now),
            )
        case HistoryBucket(scope, key, width, start, accepted, stale, rejected, work, miners, workers):
            db.execute(
                "INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    scope,
                    key,
                    width,
                    start,
                    accepted,
                    stale,
                    _json(dict(rejected)) if rejected else None,
                    str(work),
                    miners,
                    workers,
                ),
            )
        case BlockHistory():
            db.execute(
                "INSERT OR REPLACE INTO block_history VALUES (?, ?)",
                (record.block, _json(block_history_data(record))),
            )
            block_rows.write_rewards(db, record)
        case RestJobIssued() | NonceCredited():
            pass  # a group's shared state: one instance has nobody to share it with
        case BlockOnChain():
            pass  # kept in its block's BlockHistory (pooler.stats folds it there)


def _w_call(db: sqlite3.Connection, record: PlantCalled | WorkCalled | HarvestCalled, now: float) -> None:
    """A Backend call's outcome: what was asked (work: the submissions), the answer or the error."""
    data = record_data(record)
    response = data.pop("response", None)
    error = data.pop("error", None)
    del data["block"]
    db.execute(
        "INSERT INTO calls (op, block, ok, request, response, error, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            record_kind(record),
            record.block,
            int(record.reply is not None),
            _json(data) if data else None,
            _json(response),
            error,
            now,
        ),
    )


def _u64_text(value: object) -> str:
    if not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise StoreError(f"a nonce counter must be an integer in [0, 2**64), got {value!r}")
    return f"{value:020d}"
