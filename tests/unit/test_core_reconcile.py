"""Unknown outcomes (pooler/core/reconcile.py) through the pure coordinator: no loop, the clock by hand.

A Backend call whose answer cannot be read is reconciled with the chain's pails before anything
is retried or failed: plant, work and harvest through one path (#18 items 1-4).
"""

from __future__ import annotations

from pooler.core import rewards
from pooler.core.alerts import RewardUnknown, WorkFailed
from pooler.core.effects import CallBackend, Effect, Persist, RaiseAlert, ReadPails
from pooler.core.events import BackendResult, BlockUpdated, ChainHealth, MinerLeft, PailsRead
from pooler.core.records import PlantCalled
from pooler.core.snapshot import CoreSnapshot
from pooler.core.views import BlockView
from tests.unit.core_support import (
    CONFIG,
    T0,
    Rig,
    address,
    body,
    calls,
    one_call,
    persists,
    publishes,
    timers,
)

WORK_AT = T0 + 15
ENDS = T0 + 20
DELAY = CONFIG.backend_retry_delay
STAKE = 1_000_0000000
FRESH = 1_000  # a read's latest ledger past any the rig's chain events showed (NewBlock: 4 per block)


def _rig() -> Rig:
    rig = Rig()
    rig.join("a", 0)
    rig.join("b", 1)
    rig.connect(1, "a", "w1")
    rig.connect(2, "b", "w1")
    return rig


def block_view(rig: Rig, index: int) -> BlockView:
    [b] = [b for b in rig.core.view(rig.now).blocks if b.block == index]
    return b


def unknown(rig: Rig, call: CallBackend, error: str, at: float) -> list[Effect]:
    """The runtime's answer to a call whose answer could not be read (BackendUnknownOutcome)."""
    return rig.do(BackendResult(call.call_id, call.op, call.block, None, error, 200, False, True), at=at)


def read(effects: list[Effect]) -> ReadPails:
    [ask] = [e for e in effects if isinstance(e, ReadPails)]
    return ask


def pails(
    rig: Rig, ask: ReadPails, found: dict[str, rewards.Pail], at: float, ledger: int = FRESH
) -> list[Effect]:
    return rig.do(PailsRead(ask.call_id, ask.block, found, ledger=ledger), at=at)


def alerts(effects: list[Effect]) -> list[str]:
    return [e.alert.kind for e in effects if isinstance(e, RaiseAlert)]


def statuses(effects: list[Effect]) -> dict[str, str]:
    return {str(d["farmerId"]): str(d["status"]) for d in persists(effects, "farmer_status")}


def planted_block(rig: Rig, index: int = 1) -> None:
    plant = one_call(rig.block(index), "plant")
    rig.answer(plant, response={"successfulPlants": 2, "failedPlants": 0, "totalStaked": "2"})


def worked_call(rig: Rig, at: float = WORK_AT) -> CallBackend:
    rig.good_share(1, 2, at=T0 + 2)
    rig.good_share(2, 1, at=T0 + 3)
    return one_call(rig.timer("work:1", at=at), "work")


def test_work_answered_200_lacking_a_field_is_read_from_the_chain_and_sent_again() -> None:
    """Item 1: nothing fails at once; the pails show it did not land; it is sent again, lands."""
    rig = _rig()
    planted_block(rig)
    work = worked_call(rig)
    effects = unknown(rig, work, "work: response lacks field 'blockIndex'", at=WORK_AT + 0.1)
    assert statuses(effects) == {"farmer-0": "planted", "farmer-1": "planted"}  # the trace, no failure
    assert {d["farmerId"]: d["zeros"] for d in persists(effects, "farmer_status")} == {
        "farmer-0": body(work)["submissions"][0]["zeros"],
        "farmer-1": body(work)["submissions"][1]["zeros"],
    }
    assert not calls(effects) and not [e for e in effects if isinstance(e, RaiseAlert)]
    assert timers(effects) == {f"reconcile:{work.call_id}": WORK_AT + 0.1 + DELAY}  # not at once
    ask = read(rig.timer(f"reconcile:{work.call_id}", at=WORK_AT + 1.1))
    assert ask.block == 1 and dict(ask.farmers) == {"farmer-0": address(0), "farmer-1": address(1)}
    effects = pails(
        rig, ask, {"farmer-0": rewards.Pail(STAKE), "farmer-1": rewards.Pail(STAKE)}, WORK_AT + 1.2
    )
    again = one_call(effects, "work")
    assert body(again)["submissions"] == body(work)["submissions"]  # the same nonces: idempotent
    effects = rig.answer(again, response={"validNonces": 2, "invalidNonces": 0}, at=WORK_AT + 1.3)
    assert statuses(effects) == {"farmer-0": "worked", "farmer-1": "worked"}


