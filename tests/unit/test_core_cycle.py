"""The block cycle through the pure coordinator: plant -> work -> harvest, and what goes wrong."""

from __future__ import annotations

from pooler.core.effects import CallBackend, CancelTimer, Close, Effect, Persist, Publish, Send
from pooler.core.events import (
    ChainHealth,
    FarmPaused,
    LocalSearchDone,
    MinerLeft,
    MoreRequested,
    StatsRequested,
    WorkerDisconnected,
)
from pooler.core.records import BestFound, MinerCounts, ShareCounts
from protocol.messages import Accepted, Job, Stats
from protocol.work import WorkTemplate, address_bytes
from tests.unit.core_support import (
    CONFIG,
    T0,
    Rig,
    address,
    body,
    calls,
    entropy,
    one_call,
    persists,
    publishes,
    searches,
    sends,
    timers,
)

WORK_AT = T0 + 15
ENDS = T0 + 20


def _two_farmers() -> Rig:
    """Farmer 0 with miner a (workers 1, 2); farmer 1 with miner b (worker 3)."""
    rig = Rig()
    rig.join("a", 0)
    rig.join("b", 1)
    rig.connect(1, "a", "w1")
    rig.connect(2, "a", "w2")
    rig.connect(3, "b", "w1")
    return rig


def _planted(rig: Rig, index: int = 1) -> CallBackend:
    """Open block ``index`` and answer its plant with success (no per-farmer results)."""
    effects = rig.block(index)
    plant = one_call(effects, "plant")
    rig.answer(plant, response={"successfulPlants": 2, "failedPlants": 0, "totalStaked": "200"})
    return plant


def _check_submission(sub: dict[str, object], block: int, farmer: int) -> None:
    """A /work submission is what the contract would accept: the recomputed hash and zeros."""
    nonce = sub["nonce"]
    assert isinstance(nonce, str) and nonce.isdigit()
    template = WorkTemplate(block, entropy(block), address_bytes(address(farmer)))
    digest, zeros = template.verify(int(nonce))
    assert sub["hash"] == digest.hex()
    assert sub["zeros"] == zeros


