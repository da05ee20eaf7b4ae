"""A pure model of the KALE farm contract, for the local devnet.

The devnet serves this model's state through a Soroban JSON-RPC server and a Phase-1
Backend, so every rule the Pooler depends on must behave as on mainnet: the order of the
checks and their ``Error(Contract, #N)`` numbers, the lazy opening of a block by the first
plant after ``FarmBlock.timestamp + interval``, the entropy hand-over, the min/max
observations, the normalisation and reward formula, the reward decay, the forfeited stakes.
It was written after reading the contract (kalepail/KALE-sc, ``contract_farm.rs``,
``contract_homestead.rs``, ``storage.rs``, ``lib.rs``); KALE.md summarises the rules.

Theory of operation
-------------------
Time is a ledger clock: ``sequence = genesis_sequence + floor((clock() - genesis) /
ledger_seconds)``; a ledger's timestamp is the whole second at which it closed. Every call
runs "in" the current ledger. The contract's state is:

* instance storage: ``FarmIndex`` (u32), ``FarmBlock`` (a :class:`Block` used as the running
  accumulator of the current period's observations: min/max of stake, gap, zeros, and the
  last successful work hash as ``entropy``), ``FarmPaused``, ``Homesteader``, ``HomesteadAsset``;
* temporary storage: ``Block(index)`` (the min/max of the PREVIOUS period, the entropy miners
  hash with, ``staked_total``, ``normalized_total``) and ``Pail(farmer, index)``.

``plant`` opens block N+1 when the ledger time has reached ``FarmBlock.timestamp +
interval``: Block(N+1) takes FarmBlock's observations (unset sentinels become 0) and entropy,
FarmBlock is reset, FarmIndex is bumped. ``work`` records (gap, zeros) in the Pail, adds the
farmer's normalised score to ``normalized_total``, takes the stake back out of
``staked_total`` (so what is left there at harvest is the forfeited stakes of farmers who
never worked, shared out) and makes this hash the next block's entropy. ``harvest`` (only
once FarmIndex has moved past the block) mints ``reward + stake`` and deletes the Pail.

A failing call changes nothing: on Soroban a panic reverts the whole transaction, so each
method checks everything and computes new values before it stores any of them.

Temporary entries live ``temporary_ttl`` ledgers from their creation (a rewrite does not
extend them, as on Soroban); an expired entry reads as missing, which is how the real
"evicted Block/Pail" cases arise.

Deliberate differences: signatures are not modelled (the Backend holding the keys is the
only caller of ``plant``; ``pause``/``unpause`` trust their caller), and ``unpause`` refuses
with #5 when the farm is NOT paused. The deployed source checks ``if paused`` there, which
would make a paused farm impossible to unpause; the devnet follows the evident intent.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pooler.errors import ContractError, DevnetError
from protocol import strkey
from protocol.errors import ProtocolError
from protocol.work import MAX_NONCE, address_bytes, count_zeros, work_hash

# ---------------------------------------------------------------- the contract's constants (lib.rs)

BLOCK_INTERVAL = 300  # seconds; configurable on the devnet only
BLOCK_REWARD = 501_0000000 * BLOCK_INTERVAL // 60  # 2505 KALE, 7 decimals
BLOCKS_PER_MONTH = 24 * 60 // 5 * 30  # 8640: one decay period
BLOCK_SCALE = 100_0000000000  # 1e12 = 100 %
INVERSE_DECAY_RATE = BLOCK_SCALE - 5_0000000000  # 95 %
V2_GENESIS_BLOCK = 30_558

U32_MAX = 2**32 - 1
I128_MAX = 2**127 - 1
I128_MIN = -(2**127)

# Soroban network settings the entries' TTLs follow (mainnet values).
TEMPORARY_TTL = 17_280  # minimum temporary entry TTL: one day of 5 s ledgers
INSTANCE_TTL = 3_110_400  # max TTL the instance is extended to on every farm call

ERRORS: dict[int, str] = {
    1: "HomesteadExists",
    2: "HomesteadMissing",
    3: "FarmBlockMissing",
    4: "FarmPaused",
    5: "FarmNotPaused",
    6: "PlantAmountTooLow",
    7: "ZeroCountTooLow",
    8: "PailExists",
    9: "PailMissing",
    10: "WorkMissing",
    11: "BlockMissing",
    12: "BlockInvalid",
    13: "HashInvalid",
    14: "HarvestNotReady",
    15: "GapCountTooLow",
}

# The KALE Stellar Asset Contract's own error for a burn larger than the balance
# (soroban-env's ContractError::BalanceError). It is a different contract's #10.
ASSET_BALANCE_ERROR = 10


def _fail(number: int) -> ContractError:
    return ContractError(number, ERRORS[number])


class AssetBalanceError(ContractError):
    """The KALE asset contract refused a burn larger than the farmer's balance."""

    def __init__(self, farmer: str, balance: int, amount: int) -> None:
        super().__init__(ASSET_BALANCE_ERROR, "BalanceError")
        self.args = (f"Error(Contract, #10) BalanceError: {farmer} holds {balance}, cannot burn {amount}",)


