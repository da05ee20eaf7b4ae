"""The open block's reward projection in the core (pooler/core/forecast.py): WatchPails after the
plant, a projection made from each BlockUpdated, moved by our own confirmed work, frozen at the
next block, shown in the view and the summary."""

from __future__ import annotations

from pooler.core import rewards
from pooler.core.effects import Persist, WatchPails
from pooler.core.events import BlockUpdated
from pooler.core.records import BlockOnChain
from tests.unit.core_support import T0, Rig, address, one_call

WORK_AT = T0 + 15


def _block(**kw: int) -> rewards.BlockState:
    fields = dict(
        index=1, min_gap=1, max_gap=20, min_stake=0, max_stake=1000, min_zeros=1, max_zeros=9,
        staked_total=200, normalized_total=0,
    )  # fmt: skip
    fields.update(kw)
    return rewards.BlockState(**fields)


def _rig() -> Rig:
    rig = Rig()
    rig.join("a", 0)
    rig.join("b", 1)
    rig.connect(1, "a")
    rig.connect(2, "b")
    return rig


def test_plant_asks_for_the_planted_farmers_pails() -> None:
    rig = _rig()
    plant = one_call(rig.block(1), "plant")
    effects = rig.answer(plant, response={"successfulPlants": 2, "failedPlants": 0, "totalStaked": "200"})
    [watch] = [e for e in effects if isinstance(e, WatchPails)]
    assert watch == WatchPails(1, (("farmer-0", address(0)), ("farmer-1", address(1))))


def test_projection_follows_reads_and_our_work_then_freezes() -> None:
    rig = _rig()
    plant = one_call(rig.block(1), "plant")
    rig.answer(plant, response={"successfulPlants": 2, "failedPlants": 0, "totalStaked": "200"})
    assert rig.core.view(rig.now).projection is None
    pails = {"farmer-0": rewards.Pail(stake=100, sequence=4), "farmer-1": rewards.Pail(stake=100, sequence=4)}
    rig.do(BlockUpdated(1, _block(), pails, ledger=6), at=T0 + 1)
    view = rig.core.view(rig.now).projection
    assert view is not None and view.reward == 0 and view.forfeited == 200 and not view.final

    # both work; the Backend confirms: the cached Block(1) moves as the contract moves it
    rig.good_share(1, 3, 3, at=T0 + 2)
    rig.good_share(2, 2, 2, at=T0 + 3)
    work = one_call(rig.timer("work:1", at=WORK_AT), "work")
    rig.answer(work, response={"validNonces": 2, "invalidNonces": 0}, at=WORK_AT + 1)
    block, p0 = rewards.apply_work(_block(), pails["farmer-0"], 3, 3)
    block, p1 = rewards.apply_work(block, pails["farmer-1"], 3, 2)
    expected = rewards.project_pool(block, {"farmer-0": p0, "farmer-1": p1})
    view = rig.core.view(rig.now).projection
    assert view is not None and view.rewards == {f.farmer: f.reward for f in expected.farmers}
    assert view.reward == expected.reward > 0 and view.forfeited == 0
    summary = rig.core.summary(rig.now)
    assert summary.projected == view.rewards and summary.projected_reward == view.reward
    farmer0 = next(f for f in rig.core.view(rig.now).farmers if f.farmer_id == "farmer-0")
    assert farmer0.projected_reward == view.rewards["farmer-0"]

    # the chain's own read (gap 5, not our estimate of 3) replaces the estimate
    block, q0 = rewards.apply_work(_block(), pails["farmer-0"], 5, 3)
    block, q1 = rewards.apply_work(block, pails["farmer-1"], 5, 2)
    read = rig.do(BlockUpdated(1, block, {"farmer-0": q0, "farmer-1": q1}, ledger=9), at=WORK_AT + 2)
    assert [e for e in read if isinstance(e, Persist)] == [Persist(BlockOnChain(1, block))]  # history
    final = rewards.project_pool(block, {"farmer-0": q0, "farmer-1": q1})
    # NewBlock(2) freezes block 1's figure: later reads do not move it (nor its history)
    rig.block(2)
    assert rig.do(BlockUpdated(1, _block(), pails, ledger=12)) == []
    [b1] = [b for b in rig.core.view(rig.now).blocks if b.block == 1]
    assert b1.projection is not None and b1.projection.final
    assert b1.projection.reward == final.reward and b1.projection.ledger == 9
