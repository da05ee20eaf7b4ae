"""The coordinator: all round state of the Pooler, as a pure ``handle(event, now) -> effects``.

:class:`Coordinator` is the only way in. It owns one :class:`~pooler.core.state.RoundState`
and the parts that act on it, each in its own module:

============================  ==========================================================
:mod:`pooler.core.roster`     miners joining/leaving, workers connecting, stats
:mod:`pooler.core.jobs`       nonce ranges, jobs, REST workers, refills
:mod:`pooler.core.slots`      standing slots: one ``block`` frame per new block
:mod:`pooler.core.checks`     the share check (the hot path)
:mod:`pooler.core.guard`      the share-quality guard (warn, close, refuse)
:mod:`pooler.core.cycle`      new blocks, the pause, block timers, Backend answers
:mod:`pooler.core.plant`,     the three Backend phases of a block
:mod:`pooler.core.work`,
:mod:`pooler.core.harvest`
:mod:`pooler.core.block`      a block's phase: the state table (theory of operation)
:mod:`pooler.core.projection` views and the dashboard summary
:mod:`pooler.core.forecast`   the open block's reward projection (:mod:`pooler.core.rewards`)
:mod:`pooler.core.persistence` snapshot and restore
============================  ==========================================================

``handle`` sends a ``ShareSubmitted`` straight to the share check (no dispatch dict, no
phase work) and every other event through one table, then publishes the dashboard's phase
if it changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pooler.core.checks import ShareCheck
from pooler.core.config import CoreConfig
from pooler.core.cycle import Cycle
from pooler.core.dashboard_events import SummaryEvent
from pooler.core.effects import Effect, Publish, Send, SetTimer
from pooler.core.events import (
    BackendResult,
    BatchEnd,
    BlockUpdated,
    ChainHealth,
    Event,
    FarmPaused,
    GroupBest,
    HashrateReported,
    LocalSearchDone,
    MalformedSubmitted,
    MinerJoined,
    MinerLeft,
    MoreRequested,
    NewBlock,
    NonceRefillDone,
    PailsRead,
    RestShareSubmitted,
    RestWorkRequested,
    ShareSubmitted,
    StatsRequested,
    TimerFired,
    WorkerConnected,
    WorkerDisconnected,
)
from pooler.core.forecast import Forecast
from pooler.core.guard import ShareGuard
from pooler.core.harvest import Harvest
from pooler.core.jobs import Jobs
from pooler.core.nonces import LocalNonces, NonceSpace
from pooler.core.persistence import restore, snapshot
from pooler.core.plant import Plant
from pooler.core.projection import Projection
from pooler.core.roster import Roster
from pooler.core.slots import Slots
from pooler.core.snapshot import CoreSnapshot
from pooler.core.state import RoundState
from pooler.core.views import CoreView
from pooler.core.watch import Watch
from pooler.core.work import Work
from pooler.errors import PoolerError
from protocol.errors import Code
from protocol.messages import Error


class Coordinator:
    """The Pooler's round state machine. Not thread-safe: one owner calls :meth:`handle`."""

    def __init__(
        self,
        config: CoreConfig,
        *,
        nonces: NonceSpace | None = None,
        report_credits: bool = False,
        block_broadcast: bool = False,
    ) -> None:
        """``nonces``: where each (block, farmer)'s nonce counter comes from (the whole u64 space
        per farmer by default; a group's shared chunks). ``report_credits``: every credited nonce
        also leaves as a ``Persist(NonceCredited)``, for a group's shared duplicate set.
        ``block_broadcast``: grant the feature of that name (standing slots, one ``block`` frame
        per new block; :mod:`pooler.core.slots`); single instance only."""
        if block_broadcast and not (nonces is None or isinstance(nonces, LocalNonces)):
            # slots are reserved below each counter's opening: a shared space (a group's chunks)
            # would need them reserved for every instance, which nothing does (pooler.core.slots)
            raise PoolerError("block_broadcast needs the single instance's nonce space, not a shared one")
        self._config = config
        st = self._state = RoundState(config, report_credits=report_credits)
        self._sessions = st.sessions  # the hot path's one lookup (the very dict the roster fills)
        guard = ShareGuard(st)
        jobs = Jobs(st, LocalNonces() if nonces is None else nonces, guard, Slots(st, block_broadcast))
        roster = self._roster = Roster(st, jobs, guard)
        forecast = Forecast(st)
        work = Work(st, jobs, forecast)
        checks = ShareCheck(st, jobs, work, guard)
        self._share = checks.share
        watch = self._watch = Watch(st)
        cycle = self._cycle = Cycle(st, roster, jobs, checks, Plant(st, work), work, Harvest(st), watch)
        self._projection = Projection(st, checks)
        self._started = False  # start() armed the periodic timers
        self._handlers: dict[type, Callable[[Any, float], list[Effect]]] = {
            NewBlock: cycle.on_new_block,
            BlockUpdated: forecast.on_block_updated,
            FarmPaused: cycle.on_paused,
            ChainHealth: cycle.on_chain_health,
            MinerJoined: roster.on_miner_joined,
            MinerLeft: roster.on_miner_left,
            WorkerConnected: roster.on_connected,
            WorkerDisconnected: roster.on_disconnected,
            HashrateReported: roster.on_report,
            MalformedSubmitted: checks.on_malformed,
            MoreRequested: jobs.on_more,
            StatsRequested: roster.on_stats,
            RestWorkRequested: jobs.on_rest_work,
            RestShareSubmitted: checks.on_rest_share,
            BackendResult: cycle.on_backend_result,
            PailsRead: cycle.reconcile.on_pails,
            TimerFired: self._on_timer,
            LocalSearchDone: work.on_local_search_done,
            GroupBest: work.on_group_best,
            NonceRefillDone: jobs.on_refill_done,
        }

    # ------------------------------------------------------------------ entry points

    def share_source(self, job: str | None, conn: int) -> tuple[str, str, int] | None:
        """(miner id, worker name, share zeros checked) of a share answered on ``job`` or, when the
        job is unknown, on WebSocket ``conn``; None when neither names a worker (history)."""
        rec = self._state.jobs.get(job) if job is not None else None
        if rec is not None:
            return rec.miner.miner_id, rec.session.name, rec.share_zeros
        sess = self._sessions.get(conn)
        if sess is not None:
            return sess.miner.miner_id, sess.name, sess.vd.zeros
        return None

    def online(self) -> tuple[int, int]:
        """(miners, workers) online now: the history's samples (one pass over the sessions)."""
        sessions = self._state.all_sessions()
        return len({s.miner.miner_id for s in sessions}), len(sessions)

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
            return self._share(sess.miner, sess, event.conn, event.share, now)
        if type(event) is BatchEnd:
            counts: list[Effect] = []
            self._state.write_counts(counts)
            return counts
        effects = [] if self._started else self.start(now)
        handler = self._handlers.get(type(event))
        if handler is None:
            raise PoolerError(f"the coordinator has no handler for {type(event).__name__}")
        effects += handler(event, now)
        self._state.publish_phase(effects, now)
        return effects

    def summary(self, now: float) -> SummaryEvent:
        """The dashboard's ``summary`` (also the snapshot sent to a new dashboard)."""
        return self._projection.summary(now)

    def pending_harvests(self) -> tuple[int, ...]:
        """Blocks worked and not harvested yet (harvest due, in flight or waiting to retry)."""
        return self._projection.pending_harvests()

    def view(self, now: float) -> CoreView:
        """A frozen picture of everything /health, stats and the dashboard show."""
        return self._projection.view(now)

    def snapshot(self) -> CoreSnapshot:
        """Everything :meth:`restore` needs, from memory (a store builds the same from Persist effects)."""
        return snapshot(self._state)

    def restore(self, snap: CoreSnapshot, now: float) -> list[Effect]:
        """Load ``snap`` into a fresh coordinator; the effects that resume the cycle.

        The newest block becomes the open one (its timers re-armed, planted again only if no
        farmer status shows a plant); older blocks with worked, unharvested farmers are
        harvested at once. Call before any other event; miners join as the registry replays them.
        """
        if self._state.block is not None or self._state.blocks:
            raise PoolerError("restore() needs a fresh coordinator: it already holds blocks")
        effects = self.start(now)
        restore(self._state, self._cycle, snap, now, effects)
        if snap.blocks:
            self._state.publish_phase(effects, now)
        return effects

    # ------------------------------------------------------------------ periodic timers

    def _on_timer(self, ev: TimerFired, now: float) -> list[Effect]:
        cfg = self._config
        if ev.key == "summary":
            self._roster.forget_idle_rest(now)
            self._roster.drop_expired_rates(now)
            effects: list[Effect] = [
                Publish(self._projection.summary(now)),
                SetTimer("summary", now + cfg.summary_interval),
            ]
            self._watch.silence(effects, now)
            return effects
        if ev.key == "vardiff":
            effects = []
            self._roster.retarget(now, effects)
            effects.append(SetTimer("vardiff", now + cfg.vardiff_target_interval))
            return effects
        return self._cycle.on_timer(ev, now)
