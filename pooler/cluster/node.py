"""One instance of a Pooler group on Redis: its parts, assembled.

Theory of operation
-------------------
Every instance runs the ordinary Pooler (web surfaces, a Runner around a coordinator that
serves its miners) with these differences:

- Its coordinator draws nonce ranges from Redis chunks (:mod:`pooler.cluster.nonces`) and
  checks credited nonces against the shared duplicate sets; its Backend port refuses every
  call (:class:`~pooler.cluster.fence.FollowerBackend`): it never plants, works or harvests.
  (Both coordinators are built by the app's wiring, pooler/app/wiring.py.)
- REST jobs are recorded in Redis before they are sent, so a REST miner's submit may reach any
  instance: one that does not know the job id reads the job there (:meth:`ClusterNode.issued_job`).
- Chain events pass through the gate (:mod:`pooler.cluster.gate`): a new block's nonce chunks
  are drawn before the block reaches a coordinator, and each block is let through once.
- Leadership (:mod:`pooler.cluster.leadership`): the holder of the lease runs the block cycle
  in a second, fenced Runner and consumes the bests stream into it.
- Channels (:mod:`pooler.cluster.channels`): pub/sub for the leader's dashboard events, miners
  joined/left and new blocks; the relay of the cycle's events; the bests stream.
- Membership (:mod:`pooler.cluster.membership`): miners admitted and revoked to match Redis (a
  token works on every instance), and the instances' shared summaries.

:class:`GroupResources` is what the member shares with its miner-serving coordinator, runner
and store, built first; :class:`ClusterNode` composes the parts on top of it, runs their loops
in one task group (:meth:`ClusterNode.start`) and stops them (:meth:`ClusterNode.aclose`).
Nothing here holds the Pooler: each part gets the few operations it needs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from pooler.cluster.channels import Channels
from pooler.cluster.fence import FencedBackend, FollowerBackend
from pooler.cluster.gate import ChainGate
from pooler.cluster.hub import ClusterHub, RelayHub
from pooler.cluster.leadership import Fanout, Leadership
from pooler.cluster.lease import LeaderLease
from pooler.cluster.membership import Membership
from pooler.cluster.nonces import RangeAllocator
from pooler.cluster.options import ClusterOptions
from pooler.core.config import CoreConfig
from pooler.core.coordinator import Coordinator
from pooler.core.events import Event, IssuedJob, NewBlock, NonceRefillDone
from pooler.miners import MinerRecord, MinerRegistry
from pooler.runtime.tasks import TaskSet
from pooler.store.keys import Keys
from pooler.store.redis import RedisStore

log = logging.getLogger("pooler.cluster")


@dataclass(frozen=True, slots=True)
class GroupResources:
    """The shared things of a group member, built before its coordinator, runner and store use them."""

    options: ClusterOptions
    redis: aioredis.Redis  # one client (a connection pool) for all but pub/sub (its own connection)
    keys: Keys
    lease: LeaderLease
    allocator: RangeAllocator  # nonce chunks of both coordinators
    store: RedisStore  # the miner-serving runner's store; the leader's writes go through its cycle port
    hub: ClusterHub  # the member's hub: what its dashboards see
    relay: RelayHub  # the leader's cycle runner's hub: forwarded to every instance
    fanout: Fanout  # events for the local coordinator, and the cycle one while leading
    follower: FollowerBackend  # the miner-serving runner's Backend port: refuses every call

    @classmethod
    def connect(
        cls,
        options: ClusterOptions,
        core: CoreConfig,
        *,
        local: Callable[[Event], None],
        clock: Callable[[], float],
    ) -> GroupResources:
        """Everything on one Redis client (no connection is made before the first command);
        ``local`` is the miner-serving runner's inbox (``post``)."""
        keys = Keys(options.key_prefix)
        client: aioredis.Redis = aioredis.Redis.from_url(
            options.redis_url,
            decode_responses=True,
            socket_timeout=options.redis_timeout,
            socket_connect_timeout=options.redis_timeout,
        )
        block_ttl = core.harvest_retention + core.block_interval  # bests, statuses: outlive any harvest
        open_ttl = 3 * core.block_interval + 60  # nonce counters, duplicate sets: while a block takes shares
        fanout = Fanout(local)
        instance = options.instance_id
        return cls(
            options=options,
            redis=client,
            keys=keys,
            lease=LeaderLease(client, keys, instance, options.lease_ttl, drift=options.drift),
            allocator=RangeAllocator(
                client,
                keys,
                chunk_bits=options.chunk_bits,
                ttl=open_ttl,
                on_refill=lambda block, farmer_id: fanout.post(NonceRefillDone(block, farmer_id)),
            ),
            store=RedisStore(
                client, keys, instance=instance, block_ttl=block_ttl, seen_ttl=open_ttl, clock=clock
            ),
            hub=ClusterHub(clock, instance),
            relay=RelayHub(clock),
            fanout=fanout,
            follower=FollowerBackend(),
        )


