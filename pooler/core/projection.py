"""Read-only projections of the round state: the frozen :class:`CoreView` and the ``summary``.

- ``Stats`` (built by the roster): ``accepted/rejected/stale`` since the miner joined this
  process; ``bestZeros`` of the current block; ``shareZeros`` of the asking connection (None
  over REST); ``rewards`` attributed by harvest ``results``.
- The view: everything /health, stats and the dashboard show, aliasing no live state.
- Hashrates are effective ones (:mod:`pooler.core.hashrate`), one estimator per (miner,
  worker name): a worker's row shows its name's figure (two sockets on one name show the same
  one), miner, farmer and pool figures sum estimators, never rows.
"""

from __future__ import annotations

import math

from pooler.core.block import FarmerRound, ms
from pooler.core.checks import ShareCheck
from pooler.core.dashboard_events import SummaryEvent
from pooler.core.forecast import projection_view
from pooler.core.hashrate import WorkerHashrate
from pooler.core.state import RoundState
from pooler.core.views import BlockView, CoreView, FarmerStatusView, FarmerView, MinerView, WorkerView


class Projection:
    """Builds views and summaries from the round state and the share counts."""

    def __init__(self, state: RoundState, checks: ShareCheck) -> None:
        self._st = state
        self._checks = checks

    def pending_harvests(self) -> tuple[int, ...]:
        """Blocks worked and not harvested yet (harvest due, in flight or waiting to retry)."""
        return tuple(sorted(i for i, b in self._st.blocks.items() if b.harvest in ("pending", "in_flight")))

    def summary(self, now: float) -> SummaryEvent:
        """The dashboard's ``summary`` (also the snapshot sent to a new dashboard)."""
        st = self._st
        blk = st.block
        sessions = st.all_sessions()
        online = {s.miner.miner_id for s in sessions}
        proj = None if blk is None else blk.projection
        return SummaryEvent(
            block=None if blk is None else blk.index,
            phase=st.current_phase(now),
            miners=len(online),
            workers=len(sessions),
            hashrate=self.pool_hashrate(now),
            accepted=self._checks.accepted,
            rejected=self._checks.rejected,
            best_zeros={} if blk is None else {fid: b.zeros for fid, b in blk.bests.items()},
            work_at=None if blk is None else ms(blk.work_at),
            ends_at=None if blk is None else ms(blk.ends_at),
            projected={} if proj is None else {f.farmer: f.reward for f in proj.farmers},
            projected_reward=None if proj is None else proj.reward,
        )

    def pool_hashrate(self, now: float) -> float:
        """Effective hashrate of the pool: the sum over every live worker-name estimator."""
        return sum(m.hashrate(now) for m in self._st.miners.values())

    def view(self, now: float) -> CoreView:
        """A frozen picture of everything /health, stats and the dashboard show."""
        st = self._st
        checks = self._checks
        blk = st.block
        sessions = st.all_sessions()
        # each worker-name estimator measured once (a measurement walks its window: a view of
        # 10,000 workers measured each 5 times over when miners, farmers and the pool re-summed)
        measured: dict[int, tuple[float, bool]] = {}

        def rate(hr: WorkerHashrate) -> tuple[float, bool]:
            got = measured.get(id(hr))
            if got is None:
                got = measured[id(hr)] = hr.rate_confident(now)
            return got

        worker_list = tuple(
            WorkerView(
                s.miner.miner_id,
                s.name,
                s.conn,
                s.agent,
                s.vd.zeros,
                rate(s.hr)[0],
                s.accepted,
                s.rejected,
                s.hr.reported if s.hr.reported_at > -math.inf else None,
                rate(s.hr)[1],
            )
            for s in sessions
        )
        miner_rate = {mid: sum(rate(hr)[0] for hr in m.rates.values()) for mid, m in st.miners.items()}
        miner_list = []
        for miner in st.miners.values():
            ms_ = st.miner_sessions(miner)
            miner_list.append(
                MinerView(
                    miner.miner_id,
                    miner.farmer.farmer_id,
                    miner.name,
                    len(ms_),
                    miner_rate[miner.miner_id],
                    miner.accepted,
                    miner.rejected,
                    miner.stale,
                    dict(miner.rejected_by),
                    miner.block_accepted,
                    miner.block_rejected,
                    None if miner.block_best < 0 else miner.block_best,
                    miner.reported_hashrate(),
                )
            )
        proj = None if blk is None else projection_view(blk)
        farmers = []
        # workers online per farmer in one pass (a scan of every session per farmer was
        # farmers x workers: 10^7 steps at 1,000 farmers and 10,000 workers)
        online_of: dict[int, int] = {}
        for s in sessions:
            online_of[id(s.miner.farmer)] = online_of.get(id(s.miner.farmer), 0) + 1
        for fid, farmer in st.farmers.items():
            farmer_rate = sum(miner_rate[m] for m in farmer.miners if m in miner_rate)
            fr = blk.rounds.get(fid) if blk is not None else None
            best = blk.bests.get(fid) if blk is not None else None
            farmers.append(
                FarmerView(
                    fid,
                    farmer.address,
                    len(farmer.miners),
                    online_of.get(id(farmer), 0),
                    farmer_rate,
                    None if best is None else best.zeros,
                    None if fr is None else status_view(fr),
                    st.rewards.get(fid, 0),
                    None if proj is None else proj.rewards.get(fid),
                )
            )
        blocks = tuple(
            BlockView(
                b.index,
                b.timestamp,
                ms(b.work_at),
                ms(b.ends_at),
                b.plant,
                b.harvest,
                {fid: status_view(fr) for fid, fr in b.rounds.items()},
                {fid: best.zeros for fid, best in b.bests.items()},
                b.rewards_total,
                {fid: fr.reward for fid, fr in b.rounds.items() if fr.reward is not None},
                projection_view(b),
            )
            for b in sorted(st.blocks.values(), key=lambda b: -b.index)
        )
        return CoreView(
            block=None if blk is None else blk.index,
            phase=st.current_phase(now),
            entropy=None if blk is None else blk.entropy.hex(),
            timestamp=None if blk is None else blk.timestamp,
            work_at=None if blk is None else ms(blk.work_at),
            block_ends_at=None if blk is None else ms(blk.ends_at),
            paused=st.paused,
            chain_ok=st.chain_ok,
            chain_detail=st.chain_detail,
            miners=len({s.miner.miner_id for s in sessions}),
            workers=len(sessions),
            hashrate=sum(miner_rate.values()),
            accepted=checks.accepted,
            rejected=checks.rejected,
            accepted_total=checks.accepted_total,
            rejected_total=checks.rejected_total,
            best_zeros={} if blk is None else {fid: b.zeros for fid, b in blk.bests.items()},
            farmers=tuple(farmers),
            miner_list=tuple(miner_list),
            worker_list=worker_list,
            blocks=blocks,
            pending_harvests=self.pending_harvests(),
            projection=proj,
            chain_zeros=None
            if blk is None or blk.chain is None
            else (blk.chain.min_zeros, blk.chain.max_zeros),
        )


def status_view(fr: FarmerRound) -> FarmerStatusView:
    return FarmerStatusView(fr.status, fr.reason, fr.worked if fr.worked >= 0 else None, fr.reward)
