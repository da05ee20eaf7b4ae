"""Core-side alerts (pooler/core/watch.py, work.py, harvest.py) as RaiseAlert effects, on a
deterministic clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pooler.core import rewards
from pooler.core.alerts import Alert, HarvestFailed, Resolved, StakeAtRisk, WorkerSilent, WorkFailed
from pooler.core.config import CoreConfig
from pooler.core.effects import Effect, RaiseAlert
from pooler.core.events import BlockUpdated
from tests.unit.core_support import CONFIG, T0, Rig, one_call, timers

WORK_AT = T0 + 15
CFG = dataclasses.replace(CONFIG, stake_alert_lead=5.0, worker_silent_after=60.0)
PLANTED = {"successfulPlants": 2, "failedPlants": 0, "totalStaked": "200"}


def alerts(effects: Sequence[Effect]) -> list[Alert]:
    return [e.alert for e in effects if isinstance(e, RaiseAlert)]


def _rig(config: CoreConfig = CFG) -> Rig:
    rig = Rig(config)
    rig.join("a", 0)
    rig.join("b", 1)
    rig.connect(1, "a")
    rig.connect(2, "b")
    return rig


def _chain(min_zeros: int) -> rewards.BlockState:
    return rewards.BlockState(1, 1, 20, 0, 1000, min_zeros, 9, 200, 0)


def test_stake_at_risk_names_farmers_below_the_previous_min_zeros() -> None:
    rig = _rig()
    effects = rig.block(1)
    assert timers(effects)["stake:1"] == WORK_AT - 5
    rig.answer(one_call(effects, "plant"), response=PLANTED)
    rig.do(BlockUpdated(1, _chain(3), {}, ledger=5), at=T0 + 1)
    rig.good_share(1, 4, 4, at=T0 + 2)  # farmer-0: above the min
    rig.good_share(2, 1, 1, at=T0 + 3)  # farmer-1: a share, but below the min
    got = alerts(rig.timer("stake:1", at=WORK_AT - 5))
    assert got == [StakeAtRisk("farmer-1", 1, 1, 3, 5.0, False)]


def test_stake_at_risk_says_the_local_search_took_over() -> None:
    rig = _rig()
    effects = rig.block(1)
    rig.answer(one_call(effects, "plant"), response=PLANTED)
    rig.timer("search:1", at=WORK_AT - 3 - 0.0)  # the search lead (3 s) is inside the alert's (5 s)
    got = alerts(rig.timer("stake:1", at=WORK_AT - 3 + 0.5))
    assert {a.farmer_id for a in got if isinstance(a, StakeAtRisk)} == {"farmer-0", "farmer-1"}
    assert all(isinstance(a, StakeAtRisk) and a.fallback_search and a.best_zeros is None for a in got)


def test_a_stake_lead_longer_than_the_block_checks_halfway_to_work_at() -> None:
    """The default lead (30 s) on a 20 s devnet block: the check waits until halfway to workAt."""
    rig = _rig(dataclasses.replace(CFG, stake_alert_lead=30.0))
    assert timers(rig.block(1, at=T0 + 1))["stake:1"] == T0 + 1 + (WORK_AT - T0 - 1) / 2


def test_the_default_stake_lead_is_30_s() -> None:
    from pooler.config import Settings

    assert Settings().alert_stake_lead_ms == 30_000


def test_stake_alert_off_arms_no_timer() -> None:
    rig = Rig(dataclasses.replace(CONFIG, stake_alert_lead=0.0))
    rig.join("a", 0)
    assert "stake:1" not in timers(rig.block(1))


def test_worker_silent_after_being_active_and_resolved_when_it_sends_again() -> None:
    rig = _rig()
    rig.block(1)
    rig.good_share(1, 1, 1, at=T0 + 1)  # worker a/default is active; b never sent anything
    assert alerts(rig.timer("summary", at=T0 + 5)) == []
    assert alerts(rig.timer("summary", at=T0 + 60)) == []
    [silent] = alerts(rig.timer("summary", at=T0 + 66))
    assert silent == WorkerSilent("a", "default", T0 + 5, 1.0)
    assert alerts(rig.timer("summary", at=T0 + 70)) == []  # once per silence
    rig.good_share(1, 1, 1, at=T0 + 72)
    [back] = alerts(rig.timer("summary", at=T0 + 75))
    assert back == Resolved(silent, T0 + 75, "it sends shares again")


def test_worker_silent_off_by_default() -> None:
    rig = _rig(dataclasses.replace(CFG, worker_silent_after=0.0))
    rig.block(1)
    rig.good_share(1, 1, 1, at=T0 + 1)
    rig.timer("summary", at=T0 + 5)
    assert alerts(rig.timer("summary", at=T0 + 1000)) == []


def test_work_failed_only_when_final() -> None:
    rig = _rig()
    rig.answer(one_call(rig.block(1), "plant"), response=PLANTED)
    rig.good_share(1, 2, 2, at=T0 + 2)
    rig.good_share(2, 2, 2, at=T0 + 3)
    work = one_call(rig.timer("work:1", at=WORK_AT), "work")
    effects = rig.answer(work, ok=False, error="503", retryable=True, at=WORK_AT + 0.5)
    assert alerts(effects) == []  # retried on work-retry:1
    retry = one_call(rig.timer("work-retry:1", at=WORK_AT + 1.5), "work")
    effects = rig.answer(retry, ok=False, error="nonce refused", at=WORK_AT + 2)
    [failed] = alerts(effects)
    assert isinstance(failed, WorkFailed) and failed.block == 1
    assert failed.farmers == ("farmer-0", "farmer-1") and "nonce refused" in failed.reason


def test_harvest_failed_per_farmer() -> None:
    rig = _rig()
    rig.answer(one_call(rig.block(1), "plant"), response=PLANTED)
    rig.good_share(1, 2, 2, at=T0 + 2)
    rig.good_share(2, 2, 2, at=T0 + 3)
    work = one_call(rig.timer("work:1", at=WORK_AT), "work")
    rig.answer(work, response={"validNonces": 2, "invalidNonces": 0}, at=WORK_AT + 1)
    harvest = one_call(rig.block(2), "harvest")
    response = {
        "successfulHarvests": 1,
        "failedHarvests": 1,
        "results": [
            {"farmerId": "farmer-0", "ok": True, "reward": "100"},
            {"farmerId": "farmer-1", "ok": False, "error": "HarvestFailed"},
        ],
    }
    [failed] = alerts(rig.answer(harvest, response=response))
    assert failed == HarvestFailed(1, ("farmer-1",), "harvest failed: HarvestFailed")