def test_full_cycle_plant_work_harvest_rewards() -> None:
    rig = _two_farmers()
    effects = rig.block(1)
    # jobs go out at once, one per connected worker, clean, with disjoint ranges per farmer
    jobs = {e.conn: e.msg for e in effects if isinstance(e, Send) and isinstance(e.msg, Job)}
    assert sorted(jobs) == [1, 2, 3]
    assert all(j.clean and j.block == 1 and j.entropy == entropy(1) for j in jobs.values())
    assert jobs[1].farmer == jobs[2].farmer == address(0) and jobs[3].farmer == address(1)
    assert jobs[1].nonce_end <= jobs[2].nonce_start
    assert jobs[1].work_at == WORK_AT * 1000 and jobs[1].block_ends_at == ENDS * 1000
    # plant runs concurrently: in the same effects list, after the block was persisted
    plant = one_call(effects, "plant")
    assert body(plant) == {
        "blockIndex": 1,
        "poolerId": "pool-1",
        "maxFarmersCapacity": 100,
        "farmerIds": ["farmer-0", "farmer-1"],  # the farmers with an active miner
    }
    assert plant.deadline == ENDS - CONFIG.safety_margin
    assert persists(effects, "block") == [{"index": 1, "entropy": entropy(1).hex(), "timestamp": T0}]
    assert publishes(effects, "block")[0]["workAt"] == WORK_AT * 1000
    assert publishes(effects, "phase")[-1]["phase"] == "planting"
    assert timers(effects) == {
        "search:1": WORK_AT - 3,
        "work:1": WORK_AT,
        "end:1": ENDS,
        "late-plant:1": ENDS + 3,
        "stake:1": T0 + (WORK_AT - T0) / 2,  # the default 30 s lead, halfway on a 20 s block
    }
    effects = rig.answer(plant, response={"successfulPlants": 2, "failedPlants": 0, "totalStaked": "200"})
    assert publishes(effects, "plant") == [
        {"block": 1, "ok": True, "successfulPlants": 2, "failedPlants": 0, "totalStaked": "200"}
    ]
    assert {d["farmerId"]: d["status"] for d in persists(effects, "farmer_status")} == {
        "farmer-0": "planted",
        "farmer-1": "planted",
    }
    assert publishes(effects, "phase")[-1]["phase"] == "mining"

    # shares: a best per farmer, persisted in the batch whose commit the accepted waits for (the
    # runner holds an accepted until then); the counts come once a batch, at its BatchEnd
    effects = rig.good_share(1, 1, 1, at=T0 + 2)
    [accepted] = sends(effects, Accepted, conn=1)
    assert accepted == Accepted(jobs[1].job, accepted.nonce, 1, True)
    assert [type(e) for e in effects] == [Persist, Send, Persist, Persist]  # best; tally, miner counts
    assert [type(e.record) for e in effects if isinstance(e, Persist)] == [
        BestFound,
        ShareCounts,
        MinerCounts,
    ]
    assert persists(effects, "best")[0]["zeros"] == 1
    effects = rig.good_share(2, 2, 2, at=T0 + 3)  # a better one from the farmer's other worker
    assert sends(effects, Accepted)[0].best
    effects = rig.good_share(1, 1, 1, at=T0 + 4)  # not better: accepted, not best
    assert sends(effects, Accepted)[0].best is False and not persists(effects, "best")
    rig.good_share(3, 1, 1, at=T0 + 5)

    # nobody lacks a best: the search pass asks for nothing
    assert not searches(rig.timer("search:1", at=WORK_AT - 3))
    effects = rig.timer("work:1", at=WORK_AT)
    work = one_call(effects, "work")
    assert work.deadline == ENDS
    subs = {s["farmerId"]: s for s in body(work)["submissions"]}
    assert subs["farmer-0"]["zeros"] == 2 and subs["farmer-1"]["zeros"] == 1
    _check_submission(subs["farmer-0"], 1, 0)
    _check_submission(subs["farmer-1"], 1, 1)
    assert subs["farmer-0"]["timestamp"] == (T0 + 3) * 1000
    assert publishes(effects, "phase")[-1]["phase"] == "submitting"

    effects = rig.answer(work, response={"validNonces": 2, "invalidNonces": 0}, at=WORK_AT + 1)
    assert publishes(effects, "work")[0]["ok"] is True
    assert publishes(effects, "work")[0]["validNonces"] == 2
    assert {d["farmerId"]: (d["status"], d["zeros"]) for d in persists(effects, "farmer_status")} == {
        "farmer-0": ("worked", 2),
        "farmer-1": ("worked", 1),
    }
    assert publishes(effects, "phase")[-1]["phase"] == "worked"
    assert rig.core.view(rig.now).best_zeros == {"farmer-0": 2, "farmer-1": 1}

    # block 2 opens: new clean jobs, plant 2, harvest 1, old timers cancelled
    effects = rig.block(2)
    assert send_jobs_clean(effects) == {1: True, 2: True, 3: True}
    assert one_call(effects, "plant").block == 2
    harvest = one_call(effects, "harvest")
    assert body(harvest) == {"blockIndex": 1, "poolerId": "pool-1"}
    assert CancelTimer("work:1") in effects
    assert rig.core.pending_harvests() == (1,)
    effects = rig.answer(
        harvest,
        response={
            "successfulHarvests": 2,
            "failedHarvests": 0,
            "totalRewards": "3000",
            "results": [
                {"farmerId": "farmer-0", "ok": True, "reward": "2000"},
                {"farmerId": "farmer-1", "ok": True, "reward": "1000"},
            ],
        },
    )
    assert publishes(effects, "harvest") == [
        {
            "block": 1,
            "ok": True,
            "successfulHarvests": 2,
            "failedHarvests": 0,
            "totalRewards": "3000",
            "rewards": [
                {"farmerId": "farmer-0", "reward": "2000"},
                {"farmerId": "farmer-1", "reward": "1000"},
            ],
        }
    ]
    assert rig.core.pending_harvests() == ()
    view = rig.core.view(rig.now)
    block1 = next(b for b in view.blocks if b.block == 1)
    assert block1.rewards_total == 3000 and block1.rewards == {"farmer-0": 2000, "farmer-1": 1000}
    assert block1.farmers["farmer-0"].status == "harvested"
    assert {f.farmer_id: f.rewards for f in view.farmers} == {"farmer-0": 2000, "farmer-1": 1000}
    stats = sends(rig.do(StatsRequested(1, "a")), Stats)[0]
    assert stats.rewards == 2000 and stats.accepted == 3 and stats.block == 2 and stats.workers == 2


