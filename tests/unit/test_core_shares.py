"""Share checks, workers and REST workers through the pure coordinator."""

from __future__ import annotations

import orjson
import pytest

from pooler.core.effects import Close, Effect, Persist, Send
from pooler.core.events import (
    MinerLeft,
    MoreRequested,
    RestShareSubmitted,
    RestWorkRequested,
    ShareSubmitted,
    StatsRequested,
    TimerFired,
    WorkerConnected,
    WorkerDisconnected,
)
from protocol.codec import decode_client
from protocol.errors import Code
from protocol.messages import Accepted, Error, Job, Rejected, Share, Stats, Welcome
from tests.unit.core_support import CONFIG, T0, Rig, address, find_nonce, persists, publishes, sends


def _mining() -> Rig:
    """Block 1 open; miner a (farmer 0) on conns 1 and 2, miner b (farmer 1) on conn 3."""
    rig = Rig()
    rig.join("a", 0)
    rig.join("b", 1)
    rig.connect(1, "a", "w1")
    rig.connect(2, "a", "w2")
    rig.connect(3, "b", "w1")
    rig.block(1)
    return rig


def _rejected(effects: list[Effect]) -> Rejected:
    [msg] = [e.msg for e in effects if isinstance(e, Send) and isinstance(e.msg, Rejected)]
    return msg


def _share_frame(job: str, nonce: object, digest: bytes | None = None) -> Share:
    """A share decoded from its wire frame, as the web layer hands it over."""
    body: dict[str, object] = {"type": "share", "job": job, "nonce": nonce}
    if digest is not None:
        body["hash"] = digest.hex()
    msg = decode_client(orjson.dumps(body))
    assert isinstance(msg, Share)
    return msg


def test_welcome_then_job_and_unknown_miner_refused() -> None:
    rig = _mining()
    effects = rig.connect(4, "a", "w3")
    assert sends(effects, Welcome) == [Welcome("a", "w3", "farmer-0", address(0))]
    [job] = sends(effects, Job)
    assert job.clean and job.block == 1 and job.share_zeros == 1
    assert publishes(effects, "miner") == [
        {"minerId": "a", "farmerId": "farmer-0", "event": "connected", "worker": "w3"}
    ]
    effects = rig.connect(5, "nobody")
    assert sends(effects, Error)[0].code is Code.UNAUTHORIZED
    assert Close(5, 1008, "unknown miner") in effects


def test_no_job_before_the_first_block() -> None:
    rig = Rig()
    rig.join("a", 0)
    effects = rig.connect(1, "a")
    assert sends(effects, Welcome) and not sends(effects, Job)
    assert sends(rig.do(MoreRequested(1, None)), Error)[0].code is Code.STALE


def test_accepted_share_is_persisted_before_it_is_acknowledged() -> None:
    rig = _mining()
    job = rig.jobs[1]
    nonce, digest, zeros = find_nonce(job, 1)
    effects = rig.share(1, job, nonce, digest, at=T0 + 1)
    # the best before the ack; the counts at the batch's end (BatchEnd): the runner holds every
    # accepted until the batch committed (tests/component/test_store_failures.py)
    assert [type(e) for e in effects] == [Persist, Send, Persist, Persist]
    assert persists(effects, "miner_counts") == [{"minerId": "a", "accepted": 1, "rejected": 0, "stale": 0}]
    assert persists(effects, "best") == [
        {
            "block": 1,
            "farmerId": "farmer-0",
            "nonce": str(nonce),
            "hash": digest.hex(),
            "zeros": zeros,
            "foundAt": (T0 + 1) * 1000,
            "minerId": "a",
            "worker": "w1",
        }
    ]
    assert persists(effects, "shares") == [
        {"block": 1, "minerId": "a", "worker": "w1", "accepted": 1, "rejected": 0}
    ]
    assert sends(effects, Accepted) == [Accepted(job.job, nonce, zeros, True)]
    # no client hash is fine too: the server computes it
    nonce2, _, zeros2 = find_nonce(job, 1, 64, nonce + 1)
    effects = rig.share(1, job, nonce2, None, at=T0 + 2)
    assert sends(effects, Accepted)[0].zeros == zeros2


def test_stale_shares() -> None:
    rig = _mining()
    old = rig.jobs[1]
    nonce, digest, _ = find_nonce(old, 1)
    unknown = Job("nope", 1, old.entropy, old.farmer, 0, 1, 1, True, 0, 0)
    assert _rejected(rig.share(1, unknown, 0)).code is Code.STALE
    # another miner's job is not this miner's to submit on
    assert _rejected(rig.share(3, old, nonce, digest)).code is Code.STALE
    rig.block(2)
    rejected = _rejected(rig.share(1, old, nonce, digest))
    assert rejected.code is Code.STALE and rejected.job == old.job and rejected.nonce == nonce
    view = rig.core.view(rig.now)
    miner_a = next(m for m in view.miner_list if m.miner_id == "a")
    assert miner_a.stale == 2 and miner_a.rejected_by == {"stale": 2}
    assert miner_a.block_rejected == 1  # the one in block 2


