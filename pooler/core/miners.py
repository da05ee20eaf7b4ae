"""Who mines: farmers, miners (one farmer each), sessions (a miner's workers) and their jobs.

A session is one worker: a WebSocket connection (``conn`` set) or a REST worker (``conn``
None, keyed by (miner, worker name), forgotten when idle). Difficulty is per session; the
effective hashrate (:class:`pooler.core.hashrate.WorkerHashrate`) and the durable share counts
(:class:`pooler.core.shares.Tally`) are per worker name: two sockets on one name, or a
reconnect, add to one history.
A job belongs to the session it was issued to and hashes for one (block, farmer)
(:class:`pooler.core.shares.FarmerBlock`).
"""

from __future__ import annotations

import math

from pooler.core.hashrate import HashrateConfig, WorkerHashrate
from pooler.core.nonces import FarmerSlots
from pooler.core.records import MinerCounts
from pooler.core.shares import FarmerBlock, Tally
from pooler.core.vardiff import VarDiff


class FarmerState:
    """A farmer the Backend holds keys for; known for the life of the process once seen."""

    __slots__ = ("address", "farmer_id", "miners", "slots")

    def __init__(self, farmer_id: str, address: str) -> None:
        self.farmer_id = farmer_id
        self.address = address  # G... address: jobs and local searches need it
        self.miners: set[str] = set()  # miner ids mining for it now (for views)
        # its workers' standing slots (block-broadcast): its block counters open above them
        self.slots = FarmerSlots()


class MinerState:
    """A registered miner. Counters are for its stats; the durable ones are the tallies."""

    __slots__ = (
        "accepted",
        "active_at",
        "block_accepted",
        "block_best",
        "block_rejected",
        "farmer",
        "miner_id",
        "name",
        "persisted_counts",
        "rates",
        "refused_until",
        "rejected",
        "rejected_by",
        "rest",
        "sessions",
        "stale",
        "strikes",
        "window_invalid",
        "window_seen",
    )

    def __init__(self, miner_id: str, farmer: FarmerState, name: str) -> None:
        self.miner_id = miner_id
        self.farmer = farmer
        self.name = name
        self.sessions: set[int] = set()  # its WebSocket conns: closed when it leaves
        self.rest: dict[str, Session] = {}  # its REST workers by name
        # worker name -> its effective hashrate, across connections and reconnects (the roster
        # drops one a window after its last connection went); the miner's figure is their sum
        self.rates: dict[str, WorkerHashrate] = {}
        # since it registered: what the store loaded at start (RoundState.loaded_counts) plus
        # what this process counted; written as MinerCounts with accepted shares and at block close
        self.accepted = 0
        self.rejected = 0
        self.stale = 0
        self.persisted_counts = 0  # accepted + rejected + stale as last written (rejections ride along)
        self.rejected_by: dict[str, int] = {}  # reason -> count, for the operator
        self.block_accepted = 0  # in the current block (reset at NewBlock)
        self.block_rejected = 0
        self.block_best = -1  # its best zeros in the current block, -1 = none
        # the share-quality guard (pooler.core.guard): its current window, strikes, cool-down
        self.window_seen = 0  # shares answered in the window
        self.window_invalid = 0  # of which invalid (rejected, not stale)
        self.strikes = 0  # bad windows in a row since the last clean one or refusal
        self.refused_until = 0.0  # refused at hello and for REST work/submits until then
        # last sign of life (joined, hello, a share accepted): with no connected worker, its
        # farmer is planted only while this is within farmer_idle (pooler.core.plant)
        self.active_at = -math.inf

    def active(self, now: float, idle: float) -> bool:
        """Whether its farmer should be planted: a worker connected (or a REST worker not yet
        forgotten), or a sign of life within ``idle`` seconds."""
        return bool(self.sessions or self.rest) or now - self.active_at <= idle

    def counts(self) -> MinerCounts:
        """Its counters as a record (marks them written)."""
        self.persisted_counts = self.accepted + self.rejected + self.stale
        return MinerCounts(self.miner_id, self.accepted, self.rejected, self.stale)

    def rate_of(self, name: str, config: HashrateConfig) -> WorkerHashrate:
        """The effective-hashrate estimator of its worker ``name`` (created on first use)."""
        hr = self.rates.get(name)
        if hr is None:
            hr = self.rates[name] = WorkerHashrate(config)
        return hr

    def hashrate(self, now: float) -> float:
        """Effective hashrate, hashes/s: the sum over its worker names."""
        return sum(hr.rate(now) for hr in self.rates.values())

    def reported_hashrate(self) -> float | None:
        """What its online workers say they hash (display only); None when none says."""
        got = [hr.reported for hr in self.rates.values() if hr.online and hr.reported_at > -math.inf]
        return sum(got) if got else None


