"""Outbox and event hub on a real event loop (no sockets: the sender is a list)."""

from __future__ import annotations

import asyncio

import orjson

from pooler.core.dashboard_events import (
    BlockEvent,
    FarmerReward,
    HarvestEvent,
    PlantEvent,
    ShownSubmission,
    WorkEvent,
)
from pooler.runtime.hub import EventHub
from pooler.runtime.outbox import CLOSE_TRY_AGAIN_LATER, Outbox


async def test_outbox_sends_in_order_then_closes() -> None:
    box = Outbox(limit=10)
    sent: list[str] = []
    closed: list[tuple[int, str]] = []

    async def send(frame: str) -> None:
        sent.append(frame)

    async def close(code: int, reason: str) -> None:
        closed.append((code, reason))

    task = asyncio.create_task(box.drain(send, close))
    for i in range(5):
        assert box.put(str(i))
    box.close(1000, "bye")
    assert not box.put("late")
    await asyncio.wait_for(task, 1)
    assert sent == ["0", "1", "2", "3", "4"]
    assert closed == [(1000, "bye")]


async def test_outbox_overflow_closes_with_1013_and_keeps_queued_frames() -> None:
    box = Outbox(limit=3)
    assert all(box.put(str(i)) for i in range(3))
    assert not box.put("3")
    sent: list[str] = []
    closed: list[tuple[int, str]] = []

    async def send(frame: str) -> None:
        sent.append(frame)

    async def close(code: int, reason: str) -> None:
        closed.append((code, reason))

    await asyncio.wait_for(box.drain(send, close), 1)
    assert sent == ["0", "1", "2"]
    assert closed[0][0] == CLOSE_TRY_AGAIN_LATER


async def test_hub_fans_out_one_encoding_and_keeps_a_snapshot() -> None:
    hub = EventHub(clock=lambda: 1_700_000_000.0, recent=3, queue_limit=2)
    fast, slow = hub.subscribe(), hub.subscribe()
    hub.publish(BlockEvent(7, bytes(32), 1_699_999_700, 1_699_999_980_000, 1_700_000_000_000))
    batch = await asyncio.wait_for(fast.next_batch(), 1)
    assert orjson.loads(batch[0]) == {
        "type": "event",
        "kind": "block",
        "at": 1_700_000_000_000,
        "data": {
            "block": 7,
            "entropy": "00" * 32,
            "timestamp": 1_699_999_700_000,
            "workAt": 1_699_999_980_000,
            "blockEndsAt": 1_700_000_000_000,
        },
    }
    hub.publish(PlantEvent(7, True, 3, 0, 0))
    hub.publish(WorkEvent(7, True, (ShownSubmission("f1", 5, 9),), 1, 0))
    hub.publish(HarvestEvent(7, True, 1, 0, 100, (FarmerReward("f1", 100),)))
    # the slow reader kept only the newest 2 of 4 frames and knows it lost some
    assert slow.dropped == 2
    frames = await slow.next_batch()
    assert [orjson.loads(f)["kind"] for f in frames] == ["gap", "work", "harvest"]
    assert orjson.loads(frames[0])["data"] == {"dropped": 2}
    snap = orjson.loads(hub.snapshot_frame({"block": 7}))
    assert snap["kind"] == "snapshot"
    assert [e["kind"] for e in snap["data"]["recent"]] == ["plant", "work", "harvest"]
    assert snap["data"]["blocks"] == [
        {
            "block": 7,
            "planted": 3,
            "worked": [{"farmerId": "f1", "zeros": 5}],
            "rewards": [{"farmerId": "f1", "reward": "100"}],
            "totalRewards": "100",
        }
    ]
    fast.close()
    slow.close()
    assert hub.subscribers == 0
