"""Nonce ranges: disjoint per farmer across every worker, sized by hashrate; config checks."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooler.core.coordinator import Coordinator
from pooler.core.effects import Send
from pooler.core.events import (
    MinerJoined,
    MoreRequested,
    NonceRefillDone,
    RestWorkRequested,
    WorkerConnected,
    WorkerDisconnected,
)
from pooler.core.nonces import NonceCounter, range_size
from pooler.errors import ConfigError
from protocol.errors import Code
from protocol.messages import Error, Job
from protocol.work import MAX_NONCE
from tests.support.config import core
from tests.unit.core_support import CONFIG, T0, Rig, address, sends

# miners m0, m1, m2 mine for farmer 0; m3 for farmer 1
MINERS = {"m0": 0, "m1": 0, "m2": 0, "m3": 1}

ops = st.lists(
    st.one_of(
        st.tuples(st.just("connect"), st.sampled_from(sorted(MINERS)), st.integers(0, 3)),
        st.tuples(st.just("more"), st.integers(0, 40), st.integers(0, 3)),
        st.tuples(st.just("rest"), st.sampled_from(sorted(MINERS)), st.integers(0, 3)),
        st.tuples(st.just("wait"), st.integers(1, 3000), st.integers(0, 0)),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_ranges_of_one_farmer_never_overlap(program: list[tuple[str, object, int]]) -> None:
    rig = Rig()
    for miner, farmer in MINERS.items():
        rig.do(MinerJoined(miner, f"farmer-{farmer}", address(farmer)))
    rig.block(1)
    jobs: list[Job] = []
    conns: list[int] = []
    now = float(T0)
    for op, arg, n in program:
        effects = []
        if op == "connect":
            conn = len(conns) + 1
            conns.append(conn)
            effects = rig.do(WorkerConnected(conn, str(arg), f"w{n}"), at=now)
        elif op == "more" and conns:
            assert isinstance(arg, int)
            effects = rig.do(MoreRequested(conns[arg % len(conns)], None), at=now)
        elif op == "rest":
            effects = rig.do(RestWorkRequested(1000 + len(jobs), str(arg), f"r{n}"), at=now)
        elif op == "wait":
            assert isinstance(arg, int)
            now += arg / 1000  # ms: the measured hashrates (and so the sizes) vary
        jobs += sends(effects, Job)
    for farmer in {a for a in (j.farmer for j in jobs)}:
        ranges = sorted((j.nonce_start, j.nonce_end) for j in jobs if j.farmer == farmer)
        for (s1, e1), (s2, _) in itertools.pairwise(ranges):
            assert e1 <= s2, f"overlap: [{s1}, {e1}) and [{s2}, ...)"
        assert all(0 <= s < e <= MAX_NONCE for s, e in ranges)
    assert len({j.job for j in jobs}) == len(jobs)  # job ids are unique


def test_counter_stops_below_the_top_of_u64() -> None:
    counter = NonceCounter(MAX_NONCE - 10)
    assert counter.take(100) == (MAX_NONCE - 10, MAX_NONCE)
    assert counter.take(1) is None
    assert NonceCounter().take(0) == (0, 1)  # never an empty range


def test_range_size_follows_the_hashrate() -> None:
    cfg = core()  # the production ranges
    gpu = range_size(2e9, 280, cfg)
    pi = range_size(1e6, 280, cfg)
    assert gpu == int(2e9 * 280) and pi == int(1e6 * 280)
    assert range_size(0.0, 280, cfg) == cfg.range_default  # unknown
    assert range_size(10.0, 280, cfg) == cfg.range_min
    assert range_size(1e12, 280, cfg) == cfg.range_max
    # near the end of a block a range still lasts range_seconds
    assert range_size(1e6, 1, cfg) == int(1e6 * cfg.range_seconds)


def test_job_sizes_track_a_fast_worker() -> None:
    rig = Rig()
    rig.join("a", 0)
    rig.connect(1, "a")
    rig.block(1)
    first = rig.jobs[1]
    # the whole default range done in 0.01 s: ~1e8 H/s, so the next range covers the block
    [job] = sends(rig.do(MoreRequested(1, first.job), at=T0 + 0.01), Job)
    expected = min(int((first.nonce_end - first.nonce_start) / 0.01 * 19.99), CONFIG.range_max)
    assert abs((job.nonce_end - job.nonce_start) - expected) <= 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pooler_id": ""}, "pooler_id is empty"),
        ({"block_interval": 0}, "block_interval is 0"),
        ({"safety_margin": 400}, "safety_margin 400 must be smaller"),
        ({"share_zeros_min": 6, "share_zeros_initial": 5}, "share zeros must satisfy"),
        ({"range_min": 10, "range_default": 5}, "nonce ranges must satisfy"),
        ({"vardiff_factor": 1}, "vardiff_factor is 1"),
        ({"summary_interval": -1}, "summary_interval is -1"),
    ],
)
def test_invalid_config_is_refused_with_a_clear_message(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(core(), **change)  # type: ignore[arg-type]


class _Chunked(NonceCounter):
    """A counter with room for ``ranges`` ranges at a time, refilled by the test (as a group
    instance's shared counter is, by Redis): what the core sees of ``SharedCounter``."""

    def __init__(self, room: int) -> None:
        super().__init__(0)
        self.end = room
        self.wanted = False
        self.can_refill = True  # False: Redis down, a refill cannot even start

    @property
    def refilling(self) -> bool:
        return self.wanted

    def take(self, size: int) -> tuple[int, int] | None:
        if self.next >= self.end:
            self.wanted = self.can_refill
            return None
        start, self.next = self.next, min(self.next + size, self.end)
        return start, self.next

    def grant(self, room: int) -> None:
        self.end += room
        self.wanted = False


class _OneChunkedSpace:
    """A nonce space handing every (block, farmer) the test's counter (the coordinator's port)."""

    def __init__(self, counter: _Chunked) -> None:
        self._counter = counter

    def counter(self, block: int, farmer_id: str, floor: int) -> NonceCounter:
        return self._counter


def _chunked_rig(room: int, miners: tuple[str, ...] = ("m0",)) -> tuple[Rig, _Chunked]:
    """Block 1 open, ``miners`` joined for farmer 0, whose counter has ``room`` nonces."""
    counter = _Chunked(room)
    rig = Rig()
    rig.core = Coordinator(CONFIG, nonces=_OneChunkedSpace(counter))
    for m in miners:
        rig.join(m, 0)
    rig.block(1)
    return rig, counter


def test_sockets_refused_a_range_while_the_counter_refills_are_served_when_it_lands() -> None:
    rig, counter = _chunked_rig(2 * CONFIG.range_default, ("m0", "m1", "m2"))
    got = [sends(rig.connect(conn, f"m{conn}"), Job, conn=conn) for conn in (0, 1, 2)]
    assert [len(g) for g in got] == [1, 1, 0]  # the third waits: no job, and no error either
    assert not [e for e in rig.connect(3, "m0") if isinstance(e, Send) and isinstance(e.msg, Error)]
    assert sends(rig.do(RestWorkRequested(100, "m1", "rest")), Error)[0].code is Code.OUT_OF_RANGE
    rig.do(WorkerDisconnected(3))  # gone before the grant: nobody to serve
    counter.grant(CONFIG.range_default)
    effects = rig.do(NonceRefillDone(1, "farmer-0"))
    [job] = sends(effects, Job, conn=2)
    assert job.clean and job.nonce_start == 2 * CONFIG.range_default
    assert sends(effects, Job, conn=3) == []
    assert rig.do(NonceRefillDone(1, "farmer-0")) == []  # nobody waits any more
    assert rig.do(NonceRefillDone(7, "farmer-0")) == []  # another block: ignored


def test_without_refilling_a_used_up_counter_is_an_error_at_once() -> None:
    rig, counter = _chunked_rig(CONFIG.range_default)
    assert sends(rig.connect(0, "m0"), Job, conn=0)
    counter.can_refill = False  # used up, and nothing can be on its way (Redis down)
    [err] = sends(rig.connect(1, "m0"), Error, conn=1)
    assert err.code is Code.OUT_OF_RANGE and "no nonce range for this farmer now" in err.message


def test_a_failed_refill_tells_the_waiting_sockets_there_is_no_range() -> None:
    rig, counter = _chunked_rig(CONFIG.range_default)
    assert sends(rig.connect(0, "m0"), Job, conn=0)
    assert rig.connect(1, "m0") and counter.wanted  # waits for the refill
    counter.wanted, counter.can_refill = False, False  # the refill failed; no retry right away
    [err] = sends(rig.do(NonceRefillDone(1, "farmer-0")), Error, conn=1)
    assert err.code is Code.OUT_OF_RANGE
