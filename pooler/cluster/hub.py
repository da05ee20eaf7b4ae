"""Dashboard events in a group: the cycle's come from the leader over pub/sub, the rest are local.

- :class:`ClusterHub` is every instance's hub (the one its dashboards subscribe to). Events
  of the block cycle published by the local miner-serving coordinator are dropped there (on a
  follower that coordinator never plants or works, so its view of the cycle is not the
  group's); the leader's arrive through :meth:`ClusterHub.publish_remote`. The local
  ``summary`` (this instance's miners, workers, hashrate) gets the leader's phase.
- :class:`RelayHub` is what the leader's cycle runner publishes into: each event goes onto a
  bounded queue that the node's relay task PUBLISHes to ``{p}:events``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from pooler.runtime.hub import EventHub

log = logging.getLogger("pooler.cluster")

CYCLE_KINDS = frozenset({"block", "phase", "plant", "work", "harvest", "farmer"})


class ClusterHub(EventHub):
    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self._phase: dict[str, Any] = {}  # the leader's last phase event: patched into local summaries

    def publish(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind in CYCLE_KINDS:
            return  # the leader's version of these arrives through publish_remote
        if kind == "summary" and self._phase:
            data = {**data, **self._phase}
        super().publish(kind, data)

    def publish_remote(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind == "phase":
            self._phase = {k: data[k] for k in ("phase", "workAt", "blockEndsAt") if k in data}
        super().publish(kind, data)


class RelayHub(EventHub):
    """The leader cycle runner's hub: forwards cycle events to the group (see module docstring)."""

    def __init__(self, clock: Callable[[], float], limit: int = 10_000) -> None:
        super().__init__(clock)
        self.queue: asyncio.Queue[tuple[str, Mapping[str, Any]]] = asyncio.Queue(limit)  # to PUBLISH
        self.dropped = 0  # events lost because the relay fell behind (Redis down)

    def publish(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind not in CYCLE_KINDS:
            return  # summaries and miner events of the cycle core say nothing the instances don't
        try:
            self.queue.put_nowait((kind, data))
        except asyncio.QueueFull:
            self.dropped += 1
