"""Reward projection (pooler/core/rewards.py) against worked numbers and the devnet's contract.

No event loop. Three kinds of evidence:
- numbers worked by hand from KALE.md's formula and from KALE-sc's own test inputs (copied here,
  with where they come from);
- the devnet's contract model (pooler/devnet/contract.py) run through plant/work/harvest: the
  projection made from Block(N) and the Pails after a work equals what harvest pays, to the stroop;
- properties over random blocks: the same arithmetic as the model's, and where the pot holds.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stellar_sdk import Keypair

from pooler.core import rewards as pj
from pooler.core.rewards import (
    BlockState,
    Pail,
    Score,
    apply_work,
    block_reward,
    decay_factor,
    normalizations,
    project_farmer,
    project_pool,
    reward_for,
)
from pooler.devnet import contract as model
from pooler.devnet.contract import FarmContract
from pooler.devnet.miner import find_nonce
from pooler.errors import ChainDataError, ContractError, PoolerError

T0 = 1_700_000_000.0
KALE = 10_000_000  # stroops per KALE


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t  # unix seconds the contract model reads as "now"

    def __call__(self) -> float:
        return self.t

    def ledgers(self, n: int) -> None:
        self.t += 5 * n


def farmer(i: int) -> str:
    return Keypair.from_raw_ed25519_seed(bytes([i]) * 32).public_key


A, B, C, D, E = (farmer(i) for i in range(1, 6))


def chain(**kw: object) -> tuple[FakeClock, FarmContract]:
    clock = FakeClock()
    c = FarmContract(clock=clock, **kw)  # type: ignore[arg-type]
    for f in (A, B, C, D, E):
        c.fund(f, 10_000 * KALE)
    return clock, c


def work(c: FarmContract, f: str, zeros: int) -> int:
    """Mine a nonce with exactly ``zeros`` zeros for the current block and submit it; the gap."""
    block = c.get_block(c.farm_index)
    assert block is not None
    nonce, digest = find_nonce(c.farm_index, block.entropy, f, zeros)
    return c.work(f, digest, nonce)


def state(c: FarmContract, index: int | None = None) -> BlockState:
    """What the monitor reads: Block(index) (the current block by default)."""
    index = c.farm_index if index is None else index
    block = c.get_block(index)
    assert block is not None
    return BlockState.of(index, block)


def pails(c: FarmContract, farmers: tuple[str, ...], index: int | None = None) -> dict[str, Pail]:
    index = c.farm_index if index is None else index
    found: dict[str, Pail] = {}
    for f in farmers:
        pail = c.get_pail(f, index)
        assert pail is not None
        found[f] = Pail.of(pail)
    return found


def gap_now(c: FarmContract, f: str) -> int:
    """The gap a work landing in the current ledger would get."""
    pail = c.get_pail(f, c.farm_index)
    assert pail is not None
    return c.ledger_sequence() - pail.sequence


def close_and_harvest(clock: FakeClock, c: FarmContract, farmers: tuple[str, ...]) -> dict[str, int]:
    """Open the next block (someone plants after the interval) and harvest each farmer that
    worked; returns the rewards harvest answered."""
    index = c.farm_index
    opened = c.get_block(index)
    assert opened is not None
    clock.t = max(clock.t, opened.timestamp + c.block_interval)
    # a farmer outside the pool opens the next block (the model needs a funded G... address)
    assert c.plant(farmer(99), 0) == index + 1
    rewards: dict[str, int] = {}
    for f in farmers:
        pail = c.get_pail(f, index)
        if pail is not None and pail.zeros is not None:
            rewards[f] = c.harvest(f, index)
    return rewards


def harvest_if_closed_now(clock: FakeClock, c: FarmContract, farmers: tuple[str, ...]) -> dict[str, int]:
    """The same on a copy of the chain, so the original block stays open."""
    clock2, c2 = copy.deepcopy((clock, c))  # one memo: the copied contract reads the copied clock
    return close_and_harvest(clock2, c2, farmers)


def _block(**kw: int) -> BlockState:
    # the block of tests/unit/test_devnet_contract.py's worked examples
    base = dict(
        index=1,
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
    return BlockState(**base)


# ---------------------------------------------------------------- worked numbers


def test_block_reward_and_its_decay() -> None:
    # KALE.md: block_reward = 2505 KALE (2505_0000000), times 0.95 per 8640 blocks after 30558
    assert pj.BLOCK_REWARD == 2505_0000000
    assert block_reward(1) == block_reward(30558 + 8639) == 25_050_000_000
    # worked by hand in tests/unit/test_devnet_contract.py (floor at every decay step)
    assert block_reward(30558 + 8640) == 23_797_500_000
    assert block_reward(30558 + 3 * 8640) == 21_477_243_750
    assert block_reward(30558 + 7 * 8640) == 17_493_349_267
    # KALE-sc utils.rs `calc_emissions_rate` prints the reward of index 30558 + 8 * 8640 per minute
    # (/ 5) with the comment "// 3317102156". That figure is of the 500-KALE-a-minute reward the
    # contract had before KALE-sc commit 683f515 ("501 for the memes"): the same decay gives it.
    factor = decay_factor(30558 + 8 * 8640)
    # 0.95 ** 8 * 1e12 = 663420431289.0625, but the floors at each step cost one more unit:
    # ... 735091890625 -> 698337296093(.75) -> 663420431288(.35)
    assert factor == 663_420_431_288
    assert 500_0000000 * 300 // 60 * factor // 10**12 // 5 == 3_317_102_156
    assert block_reward(30558 + 8 * 8640) // 5 == 3_323_736_360  # with today's 501 KALE a minute
    for index in (0, 30558, 30558 + 8640 * 5 + 17, 30558 + 8640 * 40):
        assert block_reward(index) == model.block_reward(index)


def test_scores_and_rewards_of_the_devnet_tests_worked_examples() -> None:
    # tests/unit/test_devnet_contract.py: ranges gap 10, stake 1000, zeros 4 -> scale 1000
    assert normalizations(_block(), 6, 250, 7) == Score(gap=500, stake=250, zeros=500)
    assert normalizations(_block(), 20, 5000, 3) == Score(1000, 1000, 1)  # clamped; never below 1
    worked = Pail(stake=250, gap=6, zeros=7)
    assert project_farmer(_block(), A, worked).reward == 3_131_250_000  # 1250 * 2505 KALE / 10000
    # forfeited stakes join the pot: 1250 * (25050000000 + 7 KALE) / 10000
    assert project_farmer(_block(staked_total=70_000_000), A, worked).reward == 3_140_000_000
    assert project_farmer(_block(index=39198), A, worked).reward == 2_974_687_500  # decayed
    # floor: score 3 of 7 -> 3 * 25050000000 / 7 = 10735714285.71...
    assert project_farmer(_block(normalized_total=7), A, Pail(0, 0, 0)).reward == 10_735_714_285


def test_kale_sc_test_generate_reward_inputs() -> None:
    # Block and Pail copied from KALE-sc contracts/kale-sc/src/tests/utils.rs `test_generate_reward`
    # (which only prints the result; the arithmetic below is by hand):
    # ranges gap 50, stake 1234747261419, zeros 5 -> scale 1234747261419
    # gap 40 -> 40 * scale / 50 = 987797809135.2 -> 987797809135; stake 10000 -> 10000;
    # zeros 7 -> 2 * scale / 5 = 493898904567.6 -> 493898904567; score 1481696723702
    # reward = 1481696723702 * (25050000000 + 15000000) / 230227940395912 = 161312863.7... -> 161312863
    block = BlockState(
        index=0,
        min_gap=0,
        max_gap=50,
        min_stake=0,
        max_stake=1234747261419,
        min_zeros=5,
        max_zeros=10,
        staked_total=15000000,
        normalized_total=230227940395912,
    )
    got = project_farmer(block, A, Pail(stake=10000, gap=40, zeros=7))
    assert got.score == Score(gap=987797809135, stake=10000, zeros=493898904567)
    assert got.reward == 161_312_863
    assert got.payout == 161_312_863 + 10000


def test_kale_sc_test_zero_harvest_inputs_floor_to_nothing() -> None:
    # KALE-sc utils.rs `test_zero_harvest` (v2 normalisation, the deployed one): a Pail of all
    # zeros scores 1 + 1 + 1 = 3; 3 * 25050000000 / (1114640798 * 300) = 0.22 -> 0.
    block = BlockState(
        index=0,
        min_gap=0,
        max_gap=46,
        min_stake=0,
        max_stake=1114640798,
        min_zeros=4,
        max_zeros=9,
        staked_total=0,
        normalized_total=1114640798 * 3 * 100,
    )
    got = project_farmer(block, A, Pail(stake=0, gap=0, zeros=0))
    assert got.score == Score(1, 1, 1)
    assert (got.reward, got.payout, got.worked) == (0, 0, True)  # worked, harvestable, paid nothing


def test_the_resubmission_quirk_by_hand() -> None:
    # Bounds gap 1..11, stake 0..1000, zeros 5..9 (scale 1000), nobody else, no forfeited stake.
    # A works at gap 2 with 6 zeros: +score(2, 6) = 100 + 500 + 250 = 850 (A's stake 500).
    # B works at gap 11 with 9 zeros: +score(11, 9) = 1000 + 500 + 1000 = 2500 (B's stake 500).
    # A resubmits at gap 11 with 7 zeros: +score(11, 7) = 1000 + 500 + 500 = 2000,
    #   -score(11, 6) = 1000 + 500 + 250 = 1750 (the OLD zeros at the NEW gap, not the 850 added).
    # normalized_total = 850 + 2500 + 2000 - 1750 = 3600, while the final scores sum to 4500.
    block = _block(normalized_total=0, staked_total=1000)
    a, b = Pail(stake=500), Pail(stake=500)
    block, a = apply_work(block, a, 2, 6)
    block, b = apply_work(block, b, 11, 9)
    block, a = apply_work(block, a, 11, 7)
    assert (block.normalized_total, block.staked_total) == (3600, 0)
    pool = project_pool(block, {A: a, B: b})
    # A: 2000 * 25050000000 / 3600 = 13916666666.6 -> 13916666666; B: 2500 * ... = 17395833333.3
    assert [f.reward for f in pool.farmers] == [13_916_666_666, 17_395_833_333]
    assert pool.reward == 31_312_499_999 > pool.pot == 25_050_000_000  # 3131.25 KALE out of 2505
    # the share of the sum of scores would pay exactly the pot, and pays A the wrong amount
    assert 2000 * pool.pot // 4500 == 11_133_333_333 != pool.farmers[0].reward


def test_an_unworked_farmer_gets_nothing_and_its_stake_feeds_the_pot() -> None:
    block = _block(staked_total=300 * KALE)
    pool = project_pool(block, [(A, Pail(stake=250, gap=6, zeros=7)), (B, Pail(stake=300 * KALE))])
    a, b = pool.farmers
    assert (b.farmer, b.worked, b.score, b.reward, b.payout) == (B, False, None, 0, 0)
    assert a.reward == 1250 * (25_050_000_000 + 300 * KALE) // 10_000
    assert pool.pot == 25_050_000_000 + 300 * KALE
    assert (pool.reward, pool.payout, pool.forfeited) == (a.reward, a.reward + 250, 300 * KALE)
    # half a pail (gap without zeros) is not work: harvest checks both (#10)
    assert not Pail(stake=1, gap=3).worked


def test_an_inconsistent_block_is_chain_data_that_nobody_can_harvest() -> None:
    with pytest.raises(ChainDataError, match="#12"):
        project_farmer(_block(min_zeros=9, max_zeros=5), A, Pail(1, 2, 7))
    # an unworked pail needs no score, so it projects (to nothing) even then
    assert project_farmer(_block(min_zeros=9, max_zeros=5), A, Pail(1)).reward == 0


def test_apply_work_refuses_what_the_contract_refuses() -> None:
    block, pail = apply_work(_block(), Pail(stake=5), 3, 7)
    with pytest.raises(PoolerError, match="#15"):
        apply_work(_block(), Pail(stake=5), 0, 7)
    with pytest.raises(PoolerError, match="#7"):
        apply_work(block, pail, 4, 7)


# ---------------------------------------------------------------- on the devnet's contract model


def test_kale_sc_main_test_scenario_on_the_model() -> None:
    # KALE-sc contracts/kale-sc/src/tests/test.rs `test`: four farmers plant 1_0000000, 0_0001000,
    # 0 and 0_1000000 in the genesis block; farmer 1 works with 0 zeros, farmer 4 works, farmer 1's
    # retry with the same hash fails ZeroCountTooLow, farmer 1 resubmits higher; 19 ledgers later
    # farmers 2 and 3 work; the next block opens and all four harvest. The genesis block has no
    # observations (every min/max 0), so every score is 1 + 1 + 1 whatever the zeros: the zero
    # counts here are smaller than KALE-sc's (6-9 would take minutes in Python) and change nothing.
    # Each of the 4 gets 3 * 2505 KALE / 12 = 626.25 KALE: the four harvests are exactly the pot.
    clock, c = chain()
    stakes = {A: 1_0000000, B: 1000, C: 0, D: 1000000}  # KALE-sc spells them 0_0001000, 0_1000000
    for f, amount in stakes.items():
        c.plant(f, amount)
    assert state(c).staked_total == 1_1001000
    clock.ledgers(1)
    work(c, A, 0)
    work(c, D, 2)
    with pytest.raises(ContractError, match="#7"):
        work(c, A, 0)
    work(c, A, 1)  # same ledger: the gap did not grow, so no quirk here
    clock.ledgers(19)
    work(c, B, 2)
    work(c, C, 3)
    farmers = tuple(stakes)
    projected = project_pool(state(c), pails(c, farmers))
    assert (projected.normalized_total, projected.pot) == (12, 2505 * KALE)  # every stake reclaimed
    assert [f.reward for f in projected.farmers] == [6_262_500_000] * 4
    harvested = close_and_harvest(clock, c, farmers)
    assert harvested == {f: 6_262_500_000 for f in farmers}
    assert projected.reward == sum(harvested.values()) == 2505 * KALE


def _block_one_observations(clock: FakeClock, c: FarmContract) -> None:
    """Block 1: gaps 1..6, stakes 0..250 KALE, zeros 1..3 become block 2's bounds."""
    c.plant(A, 100 * KALE)
    c.plant(B, 40 * KALE)
    c.plant(C, 0)
    c.plant(D, 250 * KALE)
    for f, ledgers, zeros in ((A, 1, 1), (B, 1, 2), (C, 2, 3), (D, 2, 2)):
        clock.ledgers(ledgers)
        work(c, f, zeros)
    clock.t = T0 + 300  # the next plant opens block 2


