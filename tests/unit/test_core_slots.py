"""block-broadcast: standing slots, one ``block`` frame per new block, and no nonce handed out twice."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooler.core.config import CoreConfig
from pooler.core.coordinator import Coordinator
from pooler.core.effects import Broadcast, Effect, Persist, Send
from pooler.core.events import (
    Event,
    MinerJoined,
    MoreRequested,
    ShareSubmitted,
    WorkerConnected,
    WorkerDisconnected,
)
from pooler.core.nonces import FarmerSlots, NonceCounter
from pooler.core.records import NoncesIssued
from pooler.errors import PoolerError
from protocol.errors import Code
from protocol.messages import (
    BLOCK_BROADCAST,
    Accepted,
    Block,
    Job,
    Rejected,
    Share,
    Slot,
    Welcome,
    slot_job,
)
from protocol.work import MAX_NONCE
from tests.unit.core_support import CONFIG, T0, Rig, address, find_nonce, sends

ASK = (BLOCK_BROADCAST,)


class SlotRig(Rig):
    """A Rig whose coordinator grants block-broadcast, and a client model of each socket: its
    last slot, and the job each block frame means for it."""

    def __init__(self, config: CoreConfig = CONFIG, now: float = T0 - 1, *, grant: bool = True) -> None:
        super().__init__(config, now)
        self.core = Coordinator(config, block_broadcast=grant)
        self.slots: dict[int, Slot] = {}  # conn -> the last slot frame it got
        self.zeros: dict[int, int] = {}  # conn -> the last shareZeros any frame told it

    def do(self, event: Event, at: float | None = None) -> list[Effect]:
        effects = super().do(event, at)
        for e in effects:
            if isinstance(e, Send) and isinstance(e.msg, Slot):
                self.slots[e.conn] = e.msg
                self.zeros[e.conn] = e.msg.share_zeros
            elif isinstance(e, Send) and isinstance(e.msg, Job):
                self.zeros[e.conn] = e.msg.share_zeros
            elif isinstance(e, Broadcast):
                assert isinstance(e.msg, Block)
                for conn in e.conns:
                    self.jobs[conn] = slot_job(self.slots[conn], e.msg, self.zeros[conn])
        return effects

    def hello(self, conn: int, miner_id: str, worker: str = "default", ask: bool = True) -> list[Effect]:
        return self.do(WorkerConnected(conn, miner_id, worker, agent="test", features=ASK if ask else ()))


def broadcasts(effects: Sequence[Effect]) -> list[Broadcast]:
    return [e for e in effects if isinstance(e, Broadcast)]


def test_welcome_grants_the_feature_and_a_slot_follows_it() -> None:
    rig = SlotRig()
    rig.join("a", 0)
    effects = rig.hello(1, "a")
    [welcome] = sends(effects, Welcome)
    assert welcome.features == ASK
    [slot] = sends(effects, Slot)
    assert slot.farmer == address(0) and slot.nonce_start == 0 and slot.nonce_end > 0
    assert slot.share_zeros == CONFIG.share_zeros_initial
    assert sends(effects, Job) == []  # no block open yet
    # a v1 client that did not ask gets neither
    effects = rig.hello(2, "a", ask=False)
    assert sends(effects, Welcome)[0].features == () and sends(effects, Slot) == []


def test_a_server_without_the_grant_lists_no_feature() -> None:
    rig = SlotRig(grant=False)
    rig.join("a", 0)
    effects = rig.hello(1, "a")
    assert sends(effects, Welcome)[0].features == () and sends(effects, Slot) == []
    [job] = sends(rig.block(1), Job, conn=1)  # and it is served as a v1 worker
    assert job.clean


def test_new_block_is_one_frame_for_every_slot_and_a_job_for_v1() -> None:
    rig = SlotRig()
    rig.join("a", 0)
    rig.join("b", 1)
    for conn in (1, 2, 3):
        rig.hello(conn, "a", f"w{conn}")
    rig.hello(4, "b")
    rig.hello(5, "a", "old", ask=False)
    effects = rig.block(1)
    [frame] = broadcasts(effects)
    assert sorted(frame.conns) == [1, 2, 3, 4]
    assert frame.msg == Block(1, rig.jobs[1].entropy, (T0 + 15) * 1000, (T0 + 20) * 1000)
    assert [e.conn for e in effects if isinstance(e, Send) and isinstance(e.msg, Job)] == [5]
    # the counters open above every slot, and that is durable before the frame goes out
    tops = {
        e.record.farmer_id: e.record.next
        for e in effects
        if isinstance(e, Persist) and isinstance(e.record, NoncesIssued)
    }
    assert tops["farmer-0"] >= max(rig.slots[c].nonce_end for c in (1, 2, 3))
    assert tops["farmer-1"] >= rig.slots[4].nonce_end
    first_persist = next(i for i, e in enumerate(effects) if isinstance(e, Persist))
    assert effects.index(frame) > first_persist
    v1 = rig.jobs[5]
    assert v1.nonce_start >= max(rig.slots[c].nonce_end for c in (1, 2, 3))


def test_shares_on_a_slot_job_are_credited_and_a_replay_is_duplicate() -> None:
    rig = SlotRig()
    rig.join("a", 0)
    rig.hello(1, "a")
    rig.block(1)
    job = rig.jobs[1]
    assert job.job == f"{rig.slots[1].slot}.1" and job.clean
    nonce, digest, _ = find_nonce(job, 1)
    [ok] = sends(rig.do(ShareSubmitted(1, Share(job.job, nonce, digest)), at=T0 + 1), Accepted)
    assert ok.job == job.job
    [again] = sends(rig.do(ShareSubmitted(1, Share(job.job, nonce)), at=T0 + 1), Rejected)
    assert again.code == Code.DUPLICATE
    # the slot's job of the next block is another job: the old one is stale
    rig.block(2)
    [stale] = sends(rig.do(ShareSubmitted(1, Share(job.job, nonce)), at=T0 + 21), Rejected)
    assert stale.code == Code.STALE
    assert rig.jobs[1].job == f"{rig.slots[1].slot}.2"


def test_more_is_a_job_above_the_slots_and_mid_block_hello_gets_a_job() -> None:
    rig = SlotRig()
    rig.join("a", 0)
    rig.hello(1, "a")
    rig.block(1)
    first = rig.slots[1]
    [more] = sends(rig.do(MoreRequested(1, rig.jobs[1].job), at=T0 + 1), Job)
    assert not more.clean and more.nonce_start >= first.nonce_end
    effects = rig.hello(2, "a", "late")
    [slot] = sends(effects, Slot)
    [job] = sends(effects, Job)
    assert job.clean and job.block == 1
    # its slot is for the next block: this block's job comes from the counter, after `more`'s
    assert job.nonce_start >= more.nonce_end
    [frame] = broadcasts(rig.block(2))
    assert 2 in frame.conns and rig.jobs[2].nonce_start == slot.nonce_start


def test_a_worker_outgrowing_its_slot_gets_a_bigger_one_for_the_next_block() -> None:
    rig = SlotRig()
    rig.join("a", 0)
    rig.hello(1, "a")
    rig.block(1)
    first = rig.slots[1]
    effects = rig.do(MoreRequested(1, rig.jobs[1].job), at=T0 + 0.01)  # 2^20 nonces in 10 ms
    [bigger] = sends(effects, Slot)
    assert bigger.slot != first.slot and bigger.nonce_end - bigger.nonce_start >= 2 * (
        first.nonce_end - first.nonce_start
    )
    effects = rig.block(2)
    assert rig.jobs[1].job == f"{bigger.slot}.2"


def test_a_freed_slot_is_reused_only_from_the_next_block() -> None:
    rig = SlotRig()
    rig.join("a", 0)
    rig.hello(1, "a")
    rig.block(1)
    old = rig.jobs[1]
    rig.do(WorkerDisconnected(1), at=T0 + 1)
    effects = rig.hello(2, "a", "new")
    [slot] = sends(effects, Slot)
    assert (slot.nonce_start, slot.nonce_end) == (old.nonce_start, old.nonce_end)  # the range, reused
    [job] = sends(effects, Job)  # ... but not in block 1, where the old job may still be mined
    assert job.nonce_start >= old.nonce_end
    rig.block(2)
    assert rig.jobs[2].nonce_start == old.nonce_start and rig.jobs[2].block == 2


def test_rebound_miner_gets_a_slot_of_its_new_farmer() -> None:
    rig = SlotRig()
    rig.join("a", 0)
    rig.hello(1, "a")
    effects = rig.do(MinerJoined("a", "farmer-1", address(1), name="a"))
    [slot] = sends(effects, Slot)
    assert slot.farmer == address(1)
    rig.block(1)
    assert rig.jobs[1].farmer == address(1)


def test_restart_floor_and_slots_both_bound_the_counter() -> None:
    old = SlotRig()
    old.join("a", 0)
    old.hello(1, "a")
    old.block(1)
    snap = old.core.snapshot()
    assert snap.nonce_next["farmer-0"] >= old.slots[1].nonce_end  # the slot's block range is covered
    rig = SlotRig(now=T0 + 5)
    rig.core.restore(snap, T0 + 5)
    rig.join("a", 0)
    effects = rig.hello(1, "a")
    [job] = sends(effects, Job)
    assert job.nonce_start >= old.slots[1].nonce_end  # never the old process's slot range again
    [slot] = sends(effects, Slot)
    rig.block(2)
    assert rig.jobs[1].job == f"{slot.slot}.2"


# ------------------------------------------------------------ the property

MINERS = {"m0": 0, "m1": 0, "m2": 1}

ops = st.lists(
    st.one_of(
        st.tuples(st.just("hello"), st.sampled_from(sorted(MINERS)), st.booleans()),
        st.tuples(st.just("more"), st.integers(0, 40), st.booleans()),
        st.tuples(st.just("bye"), st.integers(0, 40), st.booleans()),
        st.tuples(st.just("wait"), st.integers(1, 3000), st.booleans()),
        st.tuples(st.just("block"), st.integers(0, 0), st.booleans()),
        st.tuples(st.just("rebind"), st.sampled_from(sorted(MINERS)), st.integers(0, 2)),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=80, deadline=None)
@given(ops)
def test_no_two_ranges_of_one_block_and_farmer_overlap(program: list[tuple[str, object, object]]) -> None:
    """Jobs (``more``, new workers, v1 blocks) and slot jobs (block frames) of one (block,
    farmer): pairwise disjoint, whatever workers come, go, grow and change farmer."""
    rig = SlotRig()
    for miner, farmer in MINERS.items():
        rig.do(MinerJoined(miner, f"farmer-{farmer}", address(farmer)))
    index = 1
    rig.block(index)
    now = float(T0)
    ranges: dict[tuple[int, str], list[tuple[int, int, str]]] = {}
    live: list[int] = []
    seq = itertools.count(1)
    for op, arg, flag in program:
        effects: list[Effect] = []
        if op == "hello":
            conn = next(seq)
            live.append(conn)
            effects = rig.do(
                WorkerConnected(conn, str(arg), f"w{conn}", features=ASK if flag else ()), at=now
            )
        elif op in ("more", "bye") and live:
            assert isinstance(arg, int)
            conn = live[arg % len(live)]
            if op == "more":
                effects = rig.do(
                    MoreRequested(conn, rig.jobs[conn].job if conn in rig.jobs else None), at=now
                )
            else:
                live.remove(conn)
                effects = rig.do(WorkerDisconnected(conn), at=now)
        elif op == "wait":
            assert isinstance(arg, int)
            now += arg / 1000
        elif op == "block":
            index += 1
            now = max(now, T0 + (index - 1) * CONFIG.block_interval)
            effects = rig.block(index, at=now)
        elif op == "rebind":
            assert isinstance(flag, int)
            effects = rig.do(MinerJoined(str(arg), f"farmer-{flag}", address(flag)), at=now)
        for e in effects:
            if isinstance(e, Send) and isinstance(e.msg, Job):
                job = e.msg
                ranges.setdefault((job.block, job.farmer), []).append(
                    (job.nonce_start, job.nonce_end, job.job)
                )
            elif isinstance(e, Broadcast):
                for conn in e.conns:
                    job = rig.jobs[conn]
                    ranges.setdefault((job.block, job.farmer), []).append(
                        (job.nonce_start, job.nonce_end, job.job)
                    )
    for key, got in ranges.items():
        got.sort()
        for (s1, e1, j1), (s2, _, j2) in itertools.pairwise(got):
            assert e1 <= s2, f"{key}: {j1} [{s1}, {e1}) overlaps {j2} from {s2}"
        assert all(0 <= s < e <= MAX_NONCE for s, e, _ in got)
        assert len({j for _, _, j in got}) == len(got)  # job ids unique


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 1 << 20)), max_size=60))
def test_farmer_slots_stay_disjoint_below_top(program: list[tuple[bool, int]]) -> None:
    """Taking and giving back slots of any sizes: the held ones never overlap, all below top."""
    slots = FarmerSlots()
    held: list[tuple[int, int]] = []
    for give, size in program:
        if give and held:
            slots.give_back(*held.pop(size % len(held)))
            continue
        got = slots.take(size)
        assert got is not None and got[1] - got[0] == size
        held.append(got)
    ordered = sorted(held)
    for (_, e1), (s2, _) in itertools.pairwise(ordered):
        assert e1 <= s2
    assert all(e <= slots.top for _, e in held) and slots.held == len(held)


def test_farmer_slots_refuse_past_the_top_of_u64() -> None:
    slots = FarmerSlots()
    slots.top = MAX_NONCE - 5
    assert slots.take(10) is None
    assert slots.take(5) == (MAX_NONCE - 5, MAX_NONCE)


def test_the_feature_cannot_be_granted_over_a_shared_nonce_space() -> None:
    class Shared:
        def counter(self, block: int, farmer_id: str, floor: int) -> NonceCounter:
            return NonceCounter(0)

    with pytest.raises(PoolerError, match="single instance"):
        Coordinator(CONFIG, nonces=Shared(), block_broadcast=True)
    Coordinator(CONFIG, nonces=Shared())  # without it, as a group's coordinators are built
