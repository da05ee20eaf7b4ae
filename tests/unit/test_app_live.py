"""The live desk (pooler/app/live.py) over a hand-made core view and history: one view per
CACHE_S, farmers best first, names from the miners' registrations, offline workers from the
history with their last share (minute resolution)."""

from __future__ import annotations

from pooler.app.live import CACHE_S, LiveDesk
from pooler.core.records import HistoryBucket
from pooler.core.views import CoreView, FarmerView, MinerView, WorkerView
from pooler.stats.history import MINUTE, History

NOW = 1_700_000_000.0
ADDR_A, ADDR_B = "G" + "A" * 55, "G" + "B" * 55


def _view(now: float) -> CoreView:
    miners = (
        MinerView("m1", "fa", "rig-a", 1, 10.0, 5, 0, 0, {}, 5, 0, 4, 12.0),
        MinerView("m2", "fb", "rig-b", 1, 20.0, 7, 1, 0, {}, 7, 1, 6, None),
        MinerView("m3", "fb", "rig-b", 0, 0.0, 0, 0, 0, {}, 0, 0, None, None),
    )
    farmers = (
        FarmerView("fa", ADDR_A, 1, 1, 10.0, 4, None, 0, 5),
        FarmerView("fb", ADDR_B, 2, 1, 20.0, 6, None, 100, 7),
        FarmerView("fc", ADDR_B, 0, 0, 0.0, None, None, 0, None),
    )
    workers = (WorkerView("m1", "w1", 1, "cpu/1", 3, 10.0, 5, 0, 12.0, True),)
    return CoreView(
        block=9, phase="mining", entropy="ab" * 32, timestamp=int(now), work_at=1, block_ends_at=2,
        paused=False, chain_ok=True, chain_detail="", miners=2, workers=1, hashrate=30.0, accepted=12,
        rejected=1, accepted_total=12, rejected_total=1, best_zeros={"fa": 4, "fb": 6}, farmers=farmers,
        miner_list=miners, worker_list=workers, blocks=(), pending_harvests=(), chain_zeros=(3, 7),
    )  # fmt: skip


def _history() -> History:
    h = History(lambda job, conn: None, durable=False)
    t = int(NOW) - int(NOW) % MINUTE
    rows = [
        HistoryBucket("worker", "m1/w1", MINUTE, t - 10 * MINUTE, 3, 0, (), 3 * 16**3),
        HistoryBucket("worker", "m1/w1", MINUTE, t - 2 * MINUTE, 1, 0, (), 16**3),
        HistoryBucket("worker", "m1/old", MINUTE, t - 30 * MINUTE, 0, 1, (), 0),
    ]
    h.load(rows, NOW)
    return h


def test_one_view_per_cache_period_and_farmers_best_first() -> None:
    calls: list[float] = []
    clock = [NOW]

    def view(now: float) -> CoreView:
        calls.append(now)
        return _view(now)

    desk = LiveDesk(view, _history(), lambda: clock[0])
    live = desk.live(2)
    assert [f["farmerId"] for f in live["farmerList"]] == ["fb", "fa"] and live["farmers"] == 3
    assert live["farmerList"][0] == {
        "farmerId": "fb", "address": ADDR_B, "names": ["rig-b"], "miners": 2, "workers": 1, "hashrate": 20.0,
        "bestZeros": 6, "projectedReward": "7", "rewards": "100",
    }  # fmt: skip
    assert (live["chainMinZeros"], live["chainMaxZeros"], live["reportedHashrate"]) == (3, 7, 12.0)
    assert [f["farmerId"] for f in desk.live(10)["farmerList"]] == ["fb", "fa", "fc"]  # no best: last
    clock[0] += CACHE_S / 2
    desk.live_miners(["m1"])
    assert len(calls) == 1  # the copy is reused
    clock[0] += CACHE_S
    desk.live(1)
    assert len(calls) == 2


def test_miners_online_and_offline_workers_with_their_last_share() -> None:
    desk = LiveDesk(_view, _history(), lambda: NOW)
    (m1, m3) = desk.live_miners(["m1", "m3"])["miners"]
    t = int(NOW) - int(NOW) % MINUTE
    assert (m1["address"], m1["name"], m1["workersOnline"], m1["lastShareAt"]) == (
        ADDR_A,
        "rig-a",
        1,
        t - 2 * MINUTE,
    )
    assert (m3["workersOnline"], m3["lastShareAt"], m3["bestZeros"]) == (0, None, None)
    one = desk.live_miner("m1")
    assert one is not None
    assert [(w["worker"], w["online"], w["lastShareAt"]) for w in one["workerList"]] == [
        ("w1", True, t - 2 * MINUTE),
        ("old", False, t - 30 * MINUTE),  # a stale share counts as a share heard
    ]
    assert desk.live_miner("nobody") is None