def test_work_that_landed_is_confirmed_from_the_pails_without_a_second_call() -> None:
    rig = _rig()
    planted_block(rig)
    work = worked_call(rig)
    unknown(rig, work, "work: connection lost after the request was sent", at=WORK_AT + 0.1)
    ask = read(rig.timer(f"reconcile:{work.call_id}", at=WORK_AT + 1.1))
    zeros = {s["farmerId"]: s["zeros"] for s in body(work)["submissions"]}
    landed = {"farmer-0": rewards.Pail(STAKE, 3, zeros["farmer-0"], 4)}  # farmer-1's did not land
    effects = pails(rig, ask, {**landed, "farmer-1": rewards.Pail(STAKE)}, at=WORK_AT + 1.2)
    assert statuses(effects) == {"farmer-0": "worked"}
    again = one_call(effects, "work")  # only farmer-1's is sent again
    assert [s["farmerId"] for s in body(again)["submissions"]] == ["farmer-1"]
    assert persists(effects, "work")[0]["response"] == {"reconciled": True}


def test_no_time_left_fails_with_the_reason_and_alerts() -> None:
    rig = _rig()
    planted_block(rig)
    work = worked_call(rig)
    unknown(rig, work, "work: no answer", at=ENDS - 1.5)
    ask = read(rig.timer(f"reconcile:{work.call_id}", at=ENDS - 0.5))
    effects = pails(rig, ask, {"farmer-0": rewards.Pail(STAKE), "farmer-1": rewards.Pail(STAKE)}, ENDS - 0.4)
    assert statuses(effects) == {"farmer-0": "failed", "farmer-1": "failed"}
    reasons = {d["reason"] for d in persists(effects, "farmer_status")}
    assert all("work was not recorded before the deadline: not on chain" in str(r) for r in reasons)
    assert [e.alert.kind for e in effects if isinstance(e, RaiseAlert)] == ["work-failed"]


def test_a_failed_read_is_read_again_while_the_deadline_allows() -> None:
    rig = _rig()
    planted_block(rig)
    work = worked_call(rig)
    unknown(rig, work, "work: no answer", at=WORK_AT)
    ask = read(rig.timer(f"reconcile:{work.call_id}", at=WORK_AT + 1))
    effects = rig.do(PailsRead(ask.call_id, 1, None, "RpcUnavailable: down"), at=WORK_AT + 1.1)
    assert timers(effects) == {f"reconcile:{work.call_id}": WORK_AT + 1.1 + DELAY} and not statuses(effects)
    read(rig.timer(f"reconcile:{work.call_id}", at=ENDS - 0.5))
    effects = rig.do(PailsRead(ask.call_id, 1, None, "RpcUnavailable: down"), at=ENDS - 0.4)
    assert statuses(effects) == {"farmer-0": "failed", "farmer-1": "failed"}
    assert "the chain could not be read" in str(persists(effects, "farmer_status")[0]["reason"])


