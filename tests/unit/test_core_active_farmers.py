"""Which farmers a plant names (``farmerIds``): those with an active miner, never one that left.

A farmer is planted while one of its miners has not left and is connected, or joined,
connected or had a share accepted within ``farmer_idle`` (pooler/core/plant.py).
"""

from __future__ import annotations

import dataclasses

from pooler.core.events import MinerLeft, WorkerDisconnected
from pooler.core.snapshot import BlockRecord, CoreSnapshot
from tests.unit.core_support import CONFIG, T0, Rig, body, entropy, one_call, persists, searches

IDLE = 50.0  # seconds: two and a half of the rig's 20 s blocks
BI = CONFIG.block_interval


def _rig() -> Rig:
    """Farmers 0, 1, 2 with miners a, b, c, each with one worker connected."""
    rig = Rig(dataclasses.replace(CONFIG, farmer_idle=IDLE))
    for i, miner in enumerate("abc"):
        rig.join(miner, i)
        rig.connect(i + 1, miner)
    return rig


def _named(rig: Rig, index: int) -> list[str]:
    plant = one_call(rig.block(index), "plant")
    names = body(plant)["farmerIds"]
    assert isinstance(names, list)
    return sorted(names)


def test_a_farmer_whose_miner_left_is_not_planted_again() -> None:
    rig = _rig()
    assert _named(rig, 1) == ["farmer-0", "farmer-1", "farmer-2"]
    rig.do(MinerLeft("b"), at=T0 + 5)
    assert _named(rig, 2) == ["farmer-0", "farmer-2"]
    # a farmer with two miners stays planted while one of them is left
    rig.join("d", 0)
    rig.do(MinerLeft("a"), at=T0 + BI + 5)
    assert _named(rig, 3) == ["farmer-0", "farmer-2"]


def test_a_silent_farmer_is_left_out_after_the_idle_time_and_back_when_it_mines() -> None:
    rig = _rig()
    rig.do(WorkerDisconnected(2), at=T0 - 0.5)  # b's only worker went (hello at T0 - 1), nothing since
    for index in (1, 2, 3):  # up to T0 + 40: within IDLE of its hello
        assert _named(rig, index) == ["farmer-0", "farmer-1", "farmer-2"]
    assert _named(rig, 4) == ["farmer-0", "farmer-2"]  # T0 + 60: silent for 61 s
    rig.connect(9, "b")  # back: planted at the next block
    assert _named(rig, 5) == ["farmer-0", "farmer-1", "farmer-2"]


def test_an_accepted_share_keeps_a_disconnected_miners_farmer_planted() -> None:
    rig = _rig()
    plant = one_call(rig.block(1), "plant")
    rig.answer(plant, response={"successfulPlants": 3, "failedPlants": 0, "totalStaked": "0"})
    rig.good_share(2, 1, at=T0 + 15)  # b's share in block 1
    rig.do(WorkerDisconnected(2), at=T0 + 16)
    # block 4 opens at T0 + 60: b's last share is 45 s old (< IDLE), its hello 61 s (> IDLE)
    for index in (2, 3):
        rig.block(index)
    assert _named(rig, 4) == ["farmer-0", "farmer-1", "farmer-2"]
    assert _named(rig, 5) == ["farmer-0", "farmer-2"]  # T0 + 80: 65 s after the share


def test_only_the_named_farmers_are_planted_and_searched_when_the_answer_lists_none() -> None:
    rig = _rig()
    rig.do(MinerLeft("c"), at=T0 - 0.5)
    plant = one_call(rig.block(1), "plant")
    effects = rig.answer(plant, response={"successfulPlants": 2, "failedPlants": 0, "totalStaked": "0"})
    planted = {d["farmerId"] for d in persists(effects, "farmer_status") if d["status"] == "planted"}
    assert planted == {"farmer-0", "farmer-1"}
    found = searches(rig.timer("search:1", at=T0 + 12))
    assert {s.farmer_id for s in found} == {"farmer-0", "farmer-1"}  # no CPU for farmer-2


def test_a_plant_made_while_restoring_names_no_farmers() -> None:
    """restore() runs before the miners are loaded: its plant leaves the choice to the Backend."""
    rig = Rig(dataclasses.replace(CONFIG, farmer_idle=IDLE), now=T0 + 1)
    effects = rig.core.restore(CoreSnapshot(blocks=(BlockRecord(1, entropy(1), T0),)), T0 + 1)
    plant = one_call(effects, "plant")
    assert "farmerIds" not in body(plant)
    rig.join("a", 0)
    rig.connect(1, "a")
    assert _named(rig, 2) == ["farmer-0"]
