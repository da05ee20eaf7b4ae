"""Leadership of a group member: the lease, its terms, and the block cycle run while leading.

The lease loop (:meth:`Leadership.run`) tries the lease (SET NX PX, :mod:`pooler.cluster.lease`)
every ``ttl / 5`` and renews it every ``ttl / 3`` while it holds it. On acquisition a term
begins: the group's round state is loaded from Redis into a fresh *cycle coordinator* (built
by the injected ``make_core`` with the term's epoch; ``Coordinator.restore``, the same path as a
single Pooler's restart mid-block), the miners and the last chain state are replayed into it,
and it runs in a second Runner whose Backend port is fenced (:mod:`pooler.cluster.fence`) and
whose store writes carry the lease token (:class:`CycleStore`). The bests stream is consumed
into it for the term (:meth:`pooler.cluster.channels.Channels.consume_bests`).

Losing the lease (renewal refused, or Redis unreachable until the local belief ends) ends the
term: the stream consumer and the cycle runner (its timers, its calls in flight) are stopped.
Any call or write still attempted is refused by the fence.

    follower ──acquire (SET NX PX)──▶ leader ──renew refused / belief expired──▶ follower
                                         │ restore snapshot, replay miners + chain state,
                                         │ claim pending bests, consume new bests
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol

from redis.exceptions import RedisError

from pooler.cluster.hub import RelayHub
from pooler.cluster.lease import LeaderLease
from pooler.cluster.membership import joined_event
from pooler.core.alerts import Alert
from pooler.core.coordinator import Coordinator
from pooler.core.effects import Persist
from pooler.core.events import Event, FarmPaused, NewBlock
from pooler.errors import StoreError
from pooler.miners import MinerRecord
from pooler.runtime.runner import BackendPort, ReadPailsPort, Runner
from pooler.runtime.tasks import TaskSet
from pooler.stats.history import BlockFeed
from pooler.store.redis import RedisStore

log = logging.getLogger("pooler.cluster")


class Fanout:
    """Events for both coordinators of a member: the miner-serving one always (its runner's
    inbox), the cycle one while this instance leads (set and cleared by :class:`Leadership`)."""

    __slots__ = ("_local", "cycle")

    def __init__(self, local: Callable[[Event], None]) -> None:
        self._local = local  # the miner-serving runner's post: never loses an event
        self.cycle: Runner | None = None  # the leader's cycle runner for the current term, else None

    @property
    def leading(self) -> bool:
        return self.cycle is not None

    def post(self, event: Event) -> None:
        self._local(event)
        if self.cycle is not None:
            self.cycle.post(event)


class CycleStore:
    """The cycle runner's store port: every commit carries (and Redis checks) the lease token."""

    def __init__(self, store: RedisStore, lease: LeaderLease) -> None:
        self._store = store
        self._lease = lease

    async def commit(self, records: list[Persist]) -> None:
        token = self._lease.token
        if token is None or not self._lease.held():
            raise StoreError(f"leader records refused locally: {self._lease.instance} lost the lease")
        await self._store.commit_cycle(records, token)


class ChainState(Protocol):
    """Where a new term's cycle starts: what the chain gate let through last."""

    @property
    def last_block(self) -> NewBlock | None: ...

    @property
    def paused(self) -> bool | None: ...


