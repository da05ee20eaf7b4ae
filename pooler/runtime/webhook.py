"""The alert webhook: each alert POSTed as one JSON object to ``ALERT_WEBHOOK_URL``.

Whoever raises an alert calls :meth:`AlertWebhook.offer`, which is synchronous and O(1): it
appends to a bounded queue and wakes the sender, nothing else. It never blocks and never
fails: when the queue is full the OLDEST alert is dropped (and counted), because an operator
wants the present state, and a receiver that is down must not hold up the Pooler.

One sender task (owned by the webhook's :class:`~pooler.runtime.tasks.TaskSet`, started by
:meth:`start`) delivers the alerts in order, one at a time. Each delivery is

- one POST per attempt, each bounded by ``timeout`` seconds;
- retried after a network error, a timeout, HTTP 408, 425, 429 or a 5xx, with exponential
  backoff and jitter (:class:`~pooler.chain.backoff.Backoff`; a ``Retry-After`` header is
  honoured), at most ``attempts`` attempts in all, and no attempt starts later than ``window``
  seconds after the first (so one alert occupies the sender for at most ``window + timeout``);
- given up at once on any other status (a 3xx is not followed: the URL is wrong, or a 4xx:
  the receiver refused the body).

Outcomes, counted in :attr:`sent`, :attr:`failed`, :attr:`dropped` and reported to
``on_outcome`` (``pooler_alert_webhook_total{outcome}``): ``sent`` (a 2xx), ``failed`` (given up),
``dropped`` (pushed out of a full queue, offered after close, or still queued when the close's
grace ran out).

:meth:`aclose` stops taking alerts, gives the sender ``grace`` seconds to deliver what is
queued, then cancels it. The URL is never logged (webhook URLs often carry a token).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar
from urllib.parse import urlsplit

import aiohttp
import orjson

from pooler import __version__
from pooler.backend import parse_retry_after
from pooler.chain.backoff import Backoff
from pooler.core.alerts import Alert, alert_record
from pooler.runtime.tasks import TaskSet

log = logging.getLogger("pooler.alerts")

Outcome = Literal["sent", "failed", "dropped"]  # pooler.metrics.ALERT_WEBHOOK_OUTCOMES

_RETRY_STATUSES = frozenset({408, 425, 429})  # and every 5xx

T = TypeVar("T")


class DropOldest(Generic[T]):
    """A bounded FIFO that never refuses: offering to a full one drops its oldest item."""

    __slots__ = ("_items", "dropped")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a queue holds at least 1 item, got {limit}")
        self._items: collections.deque[T] = collections.deque(maxlen=limit)
        self.dropped = 0  # items pushed out since it was made

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: T) -> T | None:
        """Append ``item``; the item it pushed out of a full queue, or None. O(1)."""
        items = self._items
        pushed = items[0] if len(items) == items.maxlen else None
        if pushed is not None:
            self.dropped += 1
        items.append(item)  # a full deque with maxlen drops its left end itself
        return pushed

    def take(self) -> T | None:
        """The oldest item, removed; None when empty."""
        return self._items.popleft() if self._items else None

    def clear(self) -> list[T]:
        """Everything still queued, oldest first, removed."""
        items = list(self._items)
        self._items.clear()
        return items


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long one alert is retried: at most ``attempts`` attempts, none started later than
    ``window`` seconds after the first; ``backoff`` between them. Pure: no clock, no sleep."""

    attempts: int
    window: float
    backoff: Backoff

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"a delivery makes at least 1 attempt, got {self.attempts}")
        if self.window < 0:
            raise ValueError(f"the retry window is >= 0 seconds, got {self.window}")

    def next_delay(
        self, failures: int, elapsed: float, rng: Callable[[], float], retry_after: float | None = None
    ) -> float | None:
        """Seconds to wait before the next attempt, after ``failures`` failed ones the first of
        which began ``elapsed`` seconds ago; None: give up. ``retry_after`` (the receiver's
        ``Retry-After``) lengthens the wait, never shortens it."""
        if failures >= self.attempts:
            return None
        wait = self.backoff.delay(failures, rng)
        if retry_after is not None:
            wait = max(wait, retry_after)
        if elapsed + wait > self.window:
            return None
        return wait


@dataclass(frozen=True, slots=True)
class _Queued:
    id: str
    at: float  # unix seconds it was raised
    alert: Alert


