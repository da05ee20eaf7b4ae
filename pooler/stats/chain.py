"""``Block(index)``'s on-chain figures in a block's history, as JSON (stored and shown alike).

The bounds of the contract's score (period index-1's min/max zeros, gap in ledgers, stake in
stroops; fixed while the block is open) and its running totals (the stakes not yet reclaimed by
a first work, the sum the rewards are divided by): pooler.core.rewards explains each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pooler.core.rewards import BlockState as ChainBlock

CHAIN_FIELDS = (  # (attribute, JSON name, a stroop amount: a decimal string)
    ("min_zeros", "minZeros", False),
    ("max_zeros", "maxZeros", False),
    ("min_gap", "minGap", False),
    ("max_gap", "maxGap", False),
    ("min_stake", "minStake", True),
    ("max_stake", "maxStake", True),
    ("staked_total", "stakedTotal", True),
    ("normalized_total", "normalizedTotal", True),
)


def chain_data(chain: ChainBlock) -> dict[str, Any]:
    return {
        name: str(getattr(chain, attr)) if big else getattr(chain, attr) for attr, name, big in CHAIN_FIELDS
    }


def chain_from(index: int, d: Mapping[str, Any]) -> ChainBlock:
    """The inverse of :func:`chain_data` (``index``: the block's)."""
    return ChainBlock(index, **{attr: int(str(d[name])) for attr, name, _ in CHAIN_FIELDS})