def test_plant_that_succeeded_with_an_empty_body_is_planted_and_worked() -> None:
    """Item 2: not a failed plant; the pails say planted; the block is worked."""
    rig = _rig()
    plant = one_call(rig.block(1), "plant")
    effects = unknown(rig, plant, "plant: HTTP 200 body is not JSON: b''", at=T0 + 0.5)
    assert not statuses(effects)  # nothing failed
    ask = read(rig.timer(f"reconcile:{plant.call_id}", at=T0 + 1.5))
    assert {fid for fid, _ in ask.farmers} == {"farmer-0", "farmer-1"}
    found = {"farmer-0": rewards.Pail(STAKE), "farmer-1": rewards.Pail(2 * STAKE)}
    effects = pails(rig, ask, found, at=T0 + 1.6)
    assert statuses(effects) == {"farmer-0": "planted", "farmer-1": "planted"}
    assert publishes(effects, "plant")[0]["totalStaked"] == str(3 * STAKE)
    rig.good_share(1, 1, at=T0 + 2)
    assert one_call(rig.timer("work:1", at=WORK_AT), "work").block == 1


def test_a_plant_that_did_not_land_is_planted_again() -> None:
    rig = _rig()
    plant = one_call(rig.block(1), "plant")
    unknown(rig, plant, "plant: no answer", at=T0 + 0.5)
    ask = read(rig.timer(f"reconcile:{plant.call_id}", at=T0 + 1.5))
    effects = pails(rig, ask, {"farmer-0": rewards.Pail(STAKE)}, at=T0 + 1.6)  # farmer-1 missing
    again = one_call(effects, "plant")
    assert body(again) == body(plant)
    effects = rig.answer(again, response={"successfulPlants": 1}, at=T0 + 2)
    assert statuses(effects) == {"farmer-0": "planted", "farmer-1": "planted"}


def test_a_plant_that_named_its_farmers_is_settled_over_those_only() -> None:
    """A farmer left out of ``farmerIds`` (its miner left) has no pail: that is no lost plant."""
    rig = _rig()
    rig.join("c", 2)
    rig.do(MinerLeft("c"), at=T0 - 0.5)
    plant = one_call(rig.block(1), "plant")
    assert sorted(body(plant)["farmerIds"]) == ["farmer-0", "farmer-1"]  # type: ignore[type-var]
    unknown(rig, plant, "plant: no answer", at=T0 + 0.5)
    ask = read(rig.timer(f"reconcile:{plant.call_id}", at=T0 + 1.5))
    assert {fid for fid, _ in ask.farmers} == {"farmer-0", "farmer-1"}
    found = {"farmer-0": rewards.Pail(STAKE), "farmer-1": rewards.Pail(STAKE)}
    effects = pails(rig, ask, found, at=T0 + 1.6)
    assert not calls(effects)  # nothing planted again, nothing failed
    assert statuses(effects) == {"farmer-0": "planted", "farmer-1": "planted"}


def _projected(rig: Rig, at: float = ENDS - 1) -> None:
    """Block 1's state and pails as the monitor reads them: the projection harvest pays."""
    chain = rewards.BlockState(1, 0, 10, 0, 10 * STAKE, 0, 10, 2 * STAKE, 0)
    worked = {f: rewards.Pail(STAKE, 5, 3, 4) for f in ("farmer-0", "farmer-1")}
    rig.do(BlockUpdated(1, chain, worked, ledger=8), at=at)


def test_harvest_answered_empty_is_recorded_with_the_projected_rewards() -> None:
    """Item 3: a harvest answered ``{}`` that did happen: statuses, rewards, record, event."""
    rig = _rig()
    planted_block(rig)
    work = worked_call(rig)
    rig.answer(work, response={"validNonces": 2, "invalidNonces": 0}, at=WORK_AT + 0.5)
    _projected(rig)
    harvest = one_call(rig.block(2), "harvest")
    projection = block_view(rig, 1).projection
    assert projection is not None and projection.final
    expected = dict(projection.rewards)
    assert all(v > 0 for v in expected.values())
    unknown(rig, harvest, "harvest: response lacks field 'blockIndex'", at=ENDS + 1)
    assert rig.core.pending_harvests() == (1,)
    ask = read(rig.timer(f"reconcile:{harvest.call_id}", at=ENDS + 2))
    effects = pails(rig, ask, {}, at=ENDS + 2.1)  # both pails gone: harvested
    rows = persists(effects, "farmer_status")
    assert {d["farmerId"]: (d["status"], d["reward"]) for d in rows} == {
        fid: ("harvested", str(r)) for fid, r in expected.items()
    }  # the reward is in the record: a restart keeps it
    [event] = publishes(effects, "harvest")
    assert event["ok"] and event["totalRewards"] == str(sum(expected.values()))
    assert persists(effects, "harvest")[0]["response"]["reconciled"] is True  # type: ignore[index]
    assert rig.core.pending_harvests() == ()
    assert {fid: f.reward for fid, f in block_view(rig, 1).farmers.items()} == expected


