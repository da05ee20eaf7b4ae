"""The work phase: local searches for farmers nobody mined for, ``/work`` calls and their answers.

At ``work:N`` one ``/work`` carries every planted farmer's best (deadline ``T+I``). After it a
strictly better best (more zeros) is resubmitted for that farmer alone while
``now < T+I-margin``, one call per farmer in flight at a time. A failed call with
``retryable`` is retried on ``work-retry:N`` while ``now + backend_retry_delay < deadline``;
past it, or on a refusal, the farmers without confirmed work fail with the reason. A failed
resubmission never undoes a confirmed ``worked``.
"""

from __future__ import annotations

from collections.abc import Iterable

from pooler.core.alerts import WorkFailed
from pooler.core.backend_calls import Submission, WorkReply, WorkRequest, outcomes
from pooler.core.block import BlockPhase, BlockState, CallRecord, Trigger, ms
from pooler.core.dashboard_events import ShownSubmission, WorkEvent
from pooler.core.effects import CallBackend, Effect, LocalSearch, Persist, Publish, RaiseAlert, SetTimer
from pooler.core.events import BackendResult, GroupBest, LocalSearchDone
from pooler.core.forecast import Forecast
from pooler.core.jobs import Jobs
from pooler.core.records import Best, BestFound, NonceCredited, WorkCalled
from pooler.core.shares import FarmerBlock
from pooler.core.state import RoundState
from pooler.errors import PoolerError


