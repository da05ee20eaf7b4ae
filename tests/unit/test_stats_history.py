"""The history aggregates alone: downsampling, pruning, what a take() hands the store."""

from __future__ import annotations

from typing import Any

from pooler.core.backend_calls import HarvestReply, PlantReply
from pooler.core.effects import Effect, Persist, Send
from pooler.core.records import (
    BlockHistory,
    BlockOnChain,
    BlockSeen,
    FarmerStatusChanged,
    HarvestCalled,
    HistoryBucket,
    PlantCalled,
    ShareCounts,
)
from pooler.core.rewards import BlockState as ChainBlock
from pooler.stats import views
from pooler.stats.history import BLOCKS_KEEP, HOUR, HOUR_KEEP, MINUTE, MINUTE_KEEP, History
from pooler.store.codec import bucket_data, bucket_from, bucket_sum
from protocol.errors import Code
from protocol.messages import Accepted, Rejected

T = 1_700_000_000 - 1_700_000_000 % HOUR  # an hour boundary


def _history() -> History:
    return History(lambda job, conn: ("m1", f"w{conn}", 3) if job != "gone" else None)


def _ok(conn: int) -> list[Effect]:
    return [Persist(ShareCounts(1, "m1", f"w{conn}", 1, 0)), Send(conn, Accepted("j", 1, 3, False))]


def test_minutes_sum_to_their_hour_and_work_is_16_to_the_zeros() -> None:
    h = _history()
    for i in range(180):  # three hours, a share every minute from two workers
        h.observe(_ok(1) + _ok(2), T + 60.0 * i)
    h.observe([Send(1, Rejected("j", 9, Code.INVALID_HASH)), Send(2, Rejected("j", 8, Code.STALE))], T + 10)
    h.observe([Send(2, Rejected("gone", 8, Code.LOW_ZEROS))], T + 11)  # no worker: the pool's only
    minutes = list(h.buckets("pool", "", MINUTE, 0))
    hours = list(h.buckets("pool", "", HOUR, 0))
    assert len(minutes) == 180 and len(hours) == 3
    for hour in hours:
        inside = [m for m in minutes if hour.start <= m.start < hour.start + HOUR]
        assert hour.accepted == sum(m.accepted for m in inside) == 120
        assert hour.work == sum(m.work for m in inside) == 120 * 16**3
    assert hours[0].rejected == {"invalid-hash": 1, "low-zeros": 1} and hours[0].stale == 1
    assert next(h.buckets("miner", "m1", HOUR, 0)).rejected == {"invalid-hash": 1}
    now = views.pool(h, T + 180 * 60, "1h")
    assert now["hashrate"] == 2 * 10 * 16**3 / 600  # the last 10 minutes' work / 600 s
    assert (now["miners"], now["workers"]) == (1, 2)


def test_take_hands_each_changed_bucket_once_with_absolute_values() -> None:
    h = _history()
    h.observe(_ok(1), T)
    h.observe(_ok(1), T + 1)
    taken = [p.record for p in h.take()]
    assert all(isinstance(r, HistoryBucket) for r in taken)
    assert len(taken) == 6  # pool, miner, worker at two widths
    assert {r.accepted for r in taken if isinstance(r, HistoryBucket)} == {2}
    assert h.take() == []
    h.observe([Send(1, Rejected("j", 1, Code.UNAVAILABLE))], T + 2)  # not a verdict: not counted
    assert h.take() == []


def test_memory_is_pruned_past_retention_and_idle_series_go() -> None:
    h = _history()
    h.observe(_ok(1), T)
    h.observe(_ok(2), T + MINUTE_KEEP + 2 * MINUTE)
    assert [b.start for b in h.buckets("worker", "m1/w1", MINUTE, 0)] == []  # minute gone after 24 h
    assert len(list(h.buckets("worker", "m1/w1", HOUR, 0))) == 1  # its hour stays for 30 days
    h.observe(_ok(2), T + HOUR_KEEP + 2 * HOUR)
    assert ("worker", "m1/w1") not in h.series and h.workers_of["m1"] == {"w2"}


def test_a_late_answer_lands_in_its_own_bucket() -> None:
    h = _history()
    h.observe(_ok(1), T + 120)
    h.observe(_ok(1), T + 5)  # the clock stepped back
    assert [(b.start, b.accepted) for b in h.buckets("pool", "", MINUTE, 0)] == [(T, 1), (T + 120, 1)]


def test_a_blocks_plant_and_harvest_totals_sum_their_calls() -> None:
    """A reconciled part of a plant or harvest (pooler/core/reconcile.py), then the call that did
    the rest: the block's totals are the sum, never the last call's alone (#18)."""
    history = _history()
    records: list[Effect] = [
        Persist(PlantCalled(7, PlantReply(1, 0, 100))),
        Persist(PlantCalled(7, PlantReply(2, 0, 250))),
        Persist(HarvestCalled(7, None, "no answer")),
        Persist(HarvestCalled(7, HarvestReply(1, 0, 40))),
        Persist(HarvestCalled(7, HarvestReply(2, 0, 60))),
    ]
    history.observe(records, 1_700_000_000.0)
    block = history.blocks[7]
    assert (block.planted, block.staked, block.harvest_total) == (3, 350, 100)


