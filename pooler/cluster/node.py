"""One instance of a Pooler group on Redis: leadership, the cycle runner, and the shared channels.

Theory of operation
-------------------
Every instance runs the ordinary Pooler (web surfaces, a Runner around a coordinator that
serves its miners) with these differences, all owned by :class:`ClusterNode`:

- Its coordinator is the ordinary one with the group's ports (nonce ranges from Redis chunks,
  every credited nonce reported for the shared duplicate sets) and its
  Backend port refuses every call: it never plants, works or harvests.
- REST jobs are recorded in Redis before they are sent (``share_rest_jobs``), so a REST miner's
  submit may reach any instance: one that does not know the job id reads the job there
  (:meth:`ClusterNode.issued_job`) and checks the share against it.
- Chain events (the instance's own BlockMonitor, plus new blocks the leader announces on
  ``{p}:control``) pass through the *gate*: a new block's nonce chunks are drawn before the
  block reaches a coordinator, and each block is let through once.
- The leadership loop tries the lease (SET NX PX) every ``ttl / 5`` and renews it every
  ``ttl / 3`` while it holds it. On acquisition the instance becomes leader: it loads the
  group's round state from Redis into a fresh *cycle coordinator* (``Coordinator.restore``,
  the same path as a single Pooler's restart mid-block), replays the miners and the last
  chain state into it, and runs it in a second Runner whose Backend port is fenced and whose
  store writes are fenced. Then it consumes the ``{p}:bests`` stream: first every entry
  still pending in the consumer group (delivered to a leader that died before XACK), then new
  ones; each becomes a ``GroupBest`` (the core re-verifies the hash and keeps it if it
  beats the farmer's best) and is XACKed once handed over. A best is in the shared best table
  before its miner's ``accepted`` goes out, so a new leader has it even if the stream lost it.
- Losing the lease (renewal refused, or Redis unreachable until the local belief ends) stops
  the cycle runner: its timers, its calls in flight and its stream consumer are cancelled.
  Any call or write still attempted is refused by the fence.
- ``{p}:events`` carries the leader's cycle events to every instance's dashboards;
  ``{p}:control`` carries miners joined/left (so a token works on every instance) and new
  blocks. On every (re)subscription the miners are re-read from Redis, so a message lost
  while Redis was down is never missed for good.

    follower ──acquire (SET NX PX)──▶ leader ──renew refused / belief expired──▶ follower
                                         │ restore snapshot, replay miners + chain state,
                                         │ claim pending bests, consume new bests
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from pooler.cluster.fence import FencedBackend, FollowerBackend
from pooler.cluster.hub import ClusterHub, RelayHub
from pooler.cluster.keys import BEST_GROUP, Keys
from pooler.cluster.lease import LeaderLease
from pooler.cluster.nonces import RangeAllocator
from pooler.cluster.options import ClusterOptions
from pooler.core.config import CoreConfig
from pooler.core.coordinator import Coordinator
from pooler.core.effects import Persist
from pooler.core.events import (
    Event,
    FarmPaused,
    GroupBest,
    IssuedJob,
    MinerJoined,
    MinerLeft,
    NewBlock,
    NonceRefillDone,
)
from pooler.errors import StoreError
from pooler.miners import MinerRecord
from pooler.runtime.runner import Runner
from pooler.store.redis import RedisStore, miner_from_json, parse_best

if TYPE_CHECKING:
    from pooler.app.service import Pooler

log = logging.getLogger("pooler.cluster")

_GATE_SIZE = 10_000  # chain and control events waiting for their nonce chunks
_LOOKUP_INTERVAL = 1.0  # seconds between reads of the miners for tokens not known here


class _CycleStore:
    """The cycle runner's store port: every commit carries (and Redis checks) the lease token."""

    def __init__(self, store: RedisStore, lease: LeaderLease) -> None:
        self._store = store
        self._lease = lease

    async def commit(self, records: list[Persist]) -> None:
        token = self._lease.token
        if token is None or not self._lease.held():
            raise StoreError(f"leader records refused locally: {self._lease.instance} lost the lease")
        await self._store.commit_cycle(records, token)


