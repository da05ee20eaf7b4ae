"""Snapshot and restore: what a store keeps of the round state, and a restart from it.

:func:`snapshot` builds from memory what a store builds from the ``Persist`` effects
(:mod:`pooler.core.snapshot` names which record mirrors which). :func:`restore` loads one
into a fresh coordinator: the newest block becomes the open one (its timers re-armed,
planted again only if no farmer status shows a plant); older blocks with worked,
unharvested farmers are harvested at once; a block after the newest with planted farmers
was opened by our late plant, which the next NewBlock adopts.
"""

from __future__ import annotations

from pooler.core.backend_calls import FarmerOutcome, PlantReply
from pooler.core.block import BlockPhase, BlockState, CallRecord, FarmerRound, LatePlant, Trigger
from pooler.core.cycle import Cycle, block_event
from pooler.core.effects import Effect, Publish, SetTimer
from pooler.core.events import BackendResult
from pooler.core.records import Best
from pooler.core.shares import Tally
from pooler.core.snapshot import (
    BestRecord,
    BlockRecord,
    CoreSnapshot,
    RewardRecord,
    StatusRecord,
    TallyRecord,
)
from pooler.core.state import RoundState
from pooler.errors import PoolerError

RESTORED_NONCE_START = 1 << 63  # where a restored block's ranges start when no counter was kept


def snapshot(st: RoundState) -> CoreSnapshot:
    """Everything :func:`restore` needs, from memory."""
    blocks = sorted(st.blocks.values(), key=lambda b: b.index)
    cur = st.block
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
            TallyRecord(t.block, t.miner_id, t.worker, t.accepted, t.rejected) for t in st.tallies.values()
        ),
        statuses=tuple(
            StatusRecord(b.index, fid, fr.status, fr.reason, _zeros(fr))
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


def restore(st: RoundState, cycle: Cycle, snap: CoreSnapshot, now: float, effects: list[Effect]) -> None:
    """Load ``snap`` into the fresh state ``st``; ``effects`` gets what resumes the cycle."""
    if st.block is not None or st.blocks:
        raise PoolerError("restore() needs a fresh coordinator: it already holds blocks")
    if not snap.blocks:
        return
    cfg = st.config
    records = sorted(snap.blocks, key=lambda r: r.index)
    for r in records:
        st.blocks[r.index] = BlockState(r.index, r.entropy, r.timestamp, cfg)
    cur = st.block = st.blocks[records[-1].index]
    for b in snap.bests:
        blk = st.blocks.get(b.block)
        if blk is not None:
            blk.bests[b.farmer_id] = Best(b.nonce, b.hash, b.zeros, b.found_at, b.miner_id, b.worker)
    ahead = _statuses(st, cur, snap)
    for rw in snap.rewards:
        blk = st.blocks.get(rw.block)
        if rw.farmer_id == "":
            if blk is not None:
                blk.rewards_total = rw.reward
            continue
        st.rewards[rw.farmer_id] = st.rewards.get(rw.farmer_id, 0) + rw.reward
        if blk is not None:
            blk.round(rw.farmer_id).reward = rw.reward
    for t in snap.tallies:
        if t.block == cur.index:
            st.tallies[(t.miner_id, t.worker)] = Tally(t.block, t.miner_id, t.worker, t.accepted, t.rejected)
    for blk in st.blocks.values():
        statuses = [fr.status for fr in blk.rounds.values()]
        if any(s in ("planted", "worked", "harvested") for s in statuses):
            blk.plant = "done"
        if blk is not cur:
            blk.advance(Trigger.NEWER_BLOCK)
            # "planted" with the zeros sent: a /work whose outcome was being reconciled when the
            # process stopped; it may have landed, so the block is harvested (what the chain has)
            sent = any(fr.status == "planted" and fr.submitted >= 0 for fr in blk.rounds.values())
            if "worked" in statuses or sent:
                blk.advance(Trigger.HARVEST_NEEDED)
            elif statuses and all(s in ("harvested", "failed") for s in statuses) and blk.work_tried:
                blk.advance(Trigger.HARVEST_OK)
    for fid in set(cur.bests) | set(snap.nonce_next):
        best_floor = cur.bests[fid].nonce + 1 if fid in cur.bests else 0
        cur.nonce_floor[fid] = max(snap.nonce_next.get(fid, RESTORED_NONCE_START), best_floor)
    if ahead:
        call_id = st.next_call()
        rec = CallRecord("plant", cur.index + 1, tuple(ahead), late=True)
        listed = tuple(FarmerOutcome(fid, True) for fid in ahead)  # it planted these, as statuses say
        done = BackendResult(call_id, "plant", cur.index + 1, PlantReply(len(ahead), 0, 0, listed))
        st.late = LatePlant(cur.index + 1, call_id, rec, done)
    effects.append(Publish(block_event(cur)))
    if now < cur.ends_at - cfg.safety_margin:
        cycle.open(cur, effects, now, plant=cur.plant != "done")
    elif now < cur.ends_at + cfg.late_plant_grace:
        cycle.open(cur, effects, now, plant=False)  # timers only; too late to plant
    else:
        cur.advance(Trigger.DEADLINE)  # too late for anything but our late plant of the next block
        effects.append(SetTimer(f"late-plant:{cur.index}", now))
    if cur.plant == "done":  # its planted farmers' pails, for the reward projection
        cycle.work.forecast.watch(cur, effects)
    for blk in sorted(st.blocks.values(), key=lambda b: b.index):
        if blk.phase is BlockPhase.HARVEST_DUE:
            cycle.harvest.call(blk, effects, now)


def _statuses(st: RoundState, cur: BlockState, snap: CoreSnapshot) -> list[str]:
    """Farmer statuses into their blocks' rounds; the farmers planted in the block after ``cur``."""
    ahead: list[str] = []
    for s in snap.statuses:
        blk = st.blocks.get(s.block)
        if blk is None:
            if s.block == cur.index + 1 and s.status == "planted":
                ahead.append(s.farmer_id)  # our late plant opened the next block
            continue
        fr = blk.round(s.farmer_id)
        fr.status = s.status
        fr.reason = s.reason
        if s.zeros is not None and s.status == "planted":  # work sent, outcome unknown
            blk.work_tried = True
            if blk is not cur:  # the open block sends it again (the same nonce: idempotent)
                fr.submitted = s.zeros
        elif s.zeros is not None:
            fr.worked = fr.submitted = s.zeros
            blk.work_tried = True
        elif s.status in ("worked", "harvested"):
            fr.worked = fr.submitted = 0
            blk.work_tried = True
    return ahead


def _zeros(fr: FarmerRound) -> int | None:
    """The zeros a status record keeps: confirmed work, or (still ``planted``) the work sent."""
    if fr.worked >= 0:
        return fr.worked
    return fr.submitted if fr.status == "planted" and fr.submitted >= 0 else None
