"""The plant phase: ``/plant`` for each new block, its answer, and the late plant.

``/plant`` N is called with the block's jobs (plant runs while miners hash). It names the
farmers to plant (``farmerIds``): those with an active miner, i.e. one that has not left and
is connected, or joined, connected or had a share accepted within ``farmer_idle``. A farmer
whose miners all left, or went silent, is not staked again block after block (nor searched
for by the local search). The planted farmers are ``results[].farmerId`` with ``ok`` (or a
"planted already" refusal) when the Backend lists them, else the farmers named at the call.
A plant failure fails the farmers for that block (no work is sent for them).

Late plant: at ``late-plant:N`` (``T+I+grace``) nobody opened N+1, so we ``/plant`` N+1
ourselves (that opens it on chain); when NewBlock(N+1) arrives it adopts that plant instead
of planting again. Never while the chain RPC is down: a plant the Pooler cannot follow opens a
block it cannot see, mine or work, and forfeits the stakes (the timer waits for the chain). A
late plant that landed in a block the Pooler then never saw open (a newer block came first) is
recorded: its farmers failed with the reason, alerted (:meth:`Plant.unseen`).

An answer that cannot be read (``unknown``) is reconciled with the chain first
(:mod:`pooler.core.reconcile`), which then applies what the pails show through :meth:`Plant.on_result`.
"""

from __future__ import annotations

from collections.abc import Iterable

from pooler.core.alerts import WorkFailed
from pooler.core.backend_calls import PlantReply, PlantRequest, outcomes
from pooler.core.block import BlockState, CallRecord, LatePlant
from pooler.core.dashboard_events import PlantEvent
from pooler.core.effects import CallBackend, Effect, Persist, Publish, RaiseAlert, SetTimer
from pooler.core.events import BackendResult
from pooler.core.records import FarmerStatusChanged, PlantCalled
from pooler.core.state import RoundState
from pooler.core.work import Work
from pooler.errors import PoolerError


def plant_event(index: int, ev: BackendResult) -> PlantEvent:
    reply = _reply(ev)
    if reply is None:
        return PlantEvent(index, False, 0, 0, 0, ev.error)
    return PlantEvent(index, True, reply.successful, reply.failed, reply.total_staked)


def _reply(ev: BackendResult) -> PlantReply | None:
    reply = ev.reply
    if reply is not None and not isinstance(reply, PlantReply):
        raise PoolerError(f"a /plant call was answered with {type(reply).__name__}")
    return reply


