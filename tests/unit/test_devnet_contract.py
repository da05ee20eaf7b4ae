"""The devnet's farm contract model: reward math worked by hand, every error path, a block cycle.

No event loop: a stepped fake clock drives the ledger (5 s ledgers, 300 s blocks).
"""

from __future__ import annotations

import pytest
from stellar_sdk import Keypair

from pooler.devnet.contract import (
    BLOCK_REWARD,
    AssetBalanceError,
    Block,
    FarmContract,
    block_reward,
    harvest_reward,
    normalizations,
)
from pooler.devnet.miner import find_nonce
from pooler.errors import ContractError, DevnetError
from protocol.work import address_bytes, work_hash

T0 = 1_700_000_000.0
KALE = 10_000_000  # stroops per KALE


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def ledgers(self, n: int) -> None:
        self.t += 5 * n


def farmer(i: int) -> str:
    return Keypair.from_raw_ed25519_seed(bytes([i]) * 32).public_key


A, B, C = farmer(1), farmer(2), farmer(3)


def make(clock: FakeClock, **kw: object) -> FarmContract:
    c = FarmContract(clock=clock, **kw)  # type: ignore[arg-type]
    for f in (A, B, C):
        c.fund(f)
    return c


def do_work(c: FarmContract, f: str, zeros: int = 1) -> tuple[int, int]:
    """Mine a nonce with exactly ``zeros`` for the current block; returns (gap, zeros)."""
    block = c.get_block(c.farm_index)
    assert block is not None
    nonce, digest = find_nonce(c.farm_index, block.entropy, f, zeros)
    return c.work(f, digest, nonce), zeros


def expect(number: int, call: object, *args: object) -> ContractError:
    with pytest.raises(ContractError) as info:
        call(*args)  # type: ignore[operator]
    assert info.value.number == number
    assert f"#{number}" in str(info.value)
    return info.value


# ---------------------------------------------------------------- reward math, worked by hand


def test_block_reward_is_2505_kale_before_decay_starts() -> None:
    assert BLOCK_REWARD == 2505 * KALE
    assert block_reward(1) == 25_050_000_000
    assert block_reward(30558 + 8640 - 1) == 25_050_000_000  # first period not complete


def test_block_reward_decays_by_five_percent_per_8640_blocks() -> None:
    # factor after k periods, 1e12 fixed point, floored at each step:
    # 1: 950000000000  2: 902500000000  3: 857375000000 (all exact)
    assert block_reward(30558 + 8640) == 23_797_500_000  # 25050000000 * 0.95
    assert block_reward(30558 + 2 * 8640) == 22_607_625_000  # * 0.9025
    assert block_reward(30558 + 3 * 8640) == 21_477_243_750  # * 0.857375
    # 7 periods: 735091890625 * 0.95 = 698337296093.75 -> floor 698337296093;
    # 25050000000 * 698337296093 / 1e12 = 17493349267.1...  -> 17493349267
    assert block_reward(30558 + 7 * 8640) == 17_493_349_267


def _block(**kw: int) -> Block:
    base = dict(
        timestamp=0,
        min_gap=1,
        max_gap=11,
        min_stake=0,
        max_stake=1000,
        min_zeros=5,
        max_zeros=9,
        staked_total=0,
        normalized_total=10_000,
    )
    base.update(kw)
    return Block(entropy=bytes(32), **base)  # type: ignore[arg-type]


def test_normalization_scales_every_range_to_the_widest() -> None:
    # ranges: gap 10, stake 1000, zeros 4 -> scale 1000
    # gap 6 -> (6-1)*1000/10 = 500; stake 250 -> 250*1000/1000 = 250; zeros 7 -> 2*1000/4 = 500
    assert normalizations(_block(), 6, 250, 7) == (500, 250, 500)


