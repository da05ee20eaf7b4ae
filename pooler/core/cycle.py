"""The block cycle: new blocks, the pause, the block timers, Backend answers dispatched.

What may happen to a block in which phase is the table in :mod:`pooler.core.block`; this
module drives it:

- NewBlock(N): the previous block is closed (its jobs become stale, its tallies flushed,
  planted-but-unworked farmers fail). Jobs with ``clean=True`` go to every connected worker
  (one ``block`` frame for all workers holding a slot, :mod:`pooler.core.slots`) and
  ``/plant`` N is called in the same effects list (plant runs while miners hash).
  Timers: ``search:N`` (workAt - lead), ``work:N`` (workAt), ``end:N`` (T+I),
  ``late-plant:N`` (T+I+grace). Every worked, unharvested older block is harvested now
  (``index < FarmIndex`` holds for all of them).
- ``search:N``: planted farmers whose miners found nothing get a bounded ``LocalSearch`` so
  no stake is forfeited for want of a nonce; its result becomes the farmer's best.
- ``work:N`` / ``work-retry:N``: :mod:`pooler.core.work`.
- ``end:N``: past the deadline nothing can be submitted; planted farmers with nothing in
  flight fail.
- ``late-plant:N`` and the plant answers: :mod:`pooler.core.plant`; harvests and
  ``harvest-retry:N``: :mod:`pooler.core.harvest`.
- an answer that cannot be read (``BackendResult.unknown``), of any of the three, and
  ``reconcile:<call id>``: :mod:`pooler.core.reconcile` (the chain's pails decide).
- FarmPaused: no plant or work calls and no new jobs while paused; unpausing resumes where
  the block is (opening it if it arrived while paused and there is still time).
"""

from __future__ import annotations

from pooler.core.block import BlockPhase, BlockState, Trigger, ms
from pooler.core.checks import ShareCheck
from pooler.core.dashboard_events import BlockEvent, ChainEvent
from pooler.core.effects import CancelTimer, Effect, Persist, Publish, SetTimer
from pooler.core.events import BackendResult, ChainHealth, FarmPaused, NewBlock, TimerFired
from pooler.core.harvest import Harvest
from pooler.core.jobs import Jobs
from pooler.core.plant import Plant
from pooler.core.reconcile import Reconcile
from pooler.core.records import BlockSeen
from pooler.core.roster import Roster
from pooler.core.state import RoundState
from pooler.core.watch import Watch
from pooler.core.work import Work

_BLOCK_TIMERS = ("work", "search", "end", "late-plant", "work-retry", "stake")


def block_event(blk: BlockState) -> BlockEvent:
    return BlockEvent(blk.index, blk.entropy, blk.timestamp, ms(blk.work_at), ms(blk.ends_at))


