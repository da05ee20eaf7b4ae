from __future__ import annotations

from pooler.web.gate import ConnectionGate
from pooler.web.limits import AuthBackoff, RegistrationLimits, TokenBucket


def test_bucket_allows_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.take(0.05)  # half a token refilled
    assert bucket.take(0.1)  # one whole token
    assert not bucket.take(0.1)


def test_bucket_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket(rate=100, burst=3, now=0.0)
    for _ in range(3):
        assert bucket.take(0.0)
    assert [bucket.take(1000.0) for _ in range(4)] == [True, True, True, False]


# ---------------------------------------------------------------- registrations (issue #18, item 8)


def test_registrations_are_limited_per_address_and_refill_over_the_hour() -> None:
    limits = RegistrationLimits(per_address=3, total=0, now=0.0)
    assert [limits.admit("a", 0.0) is None for _ in range(4)] == [True, True, True, False]
    refusal = limits.admit("a", 0.0)
    assert refusal is not None and refusal.limit == "registrations-per-ip"
    assert refusal.retry_after == 1200.0 and refusal.retry_seconds == 1200  # one of 3 an hour
    assert limits.admit("b", 0.0) is None  # another address has its own
    assert limits.admit("a", 1199.0) is not None
    assert limits.admit("a", 1200.0) is None


def test_a_refusal_by_the_total_does_not_use_up_the_address_allowance() -> None:
    limits = RegistrationLimits(per_address=2, total=2, now=0.0)
    assert limits.admit("a", 0.0) is None
    assert limits.admit("b", 0.0) is None
    for _ in range(5):  # refused by the total, again and again
        refusal = limits.admit("c", 0.0)
        assert refusal is not None and refusal.limit == "registrations-total"
    assert limits.admit("c", 1800.0) is None  # the total refilled one: c still has both of its own
    assert limits.admit("c", 3600.0) is None
    # and a refusal by the address does not use up the total
    limits = RegistrationLimits(per_address=1, total=2, now=0.0)
    assert limits.admit("a", 0.0) is None
    assert [limits.admit("a", 0.0) is not None for _ in range(5)] == [True] * 5
    assert limits.admit("b", 0.0) is None  # the total's second registration is still there


def test_zero_turns_a_registration_limit_off() -> None:
    limits = RegistrationLimits(per_address=0, total=0, now=0.0)
    assert all(limits.admit("a", 0.0) is None for _ in range(10_000))


# ---------------------------------------------------------------- wrong tokens (item 9)


def test_wrong_tokens_back_an_address_off_doubling_and_are_forgotten_after_a_quiet_while() -> None:
    backoff = AuthBackoff(allowed=3, base=1.0)
    for _ in range(2):
        backoff.failed("a", 0.0)
        assert backoff.check("a", 0.0) is None
    backoff.failed("a", 0.0)  # the third: backed off 1 s
    refusal = backoff.check("a", 0.5)
    assert refusal is not None and refusal.limit == "auth-backoff" and refusal.retry_after == 0.5
    assert backoff.check("b", 0.5) is None  # per address
    assert backoff.check("a", 1.0) is None
    backoff.failed("a", 1.0)  # one more: 2 s
    assert backoff.check("a", 2.9) is not None and backoff.check("a", 3.0) is None
    for _ in range(20):  # capped at 64 x
        backoff.failed("a", 3.0)
    refusal = backoff.check("a", 3.0)
    assert refusal is not None and refusal.retry_after == 64.0
    # quiet for 64 x base after the back-off: forgotten, three wrong tokens allowed again
    backoff.failed("a", 67.0 + 64.1)
    assert backoff.check("a", 67.0 + 64.1) is None


def test_a_good_token_does_not_forgive_wrong_ones() -> None:
    backoff = AuthBackoff(allowed=2, base=10.0)
    backoff.failed("a", 0.0)
    # (a good token from "a" changes nothing: AuthBackoff has no success call to reset it)
    backoff.failed("a", 0.0)
    assert backoff.check("a", 0.0) is not None


# ---------------------------------------------------------------- the connection gate (items 5, 7)


def _gate(
    pending: int = 3, per_host: int = 2, open_: int = 10
) -> tuple[ConnectionGate, list[str], list[int]]:
    refusals: list[str] = []
    dropped: list[int] = []
    return ConnectionGate(pending, per_host, open_, refusals.append), refusals, dropped


def test_the_gate_bounds_pending_connections_per_address_and_in_total() -> None:
    gate, refusals, dropped = _gate()
    a1 = gate.enter("a", lambda: dropped.append(1))
    a2 = gate.enter("a", lambda: dropped.append(2))
    assert not isinstance(a1, str) and not isinstance(a2, str)
    a1.served()
    a2.served()  # both being answered (say dashboards): neither can be dropped
    assert gate.enter("a", lambda: None) == "pending-per-ip"
    b = gate.enter("b", lambda: dropped.append(3))
    assert not isinstance(b, str) and gate.pending == 3
    # full: the oldest one still reading (b) makes room for a newcomer
    c = gate.enter("c", lambda: dropped.append(4))
    assert not isinstance(c, str) and dropped == [3] and b.state == 2
    assert refusals == ["pending-per-ip", "pending-dropped"]
    # settling frees a pending place but the connection stays open
    a1.settle()
    assert gate.pending == 2 and gate.open == 3
    a1.close()
    a1.close()  # idempotent
    c.close()
    a2.close()
    assert (gate.pending, gate.open) == (0, 0)


def test_the_gate_keeps_connections_under_the_descriptor_budget() -> None:
    gate, refusals, _ = _gate(pending=10, per_host=10, open_=2)
    first = gate.enter("a", lambda: None)
    second = gate.enter("a", lambda: None)
    assert not isinstance(first, str) and not isinstance(second, str)
    first.settle()
    second.settle()  # authenticated miners are never dropped
    assert gate.enter("b", lambda: None) == "descriptors" and refusals == ["descriptors"]
    second.close()
    assert not isinstance(gate.enter("b", lambda: None), str)