def send_jobs_clean(effects: list[Effect]) -> dict[int, bool]:
    return {e.conn: e.msg.clean for e in effects if isinstance(e, Send) and isinstance(e.msg, Job)}


def test_plant_results_name_the_planted_farmers() -> None:
    rig = _two_farmers()
    plant = one_call(rig.block(1), "plant")
    effects = rig.answer(
        plant,
        response={
            "successfulPlants": 1,
            "failedPlants": 1,
            "results": [
                {"farmerId": "farmer-0", "ok": True},
                {"farmerId": "farmer-1", "ok": False, "error": "low"},
            ],
        },
    )
    statuses = {d["farmerId"]: (d["status"], d.get("reason")) for d in persists(effects, "farmer_status")}
    assert statuses == {"farmer-0": ("planted", None), "farmer-1": ("failed", "plant failed: low")}
    rig.good_share(1, 1, at=T0 + 1)
    rig.good_share(3, 1, at=T0 + 1)
    work = one_call(rig.timer("work:1", at=WORK_AT), "work")
    assert [s["farmerId"] for s in body(work)["submissions"]] == ["farmer-0"]


def test_miner_leaving_mid_block_still_gets_its_best_submitted() -> None:
    rig = _two_farmers()
    _planted(rig)
    rig.good_share(3, 2, at=T0 + 2)
    effects = rig.do(MinerLeft("b"), at=T0 + 3)
    assert Close(3, 1000, "miner left") in effects
    assert publishes(effects, "miner") == [{"minerId": "b", "farmerId": "farmer-1", "event": "left"}]
    rig.good_share(1, 1, at=T0 + 4)
    work = one_call(rig.timer("work:1", at=WORK_AT), "work")
    subs = {s["farmerId"]: s["zeros"] for s in body(work)["submissions"]}
    assert subs["farmer-1"] >= 2 and "farmer-0" in subs


def test_backend_outage_that_ends_before_the_deadline_still_submits() -> None:
    rig = _two_farmers()
    _planted(rig)
    rig.good_share(1, 1, at=T0 + 1)
    work = one_call(rig.timer("work:1", at=WORK_AT), "work")
    effects = rig.answer(work, ok=False, error="503 from Backend", retryable=True, at=WORK_AT + 0.5)
    assert (
        publishes(effects, "work")[0]["ok"] is False
        and publishes(effects, "work")[0]["error"] == "503 from Backend"
    )
    assert timers(effects) == {"work-retry:1": WORK_AT + 1.5}
    assert not persists(effects, "farmer_status")  # not lost yet
    effects = rig.timer("work-retry:1", at=WORK_AT + 1.5)
    retry = one_call(effects, "work")
    assert body(retry)["submissions"] == body(work)["submissions"]
    effects = rig.answer(retry, response={"validNonces": 1, "invalidNonces": 0}, at=WORK_AT + 2)
    assert [d["status"] for d in persists(effects, "farmer_status")] == ["worked"]