def test_a_partly_done_harvest_credits_the_harvested_and_retries_the_rest() -> None:
    rig = _rig()
    planted_block(rig)
    rig.answer(worked_call(rig), response={"validNonces": 2, "invalidNonces": 0}, at=WORK_AT + 0.5)
    _projected(rig)
    harvest = one_call(rig.block(2), "harvest")
    unknown(rig, harvest, "harvest: no answer", at=ENDS + 1)
    ask = read(rig.timer(f"reconcile:{harvest.call_id}", at=ENDS + 2))
    effects = pails(rig, ask, {"farmer-1": rewards.Pail(STAKE, 5, 3, 4)}, at=ENDS + 2.1)
    assert statuses(effects) == {"farmer-0": "harvested"}
    assert [e["ok"] for e in publishes(effects, "harvest")] == [True, False]
    assert "harvest-retry:1" in timers(effects)
    retry = one_call(rig.timer("harvest-retry:1", at=ENDS + 10), "harvest")
    effects = rig.answer(retry, response={"successfulHarvests": 1, "totalRewards": "5"}, at=ENDS + 10.5)
    assert statuses(effects) == {"farmer-1": "harvested"}  # farmer-0 counted once


def test_harvest_waits_for_a_work_reconciliation_and_harvested_is_final() -> None:
    """H3: a /work settled after N+1 opened never moves anyone out of harvested."""
    rig = _rig()
    planted_block(rig)
    work = worked_call(rig)
    unknown(rig, work, "work: no answer", at=ENDS - 1.5)
    effects = rig.block(2)
    assert not calls(effects, "harvest")  # held: the work of block 1 is being reconciled
    ask = read(rig.timer(f"reconcile:{work.call_id}", at=ENDS + 0.5))
    zeros = {s["farmerId"]: s["zeros"] for s in body(work)["submissions"]}
    found = {fid: rewards.Pail(STAKE, 2, z, 4) for fid, z in zeros.items()}
    effects = pails(rig, ask, found, at=ENDS + 0.6)
    assert statuses(effects) == {"farmer-0": "worked", "farmer-1": "worked"}
    harvest = one_call(effects, "harvest")  # now
    effects = rig.answer(harvest, response={"successfulHarvests": 2, "totalRewards": "9"}, at=ENDS + 1)
    assert set(statuses(effects).values()) == {"harvested"}
    rig.do(PailsRead(work.call_id, 1, {}), at=ENDS + 2)  # a late read of the settled call: ignored
    assert {f.status for f in block_view(rig, 1).farmers.values()} == {"harvested"}


def test_no_late_plant_while_the_chain_is_down() -> None:
    """Item 4: the late-plant timer never plants a block the Pooler cannot see."""
    rig = _rig()
    planted_block(rig)
    rig.do(ChainHealth(False, "connection refused"), at=ENDS)
    for n in range(5):
        at = ENDS + 3 + n * CONFIG.late_plant_retry
        effects = rig.timer("late-plant:1", at=at)
        assert not calls(effects) and timers(effects) == {"late-plant:1": at + CONFIG.late_plant_retry}
    rig.do(ChainHealth(True, "recovered"), at=ENDS + 14)
    assert one_call(rig.timer("late-plant:1", at=ENDS + 15), "plant").block == 2


