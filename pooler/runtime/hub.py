"""The dashboard event hub: fan-out of coordinator ``Publish`` effects to subscribers.

The hub is the edge where dashboard events become JSON (:mod:`pooler.runtime.event_codec`).
Each event is encoded once and the same frame goes to every subscriber's bounded queue;
a subscriber that falls behind loses its oldest frames (a dashboard wants the present,
not a backlog) and is told so by a ``gap`` event. For late joiners it keeps the recent
events and a per-block table (planted, worked, rewards), both as they went on the wire.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from pooler.core.dashboard_events import DashboardEvent, HarvestEvent, PlantEvent, SummaryEvent, WorkEvent
from pooler.runtime.event_codec import encode_event


class Subscription:
    __slots__ = ("_hub", "dropped", "frames", "wake")

    def __init__(self, hub: EventHub, limit: int) -> None:
        self._hub = hub
        self.frames: collections.deque[str] = collections.deque(maxlen=limit)  # oldest dropped when full
        self.wake = asyncio.Event()  # set when frames arrive
        self.dropped = 0  # frames lost to a slow reader, reported then reset

    async def next_batch(self) -> list[str]:
        await self.wake.wait()
        self.wake.clear()
        batch = list(self.frames)
        self.frames.clear()
        if self.dropped:
            batch.insert(0, self._hub._encode("gap", {"dropped": self.dropped}))
            self.dropped = 0
        return batch

    def close(self) -> None:
        self._hub._subs.discard(self)


class EventHub:
    """Keeps recent events for late joiners and the per-block table shown on the dashboard."""

    def __init__(
        self, clock: Callable[[], float], recent: int = 50, blocks: int = 20, queue_limit: int = 500
    ) -> None:
        self._clock = clock
        self._subs: set[Subscription] = set()  # live dashboard connections
        self._recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=recent)  # for snapshots
        # block -> {block, planted, worked, rewards}: the "rewards per block" table, newest last
        self._blocks: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()
        self._blocks_limit = blocks
        self._queue_limit = queue_limit
        self._summary: Mapping[str, Any] = {}  # last periodic summary, for snapshots
        self.published = 0  # events published since start (metrics, tests)

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self._queue_limit)
        self._subs.add(sub)
        return sub

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def snapshot_frame(self, summary: Mapping[str, Any]) -> str:
        data = {
            "summary": summary or self._summary,
            "recent": list(self._recent),
            "blocks": list(self._blocks.values()),
        }
        return self._encode("snapshot", data)

    def _encode(self, kind: str, data: Mapping[str, Any]) -> str:
        return orjson.dumps(
            {"type": "event", "kind": kind, "at": int(self._clock() * 1000), "data": data}
        ).decode()

    def publish(self, event: DashboardEvent) -> None:
        """Encode ``event`` once and hand the frame to every subscriber."""
        kind, data = encode_event(event)
        self._emit(event, kind, data)

    def _emit(self, event: DashboardEvent, kind: str, data: Mapping[str, Any]) -> None:
        """Send ``(kind, data)``, the wire form of ``event`` (a group may send another form of it)."""
        self.published += 1
        self._track(event, data)
        frame = self._encode(kind, data)
        if kind != "summary":
            self._recent.append(orjson.loads(frame))
        for sub in self._subs:
            if len(sub.frames) == sub.frames.maxlen:
                sub.dropped += 1
            sub.frames.append(frame)
            sub.wake.set()

    def _row(self, block: int) -> dict[str, Any]:
        row = self._blocks.get(block)
        if row is None:
            row = self._blocks[block] = {"block": block, "planted": None, "worked": [], "rewards": []}
            while len(self._blocks) > self._blocks_limit:
                self._blocks.popitem(last=False)
        return row

    def _track(self, event: DashboardEvent, data: Mapping[str, Any]) -> None:
        match event:
            case SummaryEvent(block=int()):
                self._summary = data
            case PlantEvent():
                self._row(event.block)["planted"] = event.successful
            case WorkEvent(ok=True):
                row = self._row(event.block)
                done = {s["farmerId"]: s for s in row["worked"]}
                for s in event.submissions:
                    done[s.farmer_id] = {"farmerId": s.farmer_id, "zeros": s.zeros}
                row["worked"] = list(done.values())
            case HarvestEvent(ok=True):
                row = self._row(event.block)
                row["rewards"] = [{"farmerId": r.farmer_id, "reward": str(r.reward)} for r in event.rewards]
                row["totalRewards"] = str(event.total_rewards)
