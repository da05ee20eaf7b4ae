"""The coordinator's runner: one inbox, one loop calling ``Coordinator.handle``, effects performed.

Theory of operation
-------------------
Adapters (the WebSocket and REST routes, the block monitor) put events in the inbox
(:class:`~pooler.runtime.inbox.Inbox`, built first and handed to them).
The loop takes everything waiting (a batch), hands each event to the pure core with the
current time, and performs the effects in order:

- ``Send``/``Close`` go to the connection's :class:`Outbox` (never awaited here) or
  complete a REST request's future; a ``Broadcast`` (a new block's one ``block`` frame) is
  encoded once and the same frame queued on each of its sockets' outboxes;
- ``CallBackend``, ``LocalSearch`` and timers become tasks/handles owned by the runner
  that post their outcome back into the inbox as events;
- ``Persist`` records of the batch are committed to the store in ONE transaction before
  any ``Send`` that followed them is delivered. Because the loop drains the whole inbox
  per batch, a busy Pooler commits many shares at once: group commit for free. While a
  commit runs (on the store's thread) the next batch gathers in the inbox.
- A commit that fails turns the ``accepted`` it protected into ``rejected`` (code 28, the
  message says storage failed): an ack is never sent for a share the store may not have.
  After a transient failure (:class:`StoreUnavailable`) the records are kept and written
  with the next batch, so the store catches up with what the core holds in memory.
- After each batch the :class:`Flusher` writes every touched connection's frames at once
  (one write per socket per batch: a busy worker's acks leave together).
- The cyclic garbage collector is held off while a batch is handled and performed, so no
  collection lands between the first and the last job of a new block.

The runner is the only caller of ``handle``; nothing else mutates round state.

An optional :class:`RunnerObserver` (``pooler.app.observe.Observer``) is told what the runner
did: each share answer it delivers, each dashboard event, each Backend call's outcome, each
store commit and how long a new block took to reach every socket's outbox. The calls are
plain method calls with data already at hand; nothing is formatted or awaited for them.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import multiprocessing
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

from pooler.backend import parse_reply, request_body, request_path
from pooler.core.alerts import Alert
from pooler.core.coordinator import Coordinator
from pooler.core.dashboard_events import DashboardEvent
from pooler.core.effects import (
    Broadcast,
    CallBackend,
    CancelTimer,
    Close,
    Effect,
    LimitHit,
    LocalSearch,
    Persist,
    Publish,
    RaiseAlert,
    ReadPails,
    Send,
    SetTimer,
    WatchPails,
)
from pooler.core.events import (
    BATCH_END,
    BackendResult,
    Event,
    LocalSearchDone,
    NewBlock,
    PailsRead,
    TimerFired,
)
from pooler.core.records import RestJobIssued
from pooler.core.rewards import Pail
from pooler.errors import (
    BackendDeadline,
    BackendError,
    BackendUnavailable,
    BackendUnknownOutcome,
    StoreUnavailable,
)
from pooler.runtime import search
from pooler.runtime.hub import EventHub
from pooler.runtime.inbox import Inbox
from pooler.runtime.outbox import Flusher, Outbox
from pooler.runtime.tasks import TaskSet
from pooler.store import coalesce
from protocol.codec import encode_text
from protocol.errors import Code
from protocol.messages import Accepted, Error, Job, Rejected, ServerMessage

log = logging.getLogger("pooler.runtime")

_BATCH_MAX = 4096  # events per batch: bounds the latency one batch adds to the first event in it
_UNSAVED_MAX = 200_000  # records kept for retry while the store is unavailable (after coalescing)


class BackendPort(Protocol):
    """What the runner needs of the Backend client (pooler.backend.BackendClient)."""

    async def call(
        self, op: str, method: str, path: str, payload: Mapping[str, object] | None, deadline: float
    ) -> dict[str, Any]: ...


async def _stop_search_worker(executor: ProcessPoolExecutor) -> None:
    """Stop the local-search worker process now and reap it (with the executor's manager thread).

    Why not ``shutdown(wait=False)`` alone: a worker in the middle of a search runs on to the
    search's deadline, owned by nobody, and outlives the Pooler; ``shutdown(wait=True)`` alone
    would hold the close up until that deadline. A search answer is of no use once the runner
    closes, so the worker is terminated (once the executor has let go of the cancelled searches);
    the executor then fails what was running and its manager thread ends, and both are joined
    (in a thread: joins block).
    """
    procs = list(executor._processes.values())  # private, but the only handle on the processes
    pending = executor._pending_work_items  # the manager thread's dict (private, read only here)
    # Searches queued behind the running one were cancelled with their tasks. The manager thread
    # drops cancelled items when woken by this shutdown; terminating the worker before that would
    # make it fail them again, which Python 3.11 answers with InvalidStateError in that thread.
    executor.shutdown(wait=False, cancel_futures=True)

    def reap() -> None:
        deadline = time.monotonic() + _REAP_S
        while any(item.future.cancelled() for item in list(pending.values())):
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(_REAP_S)
            if proc.is_alive():  # SIGTERM ignored or delayed: no way out of SIGKILL
                proc.kill()
                proc.join()
        executor.shutdown(wait=True, cancel_futures=True)

    await asyncio.to_thread(reap)


_REAP_S = 5.0  # seconds a terminated search worker gets to exit before it is killed


ReadPailsPort = Callable[[int, tuple[tuple[str, str], ...]], Awaitable[tuple[Mapping[str, Pail], int]]]
"""Reads ``Pail(address, block)`` of ``(farmer id, address)`` pairs now, and the ledger the read
reflects (``BlockMonitor.read_pails``)."""


class RunnerObserver(Protocol):
    """What the runner reports as it works (metrics, logs)."""

    def share_answered(self, conn: int, msg: Accepted | Rejected) -> None:
        """An ``accepted``/``rejected`` went to socket or REST reply ``conn``."""

    def limit_hit(self, hit: LimitHit) -> None:
        """The core cut a miner off or refused it (the share-quality guard)."""

    def published(self, event: DashboardEvent) -> None:
        """A dashboard event was published."""

    def backend_done(self, call: CallBackend, result: BackendResult, missed: bool) -> None:
        """A Backend call ended; ``missed``: it failed because its deadline ran out."""

    def store_committed(self, seconds: float, records: int, ok: bool) -> None:
        """A batch of records was committed (or the commit failed)."""

    def block_pushed(self, block: int, seconds: float, sockets: int) -> None:
        """A new block's effects (jobs included) were performed ``seconds`` after it was taken."""


class HistoryPort(Protocol):
    """What the runner needs of the history (pooler.stats.history.History)."""

    def observe(self, effects: list[Effect], now: float) -> None: ...

    def take(self) -> list[Persist]: ...


class StorePort(Protocol):
    """What the runner needs of the store: commit one batch of records durably."""

    async def commit(self, records: list[Persist]) -> None: ...


class Runner:
    """Owns the coordinator, its inbox, the connections' outboxes, timers and effect tasks."""

    def __init__(
        self,
        core: Coordinator,
        backend: BackendPort,
        hub: EventHub,
        *,
        store: StorePort | None = None,
        clock: Callable[[], float] = time.time,
        inbox: Inbox | None = None,
        inbox_size: int = 100_000,
        outbox_size: int = 256,
        review: Callable[[list[Effect]], list[Effect]] | None = None,
        observer: RunnerObserver | None = None,
        alert: Callable[[Alert], None] | None = None,
        watch_pails: Callable[[int, tuple[tuple[str, str], ...]], None] | None = None,
        history: HistoryPort | None = None,
        read_pails: ReadPailsPort | None = None,
    ) -> None:
        self.core = core  # the round state; only _run_loop touches it
        self.hub = hub
        self._backend = backend
        self._store = store  # None: nothing durable (tests of the runner alone, the bare demo)
        # Scale-out hook: after a commit, may turn held acks into rejects (shared duplicate check)
        self._review = review
        self._clock = clock
        # what adapters put events in (given when they were wired to it before the runner existed)
        self.inbox = inbox if inbox is not None else Inbox(inbox_size)
        self._outbox_size = outbox_size
        self._ids = itertools.count(1)  # conn and reply ids share one space: Send(conn) finds either
        self.conns: dict[int, Outbox] = {}  # live WebSocket connections
        self.flusher = Flusher()  # outboxes with frames for the direct write, flushed per batch
        self._replies: dict[int, asyncio.Future[ServerMessage]] = {}  # REST requests awaiting an answer
        self._timers: dict[str, asyncio.TimerHandle] = {}  # key -> pending TimerFired
        # the loop, and the backend calls, searches and overflowing posts in flight: stopped in aclose
        self._tasks = TaskSet("runner")
        self._executor: ProcessPoolExecutor | None = None  # created on the first LocalSearch
        self._loop_task: asyncio.Task[None] | None = None  # the loop (also in _tasks): drain watches it
        self.handled = 0  # events handled since start (metrics, benchmarks)
        self.failures = 0  # events whose handling raised: a bug, logged and survived
        # records of failed commits, retried ahead of the next batch's (the store was unavailable)
        self._unsaved: list[Persist] = []
        self.refused_acks = 0  # accepted turned into rejected because their commit failed
        # set while the loop waits on an empty inbox: drain() uses it to know all acks are out
        self._idle = asyncio.Event()
        self.observer = observer  # None: nobody watches (tests of the runner alone)
        # Where RaiseAlert goes (Alerts.raise_alert); None: the core's alerts are dropped (tests,
        # a group member's miner-serving runner for cycle alerts: only the leader raises those)
        self._alert = alert
        # Where WatchPails goes (BlockMonitor.watch); None: no monitor to tell (tests, followers)
        self._watch_pails = watch_pails
        # Where ReadPails goes (BlockMonitor.read_pails); None: no chain to ask, the read fails
        self._read_pails = read_pails
        # share/block history fed every batch; its records ride on the batch's commit (None: none)
        self.history = history

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Runner:
        self._loop_task = self._tasks.spawn(self._run_loop(), "coordinator")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def drain(self, within: float) -> bool:
        """Wait until every event submitted so far is handled and its acks are queued.

        Used at shutdown, before the sockets close, so the miners get the answers to what they
        sent. Gives up after ``within`` seconds (True if drained). New events may keep coming:
        it only waits for a moment when the inbox is empty and the loop is idle.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while not (self._idle.is_set() and self.inbox.empty()):
            if self._loop_task is None or self._loop_task.done() or loop.time() >= end:
                return False
            await asyncio.sleep(0.005)
        return True

    async def flush(self) -> None:
        """Retry records left by failed commits (shutdown); raises if the store still fails."""
        if self._unsaved and self._store is not None:
            await self._store.commit(self._unsaved)
            self._unsaved = []

    @property
    def unsaved(self) -> int:
        """Records not durable yet because the store was unavailable (/health, metrics)."""
        return len(self._unsaved)

    async def aclose(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        await self._tasks.stop()
        await self.inbox.aclose()
        for fut in self._replies.values():
            if not fut.done():
                fut.cancel()
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await _stop_search_worker(executor)

    # ------------------------------------------------------------ adapters' side

    def new_id(self) -> int:
        return next(self._ids)

    def open_conn(self) -> tuple[int, Outbox]:
        conn = next(self._ids)
        box = self.conns[conn] = Outbox(self._outbox_size, self.flusher)
        return conn, box

    def forget_conn(self, conn: int) -> None:
        box = self.conns.pop(conn, None)
        if box is not None:
            box.closed = True

    async def submit(self, event: Event) -> None:
        """Hand an event to the coordinator (see :class:`Inbox`; adapters hold the inbox itself)."""
        await self.inbox.submit(event)

    def offer(self, event: Event) -> bool:
        return self.inbox.offer(event)

    def post(self, event: Event) -> None:
        self.inbox.post(event)

    async def request(self, make: Callable[[int], Event], within: float = 10.0) -> ServerMessage:
        """Send an event that carries a reply id and wait for the coordinator's answer (REST)."""
        reply = next(self._ids)
        fut: asyncio.Future[ServerMessage] = asyncio.get_running_loop().create_future()
        self._replies[reply] = fut
        try:
            await self.submit(make(reply))
            async with asyncio.timeout(within):  # not wait_for: pooler/runtime/tasks.py
                return await fut
        finally:
            self._replies.pop(reply, None)

    # ------------------------------------------------------------ the loop

    async def _run_loop(self) -> None:
        inbox = self.inbox.queue
        core = self.core
        while True:
            if inbox.empty():
                self._idle.set()
            batch = [await inbox.get()]
            self._idle.clear()
            while len(batch) < _BATCH_MAX:
                try:
                    batch.append(inbox.get_nowait())
                except asyncio.QueueEmpty:
                    break
            now = self._clock()
            effects: list[Effect] = []
            new_block: NewBlock | None = None  # a NewBlock in this batch: its push latency is measured
            pushed_from = 0.0
            # No cyclic-GC pass in the middle of a batch: a new block's jobs (one per socket) then leave
            # in one uninterrupted run, and the collection their allocations trigger comes after them.
            # With ten thousand sockets a full pass takes about a second (docs/benchmarks.md).
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                for event in batch:
                    if type(event) is NewBlock:
                        new_block, pushed_from = event, time.perf_counter()
                    try:
                        effects.extend(core.handle(event, now))
                    except Exception:
                        self.failures += 1
                        log.exception("coordinator failed on %s", type(event).__name__)
                effects.extend(core.handle(BATCH_END, now))  # the batch's share counts, once each
                self.handled += len(batch)
                await self._perform(effects)
            finally:
                if gc_was_enabled:
                    gc.enable()
            # Let the connections' senders flush this batch before the next one: with a deep inbox,
            # inbox.get() never suspends, and a sender that never ran would look like a stuck peer.
            await asyncio.sleep(0)
            if new_block is not None and self.observer is not None:
                self.observer.block_pushed(
                    new_block.index, time.perf_counter() - pushed_from, len(self.conns)
                )

    async def perform(self, effects: list[Effect]) -> None:
        """Perform effects produced outside the loop (``Coordinator.restore`` at start-up)."""
        await self._perform(effects)

    async def _perform(self, effects: list[Effect]) -> None:
        held: list[Effect] | None = None  # effects waiting for the batch's records to be durable
        records: list[Persist] = []
        for effect in effects:
            if isinstance(effect, Persist):
                if self._store is not None:
                    records.append(effect)
                    if held is None:
                        held = []
            elif isinstance(effect, Send | Broadcast | Close) and (
                held is not None
                or (self._store is not None and type(effect) is Send and type(effect.msg) is Accepted)
            ):
                # after the batch's first record, or an ``accepted`` before it: its counts are
                # written at the batch's end (BatchEnd), and it never goes out before they commit
                if held is None:
                    held = []
                held.append(effect)
            else:
                self._do(effect)
        if self.history is not None:
            self.history.observe(effects, self._clock())
            if records:  # the batch commits anyway: the history changed so far goes with it
                records.extend(self.history.take())
        if records and self._store is not None:
            batch = self._unsaved + records if self._unsaved else records
            started = time.perf_counter()
            try:
                await self._store.commit(batch)
                self._unsaved = []
                if self._review is not None:
                    held = self._review(held or [])
            except Exception as exc:
                # Not durable: the acks they protect must not go out as if they were.
                if isinstance(exc, StoreUnavailable):
                    self._unsaved = coalesce(batch)[-_UNSAVED_MAX:]
                    log.error("%s; %d records kept for the next commit", exc, len(self._unsaved))
                else:  # these records can never be written: keeping them would fail every batch
                    self._unsaved = []
                    log.exception("store commit of %d records failed; dropping them", len(batch))
                held = self._refuse_acks(held or [], records)
                if self.observer is not None:
                    self.observer.store_committed(time.perf_counter() - started, len(batch), False)
            else:
                if self.observer is not None:
                    self.observer.store_committed(time.perf_counter() - started, len(batch), True)
        for effect in held or ():
            self._do(effect)
        self.flusher.flush()

    def _refuse_acks(self, held: list[Effect], records: list[Persist]) -> list[Effect]:
        """``held`` with every ``accepted`` replaced by a ``rejected`` that says storage failed,
        and every job whose record was in the failed batch (a group's REST job, which other
        instances must be able to read) by an error: a job nobody else can check is not handed out."""
        unrecorded = {r.record.job.job_id for r in records if isinstance(r.record, RestJobIssued)}
        out: list[Effect] = []
        for effect in held:
            if isinstance(effect, Send) and isinstance(effect.msg, Job) and effect.msg.job in unrecorded:
                why = "the pool could not record this job (storage failure); ask again in a few seconds"
                out.append(Send(effect.conn, Error(Code.UNAVAILABLE, why)))
                continue
            if isinstance(effect, Send) and isinstance(effect.msg, Accepted):
                ack = effect.msg
                self.refused_acks += 1
                # Pending, not lost: the core counted the share (its nonce is taken, its tally
                # and best hold it) and its records are kept and retried with the next commit,
                # so it counts once the store takes them. docs/protocol.md, code 30.
                why = (
                    "pending: the pool could not write this share to its storage yet (storage"
                    " failure); it is kept and counts once storage recovers; do not resend it"
                    " (a resend is a duplicate)"
                )
                effect = Send(effect.conn, Rejected(ack.job, ack.nonce, Code.UNAVAILABLE, why))
            out.append(effect)
        return out

    def _do(self, effect: Effect) -> None:
        match effect:
            case Send(conn, msg):
                box = self.conns.get(conn)
                if box is not None:
                    box.put(encode_text(msg))
                else:
                    fut = self._replies.get(conn)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                if self.observer is not None and (type(msg) is Accepted or type(msg) is Rejected):
                    self.observer.share_answered(conn, msg)
            case Broadcast(conns, msg):
                frame = encode_text(msg)  # once for every socket: the same str on each outbox
                boxes = self.conns
                for conn in conns:
                    box = boxes.get(conn)
                    if box is not None:
                        box.put(frame)
            case Close(conn, code, reason):
                box = self.conns.get(conn)
                if box is not None:
                    box.close(code, reason)
            case Publish(event):
                self.hub.publish(event)
                if self.observer is not None:
                    self.observer.published(event)
            case SetTimer(key, at):
                old = self._timers.pop(key, None)
                if old is not None:
                    old.cancel()
                delay = max(0.0, at - self._clock())
                self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)
            case CancelTimer(key):
                handle = self._timers.pop(key, None)
                if handle is not None:
                    handle.cancel()
            case CallBackend():
                self._spawn(self._call_backend(effect), f"backend-{effect.op}")
            case LocalSearch():
                self._spawn(self._local_search(effect), "local-search")
            case LimitHit():
                if self.observer is not None:
                    self.observer.limit_hit(effect)
            case Persist():
                pass  # no store configured: nothing to make durable
            case RaiseAlert(alert):
                if self._alert is not None:
                    self._alert(alert)
            case WatchPails(block, farmers):
                if self._watch_pails is not None:
                    self._watch_pails(block, farmers)
            case ReadPails():
                self._spawn(self._do_read_pails(effect), "read-pails")

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.post(TimerFired(key))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.spawn(coro, name)

    async def _call_backend(self, call: CallBackend) -> None:
        missed = False  # failed because the deadline ran out (not because the Backend said no)
        try:
            request = call.request
            body = request_body(request)
            response = await self._backend.call(call.op, "POST", request_path(request), body, call.deadline)
            reply = parse_reply(call.op, response)
            result = BackendResult(call.call_id, call.op, call.block, reply)
        except BackendError as exc:
            # The client stops retrying either at its attempt limit or at the deadline; only the
            # latter (or a failure with no time left for another try) means the phase was missed.
            missed = isinstance(exc, BackendDeadline) or (
                isinstance(exc, BackendUnavailable) and self._clock() >= call.deadline
            )
            result = BackendResult(
                call.call_id,
                call.op,
                call.block,
                None,
                error=str(exc),
                status=exc.status,
                retryable=isinstance(exc, BackendUnavailable),
                unknown=isinstance(exc, BackendUnknownOutcome),
            )
        except Exception as exc:  # a bug in the client must still produce a result: the core waits for one
            log.exception("backend %s for block %d failed unexpectedly", call.op, call.block)
            result = BackendResult(call.call_id, call.op, call.block, None, error=repr(exc))
        if self.observer is not None:
            self.observer.backend_done(call, result, missed)
        self.post(result)

    async def _do_read_pails(self, ask: ReadPails) -> None:
        try:
            if self._read_pails is None:
                raise BackendError("no chain reader to settle an unknown outcome with")
            pails, ledger = await self._read_pails(ask.block, ask.farmers)
            done = PailsRead(ask.call_id, ask.block, pails, ledger=ledger)
        except Exception as exc:  # ChainError, or a bug: the core still needs an answer
            done = PailsRead(ask.call_id, ask.block, None, f"{type(exc).__name__}: {exc}")
        self.post(done)

    async def _local_search(self, job: LocalSearch) -> None:
        if self._executor is None:
            # "spawn", never "fork": a forked worker would inherit every socket open at that moment
            # (listening socket, miners' and dashboards' connections) and keep each one alive after
            # the Pooler closed it, so those peers would never see their connection end.
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=search.exit_with_parent,  # never outlive a Pooler that was killed
            )
        loop = asyncio.get_running_loop()
        try:
            nonce, digest, zeros = await loop.run_in_executor(
                self._executor,
                search.search,
                job.block,
                job.entropy,
                job.farmer,
                job.nonce_start,
                job.max_hashes,
                job.deadline,
            )
            done = LocalSearchDone(job.block, job.farmer_id, nonce, digest, zeros)
        except Exception:
            log.exception("local search for farmer %s, block %d failed", job.farmer_id, job.block)
            done = LocalSearchDone(job.block, job.farmer_id, None, None, 0)
        self.post(done)
