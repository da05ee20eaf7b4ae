"""The alert webhook against a real HTTP receiver on 127.0.0.1 (tests/support/webhook_receiver.py).

What a receiver gets (one JSON object per alert, the same id on every retry), what is retried
(a 5xx, a 429 after its Retry-After, no answer in time, a refused connection) and what is not
(a 4xx), that a hanging receiver never holds up ``offer`` (the oldest alerts are dropped
instead), and that closing stops promptly, delivering what it can within its grace.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pooler import __version__
from pooler.chain.backoff import Backoff
from pooler.core.alerts import BackendDown, Resolved, WorkFailed, alert_record
from pooler.runtime.webhook import AlertWebhook, Outcome, RetryPolicy
from tests.support.wait import wait_until
from tests.support.webhook_receiver import WebhookReceiver

T0 = 1_760_000_000.0
SOURCE = {"id": "test-pooler", "name": "Test Pool"}


class Sleeps:
    """The webhook's sleep: records each backoff asked for and yields without waiting it out."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(0)  # the fake sleep: no time passes, the loop turns once


@asynccontextmanager
async def webhook(
    url: str,
    *,
    request_timeout: float = 5.0,
    queue_size: int = 16,
    attempts: int = 5,
    window: float = 30.0,
    sleep: Sleeps | None = None,
    grace: float = 1.0,
) -> AsyncIterator[tuple[AlertWebhook, list[Outcome]]]:
    outcomes: list[Outcome] = []
    extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
    hook = AlertWebhook(
        url,
        source=SOURCE,
        timeout=request_timeout,
        queue_size=queue_size,
        retry=RetryPolicy(attempts, window, Backoff(0.01, 0.05)),
        on_outcome=outcomes.append,
        **extra,
    )
    hook.start()
    try:
        yield hook, outcomes
    finally:
        async with asyncio.timeout(10):  # a close that hangs fails the test instead
            await hook.aclose(grace)


def failed_block(i: int) -> WorkFailed:
    return WorkFailed(i, ("f1",), f"alert {i}")


async def test_each_alert_is_posted_as_one_json_object() -> None:
    down = BackendDown(T0, "health check: refused")
    up = Resolved(down, T0 + 30, "status 'healthy'")
    async with WebhookReceiver() as receiver, webhook(receiver.url) as (hook, outcomes):
        hook.offer(down, T0 + 5)
        hook.offer(up, T0 + 30)
        await wait_until(lambda: len(receiver.delivered()) == 2, "both alerts delivered")
    first, second = receiver.delivered()
    assert first == {
        "id": first["id"],
        "at": 1_760_000_005_000,
        "pooler": SOURCE,
        **alert_record(down),
    }
    assert (
        second["at"] == 1_760_000_030_000 and second["kind"] == "resolved" and second["status"] == "resolved"
    )
    assert second["key"] == first["key"] == "backend-down"
    assert first["id"] != second["id"]
    headers = receiver.deliveries[0].headers
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"kale-pooler/{__version__}"
    assert outcomes == ["sent", "sent"] and (hook.sent, hook.failed, hook.dropped) == (2, 0, 0)


async def test_a_5xx_is_retried_with_backoff_under_the_same_id() -> None:
    sleeps = Sleeps()
    async with WebhookReceiver() as receiver, webhook(receiver.url, sleep=sleeps) as (hook, outcomes):
        receiver.statuses = [500, 503]
        hook.offer(failed_block(1))
        await wait_until(lambda: hook.sent == 1, "the alert delivered after two 5xx")
    assert [d.status for d in receiver.deliveries] == [500, 503, 200]
    assert len({d.body["id"] for d in receiver.deliveries}) == 1  # one alert, three attempts
    assert hook.attempts == 3 and outcomes == ["sent"]
    # equal jitter around 0.01 s doubling: [0.005, 0.01), then [0.01, 0.02)
    assert len(sleeps.asked) == 2
    assert 0.005 <= sleeps.asked[0] < 0.01 and 0.01 <= sleeps.asked[1] < 0.02