# (farmer, ledgers to wait first, zeros): D is not the pool's; E plants and never works;
# A resubmits 5 ledgers after its first work, its gap now past block 2's max.
BLOCK_TWO_WORK = ((B, 1, 1), (A, 1, 1), (C, 1, 3), (D, 2, 2), (A, 5, 2))
BLOCK_TWO_STAKES = {A: 100 * KALE, B: 250 * KALE, C: 10 * KALE, D: 0, E: 60 * KALE}
POOL = (A, B, C, E)


def _block_two(clock: FakeClock, c: FarmContract) -> Iterator[str]:
    """Plant block 2, then yield after each work (its farmer), checking ``apply_work`` first."""
    for f, amount in BLOCK_TWO_STAKES.items():
        assert c.plant(f, amount) == 2
    for f, ledgers, zeros in BLOCK_TWO_WORK:
        clock.ledgers(ledgers)
        before, pail = state(c), pails(c, (f,))[f]
        expected_gap = gap_now(c, f)
        predicted = apply_work(before, pail, expected_gap, zeros)
        assert work(c, f, zeros) == expected_gap
        assert (state(c), pails(c, (f,))[f]) == predicted  # the accumulators, as the contract moves them
        yield f


def test_projection_after_the_last_work_is_what_harvest_pays_with_a_resubmission() -> None:
    clock, c = chain()
    _block_one_observations(clock, c)
    for _ in _block_two(clock, c):
        pass
    block = state(c)
    assert (block.min_gap, block.max_gap, block.min_zeros, block.max_zeros) == (1, 6, 1, 3)
    assert (block.min_stake, block.max_stake) == (0, 250 * KALE)
    assert block.staked_total == 60 * KALE  # E's stake: planted, never worked
    projected = project_pool(block, pails(c, POOL))
    everyone = project_pool(block, pails(c, (*POOL, D)))
    harvested = close_and_harvest(clock, c, (*POOL, D))
    assert set(harvested) == {A, B, C, D}
    with pytest.raises(ContractError, match="#10"):
        c.harvest(E, 2)
    # to the stroop, farmer by farmer and for the pool
    assert {f.farmer: f.reward for f in projected.farmers if f.worked} == {f: harvested[f] for f in (A, B, C)}
    assert projected.reward == harvested[A] + harvested[B] + harvested[C]
    assert projected.forfeited == 60 * KALE and projected.farmers[3].reward == 0
    # The block paid out more than its pot: A's resubmission (1 -> 2 zeros, gap 2 -> 10, clamped
    # to 6) took its old score out at gap 6 (3500000001) where its first work had put in the
    # score at gap 2 (1500000001). Scale 2.5e9 (the stake range); final scores A 4750000000,
    # B 2500000002, C 3600000000, D 3250000001 sum to 14100000003, normalized_total 12100000003.
    assert everyone.normalized_total == 12_100_000_003
    assert everyone.pot == 25_650_000_000  # 2505 KALE + E's forfeited 60 KALE
    assert harvested == {A: 10_069_214_873, B: 5_299_586_779, C: 7_631_404_956, D: 6_889_462_810}
    assert sum(harvested.values()) == everyone.reward == 29_889_669_418  # 2988.97 KALE out of 2565
    # and a share of the sum of the scores would have paid A 864.10 KALE instead of 1006.92
    scores = {f.farmer: f.score.total for f in everyone.farmers if f.score is not None}
    assert sum(scores.values()) == 14_100_000_003
    assert scores[A] * everyone.pot // sum(scores.values()) == 8_640_957_444 != harvested[A]