def test_out_of_range_share() -> None:
    rig = _mining()
    job = rig.jobs[1]
    other = rig.jobs[2]  # same farmer, another worker's range
    rejected = _rejected(rig.share(1, job, other.nonce_start))
    assert rejected.code is Code.OUT_OF_RANGE and str(job.nonce_end) in rejected.message
    assert _rejected(rig.share(1, job, job.nonce_end)).code is Code.OUT_OF_RANGE  # end is exclusive


@pytest.mark.parametrize("spelling", ["decimal", "padded", "hex", "HEX", "int"])
def test_duplicates_in_every_spelling(spelling: str) -> None:
    rig = _mining()
    job = rig.jobs[1]
    nonce, digest, _ = find_nonce(job, 1)
    first = rig.do(ShareSubmitted(1, _share_frame(job.job, str(nonce), digest)))
    assert sends(first, Accepted)
    again: object = {
        "decimal": str(nonce),
        "padded": str(nonce).zfill(20),
        "hex": hex(nonce),
        "HEX": "0X" + format(nonce, "X"),
        "int": nonce,
    }[spelling]
    # from the other worker of the same farmer too: one nonce is credited once per farmer
    effects = rig.do(ShareSubmitted(2, _share_frame(job.job, again)))
    assert _rejected(effects).code is Code.DUPLICATE
    assert rig.core.view(rig.now).accepted == 1


def test_same_nonce_for_another_farmer_is_not_a_duplicate() -> None:
    rig = _mining()
    a_job, b_job = rig.jobs[1], rig.jobs[3]
    assert a_job.nonce_start == b_job.nonce_start == 0  # farmers have their own counters
    nonce_a, _, _ = find_nonce(a_job, 1)
    rig.share(1, a_job, nonce_a)
    effects = rig.share(3, b_job, nonce_a)
    # whatever its zeros, it is judged on its own hash, never as a duplicate
    assert not any(isinstance(e, Send) and getattr(e.msg, "code", None) is Code.DUPLICATE for e in effects)


def test_invalid_hash_is_refused_and_does_not_burn_the_nonce() -> None:
    rig = _mining()
    job = rig.jobs[1]
    nonce, digest, _ = find_nonce(job, 1)
    wrong = bytes(32)
    rejected = _rejected(rig.do(ShareSubmitted(1, _share_frame(job.job, nonce, wrong))))
    assert rejected.code is Code.INVALID_HASH and digest.hex() in rejected.message
    assert sends(rig.share(1, job, nonce, digest), Accepted)


def test_low_zeros() -> None:
    rig = _mining()
    job = rig.jobs[1]
    nonce, digest, zeros = find_nonce(job, 0, 0)
    rejected = _rejected(rig.share(1, job, nonce, digest))
    assert rejected.code is Code.LOW_ZEROS and "0 zeros; 1 are needed" in rejected.message
    assert zeros == 0
    # rejections are counted and ride on the next durable write of the tally
    effects = rig.good_share(1, 1)
    assert persists(effects, "shares")[0]["rejected"] == 1


def test_share_before_hello_is_answered_with_no_hello() -> None:
    rig = _mining()
    effects = rig.do(ShareSubmitted(99, Share("t1", 5)))
    assert sends(effects, Error)[0].code is Code.NO_HELLO


def test_more_gives_a_fresh_disjoint_range_of_the_same_block() -> None:
    rig = _mining()
    first = rig.jobs[1]
    effects = rig.do(MoreRequested(1, first.job), at=T0 + 2)
    [second] = sends(effects, Job)
    assert second.block == 1 and not second.clean and second.job != first.job
    assert second.nonce_start >= rig.jobs[2].nonce_end or second.nonce_end <= rig.jobs[2].nonce_start
    assert second.nonce_start >= first.nonce_end
    # the earlier job of the block stays valid
    assert sends(rig.share(1, first, find_nonce(first, 1)[0]), Accepted)
    # a range exhausted in 2 s tells its hashrate: the next range is sized for the rest of the block
    assert second.nonce_end - second.nonce_start > first.nonce_end - first.nonce_start


