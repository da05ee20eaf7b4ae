"""The leader lease: which instance of the group runs the block cycle, and the fencing token.

Theory of operation
-------------------
The lease is one Redis key, ``{p}:lease``, holding ``"<instance>:<epoch>"`` with a PX expiry.

- Acquire (one Lua script, atomic): ``SET lease pending NX PX ttl``; if that succeeded,
  ``INCR epoch`` and store ``"<instance>:<epoch>"``. The epoch only grows, so every
  acquisition has a token no earlier holder ever had. It is also never below the current
  unix second: if Redis lost the counter (restarted without persistence), the next epoch
  still exceeds every earlier one (unless the group changed leaders more than once a second
  on average since the counter started), so a Backend that refuses older fencing tokens
  does not lock the group out.
- Renew (Lua): ``PEXPIRE`` only if the key still holds our token. A holder that finds
  another token (or none) has lost the lease.
- Local validity: before sending an acquire/renew we read our monotonic clock (t0); on
  success we believe we lead until ``t0 + ttl * (1 - drift)``. Redis starts its ttl when it
  runs the command, after t0, so our belief always ends before Redis's expiry: when another
  instance can acquire, we have already stopped believing. A process paused (SIGSTOP, a GC
  stall, a VM migration) wakes up with its belief expired and acts on nothing.
- Fencing (:meth:`LeaderLease.fence`): every Backend call of the cycle carries the epoch
  (``X-Fencing-Token``, :mod:`pooler.cluster.fence`) and first checks local
  validity, then asks Redis (Lua: ``GET lease == token``), then checks local validity again
  right before the request leaves. Every write of the cycle's records is a Lua script that
  first checks the token (:mod:`pooler.store.redis`), so a deposed leader can neither call
  the Backend nor overwrite what the new leader records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from pooler.errors import FencedOff
from pooler.store.keys import Keys

log = logging.getLogger("pooler.cluster")

_ACQUIRE = """
if not redis.call('SET', KEYS[1], 'pending', 'NX', 'PX', ARGV[2]) then return 0 end
local epoch = redis.call('INCR', KEYS[2])
if epoch < tonumber(ARGV[3]) then
  epoch = tonumber(ARGV[3])
  redis.call('SET', KEYS[2], epoch)
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch, 'PX', ARGV[2])
return epoch
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_CHECK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end return 0"

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaderLease:
    """One instance's view of the lease. Not shared between tasks without the owner's consent:
    the node's leadership loop acquires/renews; any task may call :meth:`fence`."""

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        instance: str,
        ttl: float,
        *,
        drift: float = 0.1,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._keys = keys
        self.instance = instance
        self.ttl = ttl
        self._trust = ttl * (1 - drift)  # how long after t0 we believe a successful renew
        self._monotonic = monotonic
        self._wall = wall  # unix seconds: the epoch's floor (see the module docstring)
        self.token: str | None = None  # "<instance>:<epoch>" while we believe we hold it
        self.epoch = 0  # epoch of the last acquisition (0: never led)
        self._valid_until = 0.0  # monotonic time our belief ends
        self.refusals = 0  # fence checks that failed: calls this instance did not make
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._check = client.register_script(_CHECK)
        self._release = client.register_script(_RELEASE)

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    def held(self) -> bool:
        """Whether we may still act as leader, on local knowledge alone (no Redis round trip)."""
        return self.token is not None and self._monotonic() < self._valid_until

    def remaining(self) -> float:
        return max(0.0, self._valid_until - self._monotonic()) if self.token is not None else 0.0

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True when we now lead (with a new epoch)."""
        t0 = self._monotonic()
        epoch = int(
            await self._acquire(
                keys=[self._keys.lease, self._keys.epoch],
                args=[self.instance, self.ttl_ms, int(self._wall())],
            )
        )
        if epoch <= 0:
            return False
        self.epoch = epoch
        self.token = f"{self.instance}:{epoch}"
        self._valid_until = t0 + self._trust
        log.info("leader lease acquired by %s (epoch %d)", self.instance, epoch)
        return True

    async def renew(self) -> bool:
        """Extend our lease; False (and the lease dropped locally) when it is no longer ours."""
        token = self.token
        if token is None:
            return False
        t0 = self._monotonic()
        ok = int(await self._renew(keys=[self._keys.lease], args=[token, self.ttl_ms]))
        if ok and self.token == token:
            self._valid_until = t0 + self._trust
            return True
        self.drop("another instance holds the lease now" if not ok else "dropped while renewing")
        return False

    def drop(self, why: str) -> None:
        """Stop believing we lead (the lease expired locally, or Redis said it is not ours)."""
        if self.token is not None:
            log.warning("leader lease of %s (epoch %d) lost: %s", self.instance, self.epoch, why)
        self.token = None
        self._valid_until = 0.0

    async def release(self) -> None:
        """Give the lease up at shutdown so another instance takes over at once."""
        token, self.token = self.token, None
        if token is not None:
            await self._release(keys=[self._keys.lease], args=[token])

    def check_local(self, what: str) -> str:
        """The token, or FencedOff when our belief has ended. Synchronous: no await in between."""
        token = self.token
        if token is None or self._monotonic() >= self._valid_until:
            self.refusals += 1
            raise FencedOff(
                f"{what}: refused, {self.instance} does not hold the leader lease (epoch {self.epoch})"
            )
        return token

    async def fence(self, what: str) -> str:
        """Check the lease locally, in Redis, and locally again; the token, or FencedOff."""
        token = self.check_local(what)
        try:
            ok = int(await self._check(keys=[self._keys.lease], args=[token]))
        except Exception as exc:  # Redis unreachable: we cannot prove we lead, so we do not act
            self.refusals += 1
            raise FencedOff(f"{what}: refused, the lease cannot be checked: {exc}") from exc
        if not ok:
            self.refusals += 1
            self.drop("Redis holds another token")
            raise FencedOff(
                f"{what}: refused, epoch {self.epoch} of {self.instance} is no longer the leader's"
            )
        return self.check_local(what)

    def status(self) -> dict[str, Any]:
        return {
            "leader": self.held(),
            "epoch": self.epoch,
            "leaseRemaining": round(self.remaining(), 3),
            "fencedRefusals": self.refusals,
        }