# ---------------------------------------------------------------- the stored types (types.rs)


@dataclass(slots=True)
class Block:
    """The contract's ``Block`` struct; also the type of ``FarmBlock``."""

    timestamp: int
    min_gap: int
    min_stake: int
    min_zeros: int
    max_gap: int
    max_stake: int
    max_zeros: int
    entropy: bytes
    staked_total: int
    normalized_total: int


@dataclass(slots=True)
class Pail:
    """The contract's ``Pail`` struct: one farmer's plant (and work) in one block."""

    sequence: int
    gap: int | None
    stake: int
    zeros: int | None


T = TypeVar("T")


@dataclass(slots=True)
class Stored(Generic[T]):
    """A ledger entry's value with the metadata Soroban RPC reports beside it."""

    value: T
    last_modified: int
    live_until: int


# ---------------------------------------------------------------- the contract's arithmetic


def fixed_mul_floor(x: int, y: int, denominator: int) -> int:
    """``floor(x * y / denominator)`` with no intermediate overflow (soroban-fixed-point-math)."""
    if denominator == 0:
        raise ZeroDivisionError("fixed_mul_floor by zero")
    return (x * y) // denominator


def block_reward(index: int) -> int:
    """The block reward of ``index`` in stroops: 2505 KALE, times 0.95 per 8640 blocks after 30558.

    The contract decays a 1e12 fixed-point factor by repeated floor multiplication, then
    scales BLOCK_REWARD by it; the floors at each step are part of the result.
    """
    periods = max(index - V2_GENESIS_BLOCK, 0) // BLOCKS_PER_MONTH
    factor = BLOCK_SCALE
    for _ in range(periods):
        factor = fixed_mul_floor(factor, INVERSE_DECAY_RATE, BLOCK_SCALE)
    return fixed_mul_floor(BLOCK_REWARD, factor, BLOCK_SCALE)


def normalizations(block: Block, gap: int, stake: int, zeros: int) -> tuple[int, int, int]:
    """(gap, stake, zeros) scores of one farmer against a block's min/max, each at least 1.

    Every value is clamped into [min, max] and scaled so the widest of the three ranges
    counts as much as the others: ``n = max(floor((v - min) * scale / range), 1)``.
    """
    if (
        block.max_gap < block.min_gap
        or block.max_stake < block.min_stake
        or block.max_zeros < block.min_zeros
    ):
        raise _fail(12)
    range_gap = max(block.max_gap - block.min_gap, 1)
    range_stake = max(block.max_stake - block.min_stake, 1)
    range_zeros = max(block.max_zeros - block.min_zeros, 1)
    scale = max(range_gap, range_stake, range_zeros)
    clamped_gap = min(max(gap, block.min_gap), block.max_gap)
    clamped_stake = min(max(stake, block.min_stake), block.max_stake)
    clamped_zeros = min(max(zeros, block.min_zeros), block.max_zeros)
    return (
        max(fixed_mul_floor(clamped_gap - block.min_gap, scale, range_gap), 1),
        max(fixed_mul_floor(clamped_stake - block.min_stake, scale, range_stake), 1),
        max(fixed_mul_floor(clamped_zeros - block.min_zeros, scale, range_zeros), 1),
    )


def harvest_reward(block: Block, index: int, gap: int, stake: int, zeros: int) -> int:
    """The reward (without the returned stake) ``harvest`` mints for one worked Pail."""
    score = sum(normalizations(block, gap, stake, zeros))
    return fixed_mul_floor(score, block_reward(index) + block.staked_total, max(block.normalized_total, 1))