class Cycle:
    """Drives each block through its phases (see the module docstring)."""

    def __init__(
        self,
        state: RoundState,
        roster: Roster,
        jobs: Jobs,
        checks: ShareCheck,
        plant: Plant,
        work: Work,
        harvest: Harvest,
        watch: Watch,
    ) -> None:
        self._st = state
        self._roster = roster
        self._jobs = jobs
        self._checks = checks
        self.plant = plant
        self.work = work
        self.harvest = harvest
        self.watch = watch  # the stake-at-risk check (its timer is the block's)
        # unknown outcomes of all three phases, settled from the chain's pails
        self.reconcile = Reconcile(state, plant, work, harvest)

    # ------------------------------------------------------------ chain events

    def on_new_block(self, ev: NewBlock, now: float) -> list[Effect]:
        st = self._st
        st.chain_seen = True
        st.ledger = max(st.ledger, ev.ledger)
        cur = st.block
        if cur is not None and ev.index <= cur.index:
            return []  # seen already (a monitor restart re-announces it) or older: nothing new
        effects: list[Effect] = [Persist(BlockSeen(ev.index, ev.entropy, ev.timestamp))]
        if cur is not None:
            self._close(cur, effects, now)
            self.work.forecast.close(cur)
        blk = BlockState(ev.index, ev.entropy, ev.timestamp, st.config)
        st.blocks[ev.index] = blk
        st.block = blk
        self._checks.new_block()
        self._roster.new_block()
        for fid in st.farmers:
            blk.round(fid)
        effects.append(Publish(block_event(blk)))
        late, st.late = st.late, None
        adopt = late is not None and late.index == ev.index and (late.result is None or late.result.ok)
        if late is not None and late.index < ev.index and late.result is not None:
            self.plant.unseen(late.rec, late.result, effects)  # it opened a block we never saw
        if not st.paused:
            self.open(blk, effects, now, plant=not adopt)
        if adopt and late is not None:
            blk.plant = "pending"
            blk.plant_call = late.call_id
            if late.result is not None:  # answered before the block was seen: apply it now
                self.plant.apply(blk, late.rec, late.result, effects, now, publish=False)
        for old in sorted(st.blocks.values(), key=lambda b: b.index):
            if old.index < ev.index and old.phase is BlockPhase.HARVEST_DUE:
                self.harvest.call(old, effects, now)
        self._prune()
        return effects

    def open(self, blk: BlockState, effects: list[Effect], now: float, *, plant: bool) -> None:
        """Plant (unless adopted), jobs to every connected worker, and the block's timers."""
        st = self._st
        blk.advance(Trigger.OPEN)
        if plant:
            blk.plant = "pending"
            blk.plant_call = self.plant.call(blk.index, effects, blk.ends_at - st.config.safety_margin, now)
        self._jobs.open_block(blk, effects, now)  # one block frame for the slots, a job for each other
        n = blk.index
        effects.append(SetTimer(f"search:{n}", blk.search_at))
        effects.append(SetTimer(f"work:{n}", blk.work_at))
        effects.append(SetTimer(f"end:{n}", blk.ends_at))
        effects.append(SetTimer(f"late-plant:{n}", blk.ends_at + st.config.late_plant_grace))
        self.watch.arm(blk, effects, now)

    def _close(self, blk: BlockState, effects: list[Effect], now: float) -> None:
        """A newer block exists: N's jobs are stale, its counts flushed, its harvest due."""
        st = self._st
        blk.advance(Trigger.NEWER_BLOCK)
        n = blk.index
        effects.extend(CancelTimer(f"{kind}:{n}") for kind in _BLOCK_TIMERS)
        st.write_counts(effects)  # what the shares of N wrote so far, before its tallies go
        for tally in st.tallies.values():
            if tally.rejected != tally.persisted_rejected:
                effects.append(Persist(tally.record()))
        for miner in st.miners.values():  # rejections since their last accepted share
            if miner.accepted + miner.rejected + miner.stale != miner.persisted_counts:
                effects.append(Persist(miner.counts()))
        st.tallies.clear()
        st.jobs.clear()
        # the share check's per-farmer state (duplicate sets, templates, counters) is dead once a
        # newer block exists: dropped, so the blocks kept for views and harvests hold no shares
        blk.shares.clear()
        for sess in st.all_sessions():
            sess.jobs = []
        for fid, fr in blk.rounds.items():
            if fr.status == "planted" and fr.in_flight is None and not fr.searching:
                blk.set_status(fid, "failed", "no work was recorded before the next block opened", effects)
        if blk.work_tried:
            blk.advance(Trigger.HARVEST_NEEDED)

    def on_paused(self, ev: FarmPaused, now: float) -> list[Effect]:
        st = self._st
        effects: list[Effect] = []
        if ev.paused == st.paused:
            return effects
        st.paused = ev.paused
        blk = st.block
        if ev.paused or blk is None or blk.closed:
            return effects
        if blk.phase is BlockPhase.SEEN:
            if now < blk.ends_at - st.config.safety_margin:
                self.open(blk, effects, now, plant=blk.plant == "none")
        elif blk.plant == "done":
            if now >= blk.search_at:
                self.work.local_search(blk, effects, now)
            if blk.work_due and blk.phase is not BlockPhase.RETRY_WAIT:
                self.work.submit(blk, blk.planted(), effects, now)
        return effects

    def on_chain_health(self, ev: ChainHealth, now: float) -> list[Effect]:
        self._st.chain_ok = ev.ok
        self._st.chain_seen = self._st.chain_seen or ev.ok
        self._st.chain_detail = ev.detail
        return [Publish(ChainEvent(ev.ok, ev.detail))]

    # ------------------------------------------------------------ Backend answers

    def on_backend_result(self, ev: BackendResult, now: float) -> list[Effect]:
        effects: list[Effect] = []
        rec = self._st.calls.pop(ev.call_id, None)
        if rec is None:
            return effects  # unknown or answered twice: nothing to apply
        if ev.unknown:
            self.reconcile.begin(rec, ev, effects, now)
        elif rec.op == "plant":
            self.plant.on_result(rec, ev, effects, now)
        elif rec.op == "work":
            self.work.on_result(rec, ev, effects, now)
        else:
            self.reconcile.harvest_answered(rec, ev, effects, now)
        return effects

    # ------------------------------------------------------------ block timers

    def on_timer(self, ev: TimerFired, now: float) -> list[Effect]:
        """``kind:N`` timers of block N; stale or unknown keys are ignored."""
        st = self._st
        effects: list[Effect] = []
        kind, _, arg = ev.key.partition(":")
        if not arg.isdigit():
            return effects  # not ours (or from an older version): ignore safely
        if kind == "reconcile":  # its argument is a call id
            self.reconcile.on_timer(int(arg), effects)
            return effects
        blk = st.blocks.get(int(arg))
        if blk is None:
            return effects
        if kind == "harvest-retry":
            self.harvest.call(blk, effects, now)  # only a block whose harvest is due is harvested
            return effects
        if blk is not st.block or blk.closed:
            return effects  # a timer of a block that is over
        if kind == "stake":
            if blk.plant == "done" and not st.paused:
                self.watch.stakes(blk, effects, now)
        elif kind == "search":
            if blk.plant == "done" and not st.paused:
                self.work.local_search(blk, effects, now)
        elif kind == "work":
            if not blk.may(Trigger.WORK_TIME):
                return effects
            blk.advance(Trigger.WORK_TIME)
            if blk.plant == "done" and not st.paused:
                if not blk.searched:
                    self.work.local_search(blk, effects, now)
                self.work.submit(blk, blk.planted(), effects, now)
        elif kind == "work-retry":
            if not blk.may(Trigger.RETRY_TIME):
                return effects
            blk.advance(Trigger.RETRY_TIME)
            self.work.submit(blk, blk.planted(), effects, now)
        elif kind == "end":
            if not blk.may(Trigger.DEADLINE):
                return effects
            blk.advance(Trigger.DEADLINE)
            for fid, fr in blk.rounds.items():
                if fr.status == "planted" and fr.in_flight is None:
                    blk.set_status(fid, "failed", "no work was recorded before the block's deadline", effects)
        elif kind == "late-plant":
            self.plant.late(blk, effects, now)
        return effects

    # ------------------------------------------------------------ housekeeping

    def _prune(self) -> None:
        st = self._st
        cur = st.block
        if cur is None:
            return
        keep_from = cur.index - st.config.history_blocks
        pending = (BlockPhase.HARVEST_DUE, BlockPhase.HARVESTING)
        settling = {r.rec.block for r in st.reconciling.values()}
        for index in [
            i for i, b in st.blocks.items() if i < keep_from and b.phase not in pending and i not in settling
        ]:
            del st.blocks[index]
        for index in [i for i in st.staked if i < keep_from and i not in st.blocks]:
            del st.staked[index]
