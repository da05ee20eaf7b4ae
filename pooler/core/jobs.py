"""Job issue: nonce ranges cut for each worker, jobs kept while they are current, REST workers.

A job is a range of one (block, farmer)'s nonce counter handed to one session; it stays
valid for its miner (any of its connections) until the next block, at most
``max_jobs_per_worker`` per worker, the oldest going stale. The counter's new high-water
mark is persisted before the job is sent, so a restart never hands the same range out again.
"""

from __future__ import annotations

from pooler.core.block import BlockState, ms
from pooler.core.effects import Broadcast, Effect, Persist, Send
from pooler.core.events import IssuedJob, MoreRequested, NonceRefillDone, RestWorkRequested
from pooler.core.guard import ShareGuard
from pooler.core.miners import FarmerState, JobRecord, MinerState, Session
from pooler.core.nonces import NonceSpace, range_size
from pooler.core.records import NoncesIssued, RestJobIssued
from pooler.core.shares import FarmerBlock, Tally
from pooler.core.slots import Slots
from pooler.core.state import RoundState
from protocol.errors import Code
from protocol.messages import Block, Difficulty, Error, Job, slot_job_id


class Jobs:
    """Hands out ranges and jobs; answers ``more``, REST work requests and nonce refills."""

    def __init__(self, state: RoundState, nonces: NonceSpace, guard: ShareGuard, slots: Slots) -> None:
        self._st = state
        self._config = state.config
        self._nonces = nonces  # where each (block, farmer)'s counter comes from
        self._guard = guard  # a miner in its cool-down gets no REST work
        self.slots = slots  # the standing slots of block-broadcast sockets (the roster's too)

    # ------------------------------------------------------------ events

    def on_more(self, ev: MoreRequested, now: float) -> list[Effect]:
        st = self._st
        sess = st.sessions.get(ev.conn)
        if sess is None:
            return [Send(ev.conn, Error(Code.NO_HELLO, "send 'hello' before 'more'"))]
        blk = st.live_block()
        if blk is None:
            return [Send(ev.conn, Error(Code.STALE, "no block is open; a job follows when one opens"))]
        old = st.jobs.get(ev.job) if ev.job is not None else None
        if old is not None and old.session is sess:
            size = old.nonce_end - old.nonce_start
            # the range was hashed through: exact work, long before shares tell
            sess.hr.range_done(now, old.id, size, max(old.share_zeros, sess.vd.zeros))
            if now > old.issued_at:
                sess.more_rate = size / (now - old.issued_at)
        effects: list[Effect] = []
        self.send_job(sess, ev.conn, blk, False, effects, now)
        if self.slots.outgrown(sess, now):  # a bigger slot, from the next block on
            self.slots.assign(sess, effects, now)
        return effects

    def on_rest_work(self, ev: RestWorkRequested, now: float) -> list[Effect]:
        miner = self._st.miners.get(ev.miner_id)
        if miner is None:
            return [Send(ev.reply, Error(Code.UNAUTHORIZED, f"miner {ev.miner_id!r} is not registered here"))]
        refused = self._guard.refusal(miner, now)
        if refused is not None:
            return [Send(ev.reply, refused)]
        blk = self._st.live_block()
        if blk is None:
            return [Send(ev.reply, Error(Code.STALE, "no block is open; ask again in a few seconds"))]
        sess = self.rest_session(miner, ev.worker, now)
        effects: list[Effect] = []
        self.send_job(sess, ev.reply, blk, sess.jobs_block != blk.index, effects, now)
        return effects

    def on_refill_done(self, ev: NonceRefillDone, now: float) -> list[Effect]:
        effects: list[Effect] = []
        blk = self._st.live_block()
        if blk is None or blk.index != ev.block:
            return effects
        fb = blk.shares.get(ev.farmer_id)
        if fb is None or not fb.waiting:
            return effects
        waiting, fb.waiting = fb.waiting, {}
        for conn, clean in waiting.items():
            sess = self._st.sessions.get(conn)
            if sess is not None and sess.miner.farmer.farmer_id == ev.farmer_id:
                self.send_job(sess, conn, blk, clean, effects, now)  # may wait for the next refill
        return effects

    # ------------------------------------------------------------ issuing

    def open_block(self, blk: BlockState, effects: list[Effect], now: float) -> None:
        """Work of ``blk`` for every connected worker: ONE ``block`` frame for all that hold a
        slot (each one's job is its slot's range, recorded here, no frame of its own), a
        ``job`` each for the others. Each slot farmer's counter opening is recorded first, so a
        restart within the block resumes above every slot (pooler.core.slots)."""
        conns: list[int] = []
        opened: dict[str, FarmerBlock] = {}
        for conn, sess in self._st.sessions.items():
            slot = sess.slot
            if slot is None or slot.farmer is not sess.miner.farmer:
                self.send_job(sess, conn, blk, True, effects, now)
                continue
            fid = slot.farmer.farmer_id
            fb = opened.get(fid)
            if fb is None:
                fb = opened[fid] = self.farmer_block(blk, slot.farmer)
                if fb.counter.next < slot.farmer.slots.top:  # opened before a slot grew the region
                    fb.counter.next = slot.farmer.slots.top
            job_id = slot_job_id(slot.id, blk.index)
            rec = JobRecord(
                job_id, sess.miner, sess, fb, slot.nonce_start, slot.nonce_end, sess.vd.zeros, now
            )
            self.hold_job(sess, rec, blk, now)
            conns.append(conn)
        if conns:
            for fb in opened.values():
                effects.append(Persist(NoncesIssued(fb.block, fb.farmer_id, fb.counter.next)))
            frame = Block(blk.index, blk.entropy, ms(blk.work_at), ms(blk.ends_at))
            effects.append(Broadcast(tuple(conns), frame))

    def send_job(
        self, sess: Session, conn: int, blk: BlockState, clean: bool, effects: list[Effect], now: float
    ) -> None:
        """A fresh range of ``blk`` for ``sess``, sent to ``conn``."""
        cfg = self._config
        fb = self.farmer_block(blk, sess.miner.farmer)
        got = self.take(fb, range_size(sess.sizing_rate(now), blk.ends_at - now, cfg), effects)
        if got is None:
            if sess.conn is not None and fb.counter.refilling:
                # a socket can wait a Redis round trip; a REST request is answered and asks again
                fb.waiting[conn] = clean or fb.waiting.get(conn, False)
                return
            why = "no nonce range for this farmer now (its space is used up or cannot be drawn); retry later"
            effects.append(Send(conn, Error(Code.OUT_OF_RANGE, why)))
            return
        start, end = got
        st = self._st
        st.job_seq += 1
        job_id = f"{cfg.job_id_prefix}{st.job_seq:x}"
        zeros = sess.vd.zeros
        rec = JobRecord(job_id, sess.miner, sess, fb, start, end, zeros, now)
        self.hold_job(sess, rec, blk, now)
        if cfg.share_rest_jobs and sess.conn is None:
            # in the shared store before the miner has it: any instance can take its shares
            issued = IssuedJob(
                job_id, blk.index, sess.miner.miner_id, fb.farmer_id, sess.name, start, end, zeros, now
            )
            effects.append(Persist(RestJobIssued(issued)))
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

    def hold_job(self, sess: Session, rec: JobRecord, blk: BlockState, now: float) -> None:
        """``rec`` becomes a current job of ``sess`` (at most ``max_jobs_per_worker`` of them)."""
        jobs = self._st.jobs
        jobs[rec.id] = rec
        if sess.jobs_block != blk.index:
            if sess.jobs_block < 0:  # its first work ever: time before it had a job says nothing
                sess.vd.window_start = now
            sess.jobs = []
            sess.jobs_block = blk.index
        sess.jobs.append(rec)
        sess.hr.job(rec.issued_at, rec.id)  # observed time starts at its first job
        if len(sess.jobs) > self._config.max_jobs_per_worker:  # bound memory: the oldest goes stale
            jobs.pop(sess.jobs.pop(0).id, None)
        if sess.tally is None or sess.tally.block != blk.index:
            sess.tally = self.tally(blk.index, sess)

    def adopt(self, miner: MinerState, issued: IssuedJob, now: float) -> JobRecord | None:
        """A REST job another instance of the group issued, taken on here; None when it is not a
        job of this miner's farmer for the block open here (then the share is STALE as usual).

        The range was drawn from the group's shared nonce space by the issuing instance, and the
        duplicate check is shared, so a share on it is checked here exactly as there."""
        blk = self._st.live_block()
        if (
            blk is None
            or issued.block != blk.index
            or issued.miner_id != miner.miner_id
            or issued.farmer_id != miner.farmer.farmer_id
            or not 0 <= issued.nonce_start < issued.nonce_end
        ):
            return None
        sess = self.rest_session(miner, issued.worker, now)
        fb = self.farmer_block(blk, miner.farmer)
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
        self.hold_job(sess, rec, blk, now)
        return rec

    def rest_session(self, miner: MinerState, name: str, now: float) -> Session:
        """The REST worker ``name`` of ``miner``, created on its first request."""
        sess = miner.rest.get(name)
        if sess is None:
            zeros = self._st.last_zeros.get((miner.miner_id, name), self._config.share_zeros_initial)
            hr = miner.rate_of(name, self._st.hashrate)
            sess = miner.rest[name] = Session(None, miner, name, None, zeros, now, hr)
            hr.connect(now)
        sess.last_seen = now
        return sess

    # ------------------------------------------------------------ ranges and tallies

    def farmer_block(self, blk: BlockState, farmer: FarmerState) -> FarmerBlock:
        """The (block, farmer) record shares and ranges of ``farmer`` in ``blk`` use."""
        fb = blk.shares.get(farmer.farmer_id)
        if fb is None:
            fid = farmer.farmer_id
            # above the restart floor and above every standing slot of the farmer (slots.py)
            floor = max(blk.nonce_floor.get(fid, 0), farmer.slots.top)
            counter = self._nonces.counter(blk.index, fid, floor)
            fb = FarmerBlock(blk.index, blk.entropy, fid, farmer.address, counter)
            best = blk.bests.get(farmer.farmer_id)
            if best is not None:
                fb.offer(best)
                fb.seen.add(best.nonce)
            blk.shares[farmer.farmer_id] = fb
        return fb

    @staticmethod
    def take(fb: FarmerBlock, size: int, effects: list[Effect]) -> tuple[int, int] | None:
        """A range from the farmer's counter, its new high-water mark persisted before it is sent:
        a restart resumes above every range handed out, so no two workers ever hash the same nonce."""
        got = fb.counter.take(size)
        if got is not None:
            effects.append(Persist(NoncesIssued(fb.block, fb.farmer_id, got[1])))
        return got

    def tally(self, block: int, sess: Session) -> Tally:
        """The durable share count ``sess``'s shares of ``block`` add to (one per worker name)."""
        key = (sess.miner.miner_id, sess.name)
        tallies = self._st.tallies
        tally = tallies.get(key)
        if tally is None or tally.block != block:
            tally = tallies[key] = Tally(block, sess.miner.miner_id, sess.name)
        return tally

    def difficulty_changed(self, sess: Session, zeros: int, effects: list[Effect]) -> None:
        self._st.last_zeros[(sess.miner.miner_id, sess.name)] = zeros
        if sess.conn is not None:  # a REST worker learns it from its next job
            effects.append(Send(sess.conn, Difficulty(zeros)))