class _Retry(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class _GiveUp(Exception):
    """The receiver answered in a way a retry would not change."""


def webhook_body(item_id: str, at: float, alert: Alert, source: Mapping[str, object]) -> dict[str, object]:
    """The POSTed object: ``id`` (the same on every attempt: receivers deduplicate with it),
    ``at`` (unix ms), ``pooler`` (who sends it), then :func:`~pooler.core.alerts.alert_record`."""
    return {"id": item_id, "at": round(at * 1000), "pooler": dict(source), **alert_record(alert)}


class AlertWebhook:
    """The webhook sender (module docstring). ``source`` is the body's ``pooler`` object."""

    def __init__(
        self,
        url: str,
        *,
        source: Mapping[str, object],
        timeout: float,
        queue_size: int,
        retry: RetryPolicy,
        on_outcome: Callable[[Outcome], None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"the webhook timeout is > 0 seconds, got {timeout}")
        self._url = url
        parts = urlsplit(url)
        self.target = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"  # what logs may name
        self._source = dict(source)
        self.timeout = timeout
        self.retry = retry
        self._on_outcome = on_outcome
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._rng = rng
        self._queue: DropOldest[_Queued] = DropOldest(queue_size)
        self._wake = asyncio.Event()  # set when something is queued, or on close
        self._tasks = TaskSet("alert-webhook")
        self._sender: asyncio.Task[None] | None = None
        self._prefix = secrets.token_hex(4)  # ids differ across restarts
        self._seq = 0
        self._closing = False
        self._warned_full = False  # one warning per stretch of drops, not one per drop
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.attempts = 0  # POSTs made (retries included)

    # ------------------------------------------------------------ the caller's side

    def offer(self, alert: Alert, at: float | None = None) -> None:
        """Queue ``alert`` (raised at ``at``, unix seconds; default now). Never blocks: O(1)."""
        if self._closing:
            self._count("dropped")
            return
        self._seq += 1
        item = _Queued(f"{self._prefix}-{self._seq}", self._clock() if at is None else at, alert)
        if self._queue.offer(item) is not None:
            self._count("dropped")
            if not self._warned_full:
                self._warned_full = True
                log.warning(
                    "alert webhook %s: queue full, dropping the oldest alerts (receiver slow or down)",
                    self.target,
                )
        self._wake.set()

    @property
    def pending(self) -> int:
        """Alerts queued, not counting the one being delivered."""
        return len(self._queue)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the sender task (on the running loop)."""
        self._sender = self._tasks.spawn(self._run(), "sender")

    async def aclose(self, grace: float = 1.0) -> None:
        """Take no more alerts; deliver what is queued within ``grace`` seconds, then stop."""
        self._closing = True
        self._wake.set()  # an idle sender sees the close and ends
        sender = self._sender
        if sender is not None and not sender.done() and grace > 0:
            await asyncio.wait([sender], timeout=grace)  # it ends by itself once the queue is empty
        await self._tasks.stop()  # or is cut off here (what it held counts as dropped)
        for _ in self._queue.clear():
            self._count("dropped")

    # ------------------------------------------------------------ the sender

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None)  # each attempt is bounded in _attempt
        headers = {"Content-Type": "application/json", "User-Agent": f"kale-pooler/{__version__}"}
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
            while True:
                item = self._queue.take()
                if item is None:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                try:
                    outcome = await self._deliver(http, item)
                except asyncio.CancelledError:
                    self._count("dropped")  # cut off by the close: not delivered
                    raise
                except Exception:  # a bug must cost one alert, not the sender
                    log.exception(
                        "alert webhook %s: %s alert %s failed", self.target, item.alert.kind, item.id
                    )
                    outcome = "failed"
                self._count(outcome)

    async def _deliver(self, http: aiohttp.ClientSession, item: _Queued) -> Outcome:
        body = orjson.dumps(webhook_body(item.id, item.at, item.alert, self._source))
        started = self._monotonic()
        failures = 0
        while True:
            try:
                await self._attempt(http, body)
                return "sent"
            except _GiveUp as exc:
                log.warning(
                    "alert webhook %s: %s alert %s not delivered: %s",
                    self.target,
                    item.alert.kind,
                    item.id,
                    exc,
                )
                return "failed"
            except _Retry as exc:
                failures += 1
                wait = self.retry.next_delay(
                    failures, self._monotonic() - started, self._rng, exc.retry_after
                )
                if wait is None:
                    log.warning(
                        "alert webhook %s: %s alert %s not delivered after %d attempts: %s",
                        self.target,
                        item.alert.kind,
                        item.id,
                        failures,
                        exc,
                    )
                    return "failed"
                log.info(
                    "alert webhook %s: attempt %d failed (%s); retrying in %.1f s",
                    self.target,
                    failures,
                    exc,
                    wait,
                )
                await self._sleep(wait)

    async def _attempt(self, http: aiohttp.ClientSession, body: bytes) -> None:
        self.attempts += 1
        try:
            # asyncio.timeout, not wait_for (pooler/runtime/tasks.py)
            async with asyncio.timeout(self.timeout):
                async with http.post(self._url, data=body, allow_redirects=False) as resp:
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
                    await resp.read()  # the connection goes back to the pool
        except TimeoutError:
            raise _Retry(f"no answer within {self.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Retry(self._scrub(str(exc)) or type(exc).__name__) from None
        if 200 <= status < 300:
            return
        if status >= 500 or status in _RETRY_STATUSES:
            raise _Retry(f"HTTP {status}", parse_retry_after(retry_after, self._clock()))
        raise _GiveUp(f"HTTP {status}")

    def _scrub(self, text: str) -> str:
        return text.replace(self._url, self.target + "/...")

    def _count(self, outcome: Outcome) -> None:
        if outcome == "sent":
            self.sent += 1
            self._warned_full = False
        elif outcome == "failed":
            self.failed += 1
        else:
            self.dropped += 1
        if self._on_outcome is not None:
            self._on_outcome(outcome)


__all__ = ["AlertWebhook", "DropOldest", "Outcome", "RetryPolicy", "webhook_body"]