def new_farm_block(timestamp: int) -> Block:
    """A fresh accumulator: sentinels that any first observation replaces."""
    return Block(
        timestamp=timestamp,
        min_gap=U32_MAX,
        min_stake=I128_MAX,
        min_zeros=U32_MAX,
        max_gap=0,
        max_stake=I128_MIN,
        max_zeros=0,
        entropy=bytes(32),
        staked_total=0,
        normalized_total=0,
    )


def new_block(timestamp: int, farm_block: Block) -> Block:
    """Block(N+1) from the accumulator of period N; sentinels nobody replaced become 0."""
    return Block(
        timestamp=timestamp,
        min_gap=0 if farm_block.min_gap == U32_MAX else farm_block.min_gap,
        min_stake=0 if farm_block.min_stake == I128_MAX else farm_block.min_stake,
        min_zeros=0 if farm_block.min_zeros == U32_MAX else farm_block.min_zeros,
        max_gap=farm_block.max_gap,  # the u32::MIN sentinel is already 0
        max_stake=0 if farm_block.max_stake == I128_MIN else farm_block.max_stake,
        max_zeros=farm_block.max_zeros,
        entropy=farm_block.entropy,
        staked_total=0,
        normalized_total=0,
    )


def _check_address(address: str) -> str:
    try:
        strkey.decode(address)
    except ProtocolError as e:
        raise DevnetError(str(e)) from None
    return address


# ---------------------------------------------------------------- the contract


