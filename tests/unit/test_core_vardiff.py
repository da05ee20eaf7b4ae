"""Vardiff: whole-nibble retargets toward the target share rate, the grace window, hashrate."""

from __future__ import annotations

import dataclasses

from pooler.core.events import (
    MoreRequested,
    RestShareSubmitted,
    RestWorkRequested,
    TimerFired,
    WorkerDisconnected,
)
from pooler.core.vardiff import VarDiff
from protocol.errors import Code
from protocol.messages import Accepted, Difficulty, Job, Rejected, Share
from tests.unit.core_support import CONFIG, T0, Rig, find_nonce, sends

# CONFIG: target 1 share/s, window 8 s, factor 4 -> a flood is 33 shares inside one window


def test_fast_shares_threshold_follows_the_config() -> None:
    assert CONFIG.vardiff_fast_shares == 33


def test_flood_raises_by_whole_nibbles_at_once() -> None:
    vd = VarDiff(1, now=0.0)
    changed = None
    for i in range(33):
        changed = vd.credit(i * 0.01, CONFIG, 1)  # 100 shares/s: 100x the target
    assert changed == 3  # log16(100) = 1.66 -> two nibbles
    assert vd.zeros == 3 and vd.low == 1 and vd.grace_until == 0.32 + CONFIG.vardiff_grace
    assert vd.threshold(1.0) == 1  # still in grace: the old difficulty counts
    assert vd.threshold(3.0) == 3
    assert abs(vd.hashrate - 33 * 16 / 0.32) < 1e-6  # shares x 16**zeros / time


def test_on_target_rate_does_not_move() -> None:
    vd = VarDiff(4, now=0.0)
    for i in range(1, 9):  # 1 share a second for a window
        assert vd.credit(float(i), CONFIG, 4) is None
    assert vd.zeros == 4 and vd.count == 0  # window closed, no change
    assert abs(vd.estimate(8.0) - 16**4) < 1e-6


def test_slow_rate_lowers_and_silence_lowers_by_one() -> None:
    vd = VarDiff(5, now=0.0)
    vd.credit(1.0, CONFIG, 5)  # 1 share in a 40 s window: 40x too slow
    assert vd.retarget(40.0, CONFIG) == 4  # log16(40) = 1.33 -> one nibble
    assert vd.low == 4 and vd.zeros == 4
    assert vd.retarget(45.0, CONFIG) is None  # window not over yet
    assert vd.retarget(48.0, CONFIG) == 3  # a silent window: one nibble down
    assert vd.estimate(48.0) == 0.0


def test_floor_and_ceiling() -> None:
    vd = VarDiff(CONFIG.share_zeros_min, now=0.0)
    assert vd.retarget(100.0, CONFIG) is None  # silent, but already at the floor
    top = VarDiff(CONFIG.share_zeros_max, now=0.0)
    for i in range(33):
        top.credit(i * 0.001, CONFIG, CONFIG.share_zeros_max)
    assert top.zeros == CONFIG.share_zeros_max


def _flooded() -> Rig:
    rig = Rig()
    rig.join("a", 0)
    rig.connect(1, "a", "gpu")
    rig.block(1)
    return rig


def test_vardiff_up_through_the_coordinator_with_grace_window() -> None:
    rig = _flooded()
    difficulty = []
    for i in range(33):
        effects = rig.good_share(1, 1, 1, at=T0 + i * 0.01)
        assert sends(effects, Accepted)
        difficulty += sends(effects, Difficulty, conn=1)
    assert difficulty == [Difficulty(3)]
    changed_at = rig.now
    # within the grace period a share at the old difficulty still counts
    assert sends(rig.good_share(1, 1, 1, at=changed_at + 1), Accepted)
    # after it, it does not
    [rejected] = sends(rig.good_share(1, 1, 1, at=changed_at + 2.5), Rejected)
    assert rejected.code is Code.LOW_ZEROS
    assert sends(rig.good_share(1, 3, at=changed_at + 2.6), Accepted)
    # the next job carries the new difficulty, and a reconnect keeps it
    [job] = sends(rig.do(MoreRequested(1, None)), Job)
    assert job.share_zeros == 3
    rig.do(WorkerDisconnected(1))
    [job] = sends(rig.connect(2, "a", "gpu"), Job)
    assert job.share_zeros == 3