def test_backend_outage_past_the_deadline_reports_the_loss() -> None:
    rig = _two_farmers()
    _planted(rig)
    rig.good_share(1, 1, at=T0 + 1)
    work = one_call(rig.timer("work:1", at=WORK_AT), "work")
    effects = rig.answer(work, ok=False, error="timed out", retryable=True, at=ENDS)
    assert not timers(effects)
    failed = persists(effects, "farmer_status")
    assert failed == [
        {
            "farmerId": "farmer-0",
            "block": 1,
            "status": "failed",
            "reason": "work was not recorded before the deadline: timed out",
        }
    ]
    assert publishes(effects, "farmer") == failed
    assert publishes(effects, "work")[0]["ok"] is False
    view = rig.core.view(rig.now)
    assert next(f for f in view.farmers if f.farmer_id == "farmer-0").status.status == "failed"  # type: ignore[union-attr]


def test_late_plant_opens_the_next_block_which_is_not_planted_twice() -> None:
    rig = _two_farmers()
    _planted(rig)
    rig.good_share(1, 1, at=T0 + 1)
    rig.answer(one_call(rig.timer("work:1", at=WORK_AT), "work"), response={"validNonces": 1})
    effects = rig.timer("end:1", at=ENDS)
    assert publishes(effects, "phase") == []  # worked stays worked until the next block
    # nobody opens block 2: at end + grace we plant block 2 ourselves
    effects = rig.timer("late-plant:1", at=ENDS + 3)
    late = one_call(effects, "plant")
    assert late.block == 2 and body(late)["blockIndex"] == 2
    effects = rig.answer(late, response={"successfulPlants": 2}, at=ENDS + 4)
    assert publishes(effects, "plant")[0]["block"] == 2
    # the chain opened block 2 with our plant: seen now, not planted again, block 1 harvested
    effects = rig.block(2, ts=ENDS + 4, at=ENDS + 5)
    assert calls(effects, "plant") == []
    assert one_call(effects, "harvest").block == 1
    view = rig.core.view(rig.now)
    assert view.block == 2 and view.phase == "mining"
    statuses = {f.farmer_id: f.status.status for f in view.farmers if f.status is not None}
    assert statuses == {"farmer-0": "planted", "farmer-1": "planted"}
    # and it is worked like any other block
    rig.good_share(1, 1, at=ENDS + 6)
    work = one_call(rig.timer("work:2", at=ENDS + 4 + 15), "work")
    assert work.block == 2


def test_late_plant_still_in_flight_when_the_block_appears_is_adopted() -> None:
    rig = _two_farmers()
    _planted(rig)
    late = one_call(rig.timer("late-plant:1", at=ENDS + 3), "plant")
    effects = rig.block(2, ts=ENDS + 3, at=ENDS + 4)
    assert calls(effects, "plant") == []
    effects = rig.answer(late, response={"successfulPlants": 2}, at=ENDS + 5)
    assert {d["status"] for d in persists(effects, "farmer_status")} == {"planted"}
    assert publishes(effects, "plant")[0]["block"] == 2


def test_failed_late_plant_is_retried_and_a_block_opened_by_others_is_planted() -> None:
    rig = _two_farmers()
    _planted(rig)
    late = one_call(rig.timer("late-plant:1", at=ENDS + 3), "plant")
    effects = rig.answer(late, ok=False, error="backend down", retryable=True, at=ENDS + 4)
    assert timers(effects) == {"late-plant:1": ENDS + 4 + CONFIG.late_plant_retry}
    again = one_call(rig.timer("late-plant:1", at=ENDS + 6), "plant")
    assert again.block == 2 and again.call_id != late.call_id
    rig.answer(again, ok=False, error="backend down", retryable=True, at=ENDS + 7)
    # someone else opened block 2: our failed plant does not count, so we plant normally
    assert one_call(rig.block(2, ts=ENDS + 7, at=ENDS + 8), "plant").block == 2


