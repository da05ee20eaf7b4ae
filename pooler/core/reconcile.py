"""Unknown outcomes: a Backend call whose answer cannot be read, reconciled with the chain.

A ``/plant``, ``/work`` or ``/harvest`` that was sent and whose answer cannot be read (a 2xx
lacking a field or not JSON, a timeout or a connection cut after sending: ``BackendResult``
with ``unknown``) is neither a success nor a failure. The chain is the source of truth the
Pooler can read itself, so one path serves all three phases:

1. :meth:`Reconcile.begin`: the call stays in flight for its block (``plant_call``, the
   farmers' ``in_flight``, ``harvest_call``: nothing else is sent in its place meanwhile); a
   trace that it was sent is persisted at once (the call's record with the error, and for
   ``/work`` each planted farmer's status with the zeros sent, so a restart harvests the block
   even if it stops in the middle); ``reconcile:<call id>`` is armed ``backend_retry_delay``
   later, so the chain has the transaction when we look.
2. the timer asks for ``ReadPails(block, farmers)`` (every farmer of the call: the addresses kept
   on the call, else the roster's); the runtime posts ``PailsRead`` with the ledger the read
   reflects. A failed read (the RPC may be down too) is read again while the phase's deadline
   allows; so is a read that shows something not done but is not past the newest ledger known
   at the failure (it may predate the call's transaction).
3. :meth:`Reconcile.on_pails` decides from ``Pail(farmer, N)``:

   - plant: a pail = planted (its stake, counted once in the block's records: ``RoundState.staked``);
     missing pails are planted again (idempotent: the contract answers "planted already" for the
     others) while the plant's deadline allows; a late plant that planted nobody is a failed one,
     tried again by ``late-plant:N``;
   - work: a pail with ``zeros`` >= what was sent = worked; the others are sent again
     (idempotent: the same nonce; a #7 refusal of it means landed) while
     ``now + backend_retry_delay < deadline``;
   - harvest: a farmer read whose pail is gone = harvested, paid its projected reward when the
     projection is final (the contract's arithmetic, to the stroop), else unknown (alerted); a
     pail without work = failed; the rest is harvested again on ``harvest-retry:N``. A readable
     answer that leaves out farmers of the call has them read the same way (:meth:`harvest_answered`).

   What the chain shows becomes an ordinary answer (a ``PlantReply``/``WorkReply``/
   ``HarvestReply`` whose body says ``reconciled``), applied by the phase's own code, so the
   records, statuses, rewards, dashboard events and alerts are the same as for a readable answer.
   Only what the chain shows as not done, when no time is left, fails (with the reason, alerted).

A ``/harvest`` waits while a ``/work`` of its block is being reconciled (:mod:`pooler.core.harvest`),
and a farmer once ``harvested`` never changes status again (:meth:`BlockState.set_status`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pooler.core.alerts import HarvestFailed, RewardUnknown, WorkFailed
from pooler.core.backend_calls import FarmerOutcome, HarvestReply, PlantReply, Submission, WorkReply
from pooler.core.block import BlockPhase, BlockState, CallRecord, Reconciling
from pooler.core.effects import Effect, Persist, Publish, RaiseAlert, ReadPails, SetTimer
from pooler.core.events import BackendResult, PailsRead
from pooler.core.harvest import Harvest
from pooler.core.plant import Plant, plant_event
from pooler.core.records import HarvestCalled, PlantCalled, WorkCalled
from pooler.core.rewards import Pail
from pooler.core.state import RoundState
from pooler.core.work import Work

RECONCILED = {"reconciled": True}  # the body of an answer made from the chain (for the record)


class Reconcile:
    """Unknown outcomes of plant, work and harvest, settled from the chain (module docstring)."""

    def __init__(self, state: RoundState, plant: Plant, work: Work, harvest: Harvest) -> None:
        self._st = state
        self._plant = plant
        self._work = work
        self._harvest = harvest

    # ------------------------------------------------------------ the call's answer is unreadable

    def begin(self, rec: CallRecord, ev: BackendResult, effects: list[Effect], now: float) -> None:
        st = self._st
        cfg = st.config
        blk = st.blocks.get(rec.block)
        why = f"outcome unknown, reconciling with the chain: {ev.error}"
        if rec.op == "plant":
            # a call that named its farmers (farmerIds) could plant only them; one that named none
            # (inside restore) planted whoever the Backend had: the farmers known at the call or since
            fids = rec.farmers if rec.named else tuple(dict.fromkeys([*rec.farmers, *st.farmers]))
            seen = blk is not None and blk.plant_call == ev.call_id
            until = (
                blk.ends_at - cfg.safety_margin if blk is not None and seen else now + cfg.block_interval / 2
            )
            effects.append(Persist(PlantCalled(rec.block, None, why)))
        elif rec.op == "work":
            fids = rec.farmers
            until = blk.ends_at if blk is not None else now
            effects.append(Persist(WorkCalled(rec.block, rec.submissions, None, why)))
            if blk is not None:
                for sub in rec.submissions:  # the trace that /work went out survives a crash
                    if blk.round(sub.farmer_id).status == "planted":
                        blk.set_status(
                            sub.farmer_id, "planted", f"work sent, {why}", effects, zeros=sub.zeros
                        )
        else:
            fids = rec.farmers
            until = self._harvest_until(blk, now)
            effects.append(Persist(HarvestCalled(rec.block, None, why)))
        self._track(ev.call_id, rec, fids, ev.error, until, effects, now)

    def _harvest_until(self, blk: BlockState | None, now: float) -> float:
        # a block's worth of reads at most: then the harvest's own retry (harvest-retry:N)
        return min(blk.harvest_until, now + self._st.config.block_interval) if blk is not None else now

    def _track(
        self,
        call_id: int,
        rec: CallRecord,
        fids: tuple[str, ...],
        error: str,
        until: float,
        effects: list[Effect],
        now: float,
    ) -> None:
        """Settle call ``call_id`` from the pails of ``fids`` (each is read: its address as known at
        the call, else as known now)."""
        st = self._st
        known = dict(rec.addresses)
        for fid in fids:
            if fid not in known and (f := st.farmers.get(fid)) is not None:
                known[fid] = f.address
        farmers = tuple((fid, known[fid]) for fid in fids if fid in known)
        st.reconciling[call_id] = Reconciling(call_id, rec, error, until, farmers, st.ledger)
        # not at once: the transaction may reach the ledger a moment after the Backend answered
        effects.append(SetTimer(f"reconcile:{call_id}", now + st.config.backend_retry_delay))

    def harvest_answered(self, rec: CallRecord, ev: BackendResult, effects: list[Effect], now: float) -> None:
        """A readable ``/harvest`` answer. The Backend lists only the pails it found: a farmer of
        the call it leaves out was harvested by an earlier call whose answer was lost, or not at
        all; its pail tells (the listed ones are applied now, the call stays in flight for it)."""
        blk = self._st.blocks.get(rec.block)
        reply = ev.reply
        if blk is not None and blk.harvest_call == ev.call_id and isinstance(reply, HarvestReply):
            listed = {o.farmer_id for o in reply.results} if reply.results is not None else None
            omitted = () if listed is None else tuple(f for f in rec.farmers if f not in listed)
            if omitted:
                self._harvest.apply(blk, reply, effects)
                why = f"the /harvest answer left out {len(omitted)} farmer(s) of the call"
                part = replace(rec, farmers=omitted)
                self._track(ev.call_id, part, omitted, why, self._harvest_until(blk, now), effects, now)
                return
        self._harvest.on_result(rec, ev, effects, now)

    def on_timer(self, call_id: int, effects: list[Effect]) -> None:
        r = self._st.reconciling.get(call_id)
        if r is not None:
            effects.append(ReadPails(call_id, r.rec.block, r.farmers))

    # ------------------------------------------------------------ what the chain says

    def on_pails(self, ev: PailsRead, now: float) -> list[Effect]:
        st = self._st
        effects: list[Effect] = []
        r = st.reconciling.pop(ev.call_id, None)
        if r is None:
            return effects  # settled already (a read answered twice)
        if ev.pails is None:
            r.reads += 1
            r.read_error = ev.error
            if self._read_again(r, effects, now):
                return effects
        # "not done" is trusted only from a read past the newest ledger known at the failure (an
        # RPC behind, or a transaction not yet applied, shows the pails as they were before it)
        fresh = ev.pails is not None and ev.ledger > r.ledger
        op = r.rec.op
        if op == "plant":
            self._planted(r, ev.pails, fresh, effects, now)
        elif op == "work":
            self._worked(r, ev.pails, fresh, effects, now)
        else:
            self._harvested(r, ev.pails, fresh, effects, now)
        return effects

    def _read_again(self, r: Reconciling, effects: list[Effect], now: float) -> bool:
        """Read the pails again in ``backend_retry_delay`` if time allows (False: it does not)."""
        delay = self._st.config.backend_retry_delay
        if now + delay < r.until:
            self._st.reconciling[r.call_id] = r
            effects.append(SetTimer(f"reconcile:{r.call_id}", now + delay))
            return True
        return False

    def _planted(
        self,
        r: Reconciling,
        pails: Mapping[str, Pail] | None,
        fresh: bool,
        effects: list[Effect],
        now: float,
    ) -> None:
        rec = r.rec
        result: BackendResult
        if pails is None:
            error = f"plant outcome unknown and the chain could not be read ({r.read_error}): {r.error}"
            result = BackendResult(r.call_id, "plant", rec.block, None, error=error)
            self._plant.on_result(rec, result, effects, now)
            at_risk = tuple(fid for fid, _ in r.farmers)
            if at_risk:  # they may have staked: no work will be sent for them in this block
                why = f"{error}; any stake planted in block {rec.block} is at risk"
                effects.append(RaiseAlert(WorkFailed(rec.block, at_risk, why)))
            return
        fids = [fid for fid, _ in r.farmers]
        found = {fid: pails[fid] for fid in fids if fid in pails}
        missing = [fid for fid in fids if fid not in found]
        if missing and not fresh and self._read_again(r, effects, now):
            return
        counted = self._st.staked.setdefault(rec.block, set())  # stakes a record of the block counted
        new = {fid: p for fid, p in found.items() if fid not in counted}
        if (
            missing
            and now + self._st.config.backend_retry_delay < r.until
            and self._plant_again(r, effects, now)
        ):
            if new:  # what the lost call did (the retry's answer counts its own)
                staked = sum(p.stake for p in new.values())
                part = PlantReply(len(new), 0, staked, tuple(FarmerOutcome(f, True) for f in new), RECONCILED)
                effects.append(Persist(PlantCalled(rec.block, part)))
                effects.append(
                    Publish(plant_event(rec.block, BackendResult(r.call_id, "plant", rec.block, part)))
                )
                counted.update(new)
            return
        why = f"no Pail on chain after an unreadable /plant answer ({r.error})"
        if not found:  # it planted nobody: a failed plant (a late one is tried again on its timer)
            failed = BackendResult(r.call_id, "plant", rec.block, None, why, retryable=True)
            self._plant.on_result(rec, failed, effects, now)
            return
        results = (
            *(FarmerOutcome(fid, True) for fid in found),
            *(FarmerOutcome(fid, False, why) for fid in missing),
        )
        # each stake counted once in the block's records: a part recorded before is listed, not summed
        staked = sum(p.stake for p in new.values())
        reply = PlantReply(len(new), len(missing), staked, tuple(results), RECONCILED)
        counted.update(new)
        self._plant.on_result(rec, BackendResult(r.call_id, "plant", rec.block, reply), effects, now)

    def _plant_again(self, r: Reconciling, effects: list[Effect], now: float) -> bool:
        """Plant the block again (what planted already stays planted); False when it cannot be."""
        st = self._st
        blk = st.blocks.get(r.rec.block)
        if blk is not None and blk.plant_call == r.call_id:
            if st.paused or blk.closed:
                return False
            blk.plant_call = self._plant.call(blk.index, effects, r.until, now)
            return True
        return False  # a late plant: its own timer plants again (at its pace, never with the chain down)

    def _worked(
        self,
        r: Reconciling,
        pails: Mapping[str, Pail] | None,
        fresh: bool,
        effects: list[Effect],
        now: float,
    ) -> None:
        st = self._st
        rec = r.rec
        blk = st.blocks.get(rec.block)
        if blk is None:
            return
        landed: list[Submission] = []
        again: list[Submission] = []
        lost: list[Submission] = []
        can_retry = blk is st.block and not blk.closed and not st.paused
        can_retry = can_retry and now + st.config.backend_retry_delay < blk.ends_at
        for sub in rec.submissions:
            pail = pails.get(sub.farmer_id) if pails is not None else None
            if pail is not None and pail.zeros is not None and pail.zeros >= sub.zeros:
                landed.append(sub)
            elif pails is not None and pail is not None and can_retry:
                again.append(sub)  # sent again even after a stale read: a #7 refusal then means landed
            else:
                lost.append(sub)
        if lost and pails is not None and not fresh and self._read_again(r, effects, now):
            return  # it would fail on a read that may not show it yet
        for sub in again:  # no longer in flight with the unknown call: sent again below
            fr = blk.round(sub.farmer_id)
            if fr.in_flight == r.call_id:
                fr.in_flight = None
            fr.submitted = fr.worked
        if pails is None:
            why = f"outcome unknown, the chain could not be read ({r.read_error}): {r.error}"
        else:
            why = f"not on chain after an unreadable answer: {r.error}"
        settled = (*landed, *lost)
        part = CallRecord("work", rec.block, tuple(s.farmer_id for s in settled), settled)
        if landed:  # what the chain shows, as the Backend would have answered it
            results = (
                *(FarmerOutcome(s.farmer_id, True) for s in landed),
                *(
                    FarmerOutcome(s.farmer_id, False, f"work was not recorded before the deadline ({why})")
                    for s in lost
                ),
            )
            reply = WorkReply(len(landed), len(lost), tuple(results), RECONCILED)
            self._work.on_result(part, BackendResult(r.call_id, "work", rec.block, reply), effects, now)
        elif lost:  # nothing landed and nothing can be sent again: a failure, reported as one
            failed = BackendResult(r.call_id, "work", rec.block, None, why, retryable=True)
            self._work.on_result(part, failed, effects, now)
        else:
            blk.work_calls -= 1
        if again:
            self._work.submit(blk, [s.farmer_id for s in again], effects, now, resend=True)
        if blk.phase is BlockPhase.HARVEST_DUE:
            self._harvest.call(blk, effects, now)  # it waited for this reconciliation

    def _harvested(
        self,
        r: Reconciling,
        pails: Mapping[str, Pail] | None,
        fresh: bool,
        effects: list[Effect],
        now: float,
    ) -> None:
        st = self._st
        rec = r.rec
        blk = st.blocks.get(rec.block)
        if blk is None or blk.harvest_call != r.call_id:
            return
        if pails is None:
            error = f"harvest outcome unknown, the chain could not be read ({r.read_error}): {r.error}"
            self._harvest.on_result(
                rec, BackendResult(r.call_id, "harvest", rec.block, None, error, retryable=True), effects, now
            )
            return
        read = [fid for fid, _ in r.farmers]  # a farmer whose address is unknown was not read
        done = [fid for fid in read if fid not in pails]  # its pail gone: harvested
        unworked = [fid for fid in read if fid in pails and pails[fid].zeros is None]
        unread = [fid for fid in rec.farmers if fid not in read]  # no address known (restored, miners gone)
        left = [fid for fid in read if fid not in done and fid not in unworked]
        if (left or unworked) and not fresh and self._read_again(r, effects, now):
            return  # a read that may predate the harvest: look again
        if unworked and fresh:  # no work on chain (a /work whose outcome was lost did not land)
            why = "no work recorded on chain for this block: nothing to harvest"
            for fid in unworked:
                blk.set_status(fid, "failed", f"harvest failed: {why}", effects)
            effects.append(RaiseAlert(HarvestFailed(blk.index, tuple(unworked), why)))
        elif unworked:
            left = [*left, *unworked]
        left += unread
        rewards = self._rewards(blk, done, r.error, effects)
        if not left:
            results = tuple(FarmerOutcome(fid, True, reward=rewards[fid]) for fid in done)
            total = None if None in rewards.values() else sum(v or 0 for v in rewards.values())
            body = {**RECONCILED} if total is None else {**RECONCILED, "totalRewards": str(total)}
            reply = HarvestReply(len(done), 0, total, results, body)
            self._harvest.on_result(rec, BackendResult(r.call_id, "harvest", rec.block, reply), effects, now)
            return
        if done:
            self._harvest.credit(blk, rewards, effects)
        error = f"{len(left)} farmer(s) still to harvest, the chain shows ({r.error})"
        if unread:
            error += f" ({len(unread)} not read: no address known)"
        self._harvest.on_result(
            rec, BackendResult(r.call_id, "harvest", rec.block, None, error, retryable=True), effects, now
        )

    @staticmethod
    def _rewards(
        blk: BlockState, done: list[str], error: str, effects: list[Effect]
    ) -> dict[str, int | None]:
        """The rewards of farmers the chain shows harvested: the block's projection when it is final
        (the contract's arithmetic to the stroop), else unknown (None), alerted."""
        p = blk.projection
        final = p is not None and blk.projection_final
        paid = {f.farmer: f.reward for f in p.farmers} if p is not None and final else {}
        rewards = {fid: paid.get(fid) for fid in done}
        unknown = tuple(fid for fid, reward in rewards.items() if reward is None)
        if unknown:
            why = "not in the block's final reward projection" if final else "no final reward projection"
            effects.append(RaiseAlert(RewardUnknown(blk.index, unknown, f"{why} of the block ({error})")))
        return rewards