class ClusterNode:
    """See the module docstring. Built by pooler/app/wiring.py when the options name a group."""

    def __init__(
        self,
        group: GroupResources,
        *,
        registry: MinerRegistry,
        fenced: FencedBackend,
        make_cycle_core: Callable[[int], Coordinator],
        job_prefix: str,
        summary_interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.group = group
        self.instance = group.options.instance_id
        self.allocator = group.allocator
        self.store = group.store
        self.hub = group.hub
        self.fenced = fenced  # the cycle's Backend port (its calls, and the Backend's refusals)
        self._registry = registry
        self._job_prefix = job_prefix  # job ids of this instance's miner-serving coordinator
        self.channels = Channels(group.redis, group.keys, self.instance, group.relay)
        self.gate = ChainGate(
            group.allocator,
            farmers=lambda: [r.farmer_id for r in registry.records()],
            post=group.fanout.post,
            leading=lambda: group.fanout.leading,
            announce=self.channels.announce,
        )
        self.membership = Membership(
            group.redis,
            group.keys,
            self.instance,
            registry=registry,
            chunks=group.allocator,
            post=group.fanout.post,
            block_index=lambda: self.gate.block_index,
            hub=group.hub,
            summary_interval=summary_interval,
            clock=clock,
        )
        self.leadership = Leadership(
            group.lease,
            group.store,
            fenced,
            group.relay,
            group.fanout,
            make_core=make_cycle_core,
            miners=registry.records,
            chain=self.gate,
            announce=self.channels.announce,
            consume_bests=self.channels.consume_bests,
            renew_every=group.options.renew_interval,
            clock=clock,
        )
        self._tasks = TaskSet("cluster")  # the node's task group (run): started in start, stopped in aclose

    # ------------------------------------------------------------ the Pooler's ports

    def emit(self, event: Event) -> None:
        """The block monitor's sink: chain events go through the gate."""
        self.gate.emit(event)

    async def issued_job(self, job_id: str) -> IssuedJob | None:
        """A REST job of another instance (or of an earlier start of this one), from Redis; None
        for a job of this instance's coordinator (it knows its own) or an unknown one.
        StoreError when Redis cannot tell."""
        if self._job_prefix and job_id.startswith(self._job_prefix):
            return None
        return await self.store.load_job(job_id)

    async def admit_unknown(self, token: str) -> MinerRecord | None:
        return await self.membership.admit_unknown(token)

    async def on_registered(self, record: MinerRecord) -> None:
        await self.membership.registered(record)

    def status(self) -> dict[str, Any]:
        fenced = self.fenced
        group = self.hub.group_summary(self.hub.own)  # the instances' shared summaries, summed
        return {
            "instance": self.instance,
            "role": "leader" if self.leadership.leading else "follower",
            **self.group.lease.status(),
            "terms": self.leadership.terms,
            "backendCalls": dict(fenced.calls),
            # calls the Backend refused for an older fencing token: this instance had been deposed
            "backendFenced": fenced.fenced,
            "duplicatesRefused": self.store.duplicates,
            "nonceChunks": self.allocator.chunks,
            "instances": 1 + len(self.hub.others),
            # the group's miners and workers online (a miner on two instances counts on each), as of
            # the instances' last shared summaries; /health's own figures are this instance's
            "groupMinersOnline": group.get("miners", 0),
            "groupWorkers": group.get("workers", 0),
        }

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._tasks.spawn(self.run(), "node")

    async def run(self) -> None:
        """The member's loops, one task group: the gate, pub/sub, the relay, the lease, summaries."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.gate.run(), name="cluster-gate")
            tg.create_task(self.channels.listen(_Inbound(self)), name="cluster-pubsub")
            tg.create_task(self.channels.relay(), name="cluster-relay")
            tg.create_task(self.leadership.run(), name="cluster-leadership")
            tg.create_task(self.membership.share_summaries(), name="cluster-summary")

    async def aclose(self) -> None:
        await self._tasks.stop()
        await self.membership.aclose()
        await self.leadership.aclose()
        await self.allocator.aclose()
        await self.fenced.aclose()
        await self.group.redis.aclose()


class _Inbound:
    """What arrives on the group's channels, to the part it concerns."""

    __slots__ = ("_node",)

    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    async def subscribed(self) -> None:
        await self._node.membership.sync_miners()

    def joined(self, record: MinerRecord) -> None:
        self._node.membership.joined(record)

    def left(self, miner_id: str) -> None:
        self._node.membership.left(miner_id)

    def block(self, event: NewBlock) -> None:
        self._node.gate.emit(event)

    def event(self, kind: str, data: Mapping[str, Any]) -> None:
        self._node.hub.publish_remote(kind, data)