class Leadership:
    """See the module docstring."""

    def __init__(
        self,
        lease: LeaderLease,
        store: RedisStore,
        backend: BackendPort,
        relay: RelayHub,
        fanout: Fanout,
        *,
        make_core: Callable[[int], Coordinator],
        miners: Callable[[], Iterable[MinerRecord]],
        chain: ChainState,
        announce: Callable[[NewBlock], Awaitable[None]],
        consume_bests: Callable[[Callable[[Event], None]], Coroutine[Any, Any, None]],
        renew_every: float,
        clock: Callable[[], float],
    ) -> None:
        self.lease = lease
        self._store = store  # the round state a term restores; its writes are fenced
        self._backend = backend  # the cycle's Backend port (fenced)
        self._relay = relay  # the cycle runner's hub: its events go to every instance
        self._fanout = fanout  # where a term's cycle runner is plugged in
        self._make_core = make_core  # epoch -> a fresh cycle coordinator
        self._miners = miners  # replayed into a new cycle coordinator
        self._chain = chain
        self._announce = announce
        self._consume_bests = consume_bests
        self._acquire_every = lease.ttl / 5  # a dead leader is replaced within ttl + this
        self._renew_every = renew_every
        self._clock = clock
        self._consumer = TaskSet("cluster-bests")  # the term's bests-stream consumer
        self.terms = 0  # times this instance became leader
        # Plugged in by the wiring once they exist (the Alerts and the block monitor): where the
        # term's cycle runner sends the core's RaiseAlert and WatchPails. None: dropped.
        self.alert: Callable[[Alert], None] | None = None
        self.watch_pails: Callable[[int, tuple[tuple[str, str], ...]], None] | None = None
        # and where its ReadPails go (the monitor's one-off read): unknown outcomes are settled there
        self.read_pails: ReadPailsPort | None = None
        # the block side of the instance's history (History.cycle_feed): the term's cycle runner
        # folds its records there and writes the block summaries (one writer: the leader). None: none
        self.history: BlockFeed | None = None

    @property
    def leading(self) -> bool:
        return self._fanout.leading

    async def run(self) -> None:
        """The lease loop: acquire, renew, step down (see the module docstring)."""
        lease = self.lease
        while True:
            try:
                if not self.leading:
                    if await lease.try_acquire():
                        await self._become_leader()
                elif not await lease.renew():
                    await self.step_down("the lease was renewed by nobody else but it is not ours")
            except (RedisError, OSError, StoreError) as exc:
                log.warning("leadership: %s", exc)
            if self.leading and not lease.held():
                await self.step_down("the lease could not be renewed in time")
            await asyncio.sleep(self._renew_every if self.leading else self._acquire_every)

    async def _become_leader(self) -> None:
        try:
            snapshot = await self._store.load_snapshot()
        except StoreError:
            self.lease.drop("could not load the round state")
            raise
        if self.history is not None:  # go on from the summaries the previous leader wrote
            stored = await self._store.load_block_history(b.index for b in snapshot.blocks)
            self.history.restore(stored)
        epoch = self.lease.epoch
        core = self._make_core(epoch)
        effects = core.restore(snapshot, self._clock())
        runner = Runner(
            core,
            self._backend,
            self._relay,
            store=CycleStore(self._store, self.lease),
            clock=self._clock,
            alert=self.alert,
            watch_pails=self.watch_pails,
            read_pails=self.read_pails,
            history=self.history,
        )
        await runner.__aenter__()
        self._fanout.cycle = runner
        self.terms += 1
        await runner.perform(effects)
        for record in self._miners():
            runner.post(joined_event(record))
        paused, block = self._chain.paused, self._chain.last_block
        if paused is not None:
            runner.post(FarmPaused(paused))
        if block is not None:
            runner.post(block)
            await self._announce(block)
        self._consumer.spawn(self._consume_bests(runner.post), f"epoch-{epoch}")
        log.info(
            "%s leads (epoch %d): restored %d blocks, %d bests",
            self.lease.instance,
            epoch,
            len(snapshot.blocks),
            len(snapshot.bests),
        )

    async def step_down(self, why: str) -> None:
        runner, self._fanout.cycle = self._fanout.cycle, None
        if runner is None:
            return
        self.lease.drop(why)
        await self._consumer.stop()
        await runner.aclose()
        log.warning("%s stopped leading: %s", self.lease.instance, why)

    async def aclose(self) -> None:
        """End the term, if any, and give the lease up so another instance takes over at once."""
        await self.step_down("shutting down")
        with contextlib.suppress(RedisError, OSError):  # it expires on its own
            await self.lease.release()
