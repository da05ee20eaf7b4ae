"""Durable state behind one small interface; SQLite is the default implementation.

The runner hands the store each batch of ``Persist`` records and waits for ``commit`` before
it lets the acks those records protect go out. A store must make a whole batch durable or
none of it.
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
    async def open(self) -> Restored: ...

    async def commit(self, records: list[Persist]) -> None: ...

    async def save_miner(self, record: MinerRecord) -> None: ...

    async def revoke_miner(self, miner_id: str) -> None: ...

    async def close(self) -> None: ...
