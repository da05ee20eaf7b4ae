"""The Pooler's shown hashrate against simulated workers of known rate, through Coordinator.handle.

Each worker hashes at a true rate R; its shares at difficulty z arrive as a Poisson process
of rate R / 16**z (seeded, deterministic clock), each a real nonce with at least z zeros, so
the coordinator's own checks, vardiff and the estimator see what a real worker produces.
Once the estimator is confident (see pooler.core.hashrate: ~225 shares' worth or exact
ranges), the figure in the view must be within +-20% of R.
"""

from __future__ import annotations

import dataclasses
import random

from pooler.core.events import (
    HashrateReported,
    MalformedSubmitted,
    MoreRequested,
    RestShareSubmitted,
    RestWorkRequested,
    StatsRequested,
    WorkerConnected,
    WorkerDisconnected,
)
from protocol.errors import Code
from protocol.messages import Accepted, Difficulty, Error, Job, Rejected, Share, Stats
from protocol.work import WorkTemplate, address_bytes
from tests.unit.core_support import CONFIG, T0, Rig, find_nonce, sends

# one long block (20 min), so a whole 10-minute window fits in it
LONG = dataclasses.replace(CONFIG, block_interval=1200, work_delay=1100, vardiff_window=30.0)


def _rig() -> Rig:
    rig = Rig(LONG)
    rig.join("a", 0)
    rig.block(1)
    return rig


def _worker_rate(rig: Rig, name: str = "default") -> tuple[float, bool]:
    view = rig.core.view(rig.now)
    rows = [w for w in view.worker_list if w.worker == name]
    return rows[0].hashrate, rows[0].confident


def _ws_run(rig: Rig, conn: int, rate: float, until: float, rnd: random.Random) -> None:
    """A WebSocket worker hashing at ``rate`` until ``until``, following Difficulty messages."""
    zeros = rig.jobs[conn].share_zeros  # its latest job's, or the latest Difficulty's
    t = rig.now
    while True:
        t += rnd.expovariate(rate / 16**zeros)
        if t >= until:
            break
        effects = rig.good_share(conn, zeros, at=t)
        assert sends(effects, Accepted, conn=conn)
        for d in sends(effects, Difficulty, conn=conn):
            zeros = d.share_zeros
            rig.jobs[conn] = dataclasses.replace(rig.jobs[conn], share_zeros=zeros)


def _close(shown: float, true: float) -> float:
    return abs(shown - true) / true


def test_steady_websocket_worker_within_20_percent() -> None:
    rnd = random.Random(1)
    rig = _rig()
    rig.connect(1, "a")
    worst = 0.0
    for stop in range(60, 660, 60):
        _ws_run(rig, 1, 400.0, T0 + stop, rnd)
        shown, confident = _worker_rate(rig)
        if confident:
            worst = max(worst, _close(shown, 400.0))
    assert confident and worst <= 0.20, worst
    assert abs(rig.core.view(rig.now).hashrate - shown) < 1e-9  # pool = sum of its workers


def test_burst_in_one_instant_is_not_an_enormous_rate() -> None:
    rig = _rig()
    rig.connect(1, "a")
    # 300 shares at 1 zero all handled at one instant, 1 s after connecting: ~4800 hashes
    for _ in range(300):
        rig.good_share(1, 1, 1, at=T0 + 1)
    shown = rig.core.view(rig.now).hashrate
    assert shown <= 300 * 16 / rig.core.config.vardiff_target_interval  # never ~work / 0
    assert shown < 1e5


def test_rest_worker_submitting_in_bursts_after_each_range() -> None:
    rnd = random.Random(2)
    rig = _rig()
    rate = 600.0
    t = float(T0)
    reply = 100
    worst = 0.0
    confident = False
    while t < T0 + 600:
        reply += 1
        [job] = sends(rig.do(RestWorkRequested(reply, "a", "rig"), at=t), Job)
        z = job.share_zeros
        # it hashes 40 s at its job's difficulty, then submits everything at once
        n = _poisson(rnd, rate * 40 / 16**z)
        t += 40
        nonce = job.nonce_start
        for _ in range(n):
            nonce, digest, _ = find_nonce(job, z, start=nonce)
            reply += 1
            rig.do(RestShareSubmitted(reply, "a", Share(job.job, nonce, digest), None), at=t)
            nonce += 1
        shown, confident = _worker_rate(rig, "rig")
        if confident:
            worst = max(worst, _close(shown, rate))
        t += 0.5  # fetches the next job
    assert confident and worst <= 0.20, worst