def test_projection_is_right_after_every_work_as_it_lands() -> None:
    clock, c = chain()
    _block_one_observations(clock, c)
    steps = 0
    for _ in _block_two(clock, c):
        projected = project_pool(state(c), pails(c, POOL))
        harvested = harvest_if_closed_now(clock, c, POOL)
        assert {f.farmer: f.reward for f in projected.farmers if f.worked} == harvested
        steps += 1
    assert steps == len(BLOCK_TWO_WORK)


def test_projection_from_farm_block_would_be_wrong() -> None:
    # FarmBlock gathers block 3's bounds; its totals stay 0. The reward needs Block(2).
    clock, c = chain()
    _block_one_observations(clock, c)
    for _ in _block_two(clock, c):
        pass
    assert c.farm_block is not None
    assert (c.farm_block.staked_total, c.farm_block.normalized_total) == (0, 0)
    wrong = project_pool(BlockState.of(2, c.farm_block), pails(c, POOL))
    right = project_pool(state(c), pails(c, POOL))
    harvested = close_and_harvest(clock, c, POOL)
    assert right.reward == sum(harvested.values()) != wrong.reward


def test_what_if_our_best_landed_now() -> None:
    # Before C works: apply_work on the block read now projects what C would get if its work
    # landed in the next ledger and the block closed then; the model agrees after the fact.
    clock, c = chain()
    _block_one_observations(clock, c)
    for f, amount in BLOCK_TWO_STAKES.items():
        c.plant(f, amount)
    clock.ledgers(2)
    work(c, A, 2)
    clock.ledgers(1)
    gap = gap_now(c, C)
    block, pail = apply_work(state(c), pails(c, (C,))[C], gap, 3)
    what_if = project_farmer(block, C, pail)
    work(c, C, 3)
    assert harvest_if_closed_now(clock, c, (C,)) == {C: what_if.reward}


