"""The typed seams' JSON, made at the edges: dashboard events (docs/events.md), the stores' records,
the Backend's bodies and replies."""

from __future__ import annotations

import pytest

from pooler.backend import parse_reply, request_body
from pooler.core.backend_calls import FarmerOutcome, HarvestRequest, PlantRequest, Submission, WorkRequest
from pooler.core.dashboard_events import (
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
from pooler.core.events import IssuedJob
from pooler.core.records import (
    Best,
    BestFound,
    FarmerStatusChanged,
    NonceCredited,
    Record,
    RestJobIssued,
    WorkCalled,
)
from pooler.runtime.event_codec import decode_event, encode_event
from pooler.store.codec import record_data, record_kind

EVENTS: list[tuple[DashboardEvent, str, dict[str, object]]] = [
    (
        BlockEvent(3, bytes(range(32)), 1700, 1_700_280_000, 1_700_300_000),
        "block",
        {
            "block": 3,
            "entropy": bytes(range(32)).hex(),
            "timestamp": 1_700_000,
            "workAt": 1_700_280_000,
            "blockEndsAt": 1_700_300_000,
        },
    ),
    (
        PhaseEvent(None, "paused", None, None),
        "phase",
        {"block": None, "phase": "paused", "workAt": None, "blockEndsAt": None},
    ),
    (
        PlantEvent(3, False, 0, 0, 0, "down"),
        "plant",
        {
            "block": 3,
            "ok": False,
            "successfulPlants": 0,
            "failedPlants": 0,
            "totalStaked": "0",
            "error": "down",
        },
    ),
    (
        WorkEvent(3, True, (ShownSubmission("f", 7, 2**64 - 1),), 1, 0),
        "work",
        {
            "block": 3,
            "ok": True,
            "submissions": [{"farmerId": "f", "zeros": 7, "nonce": str(2**64 - 1)}],
            "validNonces": 1,
            "invalidNonces": 0,
        },
    ),
    (
        HarvestEvent(3, True, 1, 0, 25050000000, (FarmerReward("f", 25050000000),)),
        "harvest",
        {
            "block": 3,
            "ok": True,
            "successfulHarvests": 1,
            "failedHarvests": 0,
            "totalRewards": "25050000000",
            "rewards": [{"farmerId": "f", "reward": "25050000000"}],
        },
    ),
    (MinerEvent("m", "f", "joined"), "miner", {"minerId": "m", "farmerId": "f", "event": "joined"}),
    (
        MinerEvent("m", "f", "connected", "rig"),
        "miner",
        {"minerId": "m", "farmerId": "f", "event": "connected", "worker": "rig"},
    ),
    (ChainEvent(False, "rpc refused"), "chain", {"ok": False, "detail": "rpc refused"}),
    (
        FarmerStatusChanged("f", 3, "harvested", reward=12),
        "farmer",
        {"farmerId": "f", "block": 3, "status": "harvested", "reward": "12"},
    ),
    (
        SummaryEvent(3, "mining", 1, 2, 1.5, 4, 1, {"f": 7}, 1, 2),
        "summary",
        {
            "block": 3,
            "phase": "mining",
            "miners": 1,
            "workers": 2,
            "hashrate": 1.5,
            "accepted": 4,
            "rejected": 1,
            "bestZeros": {"f": 7},
            "workAt": 1,
            "blockEndsAt": 2,
        },
    ),
]


@pytest.mark.parametrize(("event", "kind", "data"), EVENTS)
def test_dashboard_events_have_their_documented_shape_and_read_back(
    event: DashboardEvent, kind: str, data: dict[str, object]
) -> None:
    assert encode_event(event) == (kind, data)
    assert decode_event(kind, data) == event


def test_records_keep_their_stored_shapes() -> None:
    best = Best(2**64 - 2, b"\x00" * 32, 9, 1_700_000_000.1234, "m", "rig")
    job = IssuedJob("a.1", 3, "m", "f", "rig", 2**63, 2**63 + 5, 4, 1_700_000_000.5)
    sub = Submission("f", 2**64 - 2, 1_700_000_000_123, b"\x00" * 32, 9)
    cases: list[tuple[Record, str, dict[str, object]]] = [
        (
            BestFound(3, "f", best),
            "best",
            {
                "block": 3,
                "farmerId": "f",
                "nonce": str(2**64 - 2),
                "hash": "00" * 32,
                "zeros": 9,
                "foundAt": 1_700_000_000_123,
                "minerId": "m",
                "worker": "rig",
            },
        ),
        (
            RestJobIssued(job),
            "job",
            {
                "job": "a.1",
                "block": 3,
                "minerId": "m",
                "farmerId": "f",
                "worker": "rig",
                "nonceStart": str(2**63),
                "nonceEnd": str(2**63 + 5),
                "shareZeros": 4,
                "issuedAt": 1_700_000_000.5,
            },
        ),
        (
            WorkCalled(3, (sub,), None, "timed out"),
            "work",
            {
                "block": 3,
                "submissions": [
                    {
                        "farmerId": "f",
                        "nonce": str(2**64 - 2),
                        "timestamp": 1_700_000_000_123,
                        "hash": "00" * 32,
                        "zeros": 9,
                    }
                ],
                "error": "timed out",
            },
        ),
        (
            NonceCredited(3, "f", 7, "a.1"),
            "credit",
            {"block": 3, "farmerId": "f", "nonce": "7", "job": "a.1"},
        ),
    ]
    for record, kind, data in cases:
        assert (record_kind(record), record_data(record)) == (kind, data)


def test_backend_bodies_and_lenient_replies() -> None:
    assert request_body(PlantRequest(3, "p", 100)) == {
        "blockIndex": 3,
        "poolerId": "p",
        "maxFarmersCapacity": 100,
    }
    assert request_body(HarvestRequest(3, "p")) == {"blockIndex": 3, "poolerId": "p"}
    sub = Submission("f", 12, 1700, b"\x01" * 32, 2)
    assert request_body(WorkRequest(3, "p", (sub,)))["submissions"] == [
        {"farmerId": "f", "nonce": "12", "timestamp": 1700, "hash": "01" * 32, "zeros": 2}
    ]
    plant = parse_reply(
        "plant",
        {
            "successfulPlants": 1,
            "totalStaked": "250",
            "results": [
                {"farmerId": "a", "ok": True},
                {"farmerId": "b", "ok": False, "error": "PailExists", "errorCode": 8},
                {"farmerId": "c", "ok": False, "message": "no funds"},
                {"ok": False},
                "junk",
            ],
        },
    )
    assert (plant.successful, plant.failed, plant.total_staked) == (1, 0, 250)
    assert plant.results == (
        FarmerOutcome("a", True),
        FarmerOutcome("b", False, "PailExists", already_planted=True),
        FarmerOutcome("c", False, "no funds"),
    )
    work = parse_reply("work", {"invalidNonces": "2"})
    assert (work.valid, work.invalid, work.results) == (None, 2, None)
    harvest = parse_reply("harvest", {"results": [{"farmerId": "a", "ok": True, "reward": "9"}]})
    assert harvest.total_rewards is None and harvest.results == (FarmerOutcome("a", True, reward=9),)
