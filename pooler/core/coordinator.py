"""The coordinator: all round state of the Pooler, as a pure ``handle(event, now) -> effects``.

Theory of operation
===================

One KALE block N (timestamp T, interval I = 300 s) goes through these phases; the phase the
dashboard sees is computed from the block's state (``BlockState.phase``), published when it
changes:

    idle ──NewBlock(N)──▶ planting ──plant result──▶ mining ──workAt──▶ submitting ──result──▶ worked
                             │  (jobs already out)                          ▲   │ better hash: resubmit
                             │                                              └───┘ (until T+I-margin)
                             ▼
      any phase ──FarmPaused(True)──▶ paused ──FarmPaused(False)──▶ back where it was
      mining/worked ──T+I (deadline)──▶ closed ──NewBlock(N+1)──▶ N is harvested, N+1 starts

- NewBlock(N): the previous block is closed (its jobs become stale, its tallies flushed,
  planted-but-unworked farmers fail). Jobs with ``clean=True`` go to every connected worker
  and ``/plant`` N is called in the same effects list (plant runs while miners hash).
  Timers: ``search:N`` (workAt - lead), ``work:N`` (workAt), ``end:N`` (T+I),
  ``late-plant:N`` (T+I+grace). Every worked, unharvested older block is harvested now
  (``index < FarmIndex`` holds for all of them).
- Plant result: the planted farmers are ``results[].farmerId`` with ``ok`` when the Backend
  lists them, else every farmer known at the call.
- ``search:N``: planted farmers whose miners found nothing get a bounded ``LocalSearch`` so
  no stake is forfeited for want of a nonce; its result becomes the farmer's best.
- ``work:N``: one ``/work`` call with every planted farmer's best (deadline T+I). After it,
  any strictly better best (more zeros) is resubmitted for that farmer alone while
  ``now < T+I-margin``, one call per farmer in flight at a time. A failed call is retried on
  ``work-retry:N`` while the deadline allows; past it the loss is reported.
- ``end:N``: past the deadline nothing can be submitted; shares are still accepted (miners
  keep hashing until the next block) but only count in the tallies.
- ``late-plant:N``: nobody opened N+1 -> we ``/plant`` N+1 ourselves (that opens it on chain);
  when NewBlock(N+1) then arrives it adopts that plant instead of planting again.
- Harvest N: when N+1 is seen; a failed harvest retries on ``harvest-retry:N`` (backing off)
  while the block's TEMPORARY entries live (``harvest_retention_blocks``), then fails.

Shares (the hot path, ``_share``): job known, of this miner and of the current block (STALE)
-> nonce in [start, end) (OUT_OF_RANGE) -> (farmer, block, nonce) not seen (DUPLICATE) ->
server hash equals any client hash (INVALID_HASH) -> zeros >= the worker's difficulty, or the
previous one during the grace after a change (LOW_ZEROS). Accepted: tallies, best per
farmer, ``Persist`` effects, then the ``Send``.

Connections: the same (miner, worker name) may be connected more than once; each connection
is its own worker (own difficulty, own jobs) and they share one durable tally. Nothing is
replaced: a reconnect racing the old socket's death and two rigs left on the worker name
"default" both keep working instead of kicking each other off in a loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pooler.core.config import CoreConfig
from pooler.core.cycle import BlockState, CallRecord, FarmerRound, FarmerStatus, LatePlant, Phase, ms
from pooler.core.effects import (
    CallBackend,
    CancelTimer,
    Close,
    Effect,
    LocalSearch,
    Persist,
    Publish,
    Send,
    SetTimer,
)
from pooler.core.events import (
    BackendResult,
    ChainHealth,
    Event,
    FarmPaused,
    IssuedJob,
    LocalSearchDone,
    MinerJoined,
    MinerLeft,
    MoreRequested,
    NewBlock,
    NonceRefillDone,
    RestShareSubmitted,
    RestWorkRequested,
    ShareSubmitted,
    StatsRequested,
    TimerFired,
    WorkerConnected,
    WorkerDisconnected,
)
from pooler.core.miners import FarmerState, MinerState, Session
from pooler.core.nonces import range_size
from pooler.core.shares import Best, FarmerBlock, JobRecord, Tally
from pooler.core.snapshot import (
    BestRecord,
    BlockRecord,
    CoreSnapshot,
    RewardRecord,
    StatusRecord,
    TallyRecord,
)
from pooler.core.views import BlockView, CoreView, FarmerStatusView, FarmerView, MinerView, WorkerView
from pooler.errors import PoolerError
from protocol.errors import Code
from protocol.messages import Accepted, Difficulty, Error, Job, Rejected, Share, Stats, Welcome

_BLOCK_TIMERS = ("work", "search", "end", "late-plant", "work-retry")
_RESTORED_NONCE_START = 1 << 63  # where a restored block's ranges start when no counter was kept


class Coordinator:
    """The Pooler's round state machine. Not thread-safe: one owner calls :meth:`handle`."""

    def __init__(self, config: CoreConfig) -> None:
        self._config = config
        self._farmers: dict[str, FarmerState] = {}  # farmer id -> address; kept once known
        self._miners: dict[str, MinerState] = {}  # registered miners (joined, not left)
        self._sessions: dict[int, Session] = {}  # WebSocket conn -> its worker
        # (miner id, worker name) -> last difficulty: a reconnecting GPU must not restart at
        # the initial difficulty and flood the pool until vardiff catches up again
        self._last_zeros: dict[tuple[str, str], int] = {}
        self._jobs: dict[str, JobRecord] = {}  # job id -> job, current block only (older = stale)
        self._job_seq = 0  # job ids: prefix + hex counter, unique for the process's life
        self._call_seq = 0  # CallBackend ids, matched by BackendResult
        self._calls: dict[int, CallRecord] = {}  # Backend calls awaiting their result
        self._block: BlockState | None = None  # the newest block seen (current FarmIndex)
        # recent blocks by index: the current one, those awaiting harvest, and history for views
        self._blocks: dict[int, BlockState] = {}
        self._late: LatePlant | None = None  # our plant opening the next block, until it is seen
        # (miner id, worker name) -> durable share counts of the current block
        self._tallies: dict[tuple[str, str], Tally] = {}
        self._rewards: dict[str, int] = {}  # farmer id -> stroops harvested (for stats)
        self._paused = False  # FarmPaused: no plant/work calls, no new jobs
        self._chain_ok = True  # last ChainHealth, for /health and the view
        self._chain_detail = ""
        self._accepted = 0  # shares of the current block, pool-wide (summary)
        self._rejected = 0
        self._accepted_total = 0  # since start
        self._rejected_total = 0
        self._phase: Phase = "idle"  # last phase published: publish on change only
        self._phase_dirty = False  # the share path started a /work call: recompute the phase
        self._started = False  # start() armed the periodic timers
        self._handlers: dict[type, Callable[[Any, float], list[Effect]]] = {
            NewBlock: self._on_new_block,
            FarmPaused: self._on_paused,
            ChainHealth: self._on_chain_health,
            MinerJoined: self._on_miner_joined,
            MinerLeft: self._on_miner_left,
            WorkerConnected: self._on_connected,
            WorkerDisconnected: self._on_disconnected,
            MoreRequested: self._on_more,
            StatsRequested: self._on_stats,
            RestWorkRequested: self._on_rest_work,
            RestShareSubmitted: self._on_rest_share,
            BackendResult: self._on_backend_result,
            TimerFired: self._on_timer,
            LocalSearchDone: self._on_local_search_done,
            NonceRefillDone: self._on_nonces_granted,
        }

    # ------------------------------------------------------------------ entry points

    @property
    def config(self) -> CoreConfig:
        return self._config

    def start(self, now: float) -> list[Effect]:
        """Arm the periodic timers. :meth:`handle` calls it on the first event if nobody did."""
        if self._started:
            return []
        self._started = True
        return [
            SetTimer("summary", now + self._config.summary_interval),
            SetTimer("vardiff", now + self._config.vardiff_target_interval),
        ]

    def handle(self, event: Event, now: float) -> list[Effect]:
        """Apply ``event`` at unix time ``now``; the effects to perform, in order."""
        if type(event) is ShareSubmitted:  # the hot path: no dispatch dict, no phase work
            sess = self._sessions.get(event.conn)
            if sess is None:
                return [Send(event.conn, Error(Code.NO_HELLO, "send 'hello' before any 'share'"))]
            effects = self._share(sess.miner, sess, event.conn, event.share, now)
            if self._phase_dirty:
                self._publish_phase(effects, now)
            return effects
        effects = [] if self._started else self.start(now)
        handler = self._handlers.get(type(event))
        if handler is None:
            raise PoolerError(f"the coordinator has no handler for {type(event).__name__}")
        effects += handler(event, now)
        self._publish_phase(effects, now)
        return effects

    # ------------------------------------------------------------------ chain events

    def _on_new_block(self, ev: NewBlock, now: float) -> list[Effect]:
        cur = self._block
        if cur is not None and ev.index <= cur.index:
            return []  # seen already (a monitor restart re-announces it) or older: nothing new
        effects: list[Effect] = [
            Persist("block", {"index": ev.index, "entropy": ev.entropy.hex(), "timestamp": ev.timestamp})
        ]
        if cur is not None:
            self._close_block(cur, effects, now)
        blk = BlockState(ev.index, ev.entropy, ev.timestamp, self._config)
        self._blocks[ev.index] = blk
        self._block = blk
        self._accepted = self._rejected = 0
        for miner in self._miners.values():
            miner.block_accepted = miner.block_rejected = 0
            miner.block_best = -1
        for fid in self._farmers:
            blk.round(fid)
        effects.append(Publish("block", self._block_data(blk)))
        late, self._late = self._late, None
        adopt = late is not None and late.index == ev.index and (late.result is None or late.result.ok)
        if not self._paused:
            self._open_block(blk, effects, now, plant=not adopt)
        if adopt and late is not None:
            blk.plant = "pending"
            blk.plant_call = late.call_id
            if late.result is not None:  # answered before the block was seen: apply it now
                self._apply_plant(blk, late.rec, late.result, effects, now, publish=False)
        for old in sorted(self._blocks.values(), key=lambda b: b.index):
            if old.index < ev.index and old.harvest == "pending":
                self._harvest(old, effects, now)
        self._prune_blocks()
        return effects

    def _open_block(self, blk: BlockState, effects: list[Effect], now: float, *, plant: bool) -> None:
        """Plant (unless adopted), jobs to every connected worker, and the block's timers."""
        blk.opened = True
        if plant:
            blk.plant = "pending"
            blk.plant_call = self._plant(blk.index, effects, blk.ends_at - self._config.safety_margin)
        for conn, sess in self._sessions.items():
            self._send_job(sess, conn, blk, True, effects, now)
        n = blk.index
        effects.append(SetTimer(f"search:{n}", blk.search_at))
        effects.append(SetTimer(f"work:{n}", blk.work_at))
        effects.append(SetTimer(f"end:{n}", blk.ends_at))
        effects.append(SetTimer(f"late-plant:{n}", blk.ends_at + self._config.late_plant_grace))

    def _close_block(self, blk: BlockState, effects: list[Effect], now: float) -> None:
        """A newer block exists: N's jobs are stale, its counts flushed, its harvest due."""
        blk.closed = True
        n = blk.index
        effects.extend(CancelTimer(f"{kind}:{n}") for kind in _BLOCK_TIMERS)
        for tally in self._tallies.values():
            if tally.rejected != tally.persisted_rejected:
                effects.append(Persist("shares", tally.record()))
        self._tallies = {}
        self._jobs.clear()
        for sess in self._all_sessions():
            sess.jobs = []
        for fid, fr in blk.rounds.items():
            if fr.status == "planted" and fr.in_flight is None and not fr.searching:
                self._set_status(
                    blk, fid, "failed", "no work was recorded before the next block opened", effects
                )
        if blk.work_tried and blk.harvest == "none":
            blk.harvest = "pending"

    def _on_paused(self, ev: FarmPaused, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if ev.paused == self._paused:
            return effects
        self._paused = ev.paused
        blk = self._block
        if ev.paused or blk is None or blk.closed:
            return effects
        if not blk.opened:
            if now < blk.ends_at - self._config.safety_margin:
                self._open_block(blk, effects, now, plant=blk.plant == "none")
        elif blk.plant == "done":
            if now >= blk.search_at:
                self._local_search(blk, effects, now)
            if blk.work_due and not blk.retry_pending:
                self._submit_work(blk, blk.planted(), effects, now)
        return effects

    def _on_chain_health(self, ev: ChainHealth, now: float) -> list[Effect]:
        self._chain_ok = ev.ok
        self._chain_detail = ev.detail
        return [Publish("chain", {"ok": ev.ok, "detail": ev.detail})]

    # ------------------------------------------------------------------ miners and workers

    def _on_miner_joined(self, ev: MinerJoined, now: float) -> list[Effect]:
        farmer = self._farmers.get(ev.farmer_id)
        if farmer is None:
            farmer = self._farmers[ev.farmer_id] = FarmerState(ev.farmer_id, ev.farmer)
            if self._block is not None and not self._block.closed:
                self._block.round(ev.farmer_id)
        old = self._miners.get(ev.miner_id)
        if old is not None:
            if old.farmer is farmer:
                old.name = ev.name
                return []  # replayed: nothing changed
            old.farmer.miners.discard(ev.miner_id)  # rebound to another farmer: new jobs follow it
            old.farmer = farmer
            old.name = ev.name
            farmer.miners.add(ev.miner_id)
            return []
        self._miners[ev.miner_id] = MinerState(ev.miner_id, farmer, ev.name)
        farmer.miners.add(ev.miner_id)
        return [Publish("miner", {"minerId": ev.miner_id, "farmerId": ev.farmer_id, "event": "joined"})]

    def _on_miner_left(self, ev: MinerLeft, now: float) -> list[Effect]:
        miner = self._miners.pop(ev.miner_id, None)
        if miner is None:
            return []
        effects: list[Effect] = []
        for conn in sorted(miner.sessions):
            sess = self._sessions.pop(conn, None)
            if sess is not None:
                sess.alive = False
            effects.append(Close(conn, 1000, "miner left"))
        for sess in miner.rest.values():
            sess.alive = False
        miner.sessions.clear()
        miner.rest.clear()
        # its jobs die with it; its accepted shares and the farmer's best stay for /work
        for job_id in [jid for jid, job in self._jobs.items() if job.miner is miner]:
            del self._jobs[job_id]
        for key in [k for k in self._last_zeros if k[0] == ev.miner_id]:
            del self._last_zeros[key]
        miner.farmer.miners.discard(ev.miner_id)
        effects.append(
            Publish("miner", {"minerId": ev.miner_id, "farmerId": miner.farmer.farmer_id, "event": "left"})
        )
        return effects

    def _on_connected(self, ev: WorkerConnected, now: float) -> list[Effect]:
        miner = self._miners.get(ev.miner_id)
        if miner is None:
            return [
                Send(ev.conn, Error(Code.UNAUTHORIZED, f"miner {ev.miner_id!r} is not registered here")),
                Close(ev.conn, 1008, "unknown miner"),
            ]
        effects: list[Effect] = []
        if ev.conn in self._sessions:  # a second hello on one socket: start that worker afresh
            effects += self._on_disconnected(WorkerDisconnected(ev.conn), now)
        zeros = self._last_zeros.get((ev.miner_id, ev.worker), self._config.share_zeros_initial)
        sess = Session(ev.conn, miner, ev.worker, ev.agent, zeros, now)
        self._sessions[ev.conn] = sess
        miner.sessions.add(ev.conn)
        farmer = miner.farmer
        effects.append(Persist("worker", {"minerId": miner.miner_id, "worker": ev.worker, "agent": ev.agent}))
        effects.append(Send(ev.conn, Welcome(miner.miner_id, ev.worker, farmer.farmer_id, farmer.address)))
        blk = self._block
        if blk is not None and blk.opened and not blk.closed:
            self._send_job(sess, ev.conn, blk, True, effects, now)
        effects.append(
            Publish(
                "miner",
                {
                    "minerId": miner.miner_id,
                    "farmerId": farmer.farmer_id,
                    "event": "connected",
                    "worker": ev.worker,
                },
            )
        )
        return effects

    def _on_disconnected(self, ev: WorkerDisconnected, now: float) -> list[Effect]:
        sess = self._sessions.pop(ev.conn, None)
        if sess is None:
            return []
        sess.alive = False  # its jobs stay valid for its miner: a reconnect may still submit on them
        miner = sess.miner
        miner.sessions.discard(ev.conn)
        self._last_zeros[(miner.miner_id, sess.name)] = sess.vd.zeros
        data = {
            "minerId": miner.miner_id,
            "farmerId": miner.farmer.farmer_id,
            "event": "disconnected",
            "worker": sess.name,
        }
        return [Publish("miner", data)]

    def _on_more(self, ev: MoreRequested, now: float) -> list[Effect]:
        sess = self._sessions.get(ev.conn)
        if sess is None:
            return [Send(ev.conn, Error(Code.NO_HELLO, "send 'hello' before 'more'"))]
        blk = self._block
        if blk is None or not blk.opened or blk.closed:
            return [Send(ev.conn, Error(Code.STALE, "no block is open; a job follows when one opens"))]
        old = self._jobs.get(ev.job) if ev.job is not None else None
        if old is not None and old.session is sess and now > old.issued_at:
            # the range was hashed through: an exact hashrate, long before shares tell
            sess.more_rate = (old.nonce_end - old.nonce_start) / (now - old.issued_at)
        effects: list[Effect] = []
        self._send_job(sess, ev.conn, blk, False, effects, now)
        return effects

    def _on_stats(self, ev: StatsRequested, now: float) -> list[Effect]:
        miner = self._miners.get(ev.miner_id)
        if miner is None:
            return [Send(ev.conn, Error(Code.UNAUTHORIZED, f"miner {ev.miner_id!r} is not registered here"))]
        sessions = self._miner_sessions(miner)
        sess = self._sessions.get(ev.conn)
        share_zeros = sess.vd.zeros if sess is not None and sess.miner is miner else None
        blk = self._block
        stats = Stats(
            miner_id=miner.miner_id,
            farmer_id=miner.farmer.farmer_id,
            block=None if blk is None else blk.index,
            workers=len(sessions),
            hashrate=sum(s.hashrate(now) for s in sessions),
            accepted=miner.accepted,
            rejected=miner.rejected,
            stale=miner.stale,
            best_zeros=None if miner.block_best < 0 else miner.block_best,
            share_zeros=share_zeros,
            rewards=self._rewards.get(miner.farmer.farmer_id, 0),
        )
        return [Send(ev.conn, stats)]

    def _on_rest_work(self, ev: RestWorkRequested, now: float) -> list[Effect]:
        miner = self._miners.get(ev.miner_id)
        if miner is None:
            return [Send(ev.reply, Error(Code.UNAUTHORIZED, f"miner {ev.miner_id!r} is not registered here"))]
        blk = self._block
        if blk is None or not blk.opened or blk.closed:
            return [Send(ev.reply, Error(Code.STALE, "no block is open; ask again in a few seconds"))]
        sess = self._rest_session(miner, ev.worker, now)
        effects: list[Effect] = []
        self._send_job(sess, ev.reply, blk, sess.jobs_block != blk.index, effects, now)
        return effects

    def _on_rest_share(self, ev: RestShareSubmitted, now: float) -> list[Effect]:
        miner = self._miners.get(ev.miner_id)
        if miner is None:
            return [Send(ev.reply, Error(Code.UNAUTHORIZED, f"miner {ev.miner_id!r} is not registered here"))]
        job = self._jobs.get(ev.share.job)
        if job is None and ev.issued is not None:
            job = self._adopt(miner, ev.issued, now)
        sess: Session | None = None
        if job is not None and job.miner is miner:
            sess = job.session
            if not sess.alive:  # its worker went idle or disconnected: credit a REST worker of that name
                sess = self._rest_session(miner, sess.name, now)
            sess.last_seen = now
        return self._share(miner, sess, ev.reply, ev.share, now)

    def _adopt(self, miner: MinerState, issued: IssuedJob, now: float) -> JobRecord | None:
        """A REST job another instance of the group issued, taken on here; None when it is not a
        job of this miner's farmer for the block open here (then the share is STALE as usual).

        The range was drawn from the group's shared nonce space by the issuing instance, and the
        duplicate check is shared, so a share on it is checked here exactly as there."""
        blk = self._block
        if (
            blk is None
            or not blk.opened
            or blk.closed
            or issued.block != blk.index
            or issued.miner_id != miner.miner_id
            or issued.farmer_id != miner.farmer.farmer_id
            or not 0 <= issued.nonce_start < issued.nonce_end
        ):
            return None
        sess = self._rest_session(miner, issued.worker, now)
        fb = self._farmer_block(blk, miner.farmer)
        rec = JobRecord(
            issued.job_id,
            miner,
            sess,
            fb,
            issued.nonce_start,
            issued.nonce_end,
            issued.share_zeros,
            issued.issued_at,
        )
        self._hold_job(sess, rec, blk, now)
        return rec

    def _hold_job(self, sess: Session, rec: JobRecord, blk: BlockState, now: float) -> None:
        """``rec`` becomes a current job of ``sess`` (at most ``max_jobs_per_worker`` of them)."""
        self._jobs[rec.id] = rec
        if sess.jobs_block != blk.index:
            if sess.jobs_block < 0:  # its first work ever: time before it had a job says nothing
                sess.vd.window_start = now
            sess.jobs = []
            sess.jobs_block = blk.index
        sess.jobs.append(rec)
        if len(sess.jobs) > self._config.max_jobs_per_worker:  # bound memory: the oldest goes stale
            self._jobs.pop(sess.jobs.pop(0).id, None)
        if sess.tally is None or sess.tally.block != blk.index:
            sess.tally = self._tally(blk.index, sess)

    def _rest_session(self, miner: MinerState, name: str, now: float) -> Session:
        sess = miner.rest.get(name)
        if sess is None:
            zeros = self._last_zeros.get((miner.miner_id, name), self._config.share_zeros_initial)
            sess = miner.rest[name] = Session(None, miner, name, None, zeros, now)
        sess.last_seen = now
        return sess

    def _send_job(
        self, sess: Session, conn: int, blk: BlockState, clean: bool, effects: list[Effect], now: float
    ) -> None:
        """A fresh range of ``blk`` for ``sess``, sent to ``conn``."""
        cfg = self._config
        fb = self._farmer_block(blk, sess.miner.farmer)
        got = self._take(fb, range_size(sess.sizing_rate(now), blk.ends_at - now, cfg), effects)
        if got is None:
            if sess.conn is not None and fb.counter.refilling:
                # a socket can wait a Redis round trip; a REST request is answered and asks again
                fb.waiting[conn] = clean or fb.waiting.get(conn, False)
                return
            why = "no nonce range for this farmer now (its space is used up or cannot be drawn); retry later"
            effects.append(Send(conn, Error(Code.OUT_OF_RANGE, why)))
            return
        start, end = got
        self._job_seq += 1
        job_id = f"{cfg.job_id_prefix}{self._job_seq:x}"
        zeros = sess.vd.zeros
        rec = JobRecord(job_id, sess.miner, sess, fb, start, end, zeros, now)
        self._hold_job(sess, rec, blk, now)
        if cfg.share_rest_jobs and sess.conn is None:
            # in the shared store before the miner has it: any instance can take its shares
            effects.append(
                Persist(
                    "job",
                    {
                        "job": job_id,
                        "block": blk.index,
                        "minerId": sess.miner.miner_id,
                        "farmerId": fb.farmer_id,
                        "worker": sess.name,
                        "nonceStart": str(start),
                        "nonceEnd": str(end),
                        "shareZeros": zeros,
                        "issuedAt": now,
                    },
                )
            )
        job = Job(
            job_id,
            blk.index,
            blk.entropy,
            fb.farmer,
            start,
            end,
            zeros,
            clean,
            ms(blk.work_at),
            ms(blk.ends_at),
        )
        effects.append(Send(conn, job))

    def _farmer_block(self, blk: BlockState, farmer: FarmerState) -> FarmerBlock:
        fb = blk.shares.get(farmer.farmer_id)
        if fb is None:
            floor = blk.nonce_floor.get(farmer.farmer_id, 0)
            fb = FarmerBlock(blk.index, blk.entropy, farmer.farmer_id, farmer.address, floor)
            best = blk.bests.get(farmer.farmer_id)
            if best is not None:
                fb.offer(best)
                fb.seen.add(best.nonce)
            blk.shares[farmer.farmer_id] = fb
        return fb

    @staticmethod
    def _take(fb: FarmerBlock, size: int, effects: list[Effect]) -> tuple[int, int] | None:
        """A range from the farmer's counter, its new high-water mark persisted before it is sent:
        a restart resumes above every range handed out, so no two workers ever hash the same nonce."""
        got = fb.counter.take(size)
        if got is not None:
            effects.append(Persist("nonces", {"block": fb.block, "farmerId": fb.farmer_id, "next": got[1]}))
        return got

    def _tally(self, block: int, sess: Session) -> Tally:
        key = (sess.miner.miner_id, sess.name)
        tally = self._tallies.get(key)
        if tally is None or tally.block != block:
            tally = self._tallies[key] = Tally(block, sess.miner.miner_id, sess.name)
        return tally

    # ------------------------------------------------------------------ shares (hot path)

    def _share(
        self, miner: MinerState, sess: Session | None, conn: int, share: Share, now: float
    ) -> list[Effect]:
        job = self._jobs.get(share.job)
        if job is None or job.miner is not miner or sess is None:
            return self._reject(
                miner, sess, conn, share, Code.STALE, "the job is not a current job of this miner"
            )
        nonce = share.nonce
        if nonce < job.nonce_start or nonce >= job.nonce_end:
            why = f"nonce is outside the job's range [{job.nonce_start}, {job.nonce_end})"
            return self._reject(miner, sess, conn, share, Code.OUT_OF_RANGE, why)
        fb = job.fb
        if nonce in fb.seen:
            return self._reject(miner, sess, conn, share, Code.DUPLICATE, "this nonce was already accepted")
        digest, zeros = fb.template.verify(nonce)
        if share.hash is not None and share.hash != digest:
            return self._reject(
                miner, sess, conn, share, Code.INVALID_HASH, f"the hash of this nonce is {digest.hex()}"
            )
        vd = sess.vd
        need = vd.zeros if now >= vd.grace_until else vd.low
        if sess.conn is None:
            # A REST worker cannot be told of a new difficulty; the job it holds states the one it
            # mines at, so that one counts until it fetches the next job.
            need = min(need, job.share_zeros)
        if zeros < need:
            return self._reject(
                miner, sess, conn, share, Code.LOW_ZEROS, f"the hash has {zeros} zeros; {need} are needed"
            )
        fb.seen.add(nonce)
        miner.accepted += 1
        miner.block_accepted += 1
        if zeros > miner.block_best:
            miner.block_best = zeros
        sess.accepted += 1
        self._accepted += 1
        self._accepted_total += 1
        tally = sess.tally
        if tally is None or tally.block != fb.block:
            tally = sess.tally = self._tally(fb.block, sess)
        tally.accepted += 1
        if zeros <= fb.best_zeros:  # the common case: an ordinary share
            effects: list[Effect] = [
                Persist("shares", tally.record()),
                Send(conn, Accepted(share.job, nonce, zeros, False)),
            ]
            changed = vd.credit(now, self._config)
            if changed is not None:
                self._difficulty_changed(sess, changed, effects)
            return effects
        best = Best(nonce, digest, zeros, now, miner.miner_id, sess.name)
        fb.best = best
        fb.best_zeros = zeros
        blk = self._block
        assert blk is not None and blk.index == fb.block  # jobs exist for the current block only
        blk.bests[fb.farmer_id] = best
        effects = [
            Persist("best", self._best_data(fb.block, fb.farmer_id, best)),
            Persist("shares", tally.record()),
            Send(conn, Accepted(share.job, nonce, zeros, True)),
        ]
        changed = vd.credit(now, self._config)
        if changed is not None:
            self._difficulty_changed(sess, changed, effects)
        if blk.work_due:
            self._after_best(blk, fb.farmer_id, effects, now)
        return effects

    def _reject(
        self, miner: MinerState, sess: Session | None, conn: int, share: Share, code: Code, message: str
    ) -> list[Effect]:
        miner.rejected += 1
        miner.block_rejected += 1
        if code is Code.STALE:
            miner.stale += 1
        reason = code.reason
        miner.rejected_by[reason] = miner.rejected_by.get(reason, 0) + 1
        self._rejected += 1
        self._rejected_total += 1
        if sess is not None:
            sess.rejected += 1
            blk = self._block
            if blk is not None and not blk.closed:
                tally = sess.tally
                if tally is None or tally.block != blk.index:
                    tally = sess.tally = self._tally(blk.index, sess)
                tally.rejected += 1  # written with the next accepted share or at block close
        return [Send(conn, Rejected(share.job, share.nonce, code, message))]

    def _difficulty_changed(self, sess: Session, zeros: int, effects: list[Effect]) -> None:
        self._last_zeros[(sess.miner.miner_id, sess.name)] = zeros
        if sess.conn is not None:  # a REST worker learns it from its next job
            effects.append(Send(sess.conn, Difficulty(zeros)))

    # ------------------------------------------------------------------ the block cycle

    def _plant(self, index: int, effects: list[Effect], deadline: float, *, late: bool = False) -> int:
        call_id = self._next_call()
        self._calls[call_id] = CallRecord("plant", index, tuple(self._farmers), late=late)
        payload = {
            "blockIndex": index,
            "poolerId": self._config.pooler_id,
            "maxFarmersCapacity": self._config.max_farmers_capacity,
        }
        effects.append(CallBackend(call_id, "plant", index, payload, deadline))
        return call_id

    def _apply_plant(
        self,
        blk: BlockState,
        rec: CallRecord,
        ev: BackendResult,
        effects: list[Effect],
        now: float,
        *,
        publish: bool = True,
    ) -> None:
        blk.plant_call = None
        if ev.ok:
            blk.plant = "done"
            effects.append(Persist("plant", {"block": blk.index, "response": dict(ev.response)}))
            results = _results(ev.response)
            if results is None:  # every farmer known at the call or since (a restore may precede joins)
                for fid in dict.fromkeys([*rec.farmers, *self._farmers]):
                    self._set_status(blk, fid, "planted", "", effects)
            else:
                for fid, item in results.items():
                    if item.get("ok") is True or _already_planted(item):
                        self._set_status(blk, fid, "planted", "", effects)
                    else:
                        self._set_status(blk, fid, "failed", f"plant failed: {_item_error(item)}", effects)
        else:
            blk.plant = "failed"
            effects.append(Persist("plant", {"block": blk.index, "error": ev.error}))
            for fid in rec.farmers:
                self._set_status(blk, fid, "failed", f"plant failed: {ev.error}", effects)
        if publish:
            effects.append(Publish("plant", self._plant_data(blk.index, ev)))
        if blk is self._block and not blk.closed and not self._paused and blk.plant == "done":
            if now >= blk.search_at:
                self._local_search(blk, effects, now)
            if blk.work_due:
                self._submit_work(blk, blk.planted(), effects, now)

    def _local_search(self, blk: BlockState, effects: list[Effect], now: float) -> None:
        """A bounded search for each planted farmer nobody found a share for."""
        blk.searched = True
        cfg = self._config
        deadline = blk.work_at if now < blk.work_at else blk.ends_at - cfg.safety_margin
        for fid in blk.planted():
            fr = blk.rounds[fid]
            if fid in blk.bests or fr.searching or fr.worked >= 0:
                continue
            farmer = self._farmers.get(fid)
            if farmer is None:
                self._set_status(
                    blk, fid, "failed", "no address known for this farmer: cannot search", effects
                )
                continue
            got = self._take(self._farmer_block(blk, farmer), cfg.local_search_max_hashes, effects)
            if got is None:
                continue
            fr.searching = True
            effects.append(
                LocalSearch(blk.index, fid, farmer.address, blk.entropy, got[0], got[1] - got[0], deadline)
            )

    def _on_nonces_granted(self, ev: NonceRefillDone, now: float) -> list[Effect]:
        effects: list[Effect] = []
        blk = self._block
        if blk is None or blk.index != ev.block or not blk.opened or blk.closed:
            return effects
        fb = blk.shares.get(ev.farmer_id)
        if fb is None or not fb.waiting:
            return effects
        waiting, fb.waiting = fb.waiting, {}
        for conn, clean in waiting.items():
            sess = self._sessions.get(conn)
            if sess is not None and sess.miner.farmer.farmer_id == ev.farmer_id:
                self._send_job(sess, conn, blk, clean, effects, now)  # may wait for the next refill
        return effects

    def _on_local_search_done(self, ev: LocalSearchDone, now: float) -> list[Effect]:
        effects: list[Effect] = []
        blk = self._blocks.get(ev.block)
        if blk is None:
            return effects
        fr = blk.round(ev.farmer_id)
        fr.searching = False
        if blk.closed:
            return effects
        farmer = self._farmers.get(ev.farmer_id)
        if ev.nonce is None or farmer is None:
            if ev.farmer_id not in blk.bests and fr.worked < 0 and fr.status == "planted" and blk.work_due:
                self._set_status(
                    blk, ev.farmer_id, "failed", "the local search found no nonce in time", effects
                )
            return effects
        fb = self._farmer_block(blk, farmer)
        digest, zeros = fb.template.verify(ev.nonce)  # never trust a result we did not check
        if ev.hash is not None and ev.hash != digest:
            fr.reason = "the local search returned a wrong hash"
            return effects
        best = Best(ev.nonce, digest, zeros, now, "", "local-search")
        fb.seen.add(ev.nonce)
        if fb.offer(best):
            blk.bests[ev.farmer_id] = best
            effects.append(Persist("best", self._best_data(blk.index, ev.farmer_id, best)))
            if blk.work_due:
                self._after_best(blk, ev.farmer_id, effects, now)
        return effects

    def _after_best(self, blk: BlockState, fid: str, effects: list[Effect], now: float) -> None:
        """workAt has passed and ``fid`` has a new best: submit it if it can still count."""
        if self._paused or blk.closed or blk.retry_pending:
            return  # paused: unpause sends it; retry pending: the retry sends it
        fr = blk.rounds.get(fid)
        if fr is None or fr.status not in ("planted", "worked"):
            return
        if fr.in_flight is not None:
            fr.resubmit = True  # one call per farmer at a time; sent when the answer comes
            return
        limit = blk.ends_at if fr.submitted < 0 else blk.ends_at - self._config.safety_margin
        if now < limit:
            self._submit_work(blk, [fid], effects, now)

    def _submit_work(
        self, blk: BlockState, farmer_ids: Iterable[str], effects: list[Effect], now: float
    ) -> None:
        """One /work call with the best of each farmer that improves on what was sent."""
        if self._paused or now >= blk.ends_at:
            return
        sent: list[str] = []
        subs: list[dict[str, object]] = []
        for fid in farmer_ids:
            fr = blk.rounds.get(fid)
            best = blk.bests.get(fid)
            if fr is None or best is None or best.zeros <= fr.submitted:
                continue
            if fr.in_flight is not None:
                fr.resubmit = True
                continue
            sent.append(fid)
            subs.append(
                {
                    "farmerId": fid,
                    "nonce": str(best.nonce),
                    "timestamp": ms(best.found_at),
                    "hash": best.hash.hex(),
                    "zeros": best.zeros,
                }
            )
        if not subs:
            return
        call_id = self._next_call()
        zeros = tuple(blk.bests[fid].zeros for fid in sent)
        self._calls[call_id] = CallRecord("work", blk.index, tuple(sent), tuple(subs), zeros)
        for fid, z in zip(sent, zeros, strict=True):
            fr = blk.rounds[fid]
            fr.in_flight = call_id
            fr.submitted = z
            fr.resubmit = False
        blk.work_calls += 1
        blk.work_tried = True
        self._phase_dirty = True
        payload = {"blockIndex": blk.index, "poolerId": self._config.pooler_id, "submissions": subs}
        effects.append(CallBackend(call_id, "work", blk.index, payload, blk.ends_at))

    def _on_backend_result(self, ev: BackendResult, now: float) -> list[Effect]:
        effects: list[Effect] = []
        rec = self._calls.pop(ev.call_id, None)
        if rec is None:
            return effects  # unknown or answered twice: nothing to apply
        if rec.op == "plant":
            self._plant_result(rec, ev, effects, now)
        elif rec.op == "work":
            self._work_result(rec, ev, effects, now)
        else:
            self._harvest_result(rec, ev, effects, now)
        return effects

    def _plant_result(self, rec: CallRecord, ev: BackendResult, effects: list[Effect], now: float) -> None:
        blk = self._blocks.get(rec.block)
        if blk is not None and blk.plant_call == ev.call_id:
            self._apply_plant(blk, rec, ev, effects, now)
            return
        late = self._late
        if late is not None and late.call_id == ev.call_id:  # the block it opens is not seen yet
            late.result = ev
            effects.append(Publish("plant", self._plant_data(rec.block, ev)))
            if ev.ok:
                effects.append(Persist("plant", {"block": rec.block, "response": dict(ev.response)}))
            cur = self._block
            if cur is not None and cur.index == rec.block - 1:
                # Failed: try again. Succeeded: a watchdog, because the plant may have been applied
                # in a ledger still inside block N (then N+1 is not open) and only NewBlock proves it.
                effects.append(SetTimer(f"late-plant:{cur.index}", now + self._config.late_plant_retry))

    def _work_result(self, rec: CallRecord, ev: BackendResult, effects: list[Effect], now: float) -> None:
        blk = self._blocks.get(rec.block)
        if blk is None:
            return
        blk.work_calls -= 1
        for fid in rec.farmers:
            fr = blk.rounds[fid]
            if fr.in_flight == ev.call_id:
                fr.in_flight = None
        shown = [
            {"farmerId": s["farmerId"], "zeros": s["zeros"], "nonce": s["nonce"]} for s in rec.submissions
        ]
        if ev.ok:
            effects.append(
                Persist(
                    "work",
                    {"block": blk.index, "submissions": list(rec.submissions), "response": dict(ev.response)},
                )
            )
            results = _results(ev.response)
            valid = _int_field(ev.response, "validNonces")
            invalid = _int_field(ev.response, "invalidNonces") or 0
            for fid, zeros in zip(rec.farmers, rec.zeros, strict=True):
                fr = blk.rounds[fid]
                if results is not None:
                    item = results.get(fid)
                    ok = item is not None and item.get("ok") is True
                    why = "the Backend did not report it" if item is None else _item_error(item)
                elif invalid and not valid:
                    ok, why = False, "the Backend counted the nonce invalid"
                else:
                    ok, why = True, ""
                if ok:
                    fr.worked = max(fr.worked, zeros)
                    warn = (
                        f"{invalid} nonce(s) of the batch were invalid" if invalid and results is None else ""
                    )
                    self._set_status(blk, fid, "worked", warn, effects, zeros=fr.worked)
                elif fr.worked < 0:
                    self._set_status(blk, fid, "failed", f"work refused: {why}", effects)
                else:
                    fr.reason = f"resubmission at {zeros} zeros refused: {why}"
            data: dict[str, object] = {
                "block": blk.index,
                "ok": True,
                "submissions": shown,
                "validNonces": valid if valid is not None else len(shown) - invalid,
                "invalidNonces": invalid,
            }
            effects.append(Publish("work", data))
        else:
            effects.append(
                Persist("work", {"block": blk.index, "submissions": list(rec.submissions), "error": ev.error})
            )
            effects.append(
                Publish(
                    "work",
                    {
                        "block": blk.index,
                        "ok": False,
                        "submissions": shown,
                        "validNonces": 0,
                        "invalidNonces": 0,
                        "error": ev.error,
                    },
                )
            )
            delay = self._config.backend_retry_delay
            if ev.retryable and not blk.closed and now + delay < blk.ends_at:
                for fid in rec.farmers:
                    fr = blk.rounds[fid]
                    fr.submitted = fr.worked  # so the retry sends every unconfirmed best again
                    fr.reason = f"work call failed, retrying: {ev.error}"
                blk.retry_pending = True
                effects.append(SetTimer(f"work-retry:{blk.index}", now + delay))
            else:
                for fid in rec.farmers:
                    fr = blk.rounds[fid]
                    if fr.worked < 0:
                        why = "work was not recorded before the deadline" if ev.retryable else "work refused"
                        self._set_status(blk, fid, "failed", f"{why}: {ev.error}", effects)
                    else:
                        fr.reason = f"resubmission failed: {ev.error}"
        if blk is self._block and not blk.retry_pending:
            again = [fid for fid in rec.farmers if blk.rounds[fid].resubmit]
            for fid in again:
                blk.rounds[fid].resubmit = False
                self._after_best(blk, fid, effects, now)

    def _harvest(self, blk: BlockState, effects: list[Effect], now: float) -> None:
        if blk.harvest in ("in_flight", "done", "failed"):
            return
        if now >= blk.harvest_until:
            self._harvest_expired(blk, "not harvested before the block's entries expired", effects)
            return
        call_id = self._next_call()
        farmers = tuple(fid for fid, fr in blk.rounds.items() if fr.status == "worked")
        self._calls[call_id] = CallRecord("harvest", blk.index, farmers)
        blk.harvest = "in_flight"
        blk.harvest_call = call_id
        blk.harvest_attempts += 1
        deadline = min(blk.harvest_until, now + self._config.block_interval)
        payload = {"blockIndex": blk.index, "poolerId": self._config.pooler_id}
        effects.append(CallBackend(call_id, "harvest", blk.index, payload, deadline))

    def _harvest_expired(self, blk: BlockState, why: str, effects: list[Effect]) -> None:
        blk.harvest = "failed"
        for fid, fr in blk.rounds.items():
            if fr.status == "worked":
                self._set_status(blk, fid, "failed", why, effects)

    def _harvest_result(self, rec: CallRecord, ev: BackendResult, effects: list[Effect], now: float) -> None:
        blk = self._blocks.get(rec.block)
        if blk is None or blk.harvest_call != ev.call_id:
            return
        blk.harvest_call = None
        rewards: list[dict[str, object]] = []
        if ev.ok:
            blk.harvest = "done"
            effects.append(Persist("harvest", {"block": blk.index, "response": dict(ev.response)}))
            results = _results(ev.response)
            if results is None:  # worked now: a /work answer may have come after the call
                for fid in [fid for fid, fr in blk.rounds.items() if fr.status == "worked"]:
                    self._set_status(blk, fid, "harvested", "", effects)
            else:
                for fid, item in results.items():
                    fr = blk.round(fid)
                    if item.get("ok") is True:
                        reward = _as_int(item.get("reward"))
                        if reward is not None:
                            fr.reward = reward
                            self._rewards[fid] = self._rewards.get(fid, 0) + reward
                            rewards.append({"farmerId": fid, "reward": str(reward)})
                        self._set_status(blk, fid, "harvested", "", effects)
                    else:
                        self._set_status(blk, fid, "failed", f"harvest failed: {_item_error(item)}", effects)
            total = _as_int(ev.response.get("totalRewards"))
            if total is None and rewards:
                total = sum(int(str(r["reward"])) for r in rewards)
            blk.rewards_total = total
            effects.append(
                Publish(
                    "harvest",
                    {
                        "block": blk.index,
                        "ok": True,
                        "successfulHarvests": _int_field(ev.response, "successfulHarvests") or 0,
                        "failedHarvests": _int_field(ev.response, "failedHarvests") or 0,
                        "totalRewards": str(total or 0),
                        "rewards": rewards,
                    },
                )
            )
            return
        blk.harvest_error = ev.error
        effects.append(Persist("harvest", {"block": blk.index, "error": ev.error}))
        effects.append(
            Publish(
                "harvest",
                {
                    "block": blk.index,
                    "ok": False,
                    "successfulHarvests": 0,
                    "failedHarvests": 0,
                    "totalRewards": "0",
                    "rewards": rewards,
                    "error": ev.error,
                },
            )
        )
        cfg = self._config
        delay = min(cfg.harvest_retry_delay * 2 ** (blk.harvest_attempts - 1), 4 * cfg.block_interval)
        if now + delay < blk.harvest_until:
            blk.harvest = "pending"
            effects.append(SetTimer(f"harvest-retry:{blk.index}", now + delay))
        else:
            self._harvest_expired(
                blk, f"harvest failed until the block's entries expired: {ev.error}", effects
            )

    # ------------------------------------------------------------------ timers

    def _on_timer(self, ev: TimerFired, now: float) -> list[Effect]:
        effects: list[Effect] = []
        key = ev.key
        if key == "summary":
            self._forget_idle_rest(now)
            effects.append(Publish("summary", self.summary(now)))
            effects.append(SetTimer("summary", now + self._config.summary_interval))
            return effects
        if key == "vardiff":
            blk = self._block
            for sess in self._all_sessions():
                if blk is None or sess.jobs_block != blk.index or blk.closed:
                    continue  # silent because it has no work: not a reason to lower its difficulty
                changed = sess.vd.retarget(now, self._config)
                if changed is not None:
                    self._difficulty_changed(sess, changed, effects)
            effects.append(SetTimer("vardiff", now + self._config.vardiff_target_interval))
            return effects
        kind, _, arg = key.partition(":")
        if not arg.isdigit():
            return effects  # not ours (or from an older version): ignore safely
        blk = self._blocks.get(int(arg))
        if blk is None:
            return effects
        if kind == "harvest-retry":
            if blk.harvest == "pending":
                self._harvest(blk, effects, now)
            return effects
        if blk is not self._block or blk.closed:
            return effects  # a timer of a block that is over
        if kind == "search":
            if blk.plant == "done" and not self._paused:
                self._local_search(blk, effects, now)
        elif kind == "work":
            blk.work_due = True
            if blk.plant == "done" and not self._paused:
                if not blk.searched:
                    self._local_search(blk, effects, now)
                self._submit_work(blk, blk.planted(), effects, now)
        elif kind == "work-retry":
            blk.retry_pending = False
            self._submit_work(blk, blk.planted(), effects, now)
        elif kind == "end":
            blk.ended = True
            for fid, fr in blk.rounds.items():
                if fr.status == "planted" and fr.in_flight is None:
                    self._set_status(
                        blk, fid, "failed", "no work was recorded before the block's deadline", effects
                    )
        elif kind == "late-plant":
            self._late_plant(blk, effects, now)
        return effects

    def _late_plant(self, blk: BlockState, effects: list[Effect], now: float) -> None:
        """Nobody opened the next block: plant it ourselves (the chain then opens it)."""
        if self._paused:
            effects.append(SetTimer(f"late-plant:{blk.index}", now + self._config.late_plant_retry))
            return
        late = self._late
        if late is not None and late.index == blk.index + 1 and late.result is None:
            return  # in flight: its result re-arms this timer
        call_id = self._plant(blk.index + 1, effects, now + self._config.block_interval / 2, late=True)
        self._late = LatePlant(blk.index + 1, call_id, self._calls[call_id])

    # ------------------------------------------------------------------ helpers

    def _set_status(
        self,
        blk: BlockState,
        fid: str,
        status: FarmerStatus,
        reason: str,
        effects: list[Effect],
        *,
        zeros: int | None = None,
    ) -> None:
        fr = blk.round(fid)
        fr.status = status
        fr.reason = reason
        data: dict[str, object] = {"farmerId": fid, "block": blk.index, "status": status}
        if reason:
            data["reason"] = reason
        if zeros is not None:
            data["zeros"] = zeros
        if fr.reward is not None and status == "harvested":
            data["reward"] = str(fr.reward)
        effects.append(Persist("farmer_status", data))
        effects.append(Publish("farmer", data))

    def _publish_phase(self, effects: list[Effect], now: float) -> None:
        self._phase_dirty = False
        phase = self._current_phase(now)
        if phase != self._phase:
            self._phase = phase
            blk = self._block
            effects.append(
                Publish(
                    "phase",
                    {
                        "block": None if blk is None else blk.index,
                        "phase": phase,
                        "workAt": None if blk is None else ms(blk.work_at),
                        "blockEndsAt": None if blk is None else ms(blk.ends_at),
                    },
                )
            )

    def _current_phase(self, now: float) -> Phase:
        if self._paused:
            return "paused"
        if self._block is None:
            return "idle"
        return self._block.phase(now)

    def _next_call(self) -> int:
        self._call_seq += 1
        return self._call_seq

    def _all_sessions(self) -> list[Session]:
        out = list(self._sessions.values())
        for miner in self._miners.values():
            out.extend(miner.rest.values())
        return out

    def _miner_sessions(self, miner: MinerState) -> list[Session]:
        out = [self._sessions[c] for c in miner.sessions if c in self._sessions]
        out.extend(miner.rest.values())
        return out

    def _forget_idle_rest(self, now: float) -> None:
        idle = self._config.rest_worker_idle
        for miner in self._miners.values():
            for name in [n for n, s in miner.rest.items() if now - s.last_seen > idle]:
                sess = miner.rest.pop(name)
                sess.alive = False
                self._last_zeros[(miner.miner_id, name)] = sess.vd.zeros
                for job in sess.jobs:
                    self._jobs.pop(job.id, None)

    def _prune_blocks(self) -> None:
        cur = self._block
        if cur is None:
            return
        keep_from = cur.index - self._config.history_blocks
        for index in [
            i for i, b in self._blocks.items() if i < keep_from and b.harvest not in ("pending", "in_flight")
        ]:
            del self._blocks[index]

    @staticmethod
    def _best_data(block: int, fid: str, best: Best) -> dict[str, object]:
        return {
            "block": block,
            "farmerId": fid,
            "nonce": str(best.nonce),
            "hash": best.hash.hex(),
            "zeros": best.zeros,
            "foundAt": ms(best.found_at),
            "minerId": best.miner_id,
            "worker": best.worker,
        }

    @staticmethod
    def _block_data(blk: BlockState) -> dict[str, object]:
        return {
            "block": blk.index,
            "entropy": blk.entropy.hex(),
            "timestamp": blk.timestamp * 1000,
            "workAt": ms(blk.work_at),
            "blockEndsAt": ms(blk.ends_at),
        }

    @staticmethod
    def _plant_data(index: int, ev: BackendResult) -> dict[str, object]:
        r = ev.response
        data: dict[str, object] = {
            "block": index,
            "ok": ev.ok,
            "successfulPlants": _int_field(r, "successfulPlants") or 0,
            "failedPlants": _int_field(r, "failedPlants") or 0,
            "totalStaked": str(_as_int(r.get("totalStaked")) or 0),
        }
        if not ev.ok:
            data["error"] = ev.error
        return data

    def summary(self, now: float) -> dict[str, object]:
        """The dashboard's ``summary`` event data (also the snapshot sent to a new dashboard)."""
        blk = self._block
        sessions = self._all_sessions()
        online = {s.miner.miner_id for s in sessions}
        return {
            "block": None if blk is None else blk.index,
            "phase": self._current_phase(now),
            "miners": len(online),
            "workers": len(sessions),
            "hashrate": sum(s.hashrate(now) for s in sessions),
            "accepted": self._accepted,
            "rejected": self._rejected,
            "bestZeros": {} if blk is None else {fid: b.zeros for fid, b in blk.bests.items()},
            "workAt": None if blk is None else ms(blk.work_at),
            "blockEndsAt": None if blk is None else ms(blk.ends_at),
        }

    # ------------------------------------------------------------------ read-only views

    def pending_harvests(self) -> tuple[int, ...]:
        """Blocks worked and not harvested yet (harvest due, in flight or waiting to retry)."""
        return tuple(sorted(i for i, b in self._blocks.items() if b.harvest in ("pending", "in_flight")))

    def view(self, now: float) -> CoreView:
        """A frozen picture of everything /health, stats and the dashboard show."""
        blk = self._block
        sessions = self._all_sessions()
        worker_list = tuple(
            WorkerView(
                s.miner.miner_id, s.name, s.conn, s.agent, s.vd.zeros, s.hashrate(now), s.accepted, s.rejected
            )
            for s in sessions
        )
        miner_list = []
        for miner in self._miners.values():
            ms_ = self._miner_sessions(miner)
            miner_list.append(
                MinerView(
                    miner.miner_id,
                    miner.farmer.farmer_id,
                    miner.name,
                    len(ms_),
                    sum(s.hashrate(now) for s in ms_),
                    miner.accepted,
                    miner.rejected,
                    miner.stale,
                    dict(miner.rejected_by),
                    miner.block_accepted,
                    miner.block_rejected,
                    None if miner.block_best < 0 else miner.block_best,
                )
            )
        farmers = []
        for fid, farmer in self._farmers.items():
            mine = [s for s in sessions if s.miner.farmer is farmer]
            fr = blk.rounds.get(fid) if blk is not None else None
            best = blk.bests.get(fid) if blk is not None else None
            farmers.append(
                FarmerView(
                    fid,
                    farmer.address,
                    len(farmer.miners),
                    len(mine),
                    sum(s.hashrate(now) for s in mine),
                    None if best is None else best.zeros,
                    None if fr is None else _status_view(fr),
                    self._rewards.get(fid, 0),
                )
            )
        blocks = tuple(
            BlockView(
                b.index,
                b.timestamp,
                ms(b.work_at),
                ms(b.ends_at),
                b.plant,
                b.harvest,
                {fid: _status_view(fr) for fid, fr in b.rounds.items()},
                {fid: best.zeros for fid, best in b.bests.items()},
                b.rewards_total,
                {fid: fr.reward for fid, fr in b.rounds.items() if fr.reward is not None},
            )
            for b in sorted(self._blocks.values(), key=lambda b: -b.index)
        )
        return CoreView(
            block=None if blk is None else blk.index,
            phase=self._current_phase(now),
            entropy=None if blk is None else blk.entropy.hex(),
            timestamp=None if blk is None else blk.timestamp,
            work_at=None if blk is None else ms(blk.work_at),
            block_ends_at=None if blk is None else ms(blk.ends_at),
            paused=self._paused,
            chain_ok=self._chain_ok,
            chain_detail=self._chain_detail,
            miners=len({s.miner.miner_id for s in sessions}),
            workers=len(sessions),
            hashrate=sum(w.hashrate for w in worker_list),
            accepted=self._accepted,
            rejected=self._rejected,
            accepted_total=self._accepted_total,
            rejected_total=self._rejected_total,
            best_zeros={} if blk is None else {fid: b.zeros for fid, b in blk.bests.items()},
            farmers=tuple(farmers),
            miner_list=tuple(miner_list),
            worker_list=worker_list,
            blocks=blocks,
            pending_harvests=self.pending_harvests(),
        )

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> CoreSnapshot:
        """Everything :meth:`restore` needs, from memory (a store builds the same from Persist effects)."""
        blocks = sorted(self._blocks.values(), key=lambda b: b.index)
        cur = self._block
        return CoreSnapshot(
            blocks=tuple(BlockRecord(b.index, b.entropy, b.timestamp) for b in blocks),
            bests=tuple(
                BestRecord(
                    b.index, fid, best.nonce, best.hash, best.zeros, best.found_at, best.miner_id, best.worker
                )
                for b in blocks
                for fid, best in b.bests.items()
            ),
            tallies=tuple(
                TallyRecord(t.block, t.miner_id, t.worker, t.accepted, t.rejected)
                for t in self._tallies.values()
            ),
            statuses=tuple(
                StatusRecord(b.index, fid, fr.status, fr.reason, fr.worked if fr.worked >= 0 else None)
                for b in blocks
                for fid, fr in b.rounds.items()
                if fr.status != "active"
            ),
            rewards=tuple(
                [
                    RewardRecord(b.index, fid, fr.reward)
                    for b in blocks
                    for fid, fr in b.rounds.items()
                    if fr.reward is not None
                ]
                + [RewardRecord(b.index, "", b.rewards_total) for b in blocks if b.rewards_total is not None]
            ),
            nonce_next={} if cur is None else {fid: fb.counter.next for fid, fb in cur.shares.items()},
        )

    def restore(self, snap: CoreSnapshot, now: float) -> list[Effect]:
        """Load ``snap`` into a fresh coordinator; the effects that resume the cycle.

        The newest block becomes the open one (its timers re-armed, planted again only if no
        farmer status shows a plant); older blocks with worked, unharvested farmers are
        harvested at once. Call before any other event; miners join as the registry replays them.
        """
        if self._block is not None or self._blocks:
            raise PoolerError("restore() needs a fresh coordinator: it already holds blocks")
        effects = self.start(now)
        if not snap.blocks:
            return effects
        records = sorted(snap.blocks, key=lambda r: r.index)
        for r in records:
            self._blocks[r.index] = BlockState(r.index, r.entropy, r.timestamp, self._config)
        cur = self._block = self._blocks[records[-1].index]
        for b in snap.bests:
            blk = self._blocks.get(b.block)
            if blk is not None:
                blk.bests[b.farmer_id] = Best(b.nonce, b.hash, b.zeros, b.found_at, b.miner_id, b.worker)
        ahead: list[str] = []
        for s in snap.statuses:
            blk = self._blocks.get(s.block)
            if blk is None:
                if s.block == cur.index + 1 and s.status == "planted":
                    ahead.append(s.farmer_id)  # our late plant opened the next block
                continue
            fr = blk.round(s.farmer_id)
            fr.status = s.status
            fr.reason = s.reason
            if s.zeros is not None:
                fr.worked = fr.submitted = s.zeros
                blk.work_tried = True
            elif s.status in ("worked", "harvested"):
                fr.worked = fr.submitted = 0
                blk.work_tried = True
        for rw in snap.rewards:
            blk = self._blocks.get(rw.block)
            if rw.farmer_id == "":
                if blk is not None:
                    blk.rewards_total = rw.reward
                continue
            self._rewards[rw.farmer_id] = self._rewards.get(rw.farmer_id, 0) + rw.reward
            if blk is not None:
                blk.round(rw.farmer_id).reward = rw.reward
        for t in snap.tallies:
            if t.block == cur.index:
                self._tallies[(t.miner_id, t.worker)] = Tally(
                    t.block, t.miner_id, t.worker, t.accepted, t.rejected
                )
        for blk in self._blocks.values():
            statuses = [fr.status for fr in blk.rounds.values()]
            if any(st in ("planted", "worked", "harvested") for st in statuses):
                blk.plant = "done"
            if blk is not cur:
                blk.closed = True
                if blk.harvest == "none" and "worked" in statuses:
                    blk.harvest = "pending"
                elif statuses and all(st in ("harvested", "failed") for st in statuses) and blk.work_tried:
                    blk.harvest = "done"
        for fid in set(cur.bests) | set(snap.nonce_next):
            best_floor = cur.bests[fid].nonce + 1 if fid in cur.bests else 0
            cur.nonce_floor[fid] = max(snap.nonce_next.get(fid, _RESTORED_NONCE_START), best_floor)
        if ahead:
            call_id = self._next_call()
            rec = CallRecord("plant", cur.index + 1, tuple(ahead), late=True)
            self._late = LatePlant(
                cur.index + 1, call_id, rec, BackendResult(call_id, "plant", cur.index + 1, True)
            )
        effects.append(Publish("block", self._block_data(cur)))
        if now < cur.ends_at - self._config.safety_margin:
            self._open_block(cur, effects, now, plant=cur.plant != "done")
        elif now < cur.ends_at + self._config.late_plant_grace:
            self._open_block(cur, effects, now, plant=False)  # timers only; too late to plant
        else:
            cur.opened = True
            effects.append(SetTimer(f"late-plant:{cur.index}", now))
        for blk in sorted(self._blocks.values(), key=lambda b: b.index):
            if blk.harvest == "pending":
                self._harvest(blk, effects, now)
        self._publish_phase(effects, now)
        return effects


# ---------------------------------------------------------------- response parsing


def _as_int(value: object) -> int | None:
    """An integer from a JSON number or a decimal string (stroops travel as strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return None


def _int_field(response: Mapping[str, object], key: str) -> int | None:
    return _as_int(response.get(key))


def _results(response: Mapping[str, object]) -> dict[str, Mapping[str, object]] | None:
    """``results`` as farmer id -> item when the Backend lists per-farmer outcomes."""
    items = response.get("results")
    if not isinstance(items, list):
        return None
    out: dict[str, Mapping[str, object]] = {}
    for item in items:
        if isinstance(item, Mapping):
            fid = item.get("farmerId")
            if isinstance(fid, str):
                out[fid] = item
    return out


def _already_planted(item: Mapping[str, object]) -> bool:
    """A per-farmer plant refusal that means "planted already" (contract error #8, PailExists).

    A repeated late plant meets it for farmers the earlier one planted: they are planted.
    """
    code = item.get("errorCode")
    return code in (8, "8") or "PailExists" in str(item.get("error", ""))


def _item_error(item: Mapping[str, object]) -> str:
    for key in ("error", "message", "reason"):
        value = item.get(key)
        if isinstance(value, str) and value:
            return value
    return "refused by the Backend"


def _status_view(fr: FarmerRound) -> FarmerStatusView:
    return FarmerStatusView(fr.status, fr.reason, fr.worked if fr.worked >= 0 else None, fr.reward)
