"""Sessions: miners joining and leaving, workers connecting, their stats, idle REST workers.

The same (miner, worker name) may be connected more than once: each connection is its own
worker (own difficulty, own jobs) and they share one durable tally. Nothing is replaced: a
reconnect racing the old socket's death and two rigs left on the worker name "default" both
keep working instead of kicking each other off in a loop. A miner that leaves voids its
jobs; its shares and the farmer's best stay and are submitted.
"""

from __future__ import annotations

from pooler.core.dashboard_events import MinerEvent
from pooler.core.effects import Close, Effect, LimitHit, Persist, Publish, Send
from pooler.core.events import (
    HashrateReported,
    MinerJoined,
    MinerLeft,
    StatsRequested,
    WorkerConnected,
    WorkerDisconnected,
)
from pooler.core.guard import CLOSE_POLICY, ShareGuard
from pooler.core.jobs import Jobs
from pooler.core.miners import FarmerState, MinerState, Session
from pooler.core.records import WorkerSeen
from pooler.core.state import RoundState
from protocol.errors import Code
from protocol.messages import Error, Stats, Welcome


class Roster:
    """Who mines here, and each worker's session (see the module docstring)."""

    def __init__(self, state: RoundState, jobs: Jobs, guard: ShareGuard) -> None:
        self._st = state
        self._jobs = jobs
        self._guard = guard  # a miner in its cool-down is refused at hello

    def on_miner_joined(self, ev: MinerJoined, now: float) -> list[Effect]:
        st = self._st
        farmer = st.farmers.get(ev.farmer_id)
        if farmer is None:
            farmer = st.farmers[ev.farmer_id] = FarmerState(ev.farmer_id, ev.farmer)
            if st.block is not None and not st.block.closed:
                st.block.round(ev.farmer_id)
        old = st.miners.get(ev.miner_id)
        if old is not None:
            old.active_at = now
            if old.farmer is farmer:
                old.name = ev.name
                return []  # replayed: nothing changed
            old.farmer.miners.discard(ev.miner_id)  # rebound to another farmer: new jobs follow it
            old.farmer = farmer
            old.name = ev.name
            farmer.miners.add(ev.miner_id)
            effects: list[Effect] = []
            for conn in sorted(old.sessions):  # ... and so do its slots, from the next block on
                sess = st.sessions.get(conn)
                if sess is not None and sess.slot is not None:
                    self._jobs.slots.assign(sess, effects, now)
            return effects
        miner = st.miners[ev.miner_id] = MinerState(ev.miner_id, farmer, ev.name)
        loaded = st.loaded_counts.pop(ev.miner_id, None)
        if loaded is not None:  # /miner/stats goes on from what the store kept (#18)
            miner.accepted, miner.rejected, miner.stale = loaded
            miner.persisted_counts = sum(loaded)
        miner.active_at = now  # a miner that just registered (or was reloaded) is about to mine
        farmer.miners.add(ev.miner_id)
        return [Publish(MinerEvent(ev.miner_id, ev.farmer_id, "joined"))]

    def on_miner_left(self, ev: MinerLeft, now: float) -> list[Effect]:
        st = self._st
        miner = st.miners.pop(ev.miner_id, None)
        if miner is None:
            return []
        effects: list[Effect] = []
        st.write_counts(effects)  # its counts as they stood, before what its leaving writes
        for conn in sorted(miner.sessions):
            sess = st.sessions.pop(conn, None)
            if sess is not None:
                sess.alive = False
                self._jobs.slots.release(sess)
            effects.append(Close(conn, 1000, "miner left"))
        for sess in miner.rest.values():
            sess.alive = False
        miner.sessions.clear()
        miner.rest.clear()
        # its jobs die with it; its accepted shares and the farmer's best stay for /work
        for job_id in [jid for jid, job in st.jobs.items() if job.miner is miner]:
            del st.jobs[job_id]
        for key in [k for k in st.last_zeros if k[0] == ev.miner_id]:
            del st.last_zeros[key]
        miner.farmer.miners.discard(ev.miner_id)
        effects.append(Publish(MinerEvent(ev.miner_id, miner.farmer.farmer_id, "left")))
        return effects

    def on_connected(self, ev: WorkerConnected, now: float) -> list[Effect]:
        st = self._st
        miner = st.miners.get(ev.miner_id)
        if miner is None:
            return [
                Send(ev.conn, Error(Code.UNAUTHORIZED, f"miner {ev.miner_id!r} is not registered here")),
                Close(ev.conn, CLOSE_POLICY, "unknown miner"),
            ]
        refused = self._guard.refusal(miner, now)
        if refused is not None:
            return [
                Send(ev.conn, refused),
                Close(ev.conn, CLOSE_POLICY, refused.code.reason),
                LimitHit("invalid-shares", miner.miner_id),
            ]
        effects: list[Effect] = []
        if ev.conn in st.sessions:  # a second hello on one socket: start that worker afresh
            effects += self.on_disconnected(WorkerDisconnected(ev.conn), now)
        zeros = st.last_zeros.get((ev.miner_id, ev.worker), st.config.share_zeros_initial)
        hr = miner.rate_of(ev.worker, st.hashrate)
        hr.connect(now)
        if ev.hashrate is not None:
            hr.report(now, ev.hashrate)
        sess = Session(ev.conn, miner, ev.worker, ev.agent, zeros, now, hr)
        miner.active_at = now
        st.sessions[ev.conn] = sess
        miner.sessions.add(ev.conn)
        farmer = miner.farmer
        effects.append(Persist(WorkerSeen(miner.miner_id, ev.worker, ev.agent)))
        slots = self._jobs.slots
        granted = slots.grant(ev.features)
        welcome = Welcome(miner.miner_id, ev.worker, farmer.farmer_id, farmer.address, features=granted)
        effects.append(Send(ev.conn, welcome))
        if granted:  # its slot holds from the next block; this block's work is a job of its own
            slots.assign(sess, effects, now)
        blk = st.live_block()
        if blk is not None:
            self._jobs.send_job(sess, ev.conn, blk, True, effects, now)
        effects.append(Publish(MinerEvent(miner.miner_id, farmer.farmer_id, "connected", ev.worker)))
        return effects

    def on_disconnected(self, ev: WorkerDisconnected, now: float) -> list[Effect]:
        st = self._st
        sess = st.sessions.pop(ev.conn, None)
        if sess is None:
            return []
        sess.alive = False  # its jobs stay valid for its miner: a reconnect may still submit on them
        self._jobs.slots.release(sess)  # its range may go to a new slot (used from the next block on)
        miner = sess.miner
        miner.sessions.discard(ev.conn)
        st.last_zeros[(miner.miner_id, sess.name)] = sess.vd.zeros
        self._gone(miner, sess, now)
        return [Publish(MinerEvent(miner.miner_id, miner.farmer.farmer_id, "disconnected", sess.name))]

    def on_report(self, ev: HashrateReported, now: float) -> list[Effect]:
        """What the miner says it hashes: shown beside the effective figure, used for nothing else."""
        sess = self._st.sessions.get(ev.conn)
        if sess is None:
            return [Send(ev.conn, Error(Code.NO_HELLO, "send 'hello' before 'report'"))]
        sess.hr.report(now, ev.hashrate)
        return []

    def on_stats(self, ev: StatsRequested, now: float) -> list[Effect]:
        st = self._st
        miner = st.miners.get(ev.miner_id)
        if miner is None:
            return [Send(ev.conn, Error(Code.UNAUTHORIZED, f"miner {ev.miner_id!r} is not registered here"))]
        sessions = st.miner_sessions(miner)
        sess = st.sessions.get(ev.conn)
        share_zeros = sess.vd.zeros if sess is not None and sess.miner is miner else None
        if share_zeros is None and miner.rest:  # over REST: its REST workers' (the highest)
            share_zeros = max(s.vd.zeros for s in miner.rest.values())
        if share_zeros is None and sessions:
            share_zeros = max(s.vd.zeros for s in sessions)
        blk = st.block
        stats = Stats(
            miner_id=miner.miner_id,
            farmer_id=miner.farmer.farmer_id,
            block=None if blk is None else blk.index,
            workers=len(sessions),
            hashrate=miner.hashrate(now),
            reported_hashrate=miner.reported_hashrate(),
            accepted=miner.accepted,
            rejected=miner.rejected,
            stale=miner.stale,
            best_zeros=None if miner.block_best < 0 else miner.block_best,
            share_zeros=share_zeros,
            rewards=st.rewards.get(miner.farmer.farmer_id, 0),
        )
        return [Send(ev.conn, stats)]

    # ------------------------------------------------------------ periodic

    def forget_idle_rest(self, now: float) -> None:
        """REST workers not heard from for ``rest_worker_idle``: gone, their jobs with them."""
        st = self._st
        idle = st.config.rest_worker_idle
        for miner in st.miners.values():
            for name in [n for n, s in miner.rest.items() if now - s.last_seen > idle]:
                sess = miner.rest.pop(name)
                sess.alive = False
                st.last_zeros[(miner.miner_id, name)] = sess.vd.zeros
                self._gone(miner, sess, now)
                for job in sess.jobs:
                    st.jobs.pop(job.id, None)

    def drop_expired_rates(self, now: float) -> None:
        """Hashrate histories of worker names gone for a whole window: nothing left to show."""
        for miner in self._st.miners.values():
            rates = miner.rates
            for name in [n for n, hr in rates.items() if hr.expired(now)]:
                del rates[name]

    def _gone(self, miner: MinerState, sess: Session, now: float) -> None:
        """``sess`` went: its worker name's hashrate stops being online once no session of that
        name is left (its figure then decays over the window)."""
        name = sess.name
        st = self._st
        if name in miner.rest and miner.rest[name] is not sess:
            return
        for conn in miner.sessions:
            other = st.sessions.get(conn)
            if other is not None and other is not sess and other.name == name:
                return
        sess.hr.disconnect(now)

    def retarget(self, now: float, effects: list[Effect]) -> None:
        """The vardiff sweep: a worker whose window is over is retargeted even if it is silent."""
        blk = self._st.block
        for sess in self._st.all_sessions():
            if blk is None or sess.jobs_block != blk.index or blk.closed:
                continue  # silent because it has no work: not a reason to lower its difficulty
            changed = sess.vd.retarget(now, self._st.config)
            if changed is not None:
                self._jobs.difficulty_changed(sess, changed, effects)

    def new_block(self) -> None:
        """A new block: every miner's per-block counters start again."""
        for miner in self._st.miners.values():
            miner.block_accepted = miner.block_rejected = 0
            miner.block_best = -1
