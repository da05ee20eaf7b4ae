"""The stores' JSON of the core's records: one camelCase object per record, as it is kept.

These are the shapes the records have always had on disk and in Redis (the ``calls`` table's
request and response, the group's job, best and call entries), so files and keys written by
earlier versions read the same. Big integers (nonces, nonce ranges) are decimal strings,
hashes and entropy hex, ``foundAt`` unix ms. A Backend reply is kept as it was received.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pooler.backend import submission_body
from pooler.core.records import (
    BestFound,
    BlockHistory,
    BlockOnChain,
    BlockSeen,
    FarmerOfBlock,
    FarmerStatusChanged,
    HarvestCalled,
    HistoryBucket,
    MinerCounts,
    NonceCredited,
    NoncesIssued,
    PlantCalled,
    Record,
    RestJobIssued,
    ShareCounts,
    WorkCalled,
    WorkerSeen,
)
from pooler.stats.chain import chain_data, chain_from

Data = dict[str, Any]


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def record_kind(record: Record) -> str:
    """The record's kind as the stores name it (the ``op`` of a call)."""
    match record:
        case BlockSeen():
            return "block"
        case BlockOnChain():
            return "block_chain"
        case BestFound():
            return "best"
        case ShareCounts():
            return "shares"
        case MinerCounts():
            return "miner_counts"
        case PlantCalled():
            return "plant"
        case WorkCalled():
            return "work"
        case HarvestCalled():
            return "harvest"
        case FarmerStatusChanged():
            return "farmer_status"
        case NoncesIssued():
            return "nonces"
        case WorkerSeen():
            return "worker"
        case RestJobIssued():
            return "job"
        case NonceCredited():
            return "credit"
        case HistoryBucket():
            return "history"
        case BlockHistory():
            return "block_history"


def record_data(record: Record) -> Data:
    """The record as a JSON object (see the module docstring)."""
    match record:
        case BlockSeen(index, entropy, timestamp):
            return {"index": index, "entropy": entropy.hex(), "timestamp": timestamp}
        case BlockOnChain(index, chain):
            return {"index": index, **chain_data(chain)}
        case BestFound():
            return best_data(record)
        case ShareCounts(block, miner_id, worker, accepted, rejected):
            return {
                "block": block,
                "minerId": miner_id,
                "worker": worker,
                "accepted": accepted,
                "rejected": rejected,
            }
        case MinerCounts(miner_id, accepted, rejected, stale):
            return {"minerId": miner_id, "accepted": accepted, "rejected": rejected, "stale": stale}
        case PlantCalled(block, reply, error) | HarvestCalled(block, reply, error):
            return _outcome({"block": block}, None if reply is None else reply.body, error)
        case WorkCalled(block, submissions, reply, error):
            data: Data = {"block": block, "submissions": [submission_body(s) for s in submissions]}
            return _outcome(data, None if reply is None else reply.body, error)
        case FarmerStatusChanged():
            return farmer_status_data(record)
        case NoncesIssued(block, farmer_id, nxt):
            return {"block": block, "farmerId": farmer_id, "next": nxt}
        case WorkerSeen(miner_id, worker, agent):
            return {"minerId": miner_id, "worker": worker, "agent": agent}
        case RestJobIssued(job):
            return {
                "job": job.job_id,
                "block": job.block,
                "minerId": job.miner_id,
                "farmerId": job.farmer_id,
                "worker": job.worker,
                "nonceStart": str(job.nonce_start),
                "nonceEnd": str(job.nonce_end),
                "shareZeros": job.share_zeros,
                "issuedAt": job.issued_at,
            }
        case NonceCredited(block, farmer_id, nonce, job):
            return {"block": block, "farmerId": farmer_id, "nonce": str(nonce), "job": job}
        case HistoryBucket():
            return bucket_data(record)
        case BlockHistory():
            return block_history_data(record)


def best_data(record: BestFound) -> Data:
    best = record.best
    return {
        "block": record.block,
        "farmerId": record.farmer_id,
        "nonce": str(best.nonce),
        "hash": best.hash.hex(),
        "zeros": best.zeros,
        "foundAt": ms(best.found_at),
        "minerId": best.miner_id,
        "worker": best.worker,
    }