def test_late_plant_that_opened_nothing_is_repeated_and_pail_exists_counts_as_planted() -> None:
    """A plant applied while the chain was still inside block 1 opens nothing: plant again."""
    rig = _two_farmers()
    _planted(rig)
    late = one_call(rig.timer("late-plant:1", at=ENDS + 3), "plant")
    effects = rig.answer(late, response={"successfulPlants": 2}, at=ENDS + 4)
    assert timers(effects) == {"late-plant:1": ENDS + 4 + CONFIG.late_plant_retry}  # the watchdog
    again = one_call(rig.timer("late-plant:1", at=ENDS + 6), "plant")
    assert again.block == 2 and again.call_id != late.call_id
    # this one opened block 2; farmer-1 was already planted there by the first one (#8)
    results = [
        {"farmerId": "farmer-0", "ok": True, "blockIndex": 2},
        {"farmerId": "farmer-1", "ok": False, "error": "PailExists", "errorCode": 8},
    ]
    rig.answer(again, response={"successfulPlants": 1, "failedPlants": 1, "results": results}, at=ENDS + 7)
    effects = rig.block(2, ts=ENDS + 6, at=ENDS + 8)
    assert calls(effects, "plant") == []
    statuses = {d["farmerId"]: d["status"] for d in persists(effects, "farmer_status") if d["block"] == 2}
    assert statuses == {"farmer-0": "planted", "farmer-1": "planted"}
    # once block 2 is seen, block 1's watchdog is stale and plants nothing
    assert calls(rig.timer("late-plant:1", at=ENDS + 9), "plant") == []


def test_local_search_for_a_planted_farmer_with_no_shares() -> None:
    rig = _two_farmers()
    rig.do(WorkerDisconnected(3))  # farmer 1's only worker goes away
    _planted(rig)
    first = rig.good_share(1, 1, at=T0 + 1)
    effects = rig.timer("search:1", at=WORK_AT - 3)
    [search] = searches(effects)
    assert search.farmer_id == "farmer-1" and search.farmer == address(1)
    assert search.entropy == entropy(1) and search.block == 1 and search.deadline == WORK_AT
    assert search.max_hashes == CONFIG.local_search_max_hashes
    # its range is disjoint from every range handed to that farmer's workers (none here)
    # and from farmer 0's counter too (separate counters); searching again is not repeated
    assert not searches(rig.timer("search:1", at=WORK_AT - 2))
    effects = rig.search_done(search, at=WORK_AT - 1)
    assert persists(effects, "best")[0]["farmerId"] == "farmer-1"
    work = one_call(rig.timer("work:1", at=WORK_AT), "work")
    subs = {s["farmerId"]: s for s in body(work)["submissions"]}
    assert set(subs) == {"farmer-0", "farmer-1"}
    _check_submission(subs["farmer-1"], 1, 1)
    assert sends(first, Accepted)


def test_local_search_answering_after_work_at_is_submitted_alone() -> None:
    rig = _two_farmers()
    rig.do(WorkerDisconnected(3))
    _planted(rig)
    rig.good_share(1, 1, at=T0 + 1)
    [search] = searches(rig.timer("search:1", at=WORK_AT - 3))
    batch = one_call(rig.timer("work:1", at=WORK_AT), "work")
    assert [s["farmerId"] for s in body(batch)["submissions"]] == ["farmer-0"]
    effects = rig.search_done(search, at=WORK_AT + 1)
    alone = one_call(effects, "work")
    assert [s["farmerId"] for s in body(alone)["submissions"]] == ["farmer-1"]


def test_local_search_that_finds_nothing_fails_the_farmer() -> None:
    rig = _two_farmers()
    rig.do(WorkerDisconnected(3))
    _planted(rig)
    rig.good_share(1, 1, at=T0 + 1)
    [search] = searches(rig.timer("search:1", at=WORK_AT - 3))
    rig.timer("work:1", at=WORK_AT)
    effects = rig.do(LocalSearchDone(1, "farmer-1", None, None, 0), at=WORK_AT + 1)
    assert persists(effects, "farmer_status") == [
        {
            "farmerId": "farmer-1",
            "block": 1,
            "status": "failed",
            "reason": "the local search found no nonce in time",
        }
    ]
    assert search.farmer_id == "farmer-1"