def test_a_decayed_block_on_the_model() -> None:
    index = 30558 + 7 * 8640
    clock, c = chain(start_index=index)
    c.plant(A, 5 * KALE)
    c.plant(B, 0)
    clock.ledgers(3)
    work(c, A, 1)
    work(c, B, 2)
    projected = project_pool(state(c), pails(c, (A, B)))
    assert projected.block_reward == 17_493_349_267  # worked in test_devnet_contract.py
    assert [f.reward for f in projected.farmers] == [8_746_674_633, 8_746_674_633]  # 3 of 6 each
    assert close_and_harvest(clock, c, (A, B)) == {A: 8_746_674_633, B: 8_746_674_633}


# ---------------------------------------------------------------- properties

_u32 = st.integers(0, 2**32 - 1)
_stake = st.integers(0, 10**15)


@st.composite
def _blocks(draw: st.DrawFn) -> BlockState:
    gaps = sorted((draw(st.integers(0, 200)), draw(st.integers(0, 200))))
    stakes = sorted((draw(_stake), draw(_stake)))
    zeros = sorted((draw(st.integers(0, 64)), draw(st.integers(0, 64))))
    return BlockState(
        index=draw(st.integers(0, 30558 + 8640 * 30)),
        min_gap=gaps[0],
        max_gap=gaps[1],
        min_stake=stakes[0],
        max_stake=stakes[1],
        min_zeros=zeros[0],
        max_zeros=zeros[1],
        staked_total=draw(_stake),
        normalized_total=draw(st.integers(0, 10**18)),
    )


