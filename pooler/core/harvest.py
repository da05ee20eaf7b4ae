"""The harvest: ``/harvest`` N once N+1 is seen, retried with backoff while N's entries live.

Rewards are per farmer only when the harvest response has ``results``; otherwise the block's
``totalRewards`` is recorded as its total. A failed harvest retries on ``harvest-retry:N``
(the delay doubles, capped) while the block's TEMPORARY entries live
(``harvest_retention_blocks``), then its worked farmers fail.

The farmers a harvest is for (:func:`to_harvest`): the ``worked`` ones, and the ``planted``
ones whose ``/work`` went out with its outcome unknown (restored from the trace a
reconciliation left): their work may have landed. A reward credited from the chain rather than
from an answer is the block's projection only once it is final; else it is unknown (None).
"""

from __future__ import annotations

from pooler.core.alerts import HarvestFailed
from pooler.core.backend_calls import FarmerOutcome, HarvestReply, HarvestRequest, outcomes
from pooler.core.block import BlockPhase, BlockState, CallRecord, Trigger
from pooler.core.dashboard_events import FarmerReward, HarvestEvent
from pooler.core.effects import CallBackend, Effect, Persist, Publish, RaiseAlert, SetTimer
from pooler.core.events import BackendResult
from pooler.core.records import HarvestCalled
from pooler.core.state import RoundState
from pooler.errors import PoolerError


def to_harvest(blk: BlockState) -> tuple[str, ...]:
    """The farmers a harvest of ``blk`` claims for (see the module docstring)."""
    return tuple(
        fid
        for fid, fr in blk.rounds.items()
        if fr.status == "worked" or (fr.status == "planted" and fr.submitted >= 0)
    )


class Harvest:
    """Harvest calls and their answers (see the module docstring)."""

    def __init__(self, state: RoundState) -> None:
        self._st = state

    def call(self, blk: BlockState, effects: list[Effect], now: float) -> None:
        if blk.phase is not BlockPhase.HARVEST_DUE:
            return
        st = self._st
        if any(r.rec.block == blk.index and r.rec.op == "work" for r in st.reconciling.values()):
            return  # a /work of the block is being reconciled: harvested when it is settled
        if now >= blk.harvest_until:
            self._expired(blk, "not harvested before the block's entries expired", effects)
            return
        call_id = st.next_call()
        farmers = to_harvest(blk)
        known = tuple((fid, f.address) for fid in farmers if (f := st.farmers.get(fid)) is not None)
        st.calls[call_id] = CallRecord("harvest", blk.index, farmers, addresses=known)
        blk.advance(Trigger.HARVEST_CALLED)
        blk.harvest_call = call_id
        blk.harvest_attempts += 1
        deadline = min(blk.harvest_until, now + st.config.block_interval)
        effects.append(CallBackend(call_id, HarvestRequest(blk.index, st.config.pooler_id), deadline))

    def _expired(self, blk: BlockState, why: str, effects: list[Effect]) -> None:
        blk.advance(Trigger.HARVEST_EXPIRED)
        lost = to_harvest(blk)
        for fid in lost:
            blk.set_status(fid, "failed", why, effects)
        effects.append(RaiseAlert(HarvestFailed(blk.index, tuple(lost), why)))

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
        blk.advance(Trigger.HARVEST_OK)
        self.apply(blk, reply, effects)

    def apply(self, blk: BlockState, reply: HarvestReply, effects: list[Effect]) -> None:
        """A readable answer (or what the chain showed): record, statuses, rewards, event."""
        effects.append(Persist(HarvestCalled(blk.index, reply)))
        rewards: list[FarmerReward] = []
        items = outcomes(reply)
        if items is None:  # as of now: a /work answer may have come after the call
            for fid in to_harvest(blk):
                blk.set_status(fid, "harvested", "", effects)
        else:
            failed: list[str] = []
            reasons: list[str] = []
            for fid, item in items.items():
                if item.ok:
                    self._credit(blk, fid, item.reward, effects, rewards)
                else:
                    blk.set_status(fid, "failed", f"harvest failed: {item.error}", effects)
                    failed.append(fid)
                    reasons.append(item.error)
            if failed:
                reason = "harvest failed: " + "; ".join(dict.fromkeys(reasons))
                effects.append(RaiseAlert(HarvestFailed(blk.index, tuple(failed), reason)))
        total = reply.total_rewards
        if total is None and rewards:
            total = sum(r.reward for r in rewards)
        if blk.rewards_total is not None:  # part of it was credited from the chain before
            total = blk.rewards_total + (total or 0)
        blk.rewards_total = total
        event = HarvestEvent(blk.index, True, reply.successful, reply.failed, total or 0, tuple(rewards))
        effects.append(Publish(event))

    def _credit(
        self, blk: BlockState, fid: str, reward: int | None, effects: list[Effect], shown: list[FarmerReward]
    ) -> None:
        """``fid`` was harvested, paid ``reward`` stroops (None: not attributed)."""
        fr = blk.round(fid)
        if fr.status == "harvested":
            return  # counted once
        if reward is not None:
            fr.reward = reward
            self._st.rewards[fid] = self._st.rewards.get(fid, 0) + reward
            shown.append(FarmerReward(fid, reward))
        blk.set_status(fid, "harvested", "", effects)  # the record carries the reward (a restart keeps it)

    def credit(self, blk: BlockState, rewards: dict[str, int | None], effects: list[Effect]) -> None:
        """Farmers the chain shows harvested by a call whose answer was lost (the rest is retried):
        statuses, rewards and the dashboard's ``harvest`` event, as a readable answer would."""
        shown: list[FarmerReward] = []
        for fid, reward in rewards.items():
            self._credit(blk, fid, reward, effects, shown)
        # a reward not known (no final projection) leaves the total unknown too, never "0"
        total = None if None in rewards.values() else sum(r.reward for r in shown)
        body: dict[str, object] = {"reconciled": True}
        if total is not None:
            blk.rewards_total = (blk.rewards_total or 0) + total
            body["totalRewards"] = str(total)
        results = tuple(FarmerOutcome(fid, True, reward=reward) for fid, reward in rewards.items())
        effects.append(Persist(HarvestCalled(blk.index, HarvestReply(len(rewards), 0, total, results, body))))
        event = HarvestEvent(blk.index, True, len(rewards), 0, total or 0, tuple(shown))
        effects.append(Publish(event))