def test_a_late_plant_answered_unreadably_is_reconciled_and_adopted() -> None:
    rig = _rig()
    planted_block(rig)
    late = one_call(rig.timer("late-plant:1", at=ENDS + 3), "plant")
    unknown(rig, late, "plant: HTTP 200 body is not JSON: b''", at=ENDS + 3.5)
    ask = read(rig.timer(f"reconcile:{late.call_id}", at=ENDS + 4.5))
    assert ask.block == 2
    effects = pails(rig, ask, {"farmer-0": rewards.Pail(STAKE), "farmer-1": rewards.Pail(STAKE)}, ENDS + 4.6)
    assert not calls(effects, "plant") and "late-plant:1" in timers(effects)
    effects = rig.block(2, at=ENDS + 5)
    assert not calls(effects, "plant")  # adopted
    assert statuses(effects) == {"farmer-0": "planted", "farmer-1": "planted"}


def test_a_late_plant_into_a_block_never_seen_is_recorded_and_alerted() -> None:
    rig = _rig()
    planted_block(rig)
    late = one_call(rig.timer("late-plant:1", at=ENDS + 3), "plant")
    rig.answer(late, response={"successfulPlants": 2}, at=ENDS + 3.5)
    effects = rig.block(3, at=ENDS + 45)  # block 2 was never seen open
    rows = [d for d in persists(effects, "farmer_status") if d["block"] == 2]
    assert {d["farmerId"]: d["status"] for d in rows} == {"farmer-0": "failed", "farmer-1": "failed"}
    assert "never seen open" in str(rows[0]["reason"])
    assert [e.alert.block for e in effects if isinstance(e, RaiseAlert)] == [2]


def test_a_restart_during_a_work_reconciliation_harvests_the_block() -> None:
    """M1: the trace that /work was sent survives; the restored Pooler harvests what landed."""
    fresh, harvest = _restarted_after_unknown_work(rejoin=())
    assert harvest.block == 1
    # a results-less answer harvests the farmers whose work went out: none is left "planted"
    effects = fresh.answer(harvest, response={"successfulHarvests": 2, "totalRewards": "9"}, at=ENDS + 2)
    assert statuses(effects) == {"farmer-0": "harvested", "farmer-1": "harvested"}
    assert block_view(fresh, 1).rewards_total == 9
    assert fresh.core.pending_harvests() == ()


def _restarted_after_unknown_work(rejoin: tuple[int, ...]) -> tuple[Rig, CallBackend]:
    """Block 1's /work answer was lost, the process restarted in block 2, ``rejoin``'s miners are back."""
    rig = _rig()
    planted_block(rig)
    unknown(rig, worked_call(rig), "work: no answer", at=WORK_AT + 0.1)
    snap = rig.core.snapshot()
    later = CoreSnapshot(
        blocks=(*snap.blocks, type(snap.blocks[0])(2, snap.blocks[0].entropy, T0 + 20)),
        statuses=snap.statuses,
    )
    fresh = Rig(now=ENDS + 1)
    harvest = one_call(fresh.core.restore(later, ENDS + 1), "harvest")
    for i in rejoin:
        fresh.join("ab"[i], i)
    return fresh, harvest


def test_a_restored_unknown_work_is_reconciled_at_harvest_and_an_unknown_reward_stays_unknown() -> None:
    """Fix 3 and 4: the harvest reads the farmers whose work went out; with no final projection
    (none after a restart) their rewards and the block's total are unknown, not 0, and alerted."""
    fresh, harvest = _restarted_after_unknown_work(rejoin=(0, 1))
    unknown(fresh, harvest, "harvest: no answer", at=ENDS + 2)
    ask = read(fresh.timer(f"reconcile:{harvest.call_id}", at=ENDS + 3))
    assert {fid for fid, _ in ask.farmers} == {"farmer-0", "farmer-1"}
    effects = pails(fresh, ask, {}, at=ENDS + 3.1)  # both pails gone: harvested
    rows = persists(effects, "farmer_status")
    assert {d["farmerId"]: (d["status"], d.get("reward")) for d in rows} == {
        "farmer-0": ("harvested", None),
        "farmer-1": ("harvested", None),
    }
    [record] = persists(effects, "harvest")
    assert record["response"] == {"reconciled": True}  # no "totalRewards": "0"
    assert block_view(fresh, 1).rewards_total is None
    [alert] = [e.alert for e in effects if isinstance(e, RaiseAlert)]
    assert isinstance(alert, RewardUnknown) and set(alert.farmers) == {"farmer-0", "farmer-1"}
    assert fresh.core.pending_harvests() == ()