class Work:
    """Local searches and ``/work`` submissions of the current block (see the module docstring)."""

    def __init__(self, state: RoundState, jobs: Jobs, forecast: Forecast) -> None:
        self._st = state
        self._jobs = jobs
        self.forecast = forecast  # the reward projection: told of each confirmed work

    # ------------------------------------------------------------ local search

    def local_search(self, blk: BlockState, effects: list[Effect], now: float) -> None:
        """A bounded search for each planted farmer nobody found a share for."""
        blk.searched = True
        cfg = self._st.config
        deadline = blk.work_at if now < blk.work_at else blk.ends_at - cfg.safety_margin
        for fid in blk.planted():
            fr = blk.rounds[fid]
            if fid in blk.bests or fr.searching or fr.worked >= 0:
                continue
            farmer = self._st.farmers.get(fid)
            if farmer is None:
                blk.set_status(fid, "failed", "no address known for this farmer: cannot search", effects)
                continue
            got = self._jobs.take(self._jobs.farmer_block(blk, farmer), cfg.local_search_max_hashes, effects)
            if got is None:
                continue
            fr.searching = True
            effects.append(
                LocalSearch(blk.index, fid, farmer.address, blk.entropy, got[0], got[1] - got[0], deadline)
            )

    def on_local_search_done(self, ev: LocalSearchDone, now: float) -> list[Effect]:
        effects: list[Effect] = []
        blk = self._st.blocks.get(ev.block)
        if blk is None:
            return effects
        fr = blk.round(ev.farmer_id)
        fr.searching = False
        if blk.closed:
            return effects
        farmer = self._st.farmers.get(ev.farmer_id)
        if ev.nonce is None or farmer is None:
            if ev.farmer_id not in blk.bests and fr.worked < 0 and fr.status == "planted" and blk.work_due:
                blk.set_status(ev.farmer_id, "failed", "the local search found no nonce in time", effects)
            return effects
        fb = self._jobs.farmer_block(blk, farmer)
        digest, zeros = fb.template.verify(ev.nonce)  # never trust a result we did not check
        if ev.hash is not None and ev.hash != digest:
            fr.reason = "the local search returned a wrong hash"
            return effects
        self._offer(blk, fb, Best(ev.nonce, digest, zeros, now, "", "local-search"), effects, now)
        return effects

    def on_group_best(self, ev: GroupBest, now: float) -> list[Effect]:
        """A best another instance accepted (the leader's core): checked here, kept if better."""
        effects: list[Effect] = []
        blk = self._st.blocks.get(ev.block)
        farmer = self._st.farmers.get(ev.farmer_id)
        if blk is None or blk.closed or farmer is None:
            return effects
        fb = self._jobs.farmer_block(blk, farmer)
        digest, zeros = fb.template.verify(ev.nonce)  # never trust a result we did not check
        if ev.hash == digest:
            self._offer(blk, fb, Best(ev.nonce, digest, zeros, now, ev.miner_id, ev.worker), effects, now)
        return effects

    def _offer(self, blk: BlockState, fb: FarmerBlock, best: Best, effects: list[Effect], now: float) -> None:
        """A checked nonce for ``fb``'s farmer: credited, and its best (submitted if due) when better."""
        fb.seen.add(best.nonce)
        if self._st.report_credits:
            effects.append(Persist(NonceCredited(fb.block, fb.farmer_id, best.nonce, "")))
        if fb.offer(best):
            blk.bests[fb.farmer_id] = best
            effects.append(Persist(BestFound(blk.index, fb.farmer_id, best)))
            if blk.work_due:
                self.after_best(blk, fb.farmer_id, effects, now)

    # ------------------------------------------------------------ submissions

    def after_best(self, blk: BlockState, fid: str, effects: list[Effect], now: float) -> None:
        """workAt has passed and ``fid`` has a new best: submit it if it can still count."""
        if self._st.paused or blk.closed or blk.phase is BlockPhase.RETRY_WAIT:
            return  # paused: unpause sends it; retry pending: the retry sends it
        fr = blk.rounds.get(fid)
        if fr is None or fr.status not in ("planted", "worked"):
            return
        if fr.in_flight is not None:
            fr.resubmit = True  # one call per farmer at a time; sent when the answer comes
            return
        limit = blk.ends_at if fr.submitted < 0 else blk.ends_at - self._st.config.safety_margin
        if now < limit:
            self.submit(blk, [fid], effects, now)

    def submit(
        self,
        blk: BlockState,
        farmer_ids: Iterable[str],
        effects: list[Effect],
        now: float,
        *,
        resend: bool = False,
    ) -> None:
        """One /work call with the best of each farmer that improves on what was sent; ``resend``:
        the bests of a call whose answer was lost, sent again (a #7 refusal then means landed)."""
        st = self._st
        if st.paused or now >= blk.ends_at:
            return
        subs: list[Submission] = []
        for fid in farmer_ids:
            fr = blk.rounds.get(fid)
            best = blk.bests.get(fid)
            if fr is None or best is None or best.zeros <= fr.submitted:
                continue
            if fr.in_flight is not None:
                fr.resubmit = True
                continue
            subs.append(Submission(fid, best.nonce, ms(best.found_at), best.hash, best.zeros))
        if not subs:
            return
        call_id = st.next_call()
        sent = tuple(s.farmer_id for s in subs)
        st.calls[call_id] = CallRecord("work", blk.index, sent, tuple(subs), resend=resend)
        for sub in subs:
            fr = blk.rounds[sub.farmer_id]
            fr.in_flight = call_id
            fr.submitted = sub.zeros
            fr.resubmit = False
        blk.work_calls += 1
        blk.work_tried = True
        request = WorkRequest(blk.index, st.config.pooler_id, tuple(subs))
        effects.append(CallBackend(call_id, request, blk.ends_at))

    def on_result(self, rec: CallRecord, ev: BackendResult, effects: list[Effect], now: float) -> None:
        st = self._st
        blk = st.blocks.get(rec.block)
        if blk is None:
            return
        blk.work_calls -= 1
        for fid in rec.farmers:
            fr = blk.rounds[fid]
            if fr.in_flight == ev.call_id:
                fr.in_flight = None
        shown = tuple(ShownSubmission(s.farmer_id, s.zeros, s.nonce) for s in rec.submissions)
        reply = ev.reply
        if reply is not None:
            if not isinstance(reply, WorkReply):
                raise PoolerError(f"a /work call was answered with {type(reply).__name__}")
            effects.append(Persist(WorkCalled(blk.index, rec.submissions, reply)))
            self._confirm(blk, rec, reply, effects, self.forecast)
            valid = reply.valid if reply.valid is not None else len(shown) - reply.invalid
            effects.append(Publish(WorkEvent(blk.index, True, shown, valid, reply.invalid)))
        else:
            effects.append(Persist(WorkCalled(blk.index, rec.submissions, None, ev.error)))
            effects.append(Publish(WorkEvent(blk.index, False, shown, 0, 0, ev.error)))
            delay = st.config.backend_retry_delay
            if ev.retryable and blk.may(Trigger.RETRY_ARMED) and now + delay < blk.ends_at:
                for fid in rec.farmers:
                    fr = blk.rounds[fid]
                    fr.submitted = fr.worked  # so the retry sends every unconfirmed best again
                    fr.reason = f"work call failed, retrying: {ev.error}"
                blk.advance(Trigger.RETRY_ARMED)
                effects.append(SetTimer(f"work-retry:{blk.index}", now + delay))
            else:
                lost: list[str] = []
                why = "work was not recorded before the deadline" if ev.retryable else "work refused"
                for fid in rec.farmers:
                    fr = blk.rounds[fid]
                    if fr.worked < 0:
                        blk.set_status(fid, "failed", f"{why}: {ev.error}", effects)
                        lost.append(fid)
                    else:
                        fr.reason = f"resubmission failed: {ev.error}"
                if lost:
                    effects.append(RaiseAlert(WorkFailed(blk.index, tuple(lost), f"{why}: {ev.error}")))
        if blk is st.block and blk.phase is not BlockPhase.RETRY_WAIT:
            again = [fid for fid in rec.farmers if blk.rounds[fid].resubmit]
            for fid in again:
                blk.rounds[fid].resubmit = False
                self.after_best(blk, fid, effects, now)

    @staticmethod
    def _confirm(
        blk: BlockState, rec: CallRecord, reply: WorkReply, effects: list[Effect], forecast: Forecast
    ) -> None:
        """Each submitted farmer worked, or failed, as the answer says."""
        items = outcomes(reply)
        invalid = reply.invalid
        refused: list[str] = []
        reasons: list[str] = []
        for sub in rec.submissions:
            fr = blk.rounds[sub.farmer_id]
            if items is not None:
                item = items.get(sub.farmer_id)
                # sent again after a lost answer, refused "zeros too low" (#7): the first send landed
                ok = item is not None and (item.ok or (rec.resend and item.already_worked))
                why = "the Backend did not report it" if item is None else item.error
            elif invalid and not reply.valid:
                ok, why = False, "the Backend counted the nonce invalid"
            else:
                ok, why = True, ""
            if ok:
                fr.worked = max(fr.worked, sub.zeros)
                warn = ""
                if invalid and items is None:
                    warn = f"{invalid} nonce(s) of the batch were invalid"
                blk.set_status(sub.farmer_id, "worked", warn, effects, zeros=fr.worked)
                forecast.work_landed(blk, sub.farmer_id, sub.zeros)
            elif fr.worked < 0:
                blk.set_status(sub.farmer_id, "failed", f"work refused: {why}", effects)
                refused.append(sub.farmer_id)
                reasons.append(why)
            else:
                fr.reason = f"resubmission at {sub.zeros} zeros refused: {why}"
        if refused:
            reason = "work refused: " + "; ".join(dict.fromkeys(reasons))
            effects.append(RaiseAlert(WorkFailed(blk.index, tuple(refused), reason)))
