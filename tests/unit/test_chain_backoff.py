"""The backoff schedule shared by the block monitor and the Backend client, with an injected rng."""

from __future__ import annotations

import pytest

from pooler.chain.backoff import Backoff


def test_steps_double_then_cap() -> None:
    b = Backoff(base=0.5, cap=3.0)
    assert [b.step(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_jitter_spans_half_to_full_step() -> None:
    b = Backoff(base=1.0, cap=100.0)
    assert b.delay(3, lambda: 0.0) == 2.0
    assert b.delay(3, lambda: 0.5) == 3.0
    assert b.delay(3, lambda: 0.999) == pytest.approx(3.998)
    # the cap holds with jitter too
    assert b.delay(40, lambda: 0.999) < 100.0


def test_a_long_outage_does_not_overflow() -> None:
    b = Backoff(base=0.1, cap=10.0)
    assert b.step(10_000) == 10.0


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_bad_parameters_are_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="0 < base <= cap"):
        Backoff(base=base, cap=cap)


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError, match="attempt counts from 1"):
        Backoff(base=1.0, cap=2.0).step(0)