def test_a_plant_the_chain_cannot_settle_fails_and_alerts_the_stakes_at_risk() -> None:
    rig = _rig()
    plant = one_call(rig.block(1), "plant")
    unknown(rig, plant, "plant: no answer", at=T0 + 0.5)
    ask = read(rig.timer(f"reconcile:{plant.call_id}", at=T0 + 1.5))
    effects = rig.do(PailsRead(ask.call_id, 1, None, "RpcUnavailable: down"), at=ENDS - 2.5)
    assert statuses(effects) == {"farmer-0": "failed", "farmer-1": "failed"}
    [alert] = [e.alert for e in effects if isinstance(e, RaiseAlert)]
    assert isinstance(alert, WorkFailed) and alert.block == 1 and "at risk" in alert.reason


# ---------------------------------------------------------------- the review's fixes


def plant_records(effects: list[Effect]) -> list[PlantCalled]:
    return [e.record for e in effects if isinstance(e, Persist) and isinstance(e.record, PlantCalled)]


def test_two_unreadable_plant_answers_in_a_row_count_each_stake_once() -> None:
    """Fix 1: the part the first reconciliation recorded is not counted again by the second."""
    rig = _rig()
    plant = one_call(rig.block(1), "plant")
    unknown(rig, plant, "plant: no answer", at=T0 + 0.5)
    ask = read(rig.timer(f"reconcile:{plant.call_id}", at=T0 + 1.5))
    effects = pails(rig, ask, {"farmer-0": rewards.Pail(STAKE)}, at=T0 + 1.6)  # farmer-1 missing
    records = plant_records(effects)
    shown = publishes(effects, "plant")  # the dashboard's log tells each part once, as history sums
    again = one_call(effects, "plant")
    unknown(rig, again, "plant: HTTP 200 body is not JSON: b''", at=T0 + 2)
    ask = read(rig.timer(f"reconcile:{again.call_id}", at=T0 + 3))
    found = {"farmer-0": rewards.Pail(STAKE), "farmer-1": rewards.Pail(STAKE)}
    effects = pails(rig, ask, found, at=T0 + 3.1)
    records += plant_records(effects)
    shown += publishes(effects, "plant")
    assert statuses(effects) == {"farmer-0": "planted", "farmer-1": "planted"}
    answered = [r.reply for r in records if r.reply is not None]
    assert sum(r.successful for r in answered) == 2  # what the block history sums
    assert sum(r.total_staked for r in answered) == 2 * STAKE
    assert {o.farmer_id for o in answered[-1].results or () if o.ok} == {"farmer-0", "farmer-1"}
    assert [(e["successfulPlants"], e["totalStaked"]) for e in shown] == [(1, str(STAKE)), (1, str(STAKE))]


def _worked_and_projected(rig: Rig) -> None:
    planted_block(rig)
    rig.answer(worked_call(rig), response={"validNonces": 2, "invalidNonces": 0}, at=WORK_AT + 0.5)
    _projected(rig)


