"""The harvest: ``/harvest`` N once N+1 is seen, retried with backoff while N's entries live.

Rewards are per farmer only when the harvest response has ``results``; otherwise the block's
``totalRewards`` is recorded as its total. A failed harvest retries on ``harvest-retry:N``
(the delay doubles, capped) while the block's TEMPORARY entries live
(``harvest_retention_blocks``), then its worked farmers fail.
"""

from __future__ import annotations

from pooler.core.block import BlockPhase, BlockState, CallRecord, Trigger
from pooler.core.effects import CallBackend, Effect, Persist, Publish, SetTimer
from pooler.core.events import BackendResult
from pooler.core.replies import as_int, int_field, item_error, results
from pooler.core.state import RoundState


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
        payload = {"blockIndex": blk.index, "poolerId": st.config.pooler_id}
        effects.append(CallBackend(call_id, "harvest", blk.index, payload, deadline))

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
        rewards: list[dict[str, object]] = []
        if ev.ok:
            blk.advance(Trigger.HARVEST_OK)
            effects.append(Persist("harvest", {"block": blk.index, "response": dict(ev.response)}))
            outcomes = results(ev.response)
            if outcomes is None:  # worked now: a /work answer may have come after the call
                for fid in [fid for fid, fr in blk.rounds.items() if fr.status == "worked"]:
                    blk.set_status(fid, "harvested", "", effects)
            else:
                for fid, item in outcomes.items():
                    fr = blk.round(fid)
                    if item.get("ok") is True:
                        reward = as_int(item.get("reward"))
                        if reward is not None:
                            fr.reward = reward
                            st.rewards[fid] = st.rewards.get(fid, 0) + reward
                            rewards.append({"farmerId": fid, "reward": str(reward)})
                        blk.set_status(fid, "harvested", "", effects)
                    else:
                        blk.set_status(fid, "failed", f"harvest failed: {item_error(item)}", effects)
            total = as_int(ev.response.get("totalRewards"))
            if total is None and rewards:
                total = sum(int(str(r["reward"])) for r in rewards)
            blk.rewards_total = total
            effects.append(
                Publish(
                    "harvest",
                    {
                        "block": blk.index,
                        "ok": True,
                        "successfulHarvests": int_field(ev.response, "successfulHarvests") or 0,
                        "failedHarvests": int_field(ev.response, "failedHarvests") or 0,
                        "totalRewards": str(total or 0),
                        "rewards": rewards,
                    },
                )
            )
            return
        effects.append(Persist("harvest", {"block": blk.index, "error": ev.error}))
        effects.append(
            Publish(
                "harvest",
                {
                    "block": blk.index,
                    "ok": False,
                    "successfulHarvests": 0,
                    "failedHarvests": 0,
                    "totalRewards": "0",
                    "rewards": rewards,
                    "error": ev.error,
                },
            )
        )
        cfg = st.config
        delay = min(cfg.harvest_retry_delay * 2 ** (blk.harvest_attempts - 1), 4 * cfg.block_interval)
        if now + delay < blk.harvest_until:
            blk.advance(Trigger.HARVEST_RETRY)
            effects.append(SetTimer(f"harvest-retry:{blk.index}", now + delay))
        else:
            self._expired(blk, f"harvest failed until the block's entries expired: {ev.error}", effects)
