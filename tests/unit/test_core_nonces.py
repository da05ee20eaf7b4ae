"""Nonce ranges: disjoint per farmer across every worker, sized by hashrate; config checks."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooler.core.config import CoreConfig
from pooler.core.events import MinerJoined, MoreRequested, RestWorkRequested, WorkerConnected
from pooler.core.nonces import NonceCounter, range_size
from pooler.errors import ConfigError
from protocol.messages import Job
from protocol.work import MAX_NONCE
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
    cfg = CoreConfig()
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
        dataclasses.replace(CoreConfig(), **change)  # type: ignore[arg-type]