def test_normalization_clamps_and_never_scores_below_one() -> None:
    # gap 20 -> clamped 11 -> 1000; stake 5000 -> 1000 -> 1000; zeros 3 -> clamped 5 -> 0 -> 1
    assert normalizations(_block(), 20, 5000, 3) == (1000, 1000, 1)
    # a block with no observations (all 0): every range is 1, every score floors to 0 -> 1
    empty = _block(min_gap=0, max_gap=0, max_stake=0, min_zeros=0, max_zeros=0)
    assert normalizations(empty, 9, 123, 7) == (1, 1, 1)


def test_normalization_of_an_inconsistent_block_is_block_invalid() -> None:
    expect(12, normalizations, _block(min_gap=5, max_gap=4), 4, 0, 5)


def test_harvest_reward_formula() -> None:
    # score 1250 of normalized_total 10000: 1250 * 25050000000 / 10000 = 3131250000
    assert harvest_reward(_block(), 1, 6, 250, 7) == 3_131_250_000
    # forfeited stakes join the pot: 1250 * (25050000000 + 7 KALE) / 10000 = 3140000000
    assert harvest_reward(_block(staked_total=70_000_000), 1, 6, 250, 7) == 3_140_000_000
    # decayed reward of index 39198: 1250 * 23797500000 / 10000 = 2974687500
    assert harvest_reward(_block(), 39198, 6, 250, 7) == 2_974_687_500
    # floor: score 3 of total 7 -> 3 * 25050000000 / 7 = 10735714285.71 -> 10735714285
    assert harvest_reward(_block(normalized_total=7), 1, 0, 0, 0) == 10_735_714_285


# ---------------------------------------------------------------- ledger clock and genesis


def test_genesis_opens_the_start_block_now_and_ledgers_advance_every_five_seconds() -> None:
    clock = FakeClock()
    c = FarmContract(clock=clock, start_index=7, genesis_sequence=500)
    assert c.farm_index == 7
    b = c.get_block(7)
    assert b is not None and b.timestamp == int(T0) and b.entropy == bytes(32)
    assert (b.min_gap, b.max_gap, b.min_stake, b.max_stake, b.staked_total) == (0, 0, 0, 0, 0)
    assert c.ledger_sequence() == 500
    clock.t += 4.9
    assert c.ledger_sequence() == 500
    clock.t += 0.1
    assert c.ledger_sequence() == 501 and c.ledger_timestamp() == int(T0) + 5


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(DevnetError, match="block_interval"):
        FarmContract(clock=FakeClock(), block_interval=0)
    with pytest.raises(DevnetError, match="ledger_seconds"):
        FarmContract(clock=FakeClock(), ledger_seconds=0)
    with pytest.raises(DevnetError, match="address"):
        FarmContract(clock=FakeClock()).plant("GNOTANADDRESS", 1)


# ---------------------------------------------------------------- every error path


def test_3_farm_block_missing_before_the_first_farm_block() -> None:
    c = FarmContract(clock=FakeClock(), genesis=False)
    expect(3, c.plant, A, 0)
    expect(3, c.work, A, bytes(32), 0)


def test_4_farm_paused_on_plant_and_on_a_second_pause() -> None:
    c = make(FakeClock())
    c.pause()
    expect(4, c.plant, A, 0)
    expect(4, c.pause)
    c.unpause()
    assert c.plant(A, 0) == 1


def test_5_unpause_of_a_running_farm() -> None:
    expect(5, make(FakeClock()).unpause)


def test_6_negative_plant_is_checked_before_pause() -> None:
    c = make(FakeClock())
    c.pause()
    expect(6, c.plant, A, -1)


def test_7_resubmission_must_raise_the_zero_count() -> None:
    clock = FakeClock()
    c = make(clock)
    c.plant(A, 0)
    clock.ledgers(1)
    do_work(c, A, zeros=2)
    before = c.get_block(1)
    expect(7, do_work, c, A, 2)
    expect(7, do_work, c, A, 1)
    assert c.get_block(1) == before  # a refused call changes nothing
    gap, _ = do_work(c, A, zeros=3)
    pail = c.get_pail(A, 1)
    assert pail is not None and pail.zeros == 3 and pail.gap == gap == 1