class Plant:
    """Plant calls and their answers (see the module docstring)."""

    def __init__(self, state: RoundState, work: Work) -> None:
        self._st = state
        self._work = work

    def call(
        self, index: int, effects: list[Effect], deadline: float, now: float, *, late: bool = False
    ) -> int:
        st = self._st
        call_id = st.next_call()
        named = None if st.restoring else self.active_farmers(now)
        farmers = tuple(st.farmers) if named is None else named
        st.calls[call_id] = CallRecord("plant", index, farmers, late=late, named=named is not None)
        request = PlantRequest(index, st.config.pooler_id, st.config.max_farmers_capacity, named)
        effects.append(CallBackend(call_id, request, deadline))
        return call_id

    def active_farmers(self, now: float) -> tuple[str, ...]:
        """The farmers a plant names: those with an active miner (see the module docstring)."""
        st = self._st
        idle = st.config.farmer_idle
        miners = st.miners
        out = []
        for fid, farmer in st.farmers.items():
            for mid in farmer.miners:
                miner = miners.get(mid)
                if miner is not None and miner.active(now, idle):
                    out.append(fid)
                    break
        return tuple(out)

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
        reply = _reply(ev)
        if reply is not None:
            blk.plant = "done"
            if publish:  # an adopted late plant's answer was recorded when it came
                effects.append(Persist(PlantCalled(blk.index, reply)))
                self.count_staked(rec, reply)
            items = outcomes(reply)
            if items is None and rec.named:  # the farmers the call named
                for fid in rec.farmers:
                    blk.set_status(fid, "planted", "", effects)
            elif items is None:  # every farmer known at the call or since (a restore may precede joins)
                for fid in dict.fromkeys([*rec.farmers, *st.farmers]):
                    blk.set_status(fid, "planted", "", effects)
            else:
                for fid, item in items.items():
                    if item.ok or item.already_planted:
                        blk.set_status(fid, "planted", "", effects)
                    else:
                        blk.set_status(fid, "failed", f"plant failed: {item.error}", effects)
        else:
            blk.plant = "failed"
            effects.append(Persist(PlantCalled(blk.index, None, ev.error)))
            for fid in rec.farmers:
                blk.set_status(fid, "failed", f"plant failed: {ev.error}", effects)
        if publish:
            effects.append(Publish(plant_event(blk.index, ev)))
        if blk.plant == "done":
            self._work.forecast.watch(blk, effects)
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
        cur = st.block
        if late is None and rec.late and blk is None and cur is not None and cur.index > rec.block:
            self.unseen(rec, ev, effects)  # a newer block came before this answer
            return
        if late is not None and late.call_id == ev.call_id:  # the block it opens is not seen yet
            late.result = ev
            effects.append(Publish(plant_event(rec.block, ev)))
            reply = _reply(ev)
            if reply is not None:
                effects.append(Persist(PlantCalled(rec.block, reply)))
                self.count_staked(rec, reply)
            cur = st.block
            if cur is not None and cur.index == rec.block - 1:
                # Failed: try again. Succeeded: a watchdog, because the plant may have been applied
                # in a ledger still inside block N (then N+1 is not open) and only NewBlock proves it.
                effects.append(SetTimer(f"late-plant:{cur.index}", now + st.config.late_plant_retry))

    def count_staked(self, rec: CallRecord, reply: PlantReply) -> None:
        """The farmers whose stake this recorded answer counted (``RoundState.staked``)."""
        items = outcomes(reply)
        if items is None:
            counted: Iterable[str] = rec.farmers
        else:
            counted = (fid for fid, item in items.items() if item.ok and not item.already_planted)
        self._st.staked.setdefault(rec.block, set()).update(counted)

    def late(self, blk: BlockState, effects: list[Effect], now: float) -> None:
        """Nobody opened the next block: plant it ourselves (the chain then opens it)."""
        st = self._st
        if st.paused or not (st.chain_ok and st.chain_seen):  # never into a block it could not see
            effects.append(SetTimer(f"late-plant:{blk.index}", now + st.config.late_plant_retry))
            return
        late = st.late
        if late is not None and late.index == blk.index + 1 and late.result is None:
            return  # in flight: its result re-arms this timer
        call_id = self.call(blk.index + 1, effects, now + st.config.block_interval / 2, now, late=True)
        st.late = LatePlant(blk.index + 1, call_id, st.calls[call_id])

    def unseen(self, rec: CallRecord, ev: BackendResult, effects: list[Effect]) -> None:
        """Our late plant of ``rec.block`` landed, but a newer block opened before the Pooler saw
        that one: its farmers staked into a block nobody mined or worked. Recorded and alerted."""
        reply = _reply(ev)
        if reply is None:
            return  # it did not plant (or reconciling it found no pail): nothing was staked
        items = outcomes(reply)
        if items is None:
            planted = list(rec.farmers)
        else:
            planted = [fid for fid, item in items.items() if item.ok or item.already_planted]
        if not planted:
            return
        why = (
            f"planted into block {rec.block} by the Pooler's late plant, but block {rec.block} was never"
            " seen open (a newer block came first): no work was sent, the stake is forfeited"
        )
        for fid in planted:
            record = FarmerStatusChanged(fid, rec.block, "failed", why)
            effects.append(Persist(record))
            effects.append(Publish(record))
        effects.append(RaiseAlert(WorkFailed(rec.block, tuple(planted), why)))
