"""The share check: the coordinator's hot path.

A share passes, in this order: job known, of this miner and of the current block (STALE) ->
nonce in [start, end) (OUT_OF_RANGE) -> (farmer, block, nonce) not seen (DUPLICATE) ->
server hash equals any client hash (INVALID_HASH) -> zeros >= the worker's difficulty, or
the previous one during the grace after a change (LOW_ZEROS). Accepted: tallies, the
farmer's best, ``Persist`` effects, then the ``Send``.

Rejected shares are counted at once and written with the next accepted share of that worker,
or at block close (a flood of bad shares causes no writes). Every answered share also counts
in its miner's share-quality window (:mod:`pooler.core.guard`), judged once the window is full.

Cost: everything :meth:`ShareCheck.share` touches is reached through attributes bound at
construction (the jobs dict, the config, the tally and best hooks); an ordinary accepted
share allocates its records and its answer and nothing else.
"""

from __future__ import annotations

from pooler.core.effects import Effect, Persist, Send
from pooler.core.events import MalformedSubmitted, RestShareSubmitted
from pooler.core.guard import ShareGuard
from pooler.core.jobs import Jobs
from pooler.core.miners import MinerState, Session
from pooler.core.records import Best, BestFound, NonceCredited
from pooler.core.state import RoundState
from pooler.core.work import Work
from protocol.errors import Code
from protocol.messages import Accepted, Error, Rejected, Share