def test_a_blocks_on_chain_figures_land_in_its_summary_and_its_api_answer() -> None:
    h = _history()
    chain = ChainBlock(7, 1, 40, 10**7, 2**60, 4, 9, 55, 2**64 + 3)
    h.observe([Persist(BlockSeen(7, bytes(32), T)), Persist(BlockOnChain(7, chain))], T + 1)
    assert h.blocks[7].chain == chain and h.blocks[7].timestamp == T
    assert [p.record for p in h.take()] == [h.blocks[7]]
    got = views.block(h, 7)
    assert got is not None and got["chain"] == {
        "minZeros": 4, "maxZeros": 9, "minGap": 1, "maxGap": 40, "minStake": "10000000",
        "maxStake": str(2**60), "stakedTotal": "55", "normalizedTotal": str(2**64 + 3),
    }  # fmt: skip
    assert views.blocks(h, 5, None)["blocks"][0]["chain"] == got["chain"]
    h.observe([Persist(BlockSeen(8, bytes(32), T + 60))], T + 61)
    assert views.block(h, 8)["chain"] is None  # type: ignore[index]  # not read yet


def _answers(row: dict[str, Any]) -> int:
    return int(row["accepted24h"] + row["stale24h"] + sum(row["rejected24h"].values()))


def test_the_miner_list_is_in_the_order_of_its_rows_and_pages_are_fresh() -> None:
    """/stats/miners: the order (kept 5 s) is by the same figures the rows show; the rows of a
    page are built at the request, from the aggregates of that moment."""
    miners = [f"m{i:02d}" for i in range(40)]
    h = History(lambda job, conn: (miners[conn % 40], f"rig{conn // 40 % (1 + conn % 3)}", 1 + conn % 3))
    for step in range(200):  # shares over 100 minutes, miners at different rates and difficulties
        conn = (step * 7) % 40 + 40 * (step % 3)
        effects: list[Effect] = [Send(conn, Accepted("j", step, 3, False))]
        if step % 5 == 0:
            effects.append(
                Send(conn + 1, Rejected("j", step, Code.LOW_ZEROS if step % 2 else Code.DUPLICATE))
            )
        if step % 7 == 0:
            effects.append(Send(conn + 2, Rejected("j", step, Code.STALE)))
        h.observe(effects, T + 30.0 * step)
    now = T + 30.0 * 200
    for sort, figure in (
        ("hashrate", lambda r: r["hashrate"]),
        ("accepted", lambda r: r["accepted24h"]),
        ("rejected", lambda r: sum(r["rejected24h"].values())),
        ("stale", lambda r: r["stale24h"]),
        ("stalePct", lambda r: r["stale24h"] / _answers(r) if _answers(r) else 0.0),
        ("invalidPct", lambda r: sum(r["rejected24h"].values()) / _answers(r) if _answers(r) else 0.0),
        ("workers", lambda r: r["workers"]),
        ("lastShare", lambda r: h.series["miner", r["minerId"]].last),
        ("minerId", lambda r: r["minerId"]),
    ):
        for order in ("desc", "asc"):
            h.view_cache.clear()
            rows = [views._miner_row(h, m, now) for m in h.workers_of]
            rows.sort(key=figure, reverse=order == "desc")
            pages = [views.miners(h, now, sort, order, 15, offset) for offset in (0, 15, 30)]
            assert [r for p in pages for r in p["miners"]] == rows, (sort, order)
            assert all(p["total"] == 40 for p in pages)
    # within the 5 s the order is kept, but a page's figures are those of now
    h.view_cache.clear()
    first = views.miners(h, now, "accepted", "desc", 1, 0)["miners"][0]
    h.observe([Send(0, Accepted("j", 1, 3, False))], now + 1)
    again = views.miners(h, now + 2, "accepted", "desc", 40, 0)["miners"]
    assert again[0]["minerId"] == first["minerId"]
    assert (
        next(r for r in again if r["minerId"] == "m00")["accepted24h"]
        == views._miner_row(h, "m00", now + 2)["accepted24h"]
    )


def test_the_miner_lists_sort_keys_follow_new_shares_and_the_moving_window() -> None:
    """The keys kept between rebuilds: a miner's is summed again when its series changed, all of
    them when the window moved on; the order always equals a sort of fresh rows."""
    h = History(lambda job, conn: (f"m{conn}", "rig", 2))
    for conn in range(6):
        for k in range(conn + 1):  # m5 the fastest at first
            h.observe([Send(conn, Accepted("j", k, 2, False))], T + 10.0 * k)
    now = T + 100.0

    def check(at: float) -> None:
        for sort, figure in (("hashrate", "hashrate"), ("accepted", "accepted24h")):
            got = views.miners(h, at, sort, "desc", 10, 0)["miners"]
            rows = sorted(
                (views._miner_row(h, m, at) for m in h.workers_of), key=lambda r: r[figure], reverse=True
            )
            assert [r["minerId"] for r in got] == [r["minerId"] for r in rows], (sort, at)

    check(now)
    for k in range(9):  # m0 overtakes everyone, seen at the next rebuild (5 s later)
        h.observe([Send(0, Accepted("j", 100 + k, 2, False))], now + 1)
    now += 6
    check(now)
    assert views.miners(h, now, "hashrate", "desc", 1, 0)["miners"][0]["minerId"] == "m0"
    # 11 minutes on: m0's burst left the hashrate window (all keys summed again), m3's new share counts
    now += 660
    h.observe([Send(3, Accepted("j", 500, 2, False))], now)
    check(now)
    assert views.miners(h, now, "hashrate", "desc", 1, 0)["miners"][0]["minerId"] == "m3"
    assert views.miners(h, now, "accepted", "desc", 1, 0)["miners"][0]["minerId"] == "m0"