def test_a_strictly_better_hash_is_resubmitted_until_the_margin() -> None:
    rig = _two_farmers()
    _planted(rig)
    rig.good_share(1, 1, 1, at=T0 + 1)
    rig.good_share(3, 1, 1, at=T0 + 1)
    batch = one_call(rig.timer("work:1", at=WORK_AT), "work")
    # better while the batch is in flight: held, sent when the answer comes (one call per farmer)
    effects = rig.good_share(1, 2, 2, at=WORK_AT + 0.2)
    assert calls(effects) == []
    effects = rig.answer(batch, response={"validNonces": 2}, at=WORK_AT + 0.5)
    resub = one_call(effects, "work")
    assert [(s["farmerId"], s["zeros"]) for s in body(resub)["submissions"]] == [("farmer-0", 2)]
    rig.answer(resub, response={"validNonces": 1}, at=WORK_AT + 1)
    # an equal count is not better: nothing sent
    assert calls(rig.good_share(2, 2, 2, at=WORK_AT + 1.5)) == []
    assert calls(rig.good_share(3, 1, 1, at=WORK_AT + 1.6)) == []
    # better, and before the margin: sent alone at once
    effects = rig.good_share(3, 2, 3, at=WORK_AT + 2)
    assert [s["farmerId"] for s in body(one_call(effects, "work"))["submissions"]] == ["farmer-1"]
    # better, but after deadline - margin: accepted, not sent
    effects = rig.good_share(2, 3, 3, at=ENDS - 1.5)
    assert sends(effects, Accepted)[0].best and calls(effects) == []


def test_paused_farm_makes_no_calls_and_resumes() -> None:
    rig = _two_farmers()
    effects = rig.do(FarmPaused(True), at=T0 - 1)
    assert publishes(effects, "phase") == [
        {"block": None, "phase": "paused", "workAt": None, "blockEndsAt": None}
    ]
    effects = rig.block(1)
    assert calls(effects) == [] and sends(effects, Job) == []
    assert publishes(effects, "block")  # the dashboard still sees the block
    effects = rig.do(FarmPaused(False), at=T0 + 1)
    assert one_call(effects, "plant").block == 1
    assert send_jobs_clean(effects) == {1: True, 2: True, 3: True}
    assert publishes(effects, "phase")[-1]["phase"] == "planting"


def test_pause_during_mining_holds_the_work_until_resumed() -> None:
    rig = _two_farmers()
    _planted(rig)
    rig.good_share(1, 1, at=T0 + 1)
    rig.do(FarmPaused(True), at=T0 + 2)
    effects = rig.do(MoreRequested(1, None), at=T0 + 3)
    assert sends(effects, Job)[0].clean is False  # miners keep working on the current block
    assert calls(rig.timer("work:1", at=WORK_AT)) == []
    effects = rig.do(FarmPaused(False), at=WORK_AT + 1)
    assert one_call(effects, "work").block == 1


def test_failed_harvest_is_retried_then_given_up_when_entries_expire() -> None:
    rig = _two_farmers()
    _planted(rig)
    rig.good_share(1, 1, at=T0 + 1)
    rig.answer(one_call(rig.timer("work:1", at=WORK_AT), "work"), response={"validNonces": 1})
    harvest = one_call(rig.block(2), "harvest")
    effects = rig.answer(harvest, ok=False, error="rpc down", retryable=True, at=ENDS + 1)
    assert timers(effects) == {"harvest-retry:1": ENDS + 1 + CONFIG.harvest_retry_delay}
    assert rig.core.pending_harvests() == (1,)
    retry = one_call(rig.timer("harvest-retry:1", at=ENDS + 6), "harvest")
    # the retention is 10 blocks (200 s): past it, the farmer's harvest is lost
    effects = rig.answer(retry, ok=False, error="rpc down", retryable=True, at=T0 + 199)
    assert persists(effects, "farmer_status") == [
        {
            "farmerId": "farmer-0",
            "block": 1,
            "status": "failed",
            "reason": "harvest failed until the block's entries expired: rpc down",
        }
    ]
    assert rig.core.pending_harvests() == ()