def test_fast_worker_exhausting_ranges_is_known_from_their_sizes() -> None:
    # small ranges so the test can hash every nonce (its shares are real: all >= shareZeros)
    rig = Rig(dataclasses.replace(LONG, range_min=4096, range_default=4096, range_max=4096))
    rig.join("a", 0)
    rig.block(1)
    rig.connect(1, "a")
    rate = 16384.0  # each range exhausted in 0.25 s; vardiff raises it mid-window
    zeros = rig.jobs[1].share_zeros
    worst = 0.0
    confident = False
    t = float(T0)
    for _ in range(240):
        job = rig.jobs[1]
        template = WorkTemplate(job.block, job.entropy, address_bytes(job.farmer))
        size = job.nonce_end - job.nonce_start
        for i in range(size):
            digest, z = template.verify(job.nonce_start + i)
            if z >= zeros:  # found at its place in the range's time
                effects = rig.share(1, job, job.nonce_start + i, digest, at=t + i / rate)
                for d in sends(effects, Difficulty, conn=1):
                    zeros = d.share_zeros
        t += size / rate
        rig.do(MoreRequested(1, job.job), at=t)
        shown, confident = _worker_rate(rig)
        if confident:
            worst = max(worst, _close(shown, rate))
    assert confident and worst <= 0.20, worst


def test_reconnect_continues_one_history() -> None:
    rnd = random.Random(3)
    rig = _rig()
    rig.connect(1, "a")
    _ws_run(rig, 1, 400.0, T0 + 300, rnd)
    rig.do(WorkerDisconnected(1), at=T0 + 300)
    rig.connect(2, "a")  # the same worker name on a new socket, at once
    _ws_run(rig, 2, 400.0, T0 + 600, rnd)
    shown, confident = _worker_rate(rig)
    assert confident and _close(shown, 400.0) <= 0.20, shown


def _poisson(rnd: random.Random, mean: float) -> int:
    n, t = 0, rnd.expovariate(1.0)
    while t < mean:
        n += 1
        t += rnd.expovariate(1.0)
    return n


def test_join_mid_window_and_pool_is_the_sum_of_its_workers() -> None:
    rnd = random.Random(4)
    rig = _rig()
    rig.join("b", 1)
    rig.connect(1, "a", "one")
    _ws_run(rig, 1, 400.0, T0 + 300, rnd)
    rig.connect(2, "b", "two")  # joins half-way through the first one's window
    rates = {1: 400.0, 2: 900.0}
    zeros = {c: rig.jobs[c].share_zeros for c in rates}
    due = {c: rig.now + rnd.expovariate(r / 16 ** zeros[c]) for c, r in rates.items()}
    while min(due.values()) < T0 + 660:  # the two workers' Poisson streams, merged in time
        conn = min(due, key=lambda c: due[c])
        effects = rig.good_share(conn, zeros[conn], at=due[conn])
        assert sends(effects, Accepted, conn=conn)
        for d in sends(effects, Difficulty, conn=conn):
            zeros[conn] = d.share_zeros
        due[conn] += rnd.expovariate(rates[conn] / 16 ** zeros[conn])
    view = rig.core.view(rig.now)
    for name, rate in (("one", 400.0), ("two", 900.0)):
        row = next(w for w in view.worker_list if w.worker == name)
        assert row.confident and _close(row.hashrate, rate) <= 0.20, (name, row.hashrate)
    assert abs(view.hashrate - sum(m.hashrate for m in view.miner_list)) < 1e-6
    assert _close(view.hashrate, 1300.0) <= 0.20


def test_reported_hashrate_is_shown_beside_and_never_used() -> None:
    rig = _rig()
    rig.do(WorkerConnected(1, "a", "rig", "test", hashrate=1000.0))
    [stats] = sends(rig.do(StatsRequested(1, "a")), Stats)
    assert stats.reported_hashrate == 1000.0 and stats.hashrate == 0.0  # a claim is no evidence
    rig.do(HashrateReported(1, 2500.0), at=T0 + 30)
    view = rig.core.view(rig.now)
    assert view.worker_list[0].reported_hashrate == 2500.0 and view.miner_list[0].reported_hashrate == 2500.0
    assert view.hashrate == 0.0
    assert sends(rig.do(HashrateReported(99, 1.0)), Error)[0].code is Code.NO_HELLO


def test_malformed_submits_count_as_rejected() -> None:
    rig = _rig()
    rig.do(MalformedSubmitted("a"))  # a socket's share frame that did not decode
    [rejected] = sends(
        rig.do(MalformedSubmitted("a", 7, Code.MALFORMED, "bad nonce", "j1")), Rejected, conn=7
    )
    assert rejected.code is Code.MALFORMED and rejected.job == "j1"
    [miner] = rig.core.view(rig.now).miner_list
    assert miner.rejected == 2 and miner.rejected_by == {"malformed": 2}
