"""The harvest: ``/harvest`` N once N+1 is seen, retried with backoff while N's entries live.

Rewards are per farmer only when the harvest response has ``results``; otherwise the block's
``totalRewards`` is recorded as its total. A failed harvest retries on ``harvest-retry:N``
(the delay doubles, capped) while the block's TEMPORARY entries live
(``harvest_retention_blocks``), then its worked farmers fail.
"""

from __future__ import annotations

from pooler.core.backend_calls import HarvestReply, HarvestRequest, outcomes
from pooler.core.block import BlockPhase, BlockState, CallRecord, Trigger
from pooler.core.dashboard_events import FarmerReward, HarvestEvent
from pooler.core.effects import CallBackend, Effect, Persist, Publish, SetTimer
from pooler.core.events import BackendResult
from pooler.core.records import HarvestCalled
from pooler.core.state import RoundState
from pooler.errors import PoolerError


class Harvest:
    """Harvest calls and their answers (see the module docstring)."""

    def __init__(self, state: RoundState) -> None:
        self._st = state

    def call(self, blk: BlockState, effects: list[Effect], now: float) -> None:
        if blk.phase is not BlockPhase.HARVEST_DUE:
            return
        if now >= blk.harvest_until:
            self._expired(blk, "not harvested before the block's entries expired", effects)
            return
        st = self._st
        call_id = st.next_call()
        farmers = tuple(fid for fid, fr in blk.rounds.items() if fr.status == "worked")
        st.calls[call_id] = CallRecord("harvest", blk.index, farmers)
        blk.advance(Trigger.HARVEST_CALLED)
        blk.harvest_call = call_id
        blk.harvest_attempts += 1
        deadline = min(blk.harvest_until, now + st.config.block_interval)
        effects.append(CallBackend(call_id, HarvestRequest(blk.index, st.config.pooler_id), deadline))

    def _expired(self, blk: BlockState, why: str, effects: list[Effect]) -> None:
        blk.advance(Trigger.HARVEST_EXPIRED)
        for fid, fr in blk.rounds.items():
            if fr.status == "worked":
                blk.set_status(fid, "failed", why, effects)

    def on_result(self, rec: CallRecord, ev: BackendResult, effects: list[Effect], now: float) -> None:
        st = self._st
        blk = st.blocks.get(rec.block)
        if blk is None or blk.harvest_call != ev.call_id:
            return
        blk.harvest_call = None
        reply = ev.reply
        if reply is not None:
            if not isinstance(reply, HarvestReply):
                raise PoolerError(f"a /harvest call was answered with {type(reply).__name__}")
            self._harvested(blk, reply, effects)
            return
        effects.append(Persist(HarvestCalled(blk.index, None, ev.error)))
        effects.append(Publish(HarvestEvent(blk.index, False, 0, 0, 0, (), ev.error)))
        cfg = st.config
        delay = min(cfg.harvest_retry_delay * 2 ** (blk.harvest_attempts - 1), 4 * cfg.block_interval)
        if now + delay < blk.harvest_until:
            blk.advance(Trigger.HARVEST_RETRY)
            effects.append(SetTimer(f"harvest-retry:{blk.index}", now + delay))
        else:
            self._expired(blk, f"harvest failed until the block's entries expired: {ev.error}", effects)

    def _harvested(self, blk: BlockState, reply: HarvestReply, effects: list[Effect]) -> None:
        st = self._st
        blk.advance(Trigger.HARVEST_OK)
        effects.append(Persist(HarvestCalled(blk.index, reply)))
        rewards: list[FarmerReward] = []
        items = outcomes(reply)
        if items is None:  # worked now: a /work answer may have come after the call
            for fid in [fid for fid, fr in blk.rounds.items() if fr.status == "worked"]:
                blk.set_status(fid, "harvested", "", effects)
        else:
            for fid, item in items.items():
                fr = blk.round(fid)
                if item.ok:
                    if item.reward is not None:
                        fr.reward = item.reward
                        st.rewards[fid] = st.rewards.get(fid, 0) + item.reward
                        rewards.append(FarmerReward(fid, item.reward))
                    blk.set_status(fid, "harvested", "", effects)
                else:
                    blk.set_status(fid, "failed", f"harvest failed: {item.error}", effects)
        total = reply.total_rewards
        if total is None and rewards:
            total = sum(r.reward for r in rewards)
        blk.rewards_total = total
        event = HarvestEvent(blk.index, True, reply.successful, reply.failed, total or 0, tuple(rewards))
        effects.append(Publish(event))