def test_harvest_without_results_records_the_block_total() -> None:
    rig = _two_farmers()
    _planted(rig)
    rig.good_share(1, 1, at=T0 + 1)
    rig.answer(one_call(rig.timer("work:1", at=WORK_AT), "work"), response={"validNonces": 1})
    harvest = one_call(rig.block(2), "harvest")
    effects = rig.answer(
        harvest, response={"successfulHarvests": 1, "failedHarvests": 0, "totalRewards": "777"}
    )
    assert publishes(effects, "harvest")[0]["totalRewards"] == "777"
    assert [d["status"] for d in persists(effects, "farmer_status")] == ["harvested"]
    block1 = next(b for b in rig.core.view(rig.now).blocks if b.block == 1)
    assert block1.rewards_total == 777 and block1.rewards == {}


def test_unknown_and_stale_timer_keys_are_ignored() -> None:
    rig = _two_farmers()
    _planted(rig)
    rig.block(2)
    for key in (
        "work:1",
        "search:1",
        "end:1",
        "late-plant:1",
        "work-retry:1",
        "nonsense",
        "work:x",
        "work:99",
    ):
        assert [e for e in rig.timer(key) if not isinstance(e, Publish)] == []


def test_summary_and_chain_events_for_the_dashboard() -> None:
    rig = _two_farmers()
    _planted(rig)
    rig.good_share(1, 2, 2, at=T0 + 1)
    effects = rig.timer("summary", at=T0 + 5)
    [summary] = publishes(effects, "summary")
    assert summary["block"] == 1 and summary["phase"] == "mining"
    assert summary["miners"] == 2 and summary["workers"] == 3
    assert summary["accepted"] == 1 and summary["rejected"] == 0
    assert summary["bestZeros"] == {"farmer-0": 2}
    assert summary["workAt"] == WORK_AT * 1000 and summary["blockEndsAt"] == ENDS * 1000
    assert timers(effects) == {"summary": T0 + 10}
    effects = rig.do(ChainHealth(False, "rpc refused"), at=T0 + 6)
    assert publishes(effects, "chain") == [{"ok": False, "detail": "rpc refused"}]
    view = rig.core.view(rig.now)
    assert view.chain_ok is False and view.chain_detail == "rpc refused"


def test_first_event_arms_the_periodic_timers_once() -> None:
    rig = Rig()
    effects = rig.join("a", 0)
    assert timers(effects) == {"summary": rig.now + 5, "vardiff": rig.now + 1}
    assert "summary" not in timers(rig.join("b", 1))
    assert isinstance(effects[-1], Publish)


def test_plant_answered_after_work_at_submits_at_once() -> None:
    rig = _two_farmers()
    plant = one_call(rig.block(1), "plant")
    rig.good_share(1, 1, at=T0 + 1)
    effects = rig.timer("work:1", at=WORK_AT)
    assert calls(effects) == []  # nothing is known planted yet
    effects = rig.answer(plant, response={"successfulPlants": 2}, at=WORK_AT + 1)
    # farmer 1 has no share: a local search now, bounded by the deadline minus the margin
    [search] = searches(effects)
    assert search.farmer_id == "farmer-1" and search.deadline == ENDS - CONFIG.safety_margin
    work = one_call(effects, "work")
    assert [s["farmerId"] for s in body(work)["submissions"]] == ["farmer-0"]
    assert publishes(effects, "phase")[-1]["phase"] == "submitting"