def farmer_status_data(status: FarmerStatusChanged) -> Data:
    """A farmer's status (also the data of the dashboard's ``farmer`` event: docs/events.md)."""
    data: Data = {"farmerId": status.farmer_id, "block": status.block, "status": status.status}
    if status.reason:
        data["reason"] = status.reason
    if status.zeros is not None:
        data["zeros"] = status.zeros
    if status.reward is not None:
        data["reward"] = str(status.reward)
    return data


def _outcome(data: Data, response: Mapping[str, object] | None, error: str) -> Data:
    if response is not None:
        data["response"] = dict(response)
    else:
        data["error"] = error
    return data


def bucket_data(b: HistoryBucket) -> Data:
    return {
        "scope": b.scope,
        "key": b.key,
        "width": b.width,
        "start": b.start,
        "accepted": b.accepted,
        "stale": b.stale,
        "rejected": dict(b.rejected),
        "work": str(b.work),  # 16**z sums pass 2**53 quickly: decimal text
        "miners": b.miners,  # online (max sampled): the pool series' only
        "workers": b.workers,
    }


def bucket_from(d: Mapping[str, Any]) -> HistoryBucket:
    rejected = d.get("rejected") or {}
    return HistoryBucket(
        str(d["scope"]),
        str(d["key"]),
        int(d["width"]),
        int(d["start"]),
        int(d["accepted"]),
        int(d["stale"]),
        tuple(sorted((str(k), int(v)) for k, v in rejected.items())),
        int(d["work"]),
        int(d.get("miners", 0)),  # absent in buckets written before online counts were kept
        int(d.get("workers", 0)),
    )


def bucket_sum(a: HistoryBucket, b: HistoryBucket) -> HistoryBucket:
    """Two instances' parts of one bucket (Redis keeps one field per instance), summed."""
    rejected = dict(a.rejected)
    for reason, n in b.rejected:
        rejected[reason] = rejected.get(reason, 0) + n
    return HistoryBucket(
        a.scope,
        a.key,
        a.width,
        a.start,
        a.accepted + b.accepted,
        a.stale + b.stale,
        tuple(sorted(rejected.items())),
        a.work + b.work,
        a.miners + b.miners,
        a.workers + b.workers,
    )


def block_history_data(b: BlockHistory) -> Data:
    return {
        "chain": None if b.chain is None else chain_data(b.chain),
        "block": b.block,
        "timestamp": b.timestamp,
        "planted": b.planted,
        "staked": str(b.staked),
        "workAt": b.work_at,
        "workOk": b.work_ok,
        "workError": b.work_error,
        "harvestTotal": None if b.harvest_total is None else str(b.harvest_total),
        "farmers": [
            {
                "farmerId": f.farmer_id,
                "planted": f.planted,
                "bestZeros": f.best_zeros,
                "gapS": f.gap_s,
                "worked": f.worked,
                "workZeros": f.work_zeros,
                "reward": None if f.reward is None else str(f.reward),
                "error": f.error,
            }
            for f in b.farmers
        ],
    }


def block_history_from(d: Mapping[str, Any]) -> BlockHistory:
    def opt_int(v: object) -> int | None:
        return None if v is None else int(str(v))

    return BlockHistory(
        block=int(d["block"]),
        timestamp=int(d.get("timestamp") or 0),
        planted=int(d.get("planted") or 0),
        staked=int(str(d.get("staked") or 0)),
        work_at=None if d.get("workAt") is None else float(d["workAt"]),
        work_ok=d.get("workOk"),
        work_error=str(d.get("workError") or ""),
        harvest_total=opt_int(d.get("harvestTotal")),
        chain=None if not d.get("chain") else chain_from(int(d["block"]), d["chain"]),
        farmers=tuple(
            FarmerOfBlock(
                farmer_id=str(f["farmerId"]),
                planted=bool(f.get("planted")),
                best_zeros=int(f.get("bestZeros", -1)),
                gap_s=None if f.get("gapS") is None else float(f["gapS"]),
                worked=f.get("worked"),
                work_zeros=opt_int(f.get("workZeros")),
                reward=opt_int(f.get("reward")),
                error=str(f.get("error") or ""),
            )
            for f in d.get("farmers") or ()
        ),
    )