def test_8_second_plant_in_the_same_block() -> None:
    c = make(FakeClock())
    c.plant(A, 10)
    expect(8, c.plant, A, 10)
    assert c.balance(A) == c.faucet_amount - 10  # only the first burned


def test_9_work_or_harvest_without_a_pail() -> None:
    clock = FakeClock()
    c = make(clock)
    expect(9, c.work, A, bytes(32), 0)
    clock.t += 300
    c.plant(B, 0)  # opens block 2, so block 1 is harvestable
    expect(9, c.harvest, A, 1)


def test_10_harvest_without_work() -> None:
    clock = FakeClock()
    c = make(clock)
    c.plant(A, 5)
    clock.t += 300
    c.plant(B, 0)
    expect(10, c.harvest, A, 1)
    assert c.get_pail(A, 1) is not None  # the stake stays locked (and shared out)


def test_11_block_missing_for_work_and_harvest() -> None:
    clock = FakeClock()
    c = make(clock)
    c.plant(A, 0)
    clock.ledgers(1)
    c.remove_block(1)
    expect(11, c.work, A, bytes(32), 0)
    expect(11, c.harvest, A, 99)


def test_13_hash_that_is_not_the_recomputed_one() -> None:
    clock = FakeClock()
    c = make(clock)
    c.plant(A, 0)
    clock.ledgers(1)
    right = work_hash(1, 42, bytes(32), address_bytes(A))
    expect(13, c.work, A, bytes(32), 42)
    expect(13, c.work, A, right, 43)  # another nonce
    expect(13, c.work, A, work_hash(1, 42, bytes(32), address_bytes(B)), 42)  # another farmer's
    assert c.work(A, right, 42) == 1


def test_14_harvest_of_the_current_block() -> None:
    clock = FakeClock()
    c = make(clock)
    c.plant(A, 0)
    clock.ledgers(1)
    do_work(c, A)
    expect(14, c.harvest, A, 1)


def test_15_work_in_the_ledger_of_the_plant() -> None:
    c = make(FakeClock())
    c.plant(A, 0)
    expect(15, do_work, c, A)


def test_burn_beyond_the_balance_is_the_asset_contracts_error_and_changes_nothing() -> None:
    clock = FakeClock()
    c = make(clock)
    clock.t += 300  # the next plant would open block 2
    with pytest.raises(AssetBalanceError) as info:
        c.plant(A, c.faucet_amount + 1)
    assert info.value.number == 10
    assert c.farm_index == 1 and c.get_block(2) is None and c.get_pail(A, 2) is None


def test_work_on_a_rejected_input_type() -> None:
    c = make(FakeClock())
    with pytest.raises(DevnetError, match="32 bytes"):
        c.work(A, b"short", 0)
    with pytest.raises(DevnetError, match="u64"):
        c.work(A, bytes(32), 2**64)


# ---------------------------------------------------------------- blocks


def test_block_opens_lazily_on_the_first_plant_after_the_interval() -> None:
    clock = FakeClock()
    c = make(clock)
    c.plant(A, 3 * KALE)
    clock.ledgers(1)
    _, _ = do_work(c, A, zeros=1)
    last_hash = c.farm_block.entropy if c.farm_block else b""
    clock.t = T0 + 294  # applied in the ledger closing at +295, before the deadline: still block 1
    assert c.plant(B, 0) == 1
    clock.t = T0 + 400  # long past, but nobody planted: the index has not moved
    assert c.farm_index == 1
    assert c.plant(C, KALE) == 2
    b2 = c.get_block(2)
    # a call is applied in the ledger being closed (the next one), as on a real network
    assert b2 is not None and b2.timestamp == int(T0) + 405
    assert b2.entropy == last_hash != bytes(32)  # the last successful work hash of block 1
    # block 2 holds block 1's observations: stakes 0..3 KALE, gap 1, zeros 1
    assert (b2.min_stake, b2.max_stake, b2.min_gap, b2.max_gap, b2.min_zeros, b2.max_zeros) == (
        0,
        3 * KALE,
        1,
        1,
        1,
        1,
    )
    assert b2.staked_total == KALE
    assert c.farm_block is not None and c.farm_block.min_stake == c.farm_block.max_stake == KALE
    assert c.farm_block.entropy == bytes(32)  # the accumulator was reset