def test_same_worker_name_twice_keeps_both_connections_and_one_tally() -> None:
    rig = _mining()
    effects = rig.connect(4, "a", "w1")  # conn 1 is also a/w1
    assert not any(isinstance(e, Close) for e in effects)
    rig.good_share(1, 1)
    effects = rig.good_share(4, 1)
    assert persists(effects, "shares")[0]["accepted"] == 2  # one durable count per worker name
    assert rig.core.view(rig.now).workers == 4


def test_disconnected_worker_jobs_stay_valid_for_its_miner() -> None:
    rig = _mining()
    job = rig.jobs[1]
    rig.do(WorkerDisconnected(1))
    rig.connect(5, "a", "w1")
    nonce, digest, _ = find_nonce(job, 1)
    assert sends(rig.share(5, job, nonce, digest), Accepted)
    assert publishes(rig.do(WorkerDisconnected(5)), "miner")[0]["event"] == "disconnected"
    assert rig.do(WorkerDisconnected(5)) == []  # twice is harmless


def test_miner_left_closes_every_socket_and_voids_its_jobs() -> None:
    rig = _mining()
    job = rig.jobs[2]
    effects = rig.do(MinerLeft("a"))
    assert {e.conn for e in effects if isinstance(e, Close)} == {1, 2}
    assert all(e.code == 1000 for e in effects if isinstance(e, Close))
    effects = rig.do(RestShareSubmitted(7, "a", Share(job.job, job.nonce_start)))
    assert sends(effects, Error)[0].code is Code.UNAUTHORIZED
    assert rig.do(MinerLeft("a")) == []


def test_stats_for_a_miner() -> None:
    rig = _mining()
    rig.good_share(1, 2, 2)
    job = rig.jobs[2]
    rig.share(2, job, find_nonce(job, 0, 0)[0])  # low zeros
    [stats] = sends(rig.do(StatsRequested(1, "a")), Stats)
    assert stats.miner_id == "a" and stats.farmer_id == "farmer-0" and stats.block == 1
    assert stats.accepted == 1 and stats.rejected == 1 and stats.stale == 0
    assert stats.best_zeros == 2 and stats.share_zeros == 1 and stats.workers == 2 and stats.rewards == 0
    # asked over REST (a reply id that is no socket): its REST workers' difficulty, else its
    # sockets' (the highest); it used to be always null
    assert sends(rig.do(StatsRequested(1000, "a")), Stats)[0].share_zeros == 1
    rig.do(RestWorkRequested(1001, "a", "rig"))
    assert sends(rig.do(StatsRequested(1002, "a")), Stats)[0].share_zeros == CONFIG.share_zeros_initial
    assert sends(rig.do(StatsRequested(1, "ghost")), Error)[0].code is Code.UNAUTHORIZED


def test_rest_worker_flow() -> None:
    rig = Rig()
    rig.join("r", 2)
    effects = rig.do(RestWorkRequested(100, "r", "rig"))
    assert sends(effects, Error)[0].code is Code.STALE  # no block yet: the web layer answers 503
    rig.block(1)
    [job1] = sends(rig.do(RestWorkRequested(101, "r", "rig"), at=T0 + 1), Job, conn=101)
    [job2] = sends(rig.do(RestWorkRequested(102, "r", "rig"), at=T0 + 2), Job, conn=102)
    assert job1.clean and not job2.clean and job2.nonce_start >= job1.nonce_end
    nonce, digest, zeros = find_nonce(job1, 1)
    effects = rig.do(RestShareSubmitted(103, "r", Share(job1.job, nonce, digest)), at=T0 + 3)
    assert sends(effects, Accepted, conn=103) == [Accepted(job1.job, nonce, zeros, True)]
    assert persists(effects, "shares")[0] == {
        "block": 1,
        "minerId": "r",
        "worker": "rig",
        "accepted": 1,
        "rejected": 0,
    }
    effects = rig.do(RestShareSubmitted(104, "r", Share(job1.job, nonce)), at=T0 + 4)
    assert _rejected(effects).code is Code.DUPLICATE
    assert rig.core.view(rig.now).workers == 1
    # idle for longer than rest_worker_idle: forgotten, and its jobs with it
    rig.do(TimerFired("summary"), at=T0 + 40)
    assert rig.core.view(rig.now).workers == 0
    nonce2, _, _ = find_nonce(job2, 1)
    effects = rig.do(RestShareSubmitted(105, "r", Share(job2.job, nonce2)), at=T0 + 41)
    assert _rejected(effects).code is Code.STALE


def test_worker_connected_twice_on_one_conn_starts_afresh() -> None:
    rig = _mining()
    effects = rig.do(WorkerConnected(1, "a", "renamed"))
    assert sends(effects, Welcome)[0].worker == "renamed"
    assert [w.worker for w in rig.core.view(rig.now).worker_list if w.conn == 1] == ["renamed"]
