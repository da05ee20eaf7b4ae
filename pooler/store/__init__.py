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
from pooler.core.snapshot import CoreSnapshot
from pooler.miners import MinerRecord


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restarted Pooler reloads: its miners, and the coordinator's snapshot."""

    miners: list[MinerRecord] = field(default_factory=list)
    snapshot: CoreSnapshot = field(default_factory=CoreSnapshot)


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

    ``shares`` carry absolute counts (the last of a key wins), ``best`` and ``nonces`` only grow
    (the largest wins, the first on ties, as the SQL does), ``worker`` keeps the last sighting.
    Everything else (calls, status history) is kept, in order.
    """
    out: list[Persist] = []
    slot: dict[tuple[object, ...], int] = {}  # key -> index in out of the record that stands for it
    for record in records:
        d = record.data
        kind = record.kind
        if kind == "shares":
            key: tuple[object, ...] = (kind, d.get("block"), d.get("minerId"), d.get("worker"))
        elif kind in ("best", "nonces"):
            key = (kind, d.get("block"), d.get("farmerId"))
        elif kind == "worker":
            key = (kind, d.get("minerId"), d.get("worker"))
        else:
            out.append(record)
            continue
        at = slot.get(key)
        if at is None:
            slot[key] = len(out)
            out.append(record)
        elif kind == "best":
            if _order(d.get("zeros")) > _order(out[at].data.get("zeros")):
                out[at] = record
        elif kind == "nonces":
            if _order(d.get("next")) > _order(out[at].data.get("next")):
                out[at] = record
        else:
            out[at] = record
    return out


def _order(value: object) -> int:
    # a malformed value is left for the writer to refuse with a clear error
    return value if isinstance(value, int) else -1
