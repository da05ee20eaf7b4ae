"""The miner registry: who may mine, for which farmer, with which token.

Tokens are 32 random bytes shown once at registration; only their SHA-256 is kept
(a token has 256 bits of entropy, so a fast hash is enough and a slow KDF would only
cost the share path). Lookups go by digest and end in a constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pooler.errors import BackendError


@dataclass(frozen=True, slots=True)
class MinerRecord:
    miner_id: str
    farmer_id: str
    farmer: str  # the farmer's custodial G... address, as the Backend reported it
    name: str
    token_hash: bytes = field(repr=False)
    stake_percentage: float = 0.0


class RegisterPort(Protocol):
    async def register_farmer(
        self, pooler_id: str, stake_percentage: float, metadata: Mapping[str, Any] | None = None
    ) -> dict[str, Any]: ...


def new_token() -> str:
    """32 random bytes, URL-safe base64, never starting with "-".

    A token that starts with "-" reads as an option on a command line (``--token -x...`` makes
    argparse fail), so those draws are skipped: 1 in 64, costing under 0.03 bits of 256.
    """
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class MinerRegistry:
    """In-memory view of the miners; a store (when configured) keeps it durable."""

    def __init__(self, pooler_id: str) -> None:
        self._pooler_id = pooler_id
        self._by_token: dict[bytes, MinerRecord] = {}  # token digest -> miner: the auth lookup
        self._by_id: dict[str, MinerRecord] = {}  # miner id -> miner: leave, stats, restore

    def __len__(self) -> int:
        return len(self._by_id)

    def records(self) -> list[MinerRecord]:
        return list(self._by_id.values())

    def add(self, record: MinerRecord) -> None:
        """Known miner (restored from the store at start-up)."""
        self._by_id[record.miner_id] = record
        self._by_token[record.token_hash] = record

    async def register(
        self, backend: RegisterPort, name: str, stake_percentage: float, metadata: Mapping[str, Any] | None
    ) -> tuple[MinerRecord, str]:
        """Register a farmer with the Backend and bind a new miner to it; returns (record, token).

        The record is not added here: the caller adds it once it is durable (a token the pool
        could forget must never work, and a group must never see it before Redis has it)."""
        reply = await backend.register_farmer(self._pooler_id, stake_percentage, metadata)
        farmer_id, farmer = reply.get("farmerId"), reply.get("custodialWallet")
        if not isinstance(farmer_id, str) or not isinstance(farmer, str):
            raise BackendError(
                f"/farmers/register answered without farmerId/custodialWallet: {sorted(reply)}"
            )
        token = new_token()
        record = MinerRecord(
            miner_id="m_" + secrets.token_hex(8),
            farmer_id=farmer_id,
            farmer=farmer,
            name=name,
            token_hash=hash_token(token),
            stake_percentage=stake_percentage,
        )
        return record, token

    def authenticate(self, token: str) -> MinerRecord | None:
        digest = hash_token(token)
        record = self._by_token.get(digest)
        if record is None or not hmac.compare_digest(record.token_hash, digest):
            return None
        return record

    def by_id(self, miner_id: str) -> MinerRecord | None:
        """The miner ``miner_id`` if it is registered here (no token: for the group's own sync)."""
        return self._by_id.get(miner_id)

    def revoke(self, miner_id: str) -> MinerRecord | None:
        record = self._by_id.pop(miner_id, None)
        if record is not None:
            self._by_token.pop(record.token_hash, None)
        return record
