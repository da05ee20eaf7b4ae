"""The round state the coordinator's parts share: who mines, the jobs out, the blocks.

One :class:`RoundState` per coordinator. Each part of the core (roster, job issue, share
check, block cycle, projection, persistence) reads it; each attribute is written by the one
part named in its comment, so a change to, say, how jobs are kept has one room to go to.
"""

from __future__ import annotations

from pooler.core.block import BlockState, CallRecord, LatePlant, Reconciling, ms
from pooler.core.config import CoreConfig
from pooler.core.dashboard_events import Phase, PhaseEvent
from pooler.core.effects import Effect, Persist, Publish
from pooler.core.hashrate import HashrateConfig
from pooler.core.miners import FarmerState, JobRecord, MinerState, Session
from pooler.core.shares import Tally


class RoundState:
    """Everything the coordinator holds between events (see the module docstring)."""

    def __init__(self, config: CoreConfig, *, report_credits: bool = False) -> None:
        self.config = config
        # every worker's effective-hashrate settings (one instance): a job without evidence is
        # held back at most a block (a REST worker hashing a range it submits at the end)
        self.hashrate = HashrateConfig(max_pending=config.block_interval)
        # every credited nonce also leaves as a NonceCredited record (a group's shared duplicate set)
        self.report_credits = report_credits
        # roster: farmer id -> address; kept once known
        self.farmers: dict[str, FarmerState] = {}
        self.miners: dict[str, MinerState] = {}  # roster: registered miners (joined, not left)
        self.sessions: dict[int, Session] = {}  # roster: WebSocket conn -> its worker
        # roster: (miner id, worker name) -> last difficulty: a reconnecting GPU must not restart
        # at the initial difficulty and flood the pool until vardiff catches up again
        self.last_zeros: dict[tuple[str, str], int] = {}
        # job issue: job id -> job, current block only (older = stale); cleared in place, never
        # rebound (the share check holds this very dict)
        self.jobs: dict[str, JobRecord] = {}
        self.job_seq = 0  # job issue: job ids are prefix + hex counter, unique for the process's life
        self.slot_seq = 0  # slots: slot ids are prefix + "s" + hex counter (never a job id: "s" is no hex)
        # job issue: (miner id, worker name) -> durable share counts of the current block
        self.tallies: dict[tuple[str, str], Tally] = {}
        # share check -> the runner's BatchEnd: tallies (by identity) and miners (by id) an accepted
        # share changed since their records were last emitted. Their ShareCounts/MinerCounts carry
        # absolute counts, so one record each per batch says what one a share said (the batch's acks
        # wait for its commit either way), without two records, two Persists and their store work a share
        self.unwritten_tallies: dict[int, Tally] = {}
        self.unwritten_miners: dict[str, MinerState] = {}
        self.block: BlockState | None = None  # cycle: the newest block seen (current FarmIndex)
        # cycle: recent blocks by index: the current one, those awaiting harvest, history for views
        self.blocks: dict[int, BlockState] = {}
        self.late: LatePlant | None = None  # cycle: our plant opening the next block, until it is seen
        self.calls: dict[int, CallRecord] = {}  # cycle: Backend calls awaiting their result
        # reconcile: calls whose answer could not be read, by call id, until the chain tells
        # what they did (the call stays "in flight" for the block meanwhile)
        self.reconciling: dict[int, Reconciling] = {}
        # cycle: block index -> farmers whose stake a PlantCalled record of that block counted (a
        # readable answer's or a reconciled part's): a later reconciled reply lists them ok but
        # counts them no more, since the history sums the records. Keyed by index, not on the
        # BlockState, because a late plant answers before its block is seen (pruned with blocks)
        self.staked: dict[int, set[str]] = {}
        self.call_seq = 0  # cycle: CallBackend ids, matched by BackendResult
        self.rewards: dict[str, int] = {}  # cycle: farmer id -> stroops harvested (for stats)
        # persistence -> roster: miner id -> (accepted, rejected, stale) a store loaded; a miner's
        # counters start from them when it joins (taken then: bounded by the registered miners)
        self.loaded_counts: dict[str, tuple[int, int, int]] = {}
        self.paused = False  # cycle: FarmPaused: no plant/work calls, no new jobs
        # cycle (NewBlock) and forecast (BlockUpdated): the newest ledger a chain read showed; a
        # reconciliation trusts "not done" only from a read past the one known at the failure
        self.ledger = 0
        self.chain_ok = True  # cycle: last ChainHealth, for /health and the view
        # cycle: the chain was read by this process (a NewBlock, a ChainHealth ok): a restored
        # block alone is not seen, so no late plant goes out before the chain could be read
        self.chain_seen = False
        self.chain_detail = ""
        self.phase: Phase = "idle"  # the last phase published: published again on change only
        # persistence: True inside restore(), which runs before the miners are loaded: a plant
        # made then cannot name its farmers, so it names none (the Backend plants them all)
        self.restoring = False

    # ------------------------------------------------------------ reads shared by the parts

    def all_sessions(self) -> list[Session]:
        out = list(self.sessions.values())
        for miner in self.miners.values():
            out.extend(miner.rest.values())
        return out

    def miner_sessions(self, miner: MinerState) -> list[Session]:
        out = [self.sessions[c] for c in miner.sessions if c in self.sessions]
        out.extend(miner.rest.values())
        return out

    def live_block(self) -> BlockState | None:
        """The current block if it takes shares and hands out ranges, else None."""
        blk = self.block
        return blk if blk is not None and blk.live else None

    def next_call(self) -> int:
        self.call_seq += 1
        return self.call_seq

    # ------------------------------------------------------------ the dashboard's phase

    def current_phase(self, now: float) -> Phase:
        if self.paused:
            return "paused"
        if self.block is None:
            return "idle"
        return self.block.dashboard_phase(now)

    def write_counts(self, effects: list[Effect]) -> None:
        """The records of the tallies and miner counters accepted shares changed since the last
        call (the runner's ``BatchEnd``; a block close and a miner leaving call it first, so the
        records keep their order against what follows)."""
        if self.unwritten_tallies:
            effects.extend([Persist(t.record()) for t in self.unwritten_tallies.values()])
            self.unwritten_tallies.clear()
        if self.unwritten_miners:
            effects.extend([Persist(m.counts()) for m in self.unwritten_miners.values()])
            self.unwritten_miners.clear()

    def publish_phase(self, effects: list[Effect], now: float) -> None:
        """A ``phase`` event if the dashboard's phase changed since the last one."""
        phase = self.current_phase(now)
        if phase != self.phase:
            self.phase = phase
            blk = self.block
            if blk is None:
                effects.append(Publish(PhaseEvent(None, phase, None, None)))
            else:
                effects.append(Publish(PhaseEvent(blk.index, phase, ms(blk.work_at), ms(blk.ends_at))))
