"""snapshot() / restore(): a restarted coordinator resumes the open block and pending harvests."""

from __future__ import annotations

import pytest

from pooler.core.coordinator import Coordinator
from pooler.core.events import NewBlock
from pooler.core.snapshot import BestRecord, BlockRecord, CoreSnapshot, StatusRecord, TallyRecord
from pooler.errors import PoolerError
from protocol.messages import Job
from tests.unit.core_support import (
    CONFIG,
    T0,
    Rig,
    body,
    calls,
    entropy,
    one_call,
    persists,
    publishes,
    sends,
    timers,
)

WORK_AT = T0 + 15


def _mid_block() -> Rig:
    rig = Rig()
    rig.join("a", 0)
    rig.connect(1, "a", "w1")
    plant = one_call(rig.block(1), "plant")
    rig.answer(plant, response={"successfulPlants": 1})
    rig.good_share(1, 2, at=T0 + 2)
    rig.good_share(1, 1, at=T0 + 3)
    return rig


def _restarted(snap: CoreSnapshot, now: float) -> tuple[Rig, list[object]]:
    rig = Rig(now=now)
    effects = rig.core.restore(snap, now)
    return rig, list(effects)


def test_restart_mid_block_resumes_without_planting_again() -> None:
    old = _mid_block()
    snap = old.core.snapshot()
    best = old.core.view(old.now).best_zeros["farmer-0"]
    rig, effects = _restarted(snap, T0 + 5)
    assert calls(effects) == []  # planted already: no second plant
    assert timers(effects) == {
        "summary": T0 + 10,
        "vardiff": T0 + 6,
        "search:1": WORK_AT - 3,
        "work:1": WORK_AT,
        "end:1": T0 + 20,
        "late-plant:1": T0 + 23,
        "stake:1": T0 + 10,  # the default 30 s lead: halfway from the restart to workAt
    }
    assert publishes(effects, "block")[0]["block"] == 1
    # the miner comes back: its new range does not overlap what was handed out before
    rig.join("a", 0)
    [job] = sends(rig.connect(1, "a", "w1"), Job)
    assert job.nonce_start >= snap.nonce_next["farmer-0"]
    # shares continue the durable tally
    effects = rig.good_share(1, 1, at=T0 + 6)
    assert persists(effects, "shares")[0]["accepted"] == 3
    # and the restored best goes out at workAt
    work = one_call(rig.timer("work:1", at=WORK_AT), "work")
    [sub] = body(work)["submissions"]
    assert sub["farmerId"] == "farmer-0" and sub["zeros"] >= best


def test_restart_after_worked_block_harvests_it_at_once() -> None:
    old = _mid_block()
    work = one_call(old.timer("work:1", at=WORK_AT), "work")
    old.answer(work, response={"validNonces": 1})
    old.block(2)  # harvest 1 goes out... and the process dies before the answer
    snap = old.core.snapshot()
    rig, effects = _restarted(snap, T0 + 21)
    harvest = one_call(effects, "harvest")
    assert harvest.block == 1
    assert one_call(effects, "plant").block == 2  # block 2's plant never answered: plant again
    assert rig.core.pending_harvests() == (1,)
    rig.answer(harvest, response={"totalRewards": "5"})
    assert rig.core.pending_harvests() == ()


def test_store_built_snapshot_without_counters() -> None:
    """What a store rebuilds from Persist effects alone: no nonce counters."""
    snap = CoreSnapshot(
        blocks=(BlockRecord(7, entropy(7), T0),),
        bests=(BestRecord(7, "farmer-0", 12345, bytes(32), 4),),
        tallies=(TallyRecord(7, "a", "w1", 10, 2),),
        statuses=(StatusRecord(7, "farmer-0", "planted"),),
    )
    rig, effects = _restarted(snap, T0 + 1)
    assert calls(effects) == []
    rig.join("a", 0)
    [job] = sends(rig.connect(1, "a", "w1"), Job)
    assert job.block == 7 and job.nonce_start == 1 << 63  # clear of every range of the first life
    work = one_call(rig.timer("work:7", at=WORK_AT), "work")
    assert body(work)["submissions"][0]["nonce"] == "12345"
    effects2 = rig.good_share(1, 1, at=WORK_AT + 1)
    assert persists(effects2, "shares")[0]["accepted"] == 11


def test_restore_after_the_block_deadline_waits_for_the_next_block() -> None:
    snap = CoreSnapshot(blocks=(BlockRecord(3, entropy(3), T0),))
    rig, effects = _restarted(snap, T0 + 60)
    assert calls(effects) == [] and timers(effects)["late-plant:3"] == T0 + 60
    # not before this process has read the chain (it may be down): no blind plant (#18)
    effects = rig.timer("late-plant:3")
    assert calls(effects) == [] and "late-plant:3" in timers(effects)
    rig.do(NewBlock(3, entropy(3), T0, ledger=12))  # the monitor's first read: block 3 still
    assert one_call(rig.timer("late-plant:3"), "plant").block == 4


def test_restore_needs_a_fresh_coordinator() -> None:
    core = Coordinator(CONFIG)
    core.restore(CoreSnapshot(blocks=(BlockRecord(1, entropy(1), T0),)), T0)
    with pytest.raises(PoolerError, match="fresh coordinator"):
        core.restore(CoreSnapshot(), T0)