class ShareCheck:
    """Checks shares and counts them (see the module docstring)."""

    def __init__(self, state: RoundState, jobs: Jobs, work: Work, guard: ShareGuard) -> None:
        self._st = state
        self._config = state.config
        self._jobs = state.jobs  # the very dict job issue fills (never rebound)
        self._issue = jobs
        self._tally = jobs.tally
        self._difficulty_changed = jobs.difficulty_changed
        self._after_best = work.after_best
        self._credits = state.report_credits  # a group: each credited nonce goes to the shared set
        self._guard = guard
        self._window = guard.window  # shares per share-quality window
        self.accepted = 0  # shares of the current block, pool-wide (summary)
        self.rejected = 0
        self.accepted_total = 0  # since start
        self.rejected_total = 0

    def new_block(self) -> None:
        self.accepted = self.rejected = 0

    def on_malformed(self, ev: MalformedSubmitted, now: float) -> list[Effect]:
        """A submit that did not decode: a rejected share (reason malformed) of its miner, in the
        share-quality window too; answered here for REST (a socket's was answered at the edge)."""
        effects: list[Effect] = []
        if ev.reply is not None:
            effects.append(Send(ev.reply, Rejected(ev.job, None, ev.code, ev.message)))
        miner = self._st.miners.get(ev.miner_id)
        if miner is None:
            return effects
        miner.rejected += 1
        miner.block_rejected += 1
        miner.window_invalid += 1
        reason = ev.code.reason
        miner.rejected_by[reason] = miner.rejected_by.get(reason, 0) + 1
        self.rejected += 1
        self.rejected_total += 1
        miner.window_seen += 1
        if miner.window_seen >= self._window:
            self._guard.judge(miner, effects, now)
        return effects

    def on_rest_share(self, ev: RestShareSubmitted, now: float) -> list[Effect]:
        miner = self._st.miners.get(ev.miner_id)
        if miner is None:
            return [Send(ev.reply, Error(Code.UNAUTHORIZED, f"miner {ev.miner_id!r} is not registered here"))]
        refused = self._guard.refusal(miner, now)
        if refused is not None:
            return [Send(ev.reply, Rejected(ev.share.job, ev.share.nonce, refused.code, refused.message))]
        job = self._jobs.get(ev.share.job)
        if job is None and ev.issued is not None:
            job = self._issue.adopt(miner, ev.issued, now)
        sess: Session | None = None
        if job is not None and job.miner is miner:
            sess = job.session
            if not sess.alive:  # its worker went idle or disconnected: credit a REST worker of that name
                sess = self._issue.rest_session(miner, sess.name, now)
            sess.last_seen = now
        return self.share(miner, sess, ev.reply, ev.share, now)

    def share(
        self, miner: MinerState, sess: Session | None, conn: int, share: Share, now: float
    ) -> list[Effect]:
        job = self._jobs.get(share.job)
        if job is None or job.miner is not miner or sess is None:
            return self._reject(
                miner, sess, conn, share, Code.STALE, "the job is not a current job of this miner", now
            )
        nonce = share.nonce
        if nonce < job.nonce_start or nonce >= job.nonce_end:
            why = f"nonce is outside the job's range [{job.nonce_start}, {job.nonce_end})"
            return self._reject(miner, sess, conn, share, Code.OUT_OF_RANGE, why, now)
        fb = job.fb
        if nonce in fb.seen:
            return self._reject(
                miner, sess, conn, share, Code.DUPLICATE, "this nonce was already accepted", now
            )
        digest, zeros = fb.template.verify(nonce)
        if share.hash is not None and share.hash != digest:
            return self._reject(
                miner, sess, conn, share, Code.INVALID_HASH, f"the hash of this nonce is {digest.hex()}", now
            )
        vd = sess.vd
        need = vd.zeros if now >= vd.grace_until else vd.low
        current = vd.zeros  # the difficulty the worker mines at, as far as it was told
        if sess.conn is None:
            # A REST worker cannot be told of a new difficulty; the job it holds states the one it
            # mines at, so that one counts until it fetches the next job.
            current = job.share_zeros
            need = min(need, current)
        if zeros < need:
            return self._reject(
                miner,
                sess,
                conn,
                share,
                Code.LOW_ZEROS,
                f"the hash has {zeros} zeros; {need} are needed",
                now,
            )
        fb.seen.add(nonce)
        # weighed at the difficulty it was mined at (16**z hashes), not vardiff's of the moment
        # (pooler.core.hashrate.counted_zeros, inlined: the hot path)
        counted = current if zeros >= current else need
        sess.hr.share(now, counted, job.id)
        miner.accepted += 1
        miner.block_accepted += 1
        miner.active_at = now
        if zeros > miner.block_best:
            miner.block_best = zeros
        sess.accepted += 1
        self.accepted += 1
        self.accepted_total += 1
        tally = sess.tally
        if tally is None or tally.block != fb.block:
            tally = sess.tally = self._tally(fb.block, sess)
        tally.accepted += 1
        # their records go out once per batch (RoundState.write_counts at BatchEnd), before the
        # commit this ack waits for
        st = self._st
        st.unwritten_tallies[id(tally)] = tally
        st.unwritten_miners[miner.miner_id] = miner
        if zeros <= fb.best_zeros:  # the common case: an ordinary share
            effects: list[Effect] = [Send(conn, Accepted(share.job, nonce, zeros, False))]
            if self._credits:
                effects.insert(0, Persist(NonceCredited(fb.block, fb.farmer_id, nonce, share.job)))
            # a REST job below vardiff's difficulty: the worker cannot have learned the raise
            changed = vd.credit(now, self._config, counted) if current >= vd.zeros else None
            if changed is not None:
                self._difficulty_changed(sess, changed, effects)
            miner.window_seen += 1
            if miner.window_seen >= self._window:
                self._guard.judge(miner, effects, now)
            return effects
        best = Best(nonce, digest, zeros, now, miner.miner_id, sess.name)
        fb.best = best
        fb.best_zeros = zeros
        blk = st.block
        assert blk is not None and blk.index == fb.block  # jobs exist for the current block only
        blk.bests[fb.farmer_id] = best
        effects = [
            Persist(BestFound(fb.block, fb.farmer_id, best)),
            Send(conn, Accepted(share.job, nonce, zeros, True)),
        ]
        if self._credits:
            effects.insert(0, Persist(NonceCredited(fb.block, fb.farmer_id, nonce, share.job)))
        changed = vd.credit(now, self._config, counted) if current >= vd.zeros else None
        if changed is not None:
            self._difficulty_changed(sess, changed, effects)
        if blk.work_due:
            calls = blk.work_calls
            self._after_best(blk, fb.farmer_id, effects, now)
            if blk.work_calls != calls:  # a /work went out: the dashboard's phase is "submitting"
                self._st.publish_phase(effects, now)
        miner.window_seen += 1
        if miner.window_seen >= self._window:
            self._guard.judge(miner, effects, now)
        return effects

    def _reject(
        self,
        miner: MinerState,
        sess: Session | None,
        conn: int,
        share: Share,
        code: Code,
        message: str,
        now: float,
    ) -> list[Effect]:
        miner.rejected += 1
        miner.block_rejected += 1
        if code is Code.STALE:
            miner.stale += 1  # a race around a block change: not held against the miner
        else:
            miner.window_invalid += 1
        reason = code.reason
        miner.rejected_by[reason] = miner.rejected_by.get(reason, 0) + 1
        self.rejected += 1
        self.rejected_total += 1
        if sess is not None:
            sess.rejected += 1
            blk = self._st.block  # the newest block is never closed (a newer one closes it)
            if blk is not None:
                tally = sess.tally
                if tally is None or tally.block != blk.index:
                    tally = sess.tally = self._tally(blk.index, sess)
                tally.rejected += 1  # written with the next accepted share or at block close
        effects: list[Effect] = [Send(conn, Rejected(share.job, share.nonce, code, message))]
        miner.window_seen += 1
        if miner.window_seen >= self._window:
            self._guard.judge(miner, effects, now)
        return effects
