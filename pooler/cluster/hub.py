"""Dashboard events in a group: the cycle's come from the leader over pub/sub, the rest are local.

- :class:`ClusterHub` is every instance's hub (the one its dashboards subscribe to). Events
  of the block cycle published by the local miner-serving coordinator are dropped there (on a
  follower that coordinator never plants or works, so its view of the cycle is not the
  group's); the leader's arrive through :meth:`ClusterHub.publish_remote`. The ``summary``
  a dashboard sees is the group's: every instance shares its own through Redis (the node's
  summary task) and each hub sums the fresh ones, with the leader's phase.
- :class:`RelayHub` is what the leader's cycle runner publishes into: each event goes onto a
  bounded queue that the node's relay task PUBLISHes to ``{p}:events``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from pooler.core.dashboard_events import CYCLE_EVENTS, DashboardEvent, PhaseEvent, SummaryEvent
from pooler.runtime.event_codec import decode_event, encode_event
from pooler.runtime.hub import EventHub

log = logging.getLogger("pooler.cluster")

_SUMMED = ("miners", "workers", "hashrate", "accepted", "rejected")


class ClusterHub(EventHub):
    def __init__(self, clock: Callable[[], float], instance: str = "") -> None:
        super().__init__(clock)
        self.instance = instance
        self._phase: dict[str, Any] = {}  # the leader's last phase event: patched into local summaries
        # this instance's last summary as its coordinator made it: what the node shares with the group
        self.own: Mapping[str, Any] = {}
        # the other instances' shared summaries (fresh ones only), refreshed by the node's summary task
        self.others: dict[str, Mapping[str, Any]] = {}

    def publish(self, event: DashboardEvent) -> None:
        if isinstance(event, CYCLE_EVENTS):
            return  # the leader's version of these arrives through publish_remote
        kind, data = encode_event(event)
        if isinstance(event, SummaryEvent):
            self.own = data
            data = self.group_summary(data)
        self._emit(event, kind, data)

    def snapshot_frame(self, summary: Mapping[str, Any]) -> str:
        return super().snapshot_frame(self.group_summary(summary) if summary else summary)

    def group_summary(self, local: Mapping[str, Any]) -> dict[str, Any]:
        """``local`` (this instance's coordinator summary) as the group's: counts summed over the
        instances, each farmer's best the highest any instance holds, the leader's phase; this
        instance's own counts under ``instance``. A miner with workers on two instances counts
        once on each."""
        out = {**local, **self._phase}
        out["instance"] = {"id": self.instance, **{k: local.get(k, 0) for k in _SUMMED}}
        best: dict[str, Any] = dict(local.get("bestZeros") or {})
        for other in self.others.values():
            for k in _SUMMED:
                value = other.get(k)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[k] = out.get(k, 0) + value
            if other.get("block") == local.get("block"):
                for farmer, zeros in (other.get("bestZeros") or {}).items():
                    if isinstance(zeros, int) and zeros > best.get(farmer, -1):
                        best[farmer] = zeros
        out["bestZeros"] = best
        out["instances"] = 1 + len(self.others)
        return out

    def publish_remote(self, kind: str, data: Mapping[str, Any]) -> None:
        """An event of the leader's cycle, as it came over ``{p}:events``: forwarded as it is."""
        try:
            event = decode_event(kind, data)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignored a malformed %s event from the leader (%s): %.120r", kind, exc, data)
            return
        if isinstance(event, PhaseEvent):
            self._phase = {k: data[k] for k in ("phase", "workAt", "blockEndsAt") if k in data}
        self._emit(event, kind, data)


class RelayHub(EventHub):
    """The leader cycle runner's hub: forwards cycle events to the group (see module docstring)."""

    def __init__(self, clock: Callable[[], float], limit: int = 10_000) -> None:
        super().__init__(clock)
        # wire (kind, data) of the cycle's events, to PUBLISH on {p}:events
        self.queue: asyncio.Queue[tuple[str, Mapping[str, Any]]] = asyncio.Queue(limit)
        self.dropped = 0  # events lost because the relay fell behind (Redis down)

    def publish(self, event: DashboardEvent) -> None:
        if not isinstance(event, CYCLE_EVENTS):
            return  # summaries and miner events of the cycle core say nothing the instances don't
        try:
            self.queue.put_nowait(encode_event(event))
        except asyncio.QueueFull:
            self.dropped += 1