def test_online_counts_keep_the_most_sampled_per_minute_and_hour_and_are_taken() -> None:
    online = [(1, 2)]
    h = History(lambda job, conn: ("m1", f"w{conn}", 3), online=lambda: online[-1])
    h.observe([], T)  # the first batch samples (1, 2)
    online.append((3, 5))
    h.observe([], T + 5)  # within SAMPLE_S of the last sample: not sampled
    h.observe([], T + 12)  # sampled: (3, 5)
    online.append((2, 4))
    h.observe([], T + 30)  # fewer: the minute keeps its most
    h.observe([], T + 70)  # the next minute: (2, 4)
    minutes = list(h.buckets("pool", "", MINUTE, 0))
    assert [(b.start, b.miners, b.workers) for b in minutes] == [(T, 3, 5), (T + 60, 2, 4)]
    (hour,) = h.buckets("pool", "", HOUR, 0)
    assert (hour.miners, hour.workers) == (3, 5)  # the most of its minutes
    taken = {(r.width, r.start): r for r in (p.record for p in h.take()) if isinstance(r, HistoryBucket)}
    assert (taken[MINUTE, T].miners, taken[MINUTE, T].workers) == (3, 5)
    assert (taken[HOUR, T].miners, taken[HOUR, T].workers) == (3, 5)
    rows = views.pool(h, T + 80, "1h")["history"]
    assert [(r["minersOnline"], r["workersOnline"]) for r in rows] == [(3, 5), (2, 4)]
    # a reload keeps them; a bucket stored before they were kept reads as 0
    again = History(lambda job, conn: None)
    again.load([*taken.values(), HistoryBucket("pool", "", MINUTE, T - 60, 1, 0, (), 16)], T + 80)
    got = [(b.start, b.miners, b.workers) for b in again.buckets("pool", "", MINUTE, 0)]
    assert got == [(T - 60, 0, 0), (T, 3, 5), (T + 60, 2, 4)]


def test_block_summaries_in_memory_are_capped_and_leave_only_once_taken() -> None:
    """#18 item 11: blocks_memory bounds the summaries (and rewards) kept; one not yet taken for
    a commit stays until it is (the store must have it before memory lets it go)."""
    h = History(lambda job, conn: None, blocks_memory=3)
    for n in range(1, 7):
        h.observe(
            [
                Persist(BlockSeen(n, bytes(32), 1000 + n)),
                Persist(FarmerStatusChanged("GA", n, "harvested", reward=n)),
            ],
            1000.0 + n,
        )
    assert list(h.blocks) == list(range(1, 7))  # none written yet: all kept
    written = [p.record.block for p in h.take() if isinstance(p.record, BlockHistory)]
    assert written == list(range(1, 7))
    assert list(h.blocks) == [4, 5, 6] and h.rewards == {"GA": {4: 4, 5: 5, 6: 6}}
    h.observe([Persist(BlockSeen(7, bytes(32), 1007))], 1007.0)
    h.take()
    assert list(h.blocks) == [5, 6, 7]
    # without a store (nothing to take) the cap applies as blocks open; the default is BLOCKS_KEEP
    memory = History(lambda job, conn: None, durable=False, blocks_memory=2)
    for n in range(1, 5):
        memory.observe([Persist(BlockSeen(n, bytes(32), 1000 + n))], 1000.0 + n)
    assert list(memory.blocks) == [3, 4]
    assert History(lambda job, conn: None).blocks_memory == BLOCKS_KEEP


def test_a_redis_bucket_without_online_counts_reads_zero_and_instances_sum() -> None:
    old = {"scope": "pool", "key": "", "width": 60, "start": T, "accepted": 2, "stale": 0, "work": "32"}
    assert bucket_from(old) == HistoryBucket("pool", "", MINUTE, T, 2, 0, (), 32, 0, 0)
    a = HistoryBucket("pool", "", MINUTE, T, 1, 0, (("low-zeros", 1),), 16, 2, 3)
    b = HistoryBucket("pool", "", MINUTE, T, 2, 1, (("low-zeros", 2),), 32, 1, 4)
    assert bucket_from(bucket_data(a)) == a
    assert bucket_sum(a, b) == HistoryBucket("pool", "", MINUTE, T, 3, 1, (("low-zeros", 3),), 48, 3, 7)
