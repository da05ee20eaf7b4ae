"""REST jobs shared by the instances of a group: one coordinator issues, another takes the shares.

Two pure coordinators stand for two instances. With ``share_rest_jobs`` the issuing one records
each REST job (``Persist("job")``, held before the job is sent); the other is handed that record
(``IssuedJob``, read from the shared store by the web layer) with the submit, and checks the
share against it exactly as the issuer would.
"""

from __future__ import annotations

import dataclasses

from pooler.core.events import IssuedJob, RestShareSubmitted, RestWorkRequested
from protocol.errors import Code
from protocol.messages import Accepted, Job, Rejected, Share
from tests.unit.core_support import CONFIG, T0, Rig, find_nonce, persists, sends

SHARED = dataclasses.replace(CONFIG, share_rest_jobs=True)


def _issued(record: dict[str, object]) -> IssuedJob:
    """What the Redis store reads back from a ``job`` record (the same fields, typed)."""
    return IssuedJob(
        job_id=str(record["job"]),
        block=int(str(record["block"])),
        miner_id=str(record["minerId"]),
        farmer_id=str(record["farmerId"]),
        worker=str(record["worker"]),
        nonce_start=int(str(record["nonceStart"])),
        nonce_end=int(str(record["nonceEnd"])),
        share_zeros=int(str(record["shareZeros"])),
        issued_at=float(str(record["issuedAt"])),
    )


def _two_instances() -> tuple[Rig, Rig, Job, IssuedJob]:
    a = Rig(dataclasses.replace(SHARED, job_id_prefix="a."))
    b = Rig(dataclasses.replace(SHARED, job_id_prefix="b."))
    for rig in (a, b):
        rig.join("r", 2)
        rig.block(1)
    effects = a.do(RestWorkRequested(101, "r", "rig"), at=T0 + 1)
    [job] = sends(effects, Job, conn=101)
    [record] = persists(effects, "job")
    kinds = [type(e).__name__ for e in effects]
    assert kinds.index("Persist") < kinds.index("Send"), "the record must be durable before the job leaves"
    return a, b, job, _issued(dict(record))


def test_a_rest_job_is_recorded_with_everything_another_instance_needs() -> None:
    _a, _b, job, issued = _two_instances()
    assert (issued.job_id, issued.block, issued.miner_id, issued.farmer_id, issued.worker) == (
        job.job,
        1,
        "r",
        "farmer-2",
        "rig",
    )
    assert (issued.nonce_start, issued.nonce_end, issued.share_zeros) == (
        job.nonce_start,
        job.nonce_end,
        job.share_zeros,
    )


def test_without_share_rest_jobs_nothing_is_recorded() -> None:
    rig = Rig()
    rig.join("r", 2)
    rig.block(1)
    effects = rig.do(RestWorkRequested(101, "r", "rig"), at=T0 + 1)
    assert sends(effects, Job, conn=101) and persists(effects, "job") == []


def test_websocket_jobs_are_not_recorded() -> None:
    rig = Rig(SHARED)
    rig.join("m", 1)
    rig.block(1)
    effects = rig.connect(1, "m")
    assert sends(effects, Job, conn=1) and persists(effects, "job") == []


def test_another_instance_accepts_a_share_on_the_job_and_refuses_its_duplicate() -> None:
    _a, b, job, issued = _two_instances()
    nonce, digest, zeros = find_nonce(job, 1)
    effects = b.do(RestShareSubmitted(201, "r", Share(job.job, nonce, digest), issued), at=T0 + 2)
    assert sends(effects, Accepted, conn=201) == [Accepted(job.job, nonce, zeros, True)]
    assert persists(effects, "best")[0]["nonce"] == str(nonce)
    assert persists(effects, "shares")[0] == {
        "block": 1,
        "minerId": "r",
        "worker": "rig",
        "accepted": 1,
        "rejected": 0,
    }
    # the job is now known here: the next share needs no record, and a repeat is a duplicate
    effects = b.do(RestShareSubmitted(202, "r", Share(job.job, nonce)), at=T0 + 3)
    [rej] = sends(effects, Rejected, conn=202)
    assert rej.code is Code.DUPLICATE


def test_a_share_outside_the_issued_range_is_out_of_range_there_too() -> None:
    _a, b, job, issued = _two_instances()
    effects = b.do(RestShareSubmitted(201, "r", Share(job.job, job.nonce_end), issued), at=T0 + 2)
    [rej] = sends(effects, Rejected, conn=201)
    assert rej.code is Code.OUT_OF_RANGE


def test_a_record_of_another_miner_block_or_farmer_is_stale() -> None:
    _a, b, job, issued = _two_instances()
    b.join("other", 3)
    nonce, digest, _ = find_nonce(job, 1)
    share = Share(job.job, nonce, digest)
    wrong = [
        (dataclasses.replace(issued, miner_id="other"), "other"),  # the record names miner r
        (issued, "other"),  # another miner submits r's job
        (dataclasses.replace(issued, block=0), "r"),  # a block that is over here
        (dataclasses.replace(issued, farmer_id="farmer-9"), "r"),  # r's farmer is farmer-2
        (dataclasses.replace(issued, nonce_start=issued.nonce_end), "r"),  # an empty range
    ]
    for reply, (record, miner) in enumerate(wrong, start=300):
        [rej] = sends(b.do(RestShareSubmitted(reply, miner, share, record), at=T0 + 2), Rejected)
        assert rej.code is Code.STALE, (record, miner)


def test_a_record_for_a_block_not_yet_open_here_is_stale() -> None:
    a, b, _job, _issued_job = _two_instances()
    a.block(2, at=T0 + 20)  # the issuing instance saw block 2 first
    effects = a.do(RestWorkRequested(102, "r", "rig"), at=T0 + 20)
    [job2] = sends(effects, Job, conn=102)
    issued2 = _issued(dict(persists(effects, "job")[0]))
    nonce, digest, _ = find_nonce(job2, 1)
    [rej] = sends(b.do(RestShareSubmitted(203, "r", Share(job2.job, nonce, digest), issued2)), Rejected)
    assert rej.code is Code.STALE
    b.block(2, at=T0 + 20)
    effects = b.do(RestShareSubmitted(204, "r", Share(job2.job, nonce, digest), issued2), at=T0 + 21)
    assert sends(effects, Accepted, conn=204)
