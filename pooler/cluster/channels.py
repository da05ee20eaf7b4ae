"""The group's channels on Redis: pub/sub, block announcements, the relay, the bests stream.

- ``{p}:events`` carries the leader's cycle events (:meth:`Channels.relay` publishes what the
  cycle runner's :class:`~pooler.cluster.hub.RelayHub` queued) to every instance's dashboards;
  ``{p}:control`` carries miners joined/left (the store publishes those with its writes) and
  new blocks (:meth:`Channels.announce`). :meth:`Channels.listen` subscribes to both and hands
  each message, decoded, to an :class:`Inbound` port; after every (re)subscription it tells
  the port first, so the miners are re-read and a message lost while Redis was down is never
  missed for good.
- ``{p}:bests`` is the stream of best candidates every instance appends (in the store's commit
  script) and only the leader consumes (:meth:`Channels.consume_bests`): first every entry still
  pending in the consumer group (delivered to a leader that died before XACK), then new ones;
  each becomes an event posted to the leader's cycle core (which re-verifies the hash and keeps
  it if it beats the farmer's best) and is XACKed once handed over.

Lost connections are retried forever with the shared backoff (:mod:`pooler.cluster.retry`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pooler.cluster.hub import RelayHub
from pooler.cluster.retry import retrying
from pooler.core.events import Event, GroupBest, NewBlock
from pooler.errors import StoreError
from pooler.miners import MinerRecord
from pooler.store.keys import BEST_GROUP, Keys
from pooler.store.redis import miner_from_json, parse_best

log = logging.getLogger("pooler.cluster")

# Creates the bests stream's consumer group unless it is there already, atomically: asking
# first (XINFO) instead of reading a BUSYGROUP error's text.
_ENSURE_GROUP = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    if group[2] == ARGV[1] then return 0 end
  end
end
redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
return 1
"""


class Inbound(Protocol):
    """Who is told what arrives on the group's channels."""

    async def subscribed(self) -> None:
        """(Re)subscribed: messages may have been missed since the last subscription."""

    def joined(self, record: MinerRecord) -> None:
        """A miner registered on some instance."""

    def left(self, miner_id: str) -> None:
        """A miner left (revoked) on some instance."""

    def block(self, event: NewBlock) -> None:
        """The leader let a new block through."""

    def event(self, kind: str, data: Mapping[str, Any]) -> None:
        """A dashboard event of the leader's block cycle."""


class Channels:
    """See the module docstring."""

    def __init__(self, client: aioredis.Redis, keys: Keys, instance: str, relay: RelayHub) -> None:
        self._redis = client
        self._keys = keys
        self._instance = instance  # the bests stream's consumer name
        self._relay = relay  # what the leader's cycle runner published, waiting to be relayed
        self._ensure = client.register_script(_ENSURE_GROUP)

    # ------------------------------------------------------------ pub/sub

    async def listen(self, inbound: Inbound) -> None:
        """Subscribe to ``{p}:events`` and ``{p}:control`` for good (resubscribing when lost)."""
        await retrying("cluster pub/sub lost; resubscribing", lambda ok: self._subscription(inbound, ok))

    async def _subscription(self, inbound: Inbound, established: Callable[[], None]) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._keys.events, self._keys.control)
            await inbound.subscribed()
            established()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    self._on_message(inbound, str(message["channel"]), message["data"])
        finally:
            with contextlib.suppress(Exception):  # a connection already broken cannot be closed cleanly
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _on_message(self, inbound: Inbound, channel: str, data: Any) -> None:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("ignored a malformed message on %s: %.80r", channel, data)
            return
        if not isinstance(msg, dict):
            return
        if channel == self._keys.events:
            kind, body = msg.get("kind"), msg.get("data")
            if isinstance(kind, str) and isinstance(body, dict):
                inbound.event(kind, body)
            return
        op = msg.get("op")
        try:
            if op == "joined":
                inbound.joined(miner_from_json(msg["miner"]))
            elif op == "left":
                inbound.left(str(msg["minerId"]))
            elif op == "block":
                block = NewBlock(
                    int(msg["index"]),
                    bytes.fromhex(msg["entropy"]),
                    int(msg["timestamp"]),
                    int(msg["ledger"]),
                )
                inbound.block(block)
        except (KeyError, ValueError, TypeError, StoreError) as exc:
            log.warning("ignored a malformed control message (%s): %.120r", exc, msg)

    async def announce(self, event: NewBlock) -> None:
        """A new block to every instance (best effort: each one's own monitor sees it too)."""
        msg = {
            "op": "block",
            "index": event.index,
            "entropy": event.entropy.hex(),
            "timestamp": event.timestamp,
            "ledger": event.ledger,
        }
        try:
            await self._redis.publish(self._keys.control, orjson.dumps(msg))
        except RedisError as exc:
            log.warning("could not announce block %d: %s", event.index, exc)

    async def relay(self) -> None:
        """The leader's cycle events to ``{p}:events`` (dashboard events are not durable)."""
        relay = self._relay
        while True:
            kind, data = await relay.queue.get()
            try:
                await self._redis.publish(self._keys.events, orjson.dumps({"kind": kind, "data": data}))
            except RedisError as exc:
                relay.dropped += 1
                log.warning("dashboard event %s not relayed: %s", kind, exc)

    # ------------------------------------------------------------ the bests stream

    async def consume_bests(self, post: Callable[[Event], None]) -> None:
        """The leader's consumer, for as long as it leads (cancelled when it steps down)."""
        await retrying("bests stream", lambda ok: self._consume(post, ok))

    async def _consume(self, post: Callable[[Event], None], established: Callable[[], None]) -> None:
        await self._ensure(keys=[self._keys.bests], args=[BEST_GROUP])
        await self._claim_pending(post)
        established()
        while True:
            reply: Any = await self._redis.xreadgroup(
                BEST_GROUP, self._instance, {self._keys.bests: ">"}, count=500, block=500
            )
            for _stream, entries in reply or ():
                await self._hand_over(post, entries)

    async def _claim_pending(self, post: Callable[[Event], None]) -> None:
        """Entries delivered to a leader (any, this one included) that never XACKed them."""
        start = "0-0"
        while True:
            reply: Any = await self._redis.xautoclaim(
                self._keys.bests, BEST_GROUP, self._instance, min_idle_time=0, start_id=start, count=500
            )
            start, entries = reply[0], reply[1]
            if entries:
                log.info("replaying %d pending best candidates", len(entries))
                await self._hand_over(post, entries)
            if start in ("0-0", b"0-0"):
                return

    async def _hand_over(self, post: Callable[[Event], None], entries: list[Any]) -> None:
        ids: list[str] = []
        for entry_id, fields in entries:
            ids.append(entry_id)
            if not fields:
                continue  # trimmed away (MAXLEN) before we read it: the best table has it
            try:
                d = parse_best(fields["best"])
                event = GroupBest(
                    int(d["block"]),
                    str(d["farmerId"]),
                    int(d["nonce"]),
                    bytes.fromhex(d["hash"]),
                    int(d["zeros"]),
                    str(d.get("minerId", "")),
                    str(d.get("worker", "")),
                )
            except (KeyError, ValueError, TypeError, StoreError) as exc:
                log.warning("ignored a malformed best candidate %s: %s", entry_id, exc)
                continue
            post(event)
        if ids:
            await self._redis.xack(self._keys.bests, BEST_GROUP, *ids)