class FarmContract:
    """The farm contract and the KALE balances it burns and mints, on a ledger clock.

    ``clock`` returns unix seconds; tests pass a stepped fake. At genesis FarmIndex is
    ``start_index`` and Block(start_index) is open with timestamp = now, so a Pooler sees
    an open block at once. ``genesis=False`` leaves the contract as a deployment before
    its first FarmBlock (plant and work then fail with FarmBlockMissing, #3).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        block_interval: int = BLOCK_INTERVAL,
        ledger_seconds: float = 5.0,
        start_index: int = 1,
        genesis_sequence: int = 1000,
        faucet: int = 1000_0000000,
        temporary_ttl: int = TEMPORARY_TTL,
        homesteader: str | None = None,
        asset: str | None = None,
        genesis: bool = True,
    ) -> None:
        if not (isinstance(block_interval, int) and block_interval >= 1):
            raise DevnetError(
                f"block_interval must be a whole number of seconds >= 1, got {block_interval!r}"
            )
        if not ledger_seconds > 0:
            raise DevnetError(f"ledger_seconds must be > 0, got {ledger_seconds!r}")
        if not 0 <= start_index <= U32_MAX:
            raise DevnetError(f"start_index must be a u32, got {start_index!r}")
        if faucet < 0:
            raise DevnetError(f"faucet must be >= 0 stroops, got {faucet!r}")
        self._clock = clock  # the only source of time: injectable so tests step it
        self.block_interval = block_interval
        self.ledger_seconds = float(ledger_seconds)
        self.faucet_amount = faucet  # what fund() gives a new farmer, so stakes are visible
        self.temporary_ttl = temporary_ttl
        self.genesis_time = float(clock())  # ledger `genesis_sequence` closed at this instant
        self.genesis_sequence = genesis_sequence
        self.homesteader = _check_address(homesteader or strkey.encode("G", bytes(31) + b"\x01"))
        self.asset = _check_address(asset or strkey.encode("C", bytes(31) + b"\x02"))
        seq = self.ledger_sequence()
        # Instance storage. FarmBlock None = never initialised (only with genesis=False).
        self.farm_index = start_index if genesis else 0
        self.farm_block: Block | None = new_farm_block(self.ledger_timestamp()) if genesis else None
        self.farm_paused = False
        self.instance_modified = seq  # lastModifiedLedgerSeq of the instance entry
        self.instance_live_until = seq + INSTANCE_TTL - 1
        # Temporary storage, with per-entry ledger metadata; expired entries read as missing.
        self._blocks: dict[int, Stored[Block]] = {}
        self._pails: dict[tuple[str, int], Stored[Pail]] = {}
        # KALE balances in stroops: plant burns from here, harvest mints into here.
        self.balances: dict[str, int] = {}
        if genesis and self.farm_block is not None:
            self._blocks[start_index] = Stored(
                new_block(self.farm_block.timestamp, self.farm_block), seq, seq + temporary_ttl - 1
            )

    # ------------------------------------------------------------ the ledger clock

    def now(self) -> float:
        """The injected clock (unix seconds)."""
        return self._clock()

    def ledger_sequence(self) -> int:
        """Sequence of the latest closed ledger: one more every ``ledger_seconds``."""
        elapsed = max(self._clock() - self.genesis_time, 0.0)
        return self.genesis_sequence + math.floor(elapsed / self.ledger_seconds + 1e-9)

    def ledger_close_time(self, sequence: int) -> int:
        """The whole-second timestamp of ledger ``sequence``."""
        return math.floor(self.genesis_time + (sequence - self.genesis_sequence) * self.ledger_seconds)

    def ledger_timestamp(self) -> int:
        """Close time of the latest closed ledger (what RPC reports)."""
        return self.ledger_close_time(self.ledger_sequence())

    def exec_timestamp(self) -> int:
        """``env.ledger().timestamp()`` for a call made now: the close time of the ledger being closed.

        On a real network a transaction sent at time T is applied in the next ledger, whose
        close time is >= T. The last closed ledger's time would make a plant sent just after a
        block's end still land in the old block. (Sequences stay those of the last closed
        ledger, so RPC never shows an entry modified after its latest ledger.)
        """
        return self.ledger_close_time(self.ledger_sequence() + 1)

    # ------------------------------------------------------------ reading state (RPC, tests)

    def block_entry(self, index: int) -> Stored[Block] | None:
        """Block(index) with its metadata, or None when absent or expired."""
        entry = self._blocks.get(index)
        if entry is not None and entry.live_until < self.ledger_sequence():
            del self._blocks[index]  # Soroban evicts expired temporary entries for good
            return None
        return entry

    def pail_entry(self, farmer: str, index: int) -> Stored[Pail] | None:
        """Pail(farmer, index) with its metadata, or None when absent or expired."""
        entry = self._pails.get((farmer, index))
        if entry is not None and entry.live_until < self.ledger_sequence():
            del self._pails[(farmer, index)]
            return None
        return entry

    def get_block(self, index: int) -> Block | None:
        entry = self.block_entry(index)
        return None if entry is None else dataclasses.replace(entry.value)

    def get_pail(self, farmer: str, index: int) -> Pail | None:
        entry = self.pail_entry(farmer, index)
        return None if entry is None else dataclasses.replace(entry.value)

    def balance(self, address: str) -> int:
        return self.balances.get(address, 0)

    def fund(self, address: str, amount: int | None = None) -> int:
        """Mint KALE to ``address`` (the devnet's faucet); returns the new balance."""
        _check_address(address)
        amount = self.faucet_amount if amount is None else amount
        if amount < 0:
            raise DevnetError(f"cannot fund a negative amount ({amount})")
        self.balances[address] = self.balance(address) + amount
        return self.balances[address]

    # ------------------------------------------------------------ writing state

    def _set_block(self, index: int, block: Block, seq: int) -> None:
        old = self.block_entry(index)
        live_until = old.live_until if old is not None else seq + self.temporary_ttl - 1
        self._blocks[index] = Stored(block, seq, live_until)

    def _set_pail(self, farmer: str, index: int, pail: Pail, seq: int) -> None:
        old = self.pail_entry(farmer, index)
        live_until = old.live_until if old is not None else seq + self.temporary_ttl - 1
        self._pails[(farmer, index)] = Stored(pail, seq, live_until)

    def _touch_instance(self, seq: int, *, extend: bool = True) -> None:
        self.instance_modified = seq
        if extend:
            self.instance_live_until = seq + INSTANCE_TTL - 1

    # ------------------------------------------------------------ FarmTrait

    def plant(self, farmer: str, amount: int) -> int:
        """Stake ``amount`` stroops on the current (or newly opened) block; returns its index."""
        _check_address(farmer)
        if not I128_MIN <= amount <= I128_MAX:
            raise DevnetError(f"amount {amount} is not an i128")
        if amount < 0:
            raise _fail(6)
        if self.farm_paused:
            raise _fail(4)
        if self.farm_block is None:
            raise _fail(3)
        seq, ts = self.ledger_sequence(), self.exec_timestamp()
        index = self.farm_index
        farm_block = dataclasses.replace(self.farm_block)
        if ts >= farm_block.timestamp + self.block_interval:
            block = new_block(ts, farm_block)
            farm_block = new_farm_block(ts)
            index += 1
        else:
            current = self.get_block(index)
            if current is None:  # genesis (index 0) or an evicted block
                if index > 0:
                    index += 1
                block = new_block(ts, farm_block)
            else:
                block = current
        if index > U32_MAX:
            raise DevnetError("FarmIndex would overflow u32")
        if self.pail_entry(farmer, index) is not None:
            raise _fail(8)
        balance = self.balance(farmer)
        if amount > 0 and amount > balance:
            raise AssetBalanceError(farmer, balance, amount)
        # every check passed: apply
        block.staked_total += amount
        if amount > 0:
            self.balances[farmer] = balance - amount
        farm_block.max_stake = max(farm_block.max_stake, amount)
        farm_block.min_stake = min(farm_block.min_stake, amount)
        self.farm_index = index
        self._set_pail(farmer, index, Pail(sequence=seq, gap=None, stake=amount, zeros=None), seq)
        self._set_block(index, block, seq)
        self.farm_block = farm_block
        self._touch_instance(seq)
        return index

    def work(self, farmer: str, hash: bytes, nonce: int) -> int:
        """Record a (better) proof of work for ``farmer`` in the current block; returns the gap."""
        _check_address(farmer)
        if len(hash) != 32:
            raise DevnetError(f"hash must be 32 bytes, got {len(hash)}")
        if not 0 <= nonce <= MAX_NONCE:
            raise DevnetError(f"nonce {nonce} is not a u64")
        index = self.farm_index
        if self.farm_block is None:
            raise _fail(3)
        farm_block = dataclasses.replace(self.farm_block)
        block = self.get_block(index)
        if block is None:
            raise _fail(11)
        pail = self.get_pail(farmer, index)
        if pail is None:
            raise _fail(9)
        seq = self.ledger_sequence()
        gap = seq - pail.sequence
        if gap == 0:
            raise _fail(15)
        generated = work_hash(index, nonce, block.entropy, address_bytes(farmer))
        if hash != generated:
            raise _fail(13)
        zeros = count_zeros(hash)
        block.normalized_total += sum(normalizations(block, gap, pail.stake, zeros))
        if pail.zeros is not None:
            if zeros <= pail.zeros:
                raise _fail(7)
            # the contract takes the previous score back out with the NEW gap
            block.normalized_total -= sum(normalizations(block, gap, pail.stake, pail.zeros))
        else:
            block.staked_total -= pail.stake  # a worked stake is returned at harvest, not shared
        farm_block.entropy = generated
        farm_block.max_gap = max(farm_block.max_gap, gap)
        farm_block.min_gap = min(farm_block.min_gap, gap)
        farm_block.max_zeros = max(farm_block.max_zeros, zeros)
        farm_block.min_zeros = min(farm_block.min_zeros, zeros)
        pail.gap, pail.zeros = gap, zeros
        self._set_pail(farmer, index, pail, seq)
        self._set_block(index, block, seq)
        self.farm_block = farm_block
        self._touch_instance(seq)
        return gap

    def harvest(self, farmer: str, index: int) -> int:
        """Mint reward + stake of ``farmer``'s worked Pail in a past block; returns the reward."""
        _check_address(farmer)
        if not 0 <= index <= U32_MAX:
            raise DevnetError(f"index {index} is not a u32")
        block = self.get_block(index)
        if block is None:
            raise _fail(11)
        pail = self.get_pail(farmer, index)
        if pail is None:
            raise _fail(9)
        if index >= self.farm_index:
            raise _fail(14)
        if pail.gap is None or pail.zeros is None:
            raise _fail(10)
        reward = harvest_reward(block, index, pail.gap, pail.stake, pail.zeros)
        if reward + pail.stake > 0:
            self.balances[farmer] = self.balance(farmer) + reward + pail.stake
        del self._pails[(farmer, index)]
        self._touch_instance(self.ledger_sequence())
        return reward

    # ------------------------------------------------------------ HomesteadTrait (admin)

    def pause(self) -> None:
        if self.farm_paused:
            raise _fail(4)
        self.farm_paused = True
        self._touch_instance(self.ledger_sequence(), extend=False)

    def unpause(self) -> None:
        if not self.farm_paused:  # see the module docstring: the deployed check is inverted
            raise _fail(5)
        self.farm_paused = False
        self._touch_instance(self.ledger_sequence())

    def remove_block(self, index: int) -> None:
        self._blocks.pop(index, None)
