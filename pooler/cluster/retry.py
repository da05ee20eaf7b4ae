"""A Redis session run again and again, with the shared backoff between attempts.

The group's long-lived Redis work (the pub/sub subscription, the leader's bests-stream
consumer, drawing a new block's nonce chunks) fails whenever Redis does and must come back
on its own. :func:`retrying` is that loop, once, with :class:`pooler.chain.backoff.Backoff`
(the same exponential steps with equal jitter the block monitor and the Backend client use):
quick first retries after a blip, one every couple of seconds during an outage, and the
steps start again from the first once the session is established.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from pooler.chain.backoff import Backoff

log = logging.getLogger("pooler.cluster")

REDIS_BACKOFF = Backoff(base=0.1, cap=2.0)  # seconds between attempts while Redis fails

Session = Callable[[Callable[[], None]], Awaitable[None]]
"""``session(established)``: the work itself; it calls ``established()`` once it is set up
(subscribed, its consumer group there), which resets the backoff."""


async def retrying(
    what: str,
    session: Session,
    *,
    errors: tuple[type[BaseException], ...] = (RedisError, OSError),
    backoff: Backoff = REDIS_BACKOFF,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> None:
    """Run ``session`` until it returns; after each failure of a kind in ``errors``, log it
    (naming ``what``), wait the backoff's next delay and run it again. Other errors propagate."""
    attempt = 0

    def established() -> None:
        nonlocal attempt
        attempt = 0

    while True:
        try:
            await session(established)
            return
        except errors as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # a cancel the client library turned into an error: we are being stopped
                raise asyncio.CancelledError from exc
            attempt += 1
            delay = backoff.delay(attempt, rng)
            log.warning("%s: %s; retrying in %.1f s", what, exc, delay)
            await sleep(delay)
