"""Who is in the group: its miners (a token works on every instance) and its instances.

Miners. A miner registers on one instance, which writes it to Redis (the store announces it
on ``{p}:control``); every other instance admits it when the announcement arrives
(:meth:`Membership.joined`), and drops it on ``left``. After every (re)subscription the miners
are re-read from Redis (:meth:`Membership.sync_miners`), so one lost while Redis was down is
never missed for good. A token this instance does not know yet (a balancer that is not
sticky may send a miner's next request here at once) makes it read the miners from Redis,
at most once a second (:meth:`Membership.admit_unknown`). Admitting a miner puts it in the
registry and tells both coordinators in one step, after its farmer's nonce chunk for the open
block is in.

Instances. Every summary interval each instance writes its dashboard summary to Redis and
reads the others' (:meth:`Membership.share_summaries`); those not refreshed within three
intervals drop out, so the group's totals follow the instances alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pooler.cluster.hub import ClusterHub
from pooler.cluster.nonces import RangeAllocator
from pooler.core.events import Event, MinerJoined, MinerLeft
from pooler.errors import StoreError
from pooler.miners import MinerRecord, MinerRegistry
from pooler.runtime.tasks import TaskSet
from pooler.store.keys import Keys
from pooler.store.redis import miner_from_json

log = logging.getLogger("pooler.cluster")

_LOOKUP_INTERVAL = 1.0  # seconds between reads of the miners for tokens not known here


class Membership:
    """See the module docstring."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        instance: str,
        *,
        registry: MinerRegistry,
        chunks: RangeAllocator,
        post: Callable[[Event], None],
        block_index: Callable[[], int | None],
        hub: ClusterHub,
        summary_interval: float,
        clock: Callable[[], float],
    ) -> None:
        self._redis = client
        self._keys = keys
        self.instance = instance
        self._registry = registry  # the miners whose tokens work here
        self._chunks = chunks
        self._post = post  # to the coordinators (the local one, and the cycle one while leading)
        self._block_index = block_index  # the open block (the gate's): whose chunk a new miner needs
        self._hub = hub  # its own summary and the others' (the group's dashboard totals)
        self._summary_interval = summary_interval
        self._clock = clock
        self._joins = TaskSet("cluster-join")  # joins waiting for their farmer's nonce chunk
        self._last_lookup = -_LOOKUP_INTERVAL  # monotonic time of admit_unknown's last read of Redis
        # miners that left: a join still in flight for one of them must not bring it back (ids are
        # never reused, so the set only grows by revocations)
        self._revoked: set[str] = set()

    # ------------------------------------------------------------ miners

    def joined(self, record: MinerRecord) -> None:
        index = self._block_index()
        if index is not None and self._chunks.counter(index, record.farmer_id).available == 0:
            self._joins.spawn(self._join(record, index), record.miner_id)  # its farmer's chunk first
            return
        self._admit(record)

    async def _join(self, record: MinerRecord, index: int) -> None:
        with contextlib.suppress(RedisError, OSError):  # without a chunk its workers are told "unavailable"
            await self._chunks.prefetch(index, [record.farmer_id])
        self._admit(record)

    def _admit(self, record: MinerRecord) -> None:
        """The miner's token works here from now on, and the coordinators know it before any
        event of its sockets: the registry entry and MinerJoined go together (a hello accepted
        before its MinerJoined would be refused by the core as an unknown miner)."""
        if record.miner_id in self._revoked:
            return  # it left while its join waited for a nonce chunk or a read of Redis
        if self._registry.by_id(record.miner_id) is None:
            self._registry.add(record)
        self._post(joined_event(record))

    def left(self, miner_id: str) -> None:
        self._revoked.add(miner_id)
        self._registry.revoke(miner_id)
        self._post(MinerLeft(miner_id))

    async def sync_miners(self) -> None:
        """Miners from Redis: added or revoked here to match (after a (re)subscription)."""
        raw = await self._redis.hgetall(self._keys.miners)
        shared = {r.miner_id: r for r in (miner_from_json(v) for v in raw.values())}
        local = {r.miner_id for r in self._registry.records()}
        for miner_id in local - shared.keys():  # a miner is added locally only once it is in Redis
            self.left(miner_id)
        for miner_id in shared.keys() - local:
            self.joined(shared[miner_id])

    async def admit_unknown(self, token: str) -> MinerRecord | None:
        """The miner of ``token`` when it registered on another instance a moment ago and its
        announcement has not arrived yet: the miners are read from Redis, at most once a second
        so that unknown tokens cannot make this instance hammer Redis; every one not known here
        is admitted."""
        now = time.monotonic()
        if now - self._last_lookup < _LOOKUP_INTERVAL:
            return None
        self._last_lookup = now
        try:
            raw = await self._redis.hgetall(self._keys.miners)
        except (RedisError, OSError) as exc:
            log.warning("could not look an unknown token up in Redis: %s", exc)
            return None
        for value in raw.values():
            try:
                record = miner_from_json(value)
            except StoreError:
                continue
            if self._registry.by_id(record.miner_id) is None:
                index = self._block_index()
                if index is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await self._chunks.prefetch(index, [record.farmer_id])
                self._admit(record)
        return self._registry.authenticate(token)

    async def registered(self, record: MinerRecord) -> None:
        """A miner registered here: its farmer's nonce chunk for the open block, before its jobs."""
        index = self._block_index()
        if index is not None:
            try:
                await self._chunks.prefetch(index, [record.farmer_id])
            except RedisError as exc:
                log.warning("no nonce chunk for new farmer %s yet: %s", record.farmer_id, exc)

    async def aclose(self) -> None:
        await self._joins.stop()

    # ------------------------------------------------------------ instances

    async def share_summaries(self) -> None:
        """Every summary interval: this instance's summary into Redis, the others' out of it
        (those refreshed within three intervals: a dead instance drops out of the totals)."""
        every = self._summary_interval
        fresh_ms = max(1000, round(3 * every * 1000))
        keys, hub = self._keys, self._hub
        while True:
            await asyncio.sleep(every)
            now_ms = round(self._clock() * 1000)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    if hub.own:
                        pipe.set(keys.summary(self.instance), orjson.dumps(hub.own), px=fresh_ms)
                        pipe.zadd(keys.instances, {self.instance: now_ms})
                    pipe.zremrangebyscore(keys.instances, "-inf", now_ms - fresh_ms)
                    pipe.zrange(keys.instances, 0, -1)
                    replies = await pipe.execute()
                names = [n for n in replies[-1] if n != self.instance]
                raw = await self._redis.mget([keys.summary(n) for n in names]) if names else []
            except (RedisError, OSError) as exc:
                log.debug("summary not shared: %s", exc)
                continue
            others: dict[str, Any] = {}
            for name, value in zip(names, raw, strict=True):
                if value is None:
                    continue
                with contextlib.suppress(orjson.JSONDecodeError):
                    data = orjson.loads(value)
                    if isinstance(data, dict):
                        others[name] = data
            hub.others = others


def joined_event(record: MinerRecord) -> MinerJoined:
    return MinerJoined(record.miner_id, record.farmer_id, record.farmer, record.name)