def test_a_harvest_reconciliation_counts_only_the_farmers_it_read() -> None:
    """Fix 2a: after a restart a farmer whose miners are gone has no address known: it is not read,
    so not taken as harvested; it waits for the harvest's retry."""
    rig = _rig()
    _worked_and_projected(rig)
    snap = rig.core.snapshot()
    later = CoreSnapshot(
        blocks=(*snap.blocks, type(snap.blocks[0])(2, snap.blocks[0].entropy, T0 + 20)),
        statuses=snap.statuses,
    )
    fresh = Rig(now=ENDS + 1)
    harvest = one_call(fresh.core.restore(later, ENDS + 1), "harvest")
    fresh.join("a", 0)  # farmer-1's miner never comes back
    unknown(fresh, harvest, "harvest: no answer", at=ENDS + 2)
    ask = read(fresh.timer(f"reconcile:{harvest.call_id}", at=ENDS + 3))
    assert dict(ask.farmers) == {"farmer-0": address(0)}
    effects = pails(fresh, ask, {}, at=ENDS + 3.1)
    assert statuses(effects) == {"farmer-0": "harvested"}
    assert "harvest-retry:1" in timers(effects)


def test_not_harvested_is_trusted_only_from_a_read_past_the_failure() -> None:
    """Fix 2b: a read at a ledger the Pooler knew at the failure may predate the harvest: read again."""
    rig = _rig()
    _worked_and_projected(rig)  # the chain events showed ledger 8
    harvest = one_call(rig.block(2), "harvest")
    unknown(rig, harvest, "harvest: no answer", at=ENDS + 1)
    ask = read(rig.timer(f"reconcile:{harvest.call_id}", at=ENDS + 2))
    still = {f: rewards.Pail(STAKE, 5, 3, 4) for f in ("farmer-0", "farmer-1")}
    effects = pails(rig, ask, still, at=ENDS + 2.1, ledger=8)  # an RPC behind: as before the harvest
    assert not statuses(effects) and not calls(effects)
    assert timers(effects) == {f"reconcile:{harvest.call_id}": ENDS + 2.1 + DELAY}  # looked at again
    ask = read(rig.timer(f"reconcile:{harvest.call_id}", at=ENDS + 3.1))
    effects = pails(rig, ask, {}, at=ENDS + 3.2, ledger=12)
    assert statuses(effects) == {"farmer-0": "harvested", "farmer-1": "harvested"}


def test_farmers_a_readable_harvest_answer_leaves_out_are_settled_from_their_pails() -> None:
    """Fix 2b: the Backend lists only the pails it found; one left out is read, not dropped."""
    rig = _rig()
    _worked_and_projected(rig)
    harvest = one_call(rig.block(2), "harvest")
    expected = dict(block_view(rig, 1).projection.rewards)  # type: ignore[union-attr]
    listed = {"results": [{"farmerId": "farmer-1", "ok": True, "reward": str(expected["farmer-1"])}]}
    effects = rig.answer(harvest, response={"successfulHarvests": 1, **listed}, at=ENDS + 1)
    assert statuses(effects) == {"farmer-1": "harvested"}
    ask = read(rig.timer(f"reconcile:{harvest.call_id}", at=ENDS + 2))
    assert dict(ask.farmers) == {"farmer-0": address(0)}
    effects = pails(rig, ask, {}, at=ENDS + 2.1)
    rows = persists(effects, "farmer_status")
    assert [(d["farmerId"], d["status"], d["reward"]) for d in rows] == [
        ("farmer-0", "harvested", str(expected["farmer-0"]))
    ]
    assert rig.core.pending_harvests() == ()
    assert block_view(rig, 1).rewards_total == sum(expected.values())


def test_a_resent_work_refused_zeros_too_low_has_landed() -> None:
    """Fix 2b: #7 (ZeroCountTooLow) on a nonce sent again means the first send landed: worked."""
    rig = _rig()
    planted_block(rig)
    work = worked_call(rig)
    unknown(rig, work, "work: connection lost after the request was sent", at=WORK_AT + 0.1)
    ask = read(rig.timer(f"reconcile:{work.call_id}", at=WORK_AT + 1.1))
    planted_only = {"farmer-0": rewards.Pail(STAKE), "farmer-1": rewards.Pail(STAKE)}
    again = one_call(pails(rig, ask, planted_only, at=WORK_AT + 1.2, ledger=4), "work")  # a stale read
    refused = {"farmerId": "farmer-0", "ok": False, "error": "ZeroCountTooLow", "errorCode": 7}
    response = {
        "validNonces": 1,
        "invalidNonces": 1,
        "results": [refused, {"farmerId": "farmer-1", "ok": True}],
    }
    effects = rig.answer(again, response=response, at=WORK_AT + 1.5)
    assert statuses(effects) == {"farmer-0": "worked", "farmer-1": "worked"}
    assert not alerts(effects)