async def test_a_429_waits_its_retry_after() -> None:
    sleeps = Sleeps()
    async with WebhookReceiver() as receiver, webhook(receiver.url, sleep=sleeps) as (hook, _):
        receiver.statuses, receiver.retry_after = [429], "2"
        hook.offer(failed_block(1))
        await wait_until(lambda: hook.sent == 1, "the alert delivered after a 429")
    assert sleeps.asked == [2.0]


async def test_a_4xx_is_given_up_at_once_and_retries_stop_at_their_bound() -> None:
    async with (
        WebhookReceiver() as receiver,
        webhook(receiver.url, attempts=3, sleep=Sleeps()) as (hook, outcomes),
    ):
        receiver.statuses = [404]
        hook.offer(failed_block(1))
        await wait_until(lambda: hook.failed == 1, "the refused alert given up")
        assert len(receiver.deliveries) == 1  # not retried
        receiver.statuses = [500] * 10
        hook.offer(failed_block(2))
        await wait_until(lambda: hook.failed == 2, "the alert given up after its attempts")
    assert [d.status for d in receiver.deliveries] == [404, 500, 500, 500]
    assert outcomes == ["failed", "failed"] and hook.sent == 0


async def test_no_answer_in_time_is_retried_then_given_up() -> None:
    async with (
        WebhookReceiver() as receiver,
        webhook(receiver.url, request_timeout=0.2, attempts=2) as (hook, _),
    ):
        receiver.hang()
        hook.offer(failed_block(1))
        await wait_until(lambda: hook.failed == 1, "the alert given up after two timeouts")
    assert len(receiver.deliveries) == 2 and receiver.delivered() == []
    assert hook.attempts == 2


async def test_a_refused_connection_is_retried_then_given_up() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with webhook(f"http://127.0.0.1:{port}/hook", attempts=3, sleep=Sleeps()) as (hook, outcomes):
        hook.offer(failed_block(1))
        await wait_until(lambda: hook.failed == 1, "the alert given up")
    assert hook.attempts == 3 and outcomes == ["failed"]


async def test_a_hanging_receiver_never_holds_up_offer_the_oldest_alerts_are_dropped() -> None:
    async with WebhookReceiver() as receiver, webhook(receiver.url, queue_size=3) as (hook, outcomes):
        receiver.hang()
        hook.offer(failed_block(0))
        await wait_until(lambda: len(receiver.deliveries) == 1, "the first alert in flight")
        for i in range(1, 11):  # the receiver holds the first: these pile up, synchronously
            hook.offer(failed_block(i))
        assert (hook.pending, hook.dropped) == (3, 7)  # the newest three kept
        assert outcomes == ["dropped"] * 7
        receiver.release()
        await wait_until(lambda: hook.sent == 4, "the first and the three newest delivered")
    assert [b["data"]["block"] for b in receiver.delivered()] == [0, 8, 9, 10]  # in order
    assert (hook.sent, hook.failed, hook.dropped) == (4, 0, 7)


async def test_close_stops_promptly_while_the_receiver_hangs() -> None:
    async with WebhookReceiver() as receiver:
        receiver.hang()
        async with webhook(receiver.url, request_timeout=60.0, grace=0.2) as (hook, outcomes):
            for i in range(3):
                hook.offer(failed_block(i))
            await wait_until(lambda: len(receiver.deliveries) == 1, "the first alert in flight")
        # the webhook() exit closed it within its failsafe: the one in flight and the two queued
        # were not delivered and count as dropped
        assert (hook.sent, hook.dropped, hook.pending) == (0, 3, 0)
        assert outcomes == ["dropped"] * 3
        hook.offer(failed_block(9))  # after the close: dropped at once, never queued
        assert (hook.dropped, hook.pending) == (4, 0)
    assert receiver.delivered() == []


async def test_close_delivers_what_is_queued_within_its_grace() -> None:
    async with WebhookReceiver() as receiver:
        async with webhook(receiver.url, grace=10.0) as (hook, _):
            for i in range(3):
                hook.offer(failed_block(i))
        # closed at once after offering: the grace let all three out
        assert [b["data"]["block"] for b in receiver.delivered()] == [0, 1, 2]
        assert (hook.sent, hook.dropped) == (3, 0)