def test_an_evicted_block_is_replaced_by_the_next_index() -> None:
    clock = FakeClock()
    c = make(clock, temporary_ttl=10)
    c.plant(A, 0)
    clock.ledgers(20)  # Block(1) and the Pail have expired, yet the interval has not passed
    assert c.get_block(1) is None and c.get_pail(A, 1) is None
    assert c.plant(A, 0) == 2


def test_three_farmer_cycle_over_two_blocks() -> None:
    clock = FakeClock()
    c = make(clock)
    faucet = c.faucet_amount
    # ---- block 1 (genesis, no observations yet: every score is 1+1+1)
    c.plant(A, 100 * KALE)
    c.plant(B, 200 * KALE)
    c.plant(C, 300 * KALE)  # C never works: its stake is forfeited and shared out
    clock.ledgers(1)
    assert do_work(c, A, zeros=1) == (1, 1)
    clock.ledgers(2)
    assert do_work(c, B, zeros=2) == (3, 2)
    b1 = c.get_block(1)
    assert b1 is not None and b1.normalized_total == 6 and b1.staked_total == 300 * KALE
    # ---- block 2 opens with block 1's observations: gap 1..3, stake 100..300 KALE, zeros 1..2
    clock.t = T0 + 300
    assert c.plant(A, 100 * KALE) == 2
    c.plant(B, 300 * KALE)
    c.plant(C, 200 * KALE)
    # harvest block 1: 3 * (25050000000 + 3000000000) / 6 = 14025000000 each
    assert c.harvest(A, 1) == 14_025_000_000
    assert c.harvest(B, 1) == 14_025_000_000
    expect(10, c.harvest, C, 1)
    expect(9, c.harvest, A, 1)  # the Pail was removed
    assert c.balance(A) == faucet - 100 * KALE + 14_025_000_000  # block 2 staked, block 1 paid
    clock.ledgers(1)
    do_work(c, B, zeros=1)  # gap 1
    clock.ledgers(1)
    do_work(c, A, zeros=2)  # gap 2
    clock.ledgers(1)
    do_work(c, C, zeros=2)  # gap 3
    # ranges: gap 2, stake 2000000000, zeros 1 -> scale 2000000000
    # A: gap (2-1)*2e9/2 = 1e9; stake 0 -> 1; zeros (2-1)*2e9/1 = 2e9  -> 3000000001
    # B: gap 0 -> 1; stake 2e9*2e9/2e9 = 2e9; zeros 0 -> 1           -> 2000000002
    # C: gap 2*2e9/2 = 2e9; stake 1e9*2e9/2e9 = 1e9; zeros 2e9        -> 5000000000
    b2 = c.get_block(2)
    assert b2 is not None and b2.normalized_total == 10_000_000_003 and b2.staked_total == 0
    clock.t = T0 + 600
    c.plant(A, 0)  # opens block 3
    # reward = floor(score * 25050000000 / 10000000003)
    assert c.harvest(A, 2) == 7_515_000_000
    assert c.harvest(B, 2) == 5_010_000_003
    assert c.harvest(C, 2) == 12_524_999_996
    assert c.balance(B) == faucet + 14_025_000_000 + 5_010_000_003
    assert c.balance(C) == faucet - 300 * KALE + 12_524_999_996  # lost block 1's stake