def test_a_reward_from_a_projection_that_is_not_final_is_unknown() -> None:
    """Fix 4: Block(1) first read after block 2 opened (an RPC outage): its projection is not final."""
    rig = _rig()
    planted_block(rig)
    rig.answer(worked_call(rig), response={"validNonces": 2, "invalidNonces": 0}, at=WORK_AT + 0.5)
    harvest = one_call(rig.block(2), "harvest")
    _projected(rig, at=ENDS + 0.5)  # read late
    projection = block_view(rig, 1).projection
    assert projection is not None and not projection.final
    unknown(rig, harvest, "harvest: no answer", at=ENDS + 1)
    ask = read(rig.timer(f"reconcile:{harvest.call_id}", at=ENDS + 2))
    effects = pails(rig, ask, {}, at=ENDS + 2.1)
    rows = persists(effects, "farmer_status")
    assert {d["farmerId"]: (d["status"], d.get("reward")) for d in rows} == {
        "farmer-0": ("harvested", None),
        "farmer-1": ("harvested", None),
    }
    assert persists(effects, "harvest")[0]["response"] == {"reconciled": True}
    assert alerts(effects) == ["reward-unknown"]


def _staked(records: list[PlantCalled], block: int) -> int:
    return sum(r.reply.total_staked for r in records if r.reply is not None and r.block == block)


def test_a_late_plant_reconciled_twice_counts_each_stake_once() -> None:
    """The late plant's watchdog plants again; both answers lost: each stake is counted once."""
    rig = _rig()
    planted_block(rig)
    records: list[PlantCalled] = []
    late = one_call(rig.timer("late-plant:1", at=ENDS + 3), "plant")
    unknown(rig, late, "plant: no answer", at=ENDS + 3.5)
    ask = read(rig.timer(f"reconcile:{late.call_id}", at=ENDS + 4.5))
    found = {"farmer-0": rewards.Pail(STAKE), "farmer-1": rewards.Pail(STAKE)}
    records += plant_records(pails(rig, ask, found, ENDS + 4.6))
    at = ENDS + 4.6 + CONFIG.late_plant_retry
    again = one_call(rig.timer("late-plant:1", at=at), "plant")  # the watchdog: block 2 not seen yet
    unknown(rig, again, "plant: no answer", at=at + 0.5)
    ask = read(rig.timer(f"reconcile:{again.call_id}", at=at + 1.5))
    records += plant_records(pails(rig, ask, found, at + 1.6))
    assert _staked(records, 2) == 2 * STAKE


def test_a_readable_late_plant_then_a_lost_watchdog_plant_counts_each_stake_once() -> None:
    rig = _rig()
    planted_block(rig)
    late = one_call(rig.timer("late-plant:1", at=ENDS + 3), "plant")
    effects = rig.answer(
        late,
        response={"successfulPlants": 2, "failedPlants": 0, "totalStaked": str(2 * STAKE)},
        at=ENDS + 3.5,
    )
    records = plant_records(effects)
    at = ENDS + 3.5 + CONFIG.late_plant_retry
    again = one_call(rig.timer("late-plant:1", at=at), "plant")
    unknown(rig, again, "plant: no answer", at=at + 0.5)
    ask = read(rig.timer(f"reconcile:{again.call_id}", at=at + 1.5))
    found = {"farmer-0": rewards.Pail(STAKE), "farmer-1": rewards.Pail(STAKE)}
    records += plant_records(pails(rig, ask, found, at + 1.6))
    assert _staked(records, 2) == 2 * STAKE
