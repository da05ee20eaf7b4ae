"""Backend ports of a group instance: fenced for the leader's cycle, refusing for the rest.

:class:`FencedBackend` checks the lease (:meth:`LeaderLease.fence`) before every call and
before every retry of a call, so a leader that lost its lease mid-retry stops at once, and
sends the lease's epoch as a fencing token in every request (``X-Fencing-Token``).
:class:`FollowerBackend` is the miner-serving coordinator's port: that coordinator emits the
same plant/work calls as a single Pooler would, and they are refused here without a request
(the leader's cycle coordinator makes the real ones).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from typing import Any

from pooler.backend import BackendClient
from pooler.cluster.lease import LeaderLease
from pooler.errors import BackendFenced, BackendRejected

FENCE_HEADER = "X-Fencing-Token"
"""Carries the leader's epoch on every request of the cycle. A Backend that refuses a token
lower than the highest it has seen (the devnet's does, with 409 and ``error: "fenced"``, which
the client raises as :class:`~pooler.errors.BackendFenced`) closes the last window: a call
that passed our fence, then stalled (a GC or VM pause) until a newer leader had called, is
refused there."""


class FencedBackend:
    def __init__(self, base_url: str, timeout: float, retry_attempts: int, lease: LeaderLease) -> None:
        self._lease = lease
        # our own client: its retries sleep through _sleep, which re-checks the lease
        self.client = BackendClient(
            base_url, timeout, retry_attempts, sleep=self._sleep, headers=self._fence_headers
        )
        self.calls: collections.Counter[str] = collections.Counter()  # requests that passed the fence, per op
        self.fenced = 0  # calls the Backend refused for an older fencing token (we were deposed)

    def _fence_headers(self) -> dict[str, str]:
        return {FENCE_HEADER: str(self._lease.epoch)}

    async def _sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._lease.fence("backend retry")

    async def call(
        self, op: str, method: str, path: str, payload: Mapping[str, object] | None, deadline: float
    ) -> dict[str, Any]:
        await self._lease.fence(f"backend {op}")
        self.calls[op] += 1
        try:
            return await self.client.call(op, method, path, payload, deadline)
        except BackendFenced as exc:
            # the Backend has served a newer leader: whatever we believe, we lead no more
            self.fenced += 1
            self._lease.drop(f"the Backend refused our fencing token {self._lease.epoch}: {exc}")
            raise

    async def aclose(self) -> None:
        await self.client.close()


class FollowerBackend:
    """Refuses every call: see the module docstring."""

    async def call(
        self, op: str, method: str, path: str, payload: Mapping[str, object] | None, deadline: float
    ) -> dict[str, Any]:
        raise BackendRejected(
            f"{op}: the block cycle runs on the group's leader; this coordinator serves miners"
        )