class ClusterNode:
    """See the module docstring. Built by the Pooler when ``options.cluster`` is set."""

    def __init__(self, options: ClusterOptions, core: CoreConfig, *, clock: Callable[[], float]) -> None:
        self.options = options
        self.instance = options.instance_id
        self._core_config = core
        self._clock = clock
        self.keys = Keys(options.key_prefix)
        # one client (a connection pool) for everything but pub/sub, which takes its own connection
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            options.redis_url,
            decode_responses=True,
            socket_timeout=options.redis_timeout,
            socket_connect_timeout=options.redis_timeout,
        )
        block_ttl = core.harvest_retention + core.block_interval  # bests, statuses: outlive any harvest
        open_ttl = 3 * core.block_interval + 60  # nonce counters, duplicate sets: while a block takes shares
        self.lease = LeaderLease(self.redis, self.keys, self.instance, options.lease_ttl, drift=options.drift)
        self.allocator = RangeAllocator(self.redis, self.keys, chunk_bits=options.chunk_bits, ttl=open_ttl)
        self.store = RedisStore(
            self.redis, self.keys, instance=self.instance, block_ttl=block_ttl, seen_ttl=open_ttl, clock=clock
        )
        self.hub = ClusterHub(clock, self.instance)  # the Pooler's hub: what its dashboards see
        self.relay = RelayHub(clock)  # the cycle runner's hub: forwarded to every instance
        self.follower_backend = FollowerBackend()
        self.fenced: FencedBackend | None = None  # created in start (needs the Backend URL)
        self._pooler: Pooler | None = None
        self._gate: asyncio.Queue[Event] = asyncio.Queue(_GATE_SIZE)
        self._last_block: NewBlock | None = None  # newest block let through: a new leader starts from it
        self._paused: bool | None = None  # last FarmPaused let through
        self._cycle: Runner | None = None  # the leader's cycle runner, None while a follower
        self._consumer: asyncio.Task[None] | None = None  # the leader's bests-stream consumer
        self._tasks: list[asyncio.Task[None]] = []  # leadership, gate, pub/sub, relay: stopped in aclose
        self._joins: set[asyncio.Task[None]] = set()  # joins waiting for their farmer's nonce chunk
        self._job_prefix = ""  # job ids of this instance's miner-serving coordinator (set in coordinator)
        self._last_lookup = -_LOOKUP_INTERVAL  # monotonic time of admit_unknown's last read of Redis
        # miners that left: a join still in flight for one of them must not bring it back (ids are
        # never reused, so the set only grows by revocations)
        self._revoked: set[str] = set()
        self.terms = 0  # times this instance became leader

    # ------------------------------------------------------------ wiring (called by the Pooler)

    def coordinator(self, config: CoreConfig) -> Coordinator:
        """The miner-serving coordinator; job ids carry the instance name (unique in the group)."""
        cfg = dataclasses.replace(
            config, job_id_prefix=f"{self.instance}.{config.job_id_prefix}", share_rest_jobs=True
        )
        self._job_prefix = cfg.job_id_prefix
        return Coordinator(cfg, nonces=self.allocator, report_credits=True)

    async def issued_job(self, job_id: str) -> IssuedJob | None:
        """A REST job of another instance (or of an earlier start of this one), from Redis; None
        for a job of this instance's coordinator (it knows its own) or an unknown one.
        StoreError when Redis cannot tell."""
        if self._job_prefix and job_id.startswith(self._job_prefix):
            return None
        return await self.store.load_job(job_id)

    def emit(self, event: Event) -> None:
        """The block monitor's callback: chain events go through the gate."""
        try:
            self._gate.put_nowait(event)
        except asyncio.QueueFull:
            log.error("cluster gate full: dropped %s", type(event).__name__)

    async def start(self, pooler: Pooler) -> None:
        self._pooler = pooler
        opts = pooler.options
        self.fenced = FencedBackend(opts.backend_url, opts.backend_timeout, opts.retry_attempts, self.lease)
        self.allocator.on_refill = lambda block, farmer_id: self._post(NonceRefillDone(block, farmer_id))
        self._spawn(self._run_gate(), "cluster-gate")
        self._spawn(self._listen(), "cluster-pubsub")
        self._spawn(self._run_relay(), "cluster-relay")
        self._spawn(self._lead(), "cluster-leadership")
        self._spawn(self._share_summary(), "cluster-summary")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def on_registered(self, record: MinerRecord) -> None:
        """A miner registered here: its farmer's nonce chunk for the open block, before its jobs."""
        blk = self._last_block
        if blk is not None:
            try:
                await self.allocator.prefetch(blk.index, [record.farmer_id])
            except RedisError as exc:
                log.warning("no nonce chunk for new farmer %s yet: %s", record.farmer_id, exc)

    async def aclose(self) -> None:
        tasks = [*self._tasks, *self._joins]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._step_down("shutting down")
        with contextlib.suppress(RedisError, OSError):
            await self.lease.release()
        await self.allocator.aclose()
        if self.fenced is not None:
            await self.fenced.aclose()
        await self.redis.aclose()

    def status(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "role": "leader" if self._cycle is not None else "follower",
            **self.lease.status(),
            "terms": self.terms,
            "backendCalls": dict(self.fenced.calls) if self.fenced is not None else {},
            # calls the Backend refused for an older fencing token: this instance had been deposed
            "backendFenced": self.fenced.fenced if self.fenced is not None else 0,
            "duplicatesRefused": self.store.duplicates,
            "nonceChunks": self.allocator.chunks,
            "instances": 1 + len(self.hub.others),
        }

    # ------------------------------------------------------------ posting

    def _post(self, event: Event) -> None:
        if self._pooler is not None:
            self._pooler.runner.post(event)
        if self._cycle is not None:
            self._cycle.post(event)

    def _farmer_ids(self) -> list[str]:
        assert self._pooler is not None
        return [r.farmer_id for r in self._pooler.registry.records()]

    # ------------------------------------------------------------ the gate

    async def _run_gate(self) -> None:
        while True:
            event = await self._gate.get()
            if isinstance(event, NewBlock):
                last = self._last_block
                if last is not None and event.index <= last.index:
                    continue  # seen already (the monitor and the leader both announce it)
                await self._prefetch_block(event.index)
                self._last_block = event
                self.allocator.forget_before(event.index)
                if self._cycle is not None:
                    await self._announce(event)
            elif isinstance(event, FarmPaused):
                self._paused = event.paused
            self._post(event)

    async def _prefetch_block(self, index: int) -> None:
        delay = 0.1
        while True:
            try:
                await self.allocator.prefetch(index, self._farmer_ids())
                return
            except RedisError as exc:
                log.warning(
                    "block %d waits for its nonce chunks (Redis: %s); retrying in %.1f s", index, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _announce(self, event: NewBlock) -> None:
        msg = {
            "op": "block",
            "index": event.index,
            "entropy": event.entropy.hex(),
            "timestamp": event.timestamp,
            "ledger": event.ledger,
        }
        try:
            await self.redis.publish(self.keys.control, orjson.dumps(msg))
        except RedisError as exc:
            log.warning("could not announce block %d: %s", event.index, exc)

    # ------------------------------------------------------------ pub/sub

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.keys.events, self.keys.control)
                await self._sync_miners()
                delay = 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._on_message(str(message["channel"]), message["data"])
            except (RedisError, OSError) as exc:
                log.warning("cluster pub/sub lost (%s); resubscribing in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _on_message(self, channel: str, data: Any) -> None:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("ignored a malformed message on %s: %.80r", channel, data)
            return
        if not isinstance(msg, dict):
            return
        if channel == self.keys.events:
            kind, body = msg.get("kind"), msg.get("data")
            if isinstance(kind, str) and isinstance(body, dict):
                self.hub.publish_remote(kind, body)
            return
        op = msg.get("op")
        try:
            if op == "joined":
                self._joined(miner_from_json(msg["miner"]))
            elif op == "left":
                self._left(str(msg["minerId"]))
            elif op == "block":
                block = NewBlock(
                    int(msg["index"]),
                    bytes.fromhex(msg["entropy"]),
                    int(msg["timestamp"]),
                    int(msg["ledger"]),
                )
                self.emit(block)
        except (KeyError, ValueError, TypeError, StoreError) as exc:
            log.warning("ignored a malformed control message (%s): %.120r", exc, msg)

    def _joined(self, record: MinerRecord) -> None:
        blk = self._last_block
        if blk is not None and self.allocator.counter(blk.index, record.farmer_id).available == 0:
            # its farmer's chunk first; the join follows through the gate's order
            self._spawn_join(record, blk.index)
            return
        self._admit(record)

    def _admit(self, record: MinerRecord) -> None:
        """The miner's token works here from now on, and the coordinators know it before any
        event of its sockets: the registry entry and MinerJoined go together (a hello accepted
        before its MinerJoined would be refused by the core as an unknown miner)."""
        assert self._pooler is not None
        if record.miner_id in self._revoked:
            return  # it left while its join waited for a nonce chunk or a read of Redis
        registry = self._pooler.registry
        if registry.by_id(record.miner_id) is None:
            registry.add(record)
        self._post(_joined_event(record))

    async def admit_unknown(self, token: str) -> MinerRecord | None:
        """The miner of ``token`` when it registered on another instance a moment ago and its
        announcement has not arrived yet (a balancer that is not sticky may send its next request
        here at once): the miners are read from Redis, at most once a second so that unknown
        tokens cannot make this instance hammer Redis; every one not known here is admitted."""
        assert self._pooler is not None
        now = time.monotonic()
        if now - self._last_lookup < _LOOKUP_INTERVAL:
            return None
        self._last_lookup = now
        try:
            raw = await self.redis.hgetall(self.keys.miners)
        except (RedisError, OSError) as exc:
            log.warning("could not look an unknown token up in Redis: %s", exc)
            return None
        registry = self._pooler.registry
        for value in raw.values():
            try:
                record = miner_from_json(value)
            except StoreError:
                continue
            if registry.by_id(record.miner_id) is None:
                blk = self._last_block
                if blk is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await self.allocator.prefetch(blk.index, [record.farmer_id])
                self._admit(record)
        return registry.authenticate(token)

    def _spawn_join(self, record: MinerRecord, index: int) -> None:
        async def join() -> None:
            with contextlib.suppress(RedisError):
                await self.allocator.prefetch(index, [record.farmer_id])
            self._admit(record)

        task = asyncio.create_task(join())
        self._joins.add(task)
        task.add_done_callback(self._joins.discard)

    def _left(self, miner_id: str) -> None:
        assert self._pooler is not None
        self._revoked.add(miner_id)
        self._pooler.registry.revoke(miner_id)
        self._post(MinerLeft(miner_id))

    async def _sync_miners(self) -> None:
        """Miners from Redis: added or revoked here to match (after a (re)subscription)."""
        assert self._pooler is not None
        raw = await self.redis.hgetall(self.keys.miners)
        shared = {r.miner_id: r for r in (miner_from_json(v) for v in raw.values())}
        local = {r.miner_id for r in self._pooler.registry.records()}
        for miner_id in local - shared.keys():  # a miner is added locally only once it is in Redis
            self._left(miner_id)
        for miner_id in shared.keys() - local:
            self._joined(shared[miner_id])

    async def _run_relay(self) -> None:
        """The leader's cycle events to ``{p}:events`` (dashboard events are not durable)."""
        while True:
            kind, data = await self.relay.queue.get()
            try:
                await self.redis.publish(self.keys.events, orjson.dumps({"kind": kind, "data": data}))
            except RedisError as exc:
                self.relay.dropped += 1
                log.warning("dashboard event %s not relayed: %s", kind, exc)

    async def _share_summary(self) -> None:
        """Every summary interval: this instance's summary into Redis, the others' out of it
        (those refreshed within three intervals: a dead instance drops out of the totals)."""
        every = self._core_config.summary_interval
        fresh_ms = max(1000, round(3 * every * 1000))
        while True:
            await asyncio.sleep(every)
            now_ms = round(self._clock() * 1000)
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    if self.hub.own:
                        pipe.set(self.keys.summary(self.instance), orjson.dumps(self.hub.own), px=fresh_ms)
                        pipe.zadd(self.keys.instances, {self.instance: now_ms})
                    pipe.zremrangebyscore(self.keys.instances, "-inf", now_ms - fresh_ms)
                    pipe.zrange(self.keys.instances, 0, -1)
                    replies = await pipe.execute()
                names = [n for n in replies[-1] if n != self.instance]
                raw = await self.redis.mget([self.keys.summary(n) for n in names]) if names else []
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
            self.hub.others = others

    # ------------------------------------------------------------ leadership

    async def _lead(self) -> None:
        acquire_every = self.options.lease_ttl / 5
        while True:
            try:
                if self._cycle is None:
                    if await self.lease.try_acquire():
                        await self._become_leader()
                elif not await self.lease.renew():
                    await self._step_down("the lease was renewed by nobody else but it is not ours")
            except (RedisError, OSError, StoreError) as exc:
                log.warning("leadership: %s", exc)
            if self._cycle is not None and not self.lease.held():
                await self._step_down("the lease could not be renewed in time")
            await asyncio.sleep(self.options.renew_interval if self._cycle is not None else acquire_every)

    async def _become_leader(self) -> None:
        assert self._pooler is not None and self.fenced is not None
        try:
            snapshot = await self.store.load_snapshot()
        except StoreError:
            self.lease.drop("could not load the round state")
            raise
        epoch = self.lease.epoch
        cfg = dataclasses.replace(self._core_config, job_id_prefix=f"{self.instance}.L{epoch}.")
        core = Coordinator(cfg, nonces=self.allocator)
        now = self._clock()
        effects = core.restore(snapshot, now)
        runner = Runner(
            core, self.fenced, self.relay, store=_CycleStore(self.store, self.lease), clock=self._clock
        )
        await runner.__aenter__()
        self._cycle = runner
        self.terms += 1
        await runner.perform(effects)
        for record in self._pooler.registry.records():
            runner.post(_joined_event(record))
        if self._paused is not None:
            runner.post(FarmPaused(self._paused))
        if self._last_block is not None:
            runner.post(self._last_block)
            await self._announce(self._last_block)
        self._consumer = asyncio.create_task(self._consume_bests(runner), name="cluster-bests")
        log.info(
            "%s leads (epoch %d): restored %d blocks, %d bests",
            self.instance,
            epoch,
            len(snapshot.blocks),
            len(snapshot.bests),
        )

    async def _step_down(self, why: str) -> None:
        runner, self._cycle = self._cycle, None
        consumer, self._consumer = self._consumer, None
        if runner is None:
            return
        self.lease.drop(why)
        if consumer is not None:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
        await runner.aclose()
        log.warning("%s stopped leading: %s", self.instance, why)

    async def _consume_bests(self, runner: Runner) -> None:
        delay = 0.1
        while True:
            try:
                await self._ensure_group()
                await self._claim_pending(runner)
                delay = 0.1
                while True:
                    reply: Any = await self.redis.xreadgroup(
                        BEST_GROUP, self.instance, {self.keys.bests: ">"}, count=500, block=500
                    )
                    for _stream, entries in reply or ():
                        await self._hand_over(runner, entries)
            except (RedisError, OSError) as exc:
                log.warning("bests stream: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.keys.bests, BEST_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _claim_pending(self, runner: Runner) -> None:
        """Entries delivered to a leader (any, this one included) that never XACKed them."""
        start = "0-0"
        while True:
            reply: Any = await self.redis.xautoclaim(
                self.keys.bests, BEST_GROUP, self.instance, min_idle_time=0, start_id=start, count=500
            )
            start, entries = reply[0], reply[1]
            if entries:
                log.info("replaying %d pending best candidates", len(entries))
                await self._hand_over(runner, entries)
            if start in ("0-0", b"0-0"):
                return

    async def _hand_over(self, runner: Runner, entries: list[Any]) -> None:
        ids: list[str] = []
        for entry_id, fields in entries:
            ids.append(entry_id)
            if not fields:
                continue  # trimmed away (MAXLEN) before we read it: the best table has it
            try:
                d = parse_best(fields["best"])
                event = GroupBest(
                    int(d["block"]),
                    str(d["farmerId"]),
                    int(d["nonce"]),
                    bytes.fromhex(d["hash"]),
                    int(d["zeros"]),
                    str(d.get("minerId", "")),
                    str(d.get("worker", "")),
                )
            except (KeyError, ValueError, TypeError, StoreError) as exc:
                log.warning("ignored a malformed best candidate %s: %s", entry_id, exc)
                continue
            runner.post(event)
        if ids:
            await self.redis.xack(self.keys.bests, BEST_GROUP, *ids)


def _joined_event(record: MinerRecord) -> MinerJoined:
    return MinerJoined(record.miner_id, record.farmer_id, record.farmer, record.name)
