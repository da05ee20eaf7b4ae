"""Miner tokens."""

from __future__ import annotations

import base64

from pooler.miners import new_token


def test_tokens_never_start_with_a_dash_and_carry_32_random_bytes() -> None:
    tokens = [new_token() for _ in range(2000)]  # ~31 of these would start with "-" otherwise
    assert not any(t.startswith("-") for t in tokens)
    assert all(len(base64.urlsafe_b64decode(t + "=")) == 32 for t in tokens)
    assert len(set(tokens)) == len(tokens)
