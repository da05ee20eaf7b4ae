"""The plant phase: ``/plant`` for each new block, its answer, and the late plant.

``/plant`` N is called with the block's jobs (plant runs while miners hash). The planted
farmers are ``results[].farmerId`` with ``ok`` (or a "planted already" refusal) when the
Backend lists them, else every farmer known at the call. A plant failure fails the farmers
for that block (no work is sent for them).

Late plant: at ``late-plant:N`` (``T+I+grace``) nobody opened N+1, so we ``/plant`` N+1
ourselves (that opens it on chain); when NewBlock(N+1) arrives it adopts that plant instead
of planting again.
"""

from __future__ import annotations

from pooler.core.block import BlockState, CallRecord, LatePlant
from pooler.core.effects import CallBackend, Effect, Persist, Publish, SetTimer
from pooler.core.events import BackendResult
from pooler.core.replies import already_planted, as_int, int_field, item_error, results
from pooler.core.state import RoundState
from pooler.core.work import Work


def plant_data(index: int, ev: BackendResult) -> dict[str, object]:
    r = ev.response
    data: dict[str, object] = {
        "block": index,
        "ok": ev.ok,
        "successfulPlants": int_field(r, "successfulPlants") or 0,
        "failedPlants": int_field(r, "failedPlants") or 0,
        "totalStaked": str(as_int(r.get("totalStaked")) or 0),
    }
    if not ev.ok:
        data["error"] = ev.error
    return data


class Plant:
    """Plant calls and their answers (see the module docstring)."""

    def __init__(self, state: RoundState, work: Work) -> None:
        self._st = state
        self._work = work

    def call(self, index: int, effects: list[Effect], deadline: float, *, late: bool = False) -> int:
        st = self._st
        call_id = st.next_call()
        st.calls[call_id] = CallRecord("plant", index, tuple(st.farmers), late=late)
        payload = {
            "blockIndex": index,
            "poolerId": st.config.pooler_id,
            "maxFarmersCapacity": st.config.max_farmers_capacity,
        }
        effects.append(CallBackend(call_id, "plant", index, payload, deadline))
        return call_id

    def apply(
        self,
        blk: BlockState,
        rec: CallRecord,
        ev: BackendResult,
        effects: list[Effect],
        now: float,
        *,
        publish: bool = True,
    ) -> None:
        """The answer to ``blk``'s plant: the farmers' statuses, then search and work if due."""
        st = self._st
        blk.plant_call = None
        if ev.ok:
            blk.plant = "done"
            effects.append(Persist("plant", {"block": blk.index, "response": dict(ev.response)}))
            outcomes = results(ev.response)
            if outcomes is None:  # every farmer known at the call or since (a restore may precede joins)
                for fid in dict.fromkeys([*rec.farmers, *st.farmers]):
                    blk.set_status(fid, "planted", "", effects)
            else:
                for fid, item in outcomes.items():
                    if item.get("ok") is True or already_planted(item):
                        blk.set_status(fid, "planted", "", effects)
                    else:
                        blk.set_status(fid, "failed", f"plant failed: {item_error(item)}", effects)
        else:
            blk.plant = "failed"
            effects.append(Persist("plant", {"block": blk.index, "error": ev.error}))
            for fid in rec.farmers:
                blk.set_status(fid, "failed", f"plant failed: {ev.error}", effects)
        if publish:
            effects.append(Publish("plant", plant_data(blk.index, ev)))
        if blk is st.block and not blk.closed and not st.paused and blk.plant == "done":
            if now >= blk.search_at:
                self._work.local_search(blk, effects, now)
            if blk.work_due:
                self._work.submit(blk, blk.planted(), effects, now)

    def on_result(self, rec: CallRecord, ev: BackendResult, effects: list[Effect], now: float) -> None:
        st = self._st
        blk = st.blocks.get(rec.block)
        if blk is not None and blk.plant_call == ev.call_id:
            self.apply(blk, rec, ev, effects, now)
            return
        late = st.late
        if late is not None and late.call_id == ev.call_id:  # the block it opens is not seen yet
            late.result = ev
            effects.append(Publish("plant", plant_data(rec.block, ev)))
            if ev.ok:
                effects.append(Persist("plant", {"block": rec.block, "response": dict(ev.response)}))
            cur = st.block
            if cur is not None and cur.index == rec.block - 1:
                # Failed: try again. Succeeded: a watchdog, because the plant may have been applied
                # in a ledger still inside block N (then N+1 is not open) and only NewBlock proves it.
                effects.append(SetTimer(f"late-plant:{cur.index}", now + st.config.late_plant_retry))

    def late(self, blk: BlockState, effects: list[Effect], now: float) -> None:
        """Nobody opened the next block: plant it ourselves (the chain then opens it)."""
        st = self._st
        if st.paused:
            effects.append(SetTimer(f"late-plant:{blk.index}", now + st.config.late_plant_retry))
            return
        late = st.late
        if late is not None and late.index == blk.index + 1 and late.result is None:
            return  # in flight: its result re-arms this timer
        call_id = self.call(blk.index + 1, effects, now + st.config.block_interval / 2, late=True)
        st.late = LatePlant(blk.index + 1, call_id, st.calls[call_id])