class Session:
    """One worker of a miner: its difficulty, hashrate, jobs and current tally."""

    __slots__ = (
        "accepted",
        "agent",
        "alive",
        "conn",
        "hr",
        "jobs",
        "jobs_block",
        "last_seen",
        "miner",
        "more_rate",
        "name",
        "rejected",
        "slot",
        "tally",
        "vd",
    )

    def __init__(
        self,
        conn: int | None,
        miner: MinerState,
        name: str,
        agent: str | None,
        zeros: int,
        now: float,
        hr: WorkerHashrate,
    ) -> None:
        self.conn = conn  # None for a REST worker (answers go to each request's reply id)
        # the effective hashrate of its worker name (shared with other sessions of that name):
        # fed jobs, accepted shares and exhausted ranges; what stats and views show
        self.hr = hr
        self.miner = miner
        self.name = name
        self.agent = agent
        self.vd = VarDiff(zeros, now)
        self.alive = True  # False once disconnected/forgotten: its jobs then fall back to job zeros
        self.jobs: list[JobRecord] = []  # its jobs of ``jobs_block``, oldest first (capped)
        self.jobs_block = -1
        self.tally: Tally | None = None  # the (block, miner, name) tally its shares add to
        self.last_seen = now  # REST workers are forgotten after rest_worker_idle of silence
        # hashes/s implied by "range of size S exhausted in T s" when it asks for more:
        # available long before enough shares are, and exact for a miner that exhausts ranges
        self.more_rate = 0.0
        self.accepted = 0  # for views
        self.rejected = 0
        # its standing range (a socket that asked for block-broadcast): the job of every block
        # frame sent after the slot frame; None: it gets a job of its own at each block
        self.slot: SlotRecord | None = None

    def hashrate(self, now: float) -> float:
        """Effective hashrate of its worker name (exact ranges and shares; see pooler.core.hashrate)."""
        return self.hr.rate(now)

    def sizing_rate(self, now: float) -> float:
        """What ranges are sized from: the larger of the share and the ``more`` measurements."""
        return max(self.vd.estimate(now), self.more_rate)


class SlotRecord:
    """A standing slot: a range of ``farmer``'s nonce space its worker hashes in every block."""

    __slots__ = ("farmer", "id", "nonce_end", "nonce_start")

    def __init__(self, slot_id: str, farmer: FarmerState, nonce_start: int, nonce_end: int) -> None:
        self.id = slot_id  # the job of block N is "<id>.<N>" (protocol.messages.slot_job_id)
        self.farmer = farmer  # the range is of its space: given back there
        self.nonce_start = nonce_start
        self.nonce_end = nonce_end  # exclusive


class JobRecord:
    """One job handed out: which miner may submit on it, for which farmer, which range."""

    __slots__ = ("fb", "id", "issued_at", "miner", "nonce_end", "nonce_start", "session", "share_zeros")

    def __init__(
        self,
        job_id: str,
        miner: MinerState,
        session: Session,
        fb: FarmerBlock,
        nonce_start: int,
        nonce_end: int,
        share_zeros: int,
        issued_at: float,
    ) -> None:
        self.id = job_id
        self.miner = miner  # only this miner's workers may submit on it (any of its connections)
        self.session = session  # the worker it was issued to: REST shares are credited there
        self.fb = fb  # the (block, farmer) it hashes for; its block decides staleness
        self.nonce_start = nonce_start
        self.nonce_end = nonce_end  # exclusive
        # the difficulty at issue: what a REST worker mines it at (it cannot learn a change)
        self.share_zeros = share_zeros
        self.issued_at = issued_at  # with the range size, gives a hashrate when ``more`` comes