@settings(max_examples=200, deadline=None)
@given(block=_blocks(), gap=st.integers(1, 300), stake=_stake, zeros=st.integers(0, 64))
def test_same_arithmetic_as_the_devnet_model(block: BlockState, gap: int, stake: int, zeros: int) -> None:
    record = model.Block(
        timestamp=0,
        min_gap=block.min_gap,
        min_stake=block.min_stake,
        min_zeros=block.min_zeros,
        max_gap=block.max_gap,
        max_stake=block.max_stake,
        max_zeros=block.max_zeros,
        entropy=bytes(32),
        staked_total=block.staked_total,
        normalized_total=block.normalized_total,
    )
    score = normalizations(block, gap, stake, zeros)
    assert (score.gap, score.stake, score.zeros) == model.normalizations(record, gap, stake, zeros)
    got = project_farmer(block, A, Pail(stake, gap, zeros))
    assert got.reward == model.harvest_reward(record, block.index, gap, stake, zeros)
    pot = block_reward(block.index) + block.staked_total
    assert got.reward == reward_for(score.total, pot, block.normalized_total)


@settings(max_examples=150, deadline=None)
@given(
    block=_blocks(),
    works=st.lists(
        st.tuples(st.integers(0, 5), st.integers(1, 300), st.integers(0, 64)), min_size=1, max_size=12
    ),
    same_ledger=st.booleans(),
)
def test_the_pot_holds_unless_a_gap_grew_on_resubmission(
    block: BlockState, works: list[tuple[int, int, int]], same_ledger: bool
) -> None:
    # Six farmers of the pool plant, then work in random order; a resubmission's gap never
    # shrinks (ledgers only move on), and with same_ledger it stays the first work's gap.
    planted = {str(i): Pail(stake=(i + 1) * 1000) for i in range(6)}
    staked = sum(p.stake for p in planted.values())
    block = dataclasses.replace(block, staked_total=staked, normalized_total=0)
    grew = False  # some resubmission's old zeros scored more at its new gap than at its old one
    for who, gap, zeros in works:
        pail = planted[str(who)]
        if pail.gap is not None and pail.zeros is not None:
            if zeros <= pail.zeros:
                continue  # the contract refuses it (#7)
            gap = pail.gap if same_ledger else max(gap, pail.gap)
            before = normalizations(block, pail.gap, pail.stake, pail.zeros).total
            grew = grew or normalizations(block, gap, pail.stake, pail.zeros).total > before
        block, planted[str(who)] = apply_work(block, pail, gap, zeros)
    pool = project_pool(block, planted)
    scores = sum(f.score.total for f in pool.farmers if f.score is not None)
    worked = sum(1 for f in pool.farmers if f.worked)
    assert worked >= 1 and pool.forfeited == block.staked_total
    # the contract's divisor is the sum of the final scores exactly when no gap grew, else smaller
    assert block.normalized_total <= scores
    assert (block.normalized_total == scores) == (not grew)
    # each reward is floored, so the pool never gets a whole stroop less per farmer than its due...
    assert pool.reward > pool.pot - worked
    if not grew:
        assert pool.reward <= pool.pot  # ... and without the quirk never more than the pot
