"""Dashboard events on the wire: the core's typed events to ``(kind, data)`` and back.

``data`` is exactly what docs/events.md documents: camelCase keys, amounts of stroops as
decimal strings, entropy as hex, times as unix ms, optional keys left out when empty. The
hub wraps it as ``{"type": "event", "kind", "at", "data"}``. :func:`decode_event` reads an
event another instance of a group encoded here (the leader's, over Redis pub/sub) back into
its type; ``encode_event(decode_event(k, d)) == (k, d)`` for everything this module encodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from pooler.core.alerts import alert_record
from pooler.core.dashboard_events import (
    AlertEvent,
    BlockEvent,
    ChainEvent,
    DashboardEvent,
    FarmerReward,
    HarvestEvent,
    MinerEvent,
    PhaseEvent,
    PlantEvent,
    ShownSubmission,
    SummaryEvent,
    WorkEvent,
)
from pooler.core.records import FarmerStatusChanged
from pooler.store.codec import farmer_status_data

Data = dict[str, Any]


def encode_event(event: DashboardEvent) -> tuple[str, Data]:
    """The wire ``kind`` and ``data`` of ``event``."""
    match event:
        case BlockEvent():
            return "block", {
                "block": event.block,
                "entropy": event.entropy.hex(),
                "timestamp": event.timestamp * 1000,
                "workAt": event.work_at,
                "blockEndsAt": event.ends_at,
            }
        case PhaseEvent():
            return "phase", {
                "block": event.block,
                "phase": event.phase,
                "workAt": event.work_at,
                "blockEndsAt": event.ends_at,
            }
        case PlantEvent():
            data: Data = {
                "block": event.block,
                "ok": event.ok,
                "successfulPlants": event.successful,
                "failedPlants": event.failed,
                "totalStaked": str(event.total_staked),
            }
            return "plant", _with_error(data, event.ok, event.error)
        case WorkEvent():
            data = {
                "block": event.block,
                "ok": event.ok,
                "submissions": [
                    {"farmerId": s.farmer_id, "zeros": s.zeros, "nonce": str(s.nonce)}
                    for s in event.submissions
                ],
                "validNonces": event.valid,
                "invalidNonces": event.invalid,
            }
            return "work", _with_error(data, event.ok, event.error)
        case HarvestEvent():
            data = {
                "block": event.block,
                "ok": event.ok,
                "successfulHarvests": event.successful,
                "failedHarvests": event.failed,
                "totalRewards": str(event.total_rewards),
                "rewards": [{"farmerId": r.farmer_id, "reward": str(r.reward)} for r in event.rewards],
            }
            return "harvest", _with_error(data, event.ok, event.error)
        case MinerEvent():
            data = {"minerId": event.miner_id, "farmerId": event.farmer_id, "event": event.event}
            if event.worker is not None:
                data["worker"] = event.worker
            return "miner", data
        case SummaryEvent():
            return "summary", summary_data(event)
        case ChainEvent():
            return "chain", {"ok": event.ok, "detail": event.detail}
        case FarmerStatusChanged():
            return "farmer", farmer_status_data(event)
        case AlertEvent():
            return "alert", alert_record(event.alert)


def summary_data(event: SummaryEvent) -> Data:
    """A ``summary``'s data (also what /health and a new dashboard's snapshot show)."""
    return {
        "block": event.block,
        "phase": event.phase,
        "miners": event.miners,
        "workers": event.workers,
        "hashrate": event.hashrate,
        "accepted": event.accepted,
        "rejected": event.rejected,
        "bestZeros": dict(event.best_zeros),
        "workAt": event.work_at,
        "blockEndsAt": event.ends_at,
    }


def _with_error(data: Data, ok: bool, error: str) -> Data:
    if not ok:
        data["error"] = error
    return data


def decode_event(kind: str, data: Mapping[str, Any]) -> DashboardEvent:
    """The event ``encode_event`` made ``(kind, data)`` of; ValueError (or KeyError/TypeError)
    when it is not one."""
    d = data
    match kind:
        case "block":
            return BlockEvent(
                int(d["block"]),
                bytes.fromhex(d["entropy"]),
                int(d["timestamp"]) // 1000,
                int(d["workAt"]),
                int(d["blockEndsAt"]),
            )
        case "phase":
            return PhaseEvent(
                _opt_int(d["block"]), d["phase"], _opt_int(d["workAt"]), _opt_int(d["blockEndsAt"])
            )
        case "plant":
            return PlantEvent(
                int(d["block"]),
                bool(d["ok"]),
                int(d["successfulPlants"]),
                int(d["failedPlants"]),
                int(d["totalStaked"]),
                str(d.get("error", "")),
            )
        case "work":
            subs = tuple(
                ShownSubmission(str(s["farmerId"]), int(s["zeros"]), int(s["nonce"]))
                for s in d["submissions"]
            )
            return WorkEvent(
                int(d["block"]),
                bool(d["ok"]),
                subs,
                int(d["validNonces"]),
                int(d["invalidNonces"]),
                str(d.get("error", "")),
            )
        case "harvest":
            rewards = tuple(FarmerReward(str(r["farmerId"]), int(r["reward"])) for r in d["rewards"])
            return HarvestEvent(
                int(d["block"]),
                bool(d["ok"]),
                int(d["successfulHarvests"]),
                int(d["failedHarvests"]),
                int(d["totalRewards"]),
                rewards,
                str(d.get("error", "")),
            )
        case "miner":
            worker = d.get("worker")
            return MinerEvent(
                str(d["minerId"]), str(d["farmerId"]), d["event"], None if worker is None else str(worker)
            )
        case "summary":
            return SummaryEvent(
                _opt_int(d["block"]),
                d["phase"],
                int(d["miners"]),
                int(d["workers"]),
                float(d["hashrate"]),
                int(d["accepted"]),
                int(d["rejected"]),
                {str(k): int(v) for k, v in cast(Mapping[str, Any], d["bestZeros"]).items()},
                _opt_int(d["workAt"]),
                _opt_int(d["blockEndsAt"]),
            )
        case "chain":
            return ChainEvent(bool(d["ok"]), str(d["detail"]))
        case "farmer":
            reward = d.get("reward")
            zeros = d.get("zeros")
            return FarmerStatusChanged(
                str(d["farmerId"]),
                int(d["block"]),
                d["status"],
                str(d.get("reason", "")),
                None if zeros is None else int(zeros),
                None if reward is None else int(reward),
            )
    raise ValueError(f"not a dashboard event kind: {kind!r}")


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
