"""Reward projection for the open block: what each farmer would harvest if the block closed now.

Pure integer arithmetic, no I/O and no clock: the caller passes the block's on-chain state and
the farmers' pails and gets stroops back.

Where the inputs come from
--------------------------
The reward of block N is computed at ``harvest`` from the TEMPORARY ``Block(N)`` ledger entry
(``ChainSnapshot.block`` in ``pooler.chain.reader``), not from the instance's ``FarmBlock``:

* ``Block(N)``'s min/max of gap, stake and zeros are the observations of period N-1, copied
  when block N opened; they never change while block N is open, so a farmer's score depends
  only on its own (gap, stake, zeros);
* ``Block(N).staked_total`` grows with every plant and shrinks by a farmer's stake at its first
  work, so what is left at harvest is the forfeited stakes of farmers who never worked;
* ``Block(N).normalized_total`` grows with every work (see the quirk below).

``FarmBlock`` only gathers period N's min/max for Block(N+1) (and the next entropy); its
``staked_total`` and ``normalized_total`` stay 0. Projecting from it would be wrong twice.

The formula, exactly as the contract computes it (KALE-sc ``contract_farm.rs``, KALE.md)
-------------------------------------------------------------------------------------------
Every division is ``fixed_mul_floor(x, y, d) = floor(x * y / d)`` on i128 with an i256
intermediate (no overflow, floor toward minus infinity; Python's ``//`` on ints is the same)::

    range_v = max(max_v - min_v, 1)                     for v in gap, stake, zeros
    scale   = max(range_gap, range_stake, range_zeros)
    n_v     = max(floor((clamp(v, min_v, max_v) - min_v) * scale / range_v), 1)
    score   = n_gap + n_stake + n_zeros
    reward  = floor(score * (block_reward(N) + staked_total) / max(normalized_total, 1))

``block_reward(N)`` is 2505 KALE times 0.95 per 8640 blocks after block 30558, the 0.95 applied
as repeated 1e12 fixed-point floor multiplications. Harvest mints ``reward + stake``.

The resubmission quirk: ``work`` adds ``score(gap, new zeros)`` to ``normalized_total`` and, for
a resubmission, takes out ``score(gap, old zeros)`` with the NEW gap, while what the first
submission had added was ``score(old gap, old zeros)``. Once the gap has grown the total is
smaller than the sum of the final scores, and the rewards of the block add up to more than its
pot. So a farmer's reward is ``score * pot // normalized_total``, never its share of the sum of
the scores, and the pool's total is the sum of its farmers' floored rewards.

Cost: ``block_reward`` loops once per elapsed decay period (about one per month of blocks);
``project_pool`` computes it once, then a handful of big-int operations per farmer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pooler.errors import ChainDataError, PoolerError

# ---------------------------------------------------------------- the contract's constants (lib.rs)

BLOCK_INTERVAL = 300  # seconds: the contract's constant, which the block reward is derived from
BLOCK_REWARD = 501_0000000 * BLOCK_INTERVAL // 60  # 2505 KALE in stroops (7 decimals)
BLOCKS_PER_MONTH = 24 * 60 // 5 * 30  # 8640 blocks: one decay period
BLOCK_SCALE = 100_0000000000  # 1e12 = 100 %
INVERSE_DECAY_RATE = BLOCK_SCALE - 5_0000000000  # 95 %
V2_GENESIS_BLOCK = 30_558  # decay periods count from here


# ---------------------------------------------------------------- inputs


class BlockFields(Protocol):
    """What a ``Block`` record offers: ``pooler.chain.reader.BlockRecord`` and the devnet's
    ``Block`` both fit, so neither needs importing here."""

    @property
    def min_gap(self) -> int: ...
    @property
    def max_gap(self) -> int: ...
    @property
    def min_stake(self) -> int: ...
    @property
    def max_stake(self) -> int: ...
    @property
    def min_zeros(self) -> int: ...
    @property
    def max_zeros(self) -> int: ...
    @property
    def staked_total(self) -> int: ...
    @property
    def normalized_total(self) -> int: ...


class PailFields(Protocol):
    """What a ``Pail`` record offers (``pooler.chain.reader.PailRecord``, the devnet's ``Pail``)."""

    @property
    def stake(self) -> int: ...
    @property
    def gap(self) -> int | None: ...
    @property
    def zeros(self) -> int | None: ...
    @property
    def sequence(self) -> int: ...


@dataclass(frozen=True, slots=True)
class BlockState:
    """``Block(index)`` as last read: the normalisation bounds and the two running totals."""

    index: int  # the block's FarmIndex: decides the decayed block reward
    # The bounds of the score: period N-1's observations, fixed while block N is open.
    min_gap: int  # ledgers
    max_gap: int
    min_stake: int  # stroops
    max_stake: int
    min_zeros: int  # zero nibbles
    max_zeros: int
    staked_total: int  # stakes planted and not yet reclaimed by a first work (stroops)
    normalized_total: int  # the sum the contract divides by (see the quirk above)

    @classmethod
    def of(cls, index: int, record: BlockFields) -> BlockState:
        """From a decoded ``Block(index)`` entry (never from ``FarmBlock``: see the module doc)."""
        return cls(
            index=index,
            min_gap=record.min_gap,
            max_gap=record.max_gap,
            min_stake=record.min_stake,
            max_stake=record.max_stake,
            min_zeros=record.min_zeros,
            max_zeros=record.max_zeros,
            staked_total=record.staked_total,
            normalized_total=record.normalized_total,
        )


@dataclass(frozen=True, slots=True)
class Pail:
    """One farmer's plant in the block; ``gap`` and ``zeros`` are None until its work lands."""

    stake: int  # stroops burnt by plant; minted back at harvest only if the farmer worked
    gap: int | None = None  # ledgers from plant to the last successful work
    zeros: int | None = None  # zero nibbles of the last successful work hash
    sequence: int = 0  # the ledger of the plant: a work landing in ledger L has gap L - sequence

    @classmethod
    def of(cls, record: PailFields) -> Pail:
        return cls(stake=record.stake, gap=record.gap, zeros=record.zeros, sequence=record.sequence)

    @property
    def worked(self) -> bool:
        """What ``harvest`` checks (#10 WorkMissing otherwise)."""
        return self.gap is not None and self.zeros is not None


# ---------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class Score:
    """The three normalised components of a farmer's score, each at least 1."""

    gap: int  # n_gap
    stake: int  # n_stake
    zeros: int  # n_zeros

    @property
    def total(self) -> int:
        return self.gap + self.stake + self.zeros


@dataclass(frozen=True, slots=True)
class FarmerProjection:
    """What ``harvest`` would pay one farmer if the block closed now.

    A farmer who planted and never worked gets nothing (harvest fails with #10): ``score`` is
    None, ``reward`` and ``payout`` are 0, and its stake stays in the pot for the others.
    """

    farmer: str  # the caller's label (farmer id or address), carried through
    stake: int  # the Pail's stake (stroops)
    score: Score | None  # None when the farmer has not worked
    reward: int  # stroops minted on top of the returned stake
    payout: int  # reward + stake: what the farmer's balance gains at harvest

    @property
    def worked(self) -> bool:
        return self.score is not None


@dataclass(frozen=True, slots=True)
class PoolProjection:
    """The pool's farmers in one block. ``reward`` is the sum of the floored per-farmer rewards."""

    index: int  # the block projected
    block_reward: int  # the decayed reward of this index
    pot: int  # block_reward + staked_total: what normalized_total divides
    normalized_total: int  # Block(index)'s, as given
    farmers: tuple[FarmerProjection, ...]  # in the order given
    reward: int  # sum of the farmers' rewards
    payout: int  # sum of rewards + returned stakes
    forfeited: int  # stakes of the pool's farmers that planted and have not worked (yet)


# ---------------------------------------------------------------- the contract's arithmetic


def fixed_mul_floor(x: int, y: int, denominator: int) -> int:
    """``floor(x * y / denominator)``: soroban-fixed-point-math's ``fixed_mul_floor`` (which
    widens to i256 instead of overflowing, and floors toward minus infinity as ``//`` does)."""
    if denominator == 0:
        raise ZeroDivisionError("fixed_mul_floor by zero")
    return (x * y) // denominator


def decay_factor(index: int) -> int:
    """0.95 per elapsed decay period as a 1e12 fixed-point factor, floored after each period's
    multiplication as ``calculate_block_reward`` does."""
    periods = max(index - V2_GENESIS_BLOCK, 0) // BLOCKS_PER_MONTH
    factor = BLOCK_SCALE
    for _ in range(periods):
        factor = fixed_mul_floor(factor, INVERSE_DECAY_RATE, BLOCK_SCALE)
    return factor


def block_reward(index: int) -> int:
    """The block reward of ``index`` in stroops: ``floor(BLOCK_REWARD * decay_factor / 1e12)``."""
    return fixed_mul_floor(BLOCK_REWARD, decay_factor(index), BLOCK_SCALE)


def normalizations(block: BlockState, gap: int, stake: int, zeros: int) -> Score:
    """A farmer's score against the block's bounds (``generate_normalizations``).

    Raises ``ChainDataError`` for a block whose max is below its min: the contract panics
    with #12 BlockInvalid there, so nobody can harvest that block.
    """
    if (
        block.max_gap < block.min_gap
        or block.max_stake < block.min_stake
        or block.max_zeros < block.min_zeros
    ):
        raise ChainDataError(
            f"Block({block.index}) has a max below its min (gap {block.min_gap}..{block.max_gap}, "
            f"stake {block.min_stake}..{block.max_stake}, zeros {block.min_zeros}..{block.max_zeros}): "
            "the contract refuses it with #12 BlockInvalid"
        )
    range_gap = max(block.max_gap - block.min_gap, 1)
    range_stake = max(block.max_stake - block.min_stake, 1)
    range_zeros = max(block.max_zeros - block.min_zeros, 1)
    scale = max(range_gap, range_stake, range_zeros)
    clamped_gap = min(max(gap, block.min_gap), block.max_gap)
    clamped_stake = min(max(stake, block.min_stake), block.max_stake)
    clamped_zeros = min(max(zeros, block.min_zeros), block.max_zeros)
    return Score(
        gap=max(fixed_mul_floor(clamped_gap - block.min_gap, scale, range_gap), 1),
        stake=max(fixed_mul_floor(clamped_stake - block.min_stake, scale, range_stake), 1),
        zeros=max(fixed_mul_floor(clamped_zeros - block.min_zeros, scale, range_zeros), 1),
    )


def reward_for(score: int, pot: int, normalized_total: int) -> int:
    """``floor(score * pot / max(normalized_total, 1))``: the reward harvest mints."""
    return fixed_mul_floor(score, pot, max(normalized_total, 1))


# ---------------------------------------------------------------- projections


def _project(block: BlockState, farmer: str, pail: Pail, pot: int) -> FarmerProjection:
    if pail.gap is None or pail.zeros is None:
        return FarmerProjection(farmer=farmer, stake=pail.stake, score=None, reward=0, payout=0)
    score = normalizations(block, pail.gap, pail.stake, pail.zeros)
    reward = reward_for(score.total, pot, block.normalized_total)
    return FarmerProjection(
        farmer=farmer, stake=pail.stake, score=score, reward=reward, payout=reward + pail.stake
    )


def project_farmer(block: BlockState, farmer: str, pail: Pail) -> FarmerProjection:
    """What ``harvest(farmer, block.index)`` would return (``reward``) if the block closed with
    ``block`` as it is; ``farmer`` is only a label carried into the result."""
    return _project(block, farmer, pail, block_reward(block.index) + block.staked_total)


def project_pool(block: BlockState, pails: Mapping[str, Pail] | Iterable[tuple[str, Pail]]) -> PoolProjection:
    """Every given farmer's projection and the pool's totals (sums of floored rewards)."""
    items = pails.items() if isinstance(pails, Mapping) else pails
    base = block_reward(block.index)
    pot = base + block.staked_total
    farmers = tuple(_project(block, farmer, pail, pot) for farmer, pail in items)
    return PoolProjection(
        index=block.index,
        block_reward=base,
        pot=pot,
        normalized_total=block.normalized_total,
        farmers=farmers,
        reward=sum(f.reward for f in farmers),
        payout=sum(f.payout for f in farmers),
        forfeited=sum(f.stake for f in farmers if not f.worked),
    )


def apply_work(block: BlockState, pail: Pail, gap: int, zeros: int) -> tuple[BlockState, Pail]:
    """Block(N) and the Pail after a successful ``work`` with this gap and zeros, as the
    contract updates them: a what-if ("if our best landed now") or an update of a cached
    BlockState when our own work lands, until the next read shows it.

    Raises ``PoolerError`` where the contract would refuse the work (gap 0: #15; a
    resubmission that does not raise the zeros: #7) and ``ChainDataError`` for #12.
    """
    if gap < 1:
        raise PoolerError(f"gap {gap}: the contract refuses work in the ledger of the plant (#15)")
    added = normalizations(block, gap, pail.stake, zeros).total
    normalized_total = block.normalized_total + added
    staked_total = block.staked_total
    if pail.zeros is not None:
        if zeros <= pail.zeros:
            raise PoolerError(f"zeros {zeros} <= {pail.zeros}: the contract refuses the resubmission (#7)")
        # the quirk: the old zeros are taken back out at the NEW gap
        normalized_total -= normalizations(block, gap, pail.stake, pail.zeros).total
    else:
        staked_total -= pail.stake  # a worked stake is returned at harvest, not shared out
    new_block = dataclasses.replace(block, staked_total=staked_total, normalized_total=normalized_total)
    return new_block, Pail(stake=pail.stake, gap=gap, zeros=zeros, sequence=pail.sequence)