def test_vardiff_down_on_the_sweep_timer() -> None:
    rig = Rig(dataclasses.replace(CONFIG, share_zeros_initial=3))
    rig.join("a", 0)
    rig.connect(1, "a", "pi")
    rig.block(1)
    assert rig.jobs[1].share_zeros == 3
    assert sends(rig.do(TimerFired("vardiff"), at=T0 + 2), Difficulty) == []  # window not over
    effects = rig.do(TimerFired("vardiff"), at=T0 + 9)
    assert sends(effects, Difficulty, conn=1) == [Difficulty(2)]
    assert sends(rig.good_share(1, 2, 2, at=T0 + 9.5), Accepted)


def test_rest_worker_learns_its_difficulty_from_the_next_job() -> None:
    rig = Rig()
    rig.join("r", 0)
    rig.block(1)
    [job] = sends(rig.do(RestWorkRequested(10, "r", "cpu"), at=T0), Job)
    start = job.nonce_start
    for i in range(33):
        nonce, digest, _ = find_nonce(job, 1, 1, start)
        start = nonce + 1
        effects = rig.do(RestShareSubmitted(11 + i, "r", Share(job.job, nonce, digest)), at=T0 + i * 0.01)
        assert sends(effects, Accepted) and not sends(effects, Difficulty)  # no socket to push it to
    [job] = sends(rig.do(RestWorkRequested(99, "r", "cpu"), at=T0 + 2), Job)
    assert job.share_zeros == 3


def test_rest_worker_is_held_to_the_difficulty_of_the_job_it_holds() -> None:
    """A REST worker cannot be pushed a difficulty: its job's shareZeros counts until its next job."""
    rig = Rig()
    rig.join("r", 0)
    rig.block(1)
    [old] = sends(rig.do(RestWorkRequested(10, "r", "cpu"), at=T0), Job)
    start = old.nonce_start
    for i in range(33):  # fast enough that vardiff raises it
        nonce, digest, _ = find_nonce(old, 1, 1, start)
        start = nonce + 1
        rig.do(RestShareSubmitted(11 + i, "r", Share(old.job, nonce, digest)), at=T0 + i * 0.01)
    [new] = sends(rig.do(RestWorkRequested(99, "r", "cpu"), at=T0 + 2), Job)
    assert new.share_zeros > old.share_zeros
    # long after any grace, a 1-zero share of the OLD job still meets the difficulty that job stated
    nonce, digest, _ = find_nonce(old, 1, 1, start)
    assert sends(rig.do(RestShareSubmitted(200, "r", Share(old.job, nonce, digest)), at=T0 + 60), Accepted)
    # the new job states the raised one, and that is what its shares are held to
    nonce, digest, _ = find_nonce(new, 1, 1)
    [rejected] = sends(
        rig.do(RestShareSubmitted(201, "r", Share(new.job, nonce, digest)), at=T0 + 60), Rejected
    )
    assert rejected.code == Code.LOW_ZEROS


def test_no_lowering_while_a_worker_has_no_work() -> None:
    rig = Rig(dataclasses.replace(CONFIG, share_zeros_initial=3))
    rig.join("a", 0)
    rig.connect(1, "a")
    assert sends(rig.do(TimerFired("vardiff"), at=T0 - 1 + 30), Difficulty) == []  # no block yet


def test_hashrate_estimate_and_range_sizing_from_shares() -> None:
    rig = _flooded()
    # 1 share every 0.5 s at 1 zero (16 hashes each) for a window: 32 H/s
    for i in range(1, 17):
        rig.good_share(1, 1, 1, at=T0 + i * 0.5)
    view = rig.core.view(rig.now)
    assert abs(view.hashrate - 32.0) < 1e-6 and abs(view.worker_list[0].hashrate - 32.0) < 1e-6
    [job] = sends(rig.do(MoreRequested(1, None)), Job)
    # 32 H/s for the 12 s left is below range_min: the floor applies
    assert job.nonce_end - job.nonce_start == CONFIG.range_min
