"""Durable state behind one small interface; SQLite is the default implementation.

The runner hands the store each batch of ``Persist`` records and waits for ``commit`` before
it lets the acks those records protect go out. A store must make a whole batch durable or
none of it, and raise :class:`pooler.errors.StoreUnavailable` when the same batch may succeed
later (the runner then retries it), any other :class:`pooler.errors.StoreError` when not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pooler.core.effects import Persist
from pooler.core.records import (
    BestFound,
    BlockHistory,
    HistoryBucket,
    MinerCounts,
    NoncesIssued,
    Record,
    ShareCounts,
    WorkerSeen,
)
from pooler.core.snapshot import CoreSnapshot
from pooler.miners import MinerRecord


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restarted Pooler reloads: its miners, the coordinator's snapshot, the history."""

    miners: list[MinerRecord] = field(default_factory=list)
    snapshot: CoreSnapshot = field(default_factory=CoreSnapshot)
    # share buckets (oldest first per series) and block summaries within retention (pooler.stats)
    history: list[HistoryBucket | BlockHistory] = field(default_factory=list)


class Store(Protocol):
    commits: int  # batches committed since start (metrics, benchmarks)
    # why the newest write failed, "" while the last one succeeded (readiness: /health/ready)
    last_error: str

    async def open(self) -> Restored: ...

    async def commit(self, records: list[Persist]) -> None: ...

    async def save_miner(self, record: MinerRecord) -> None: ...

    async def revoke_miner(self, miner_id: str) -> None: ...

    async def close(self) -> None: ...

    async def integrity_check(self) -> str: ...


def coalesce(records: list[Persist]) -> list[Persist]:
    """The records of one transaction with superseded ones dropped; same effect on the tables.

    ``ShareCounts`` and ``MinerCounts`` carry absolute counts (the last of a key wins), ``BestFound`` and
    ``NoncesIssued`` only grow (the largest wins, the first on ties, as the SQL does),
    ``WorkerSeen`` keeps the last sighting, history buckets and block summaries are absolute.
    Everything else (calls, status history, credits)
    is kept, in order.
    """
    out: list[Persist] = []
    slot: dict[tuple[object, ...], int] = {}  # key -> index in out of the record that stands for it
    for p in records:
        match p.record:
            case ShareCounts(block=b, miner_id=m, worker=w):
                key: tuple[object, ...] = ("shares", b, m, w)
            case MinerCounts(miner_id=m):
                key = ("miner_counts", m)
            case BestFound(block=b, farmer_id=f):
                key = ("best", b, f)
            case NoncesIssued(block=b, farmer_id=f):
                key = ("nonces", b, f)
            case WorkerSeen(miner_id=m, worker=w):
                key = ("worker", m, w)
            case HistoryBucket(scope=sc, key=k, width=wd, start=st):
                key = ("history", sc, k, wd, st)
            case BlockHistory(block=b):
                key = ("block_history", b)
            case _:
                out.append(p)
                continue
        at = slot.get(key)
        if at is None:
            slot[key] = len(out)
            out.append(p)
        elif _grows(out[at].record, p.record):
            out[at] = p
    return out


def _grows(old: Record, new: Record) -> bool:
    """Whether ``new`` supersedes ``old`` (same key)."""
    match old, new:
        case BestFound(best=a), BestFound(best=b):
            return b.zeros > a.zeros
        case NoncesIssued(next=a), NoncesIssued(next=b):
            return b > a
    return True  # absolute counts, last sighting: the newer stands
