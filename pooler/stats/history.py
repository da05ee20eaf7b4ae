"""The history aggregates: buckets of shares per worker / miner / pool, and block summaries.

Pure bookkeeping (no I/O, no clock of its own): the runner calls :meth:`History.observe` with
each batch's effects and the batch's time, and commits the returned records with the batch.
Every bucket is kept twice, in a 1-minute and a 1-hour resolution, both updated as shares are
answered (so the hour series is the minute series downsampled, without a pass over it), and
pruned as time moves: minute buckets older than :data:`MINUTE_KEEP`, hour buckets older than
:data:`HOUR_KEEP` are dropped from memory at most once a minute, by walking per-series deques
from their old end (work proportional to what is dropped). Block summaries are kept for the
newest ``blocks_memory`` blocks: :data:`BLOCKS_KEEP` (all of the retention: memory or Redis), or
the store's block window when it pages older ones (SQLite ``keep_blocks``: every block a
harvest or a reconciliation may still write; pooler.app.stats.StatsDesk reads the older ones).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from pooler.core.effects import Effect, Persist, Send
from pooler.core.records import (
    BestFound,
    BlockHistory,
    BlockOnChain,
    BlockSeen,
    FarmerOfBlock,
    FarmerStatusChanged,
    HarvestCalled,
    HistoryBucket,
    PlantCalled,
    WorkCalled,
)
from protocol.errors import Code
from protocol.messages import Accepted, Rejected

MINUTE = 60
HOUR = 3600
MINUTE_KEEP = 24 * HOUR  # minute buckets kept this long
HOUR_KEEP = 30 * 24 * HOUR  # hour buckets kept this long
BLOCKS_KEEP = 30 * 24 * 12  # block summaries kept: 30 days of 5-minute blocks
KEEP = {MINUTE: MINUTE_KEEP, HOUR: HOUR_KEEP}
# What a History with a store that answers ranges (HistoryReader) keeps in memory: what the
# "now" figures need (the 10-minute hashrate, the 24-h totals: the 25 hour buckets since the
# hour 24 h ago began); older buckets of a requested range are read from the store. Bounds the
# aggregates to ~40 buckets a series whatever the retention (docs/stats.md has the figures).
MEMORY = {MINUTE: 15 * MINUTE, HOUR: 26 * HOUR}

# A bucket's rejections before the first: one shared empty dict (never written: _answer and
# load give a bucket its own dict first), so a bucket without rejections costs no dict
NO_REJECTS: dict[str, int] = {}

# (job, conn) -> (miner id, worker name, share zeros checked), or None: Coordinator.share_source
Source = Callable[[str | None, int], tuple[str, str, int] | None]
# () -> (miners, workers) online now: Coordinator.online
Online = Callable[[], tuple[int, int]]
SAMPLE_S = 10  # the online counts are sampled at most this often (a pass over the sessions)


class Bucket:
    """One mutable bucket of one series (see :class:`~pooler.core.records.HistoryBucket`)."""

    __slots__ = ("accepted", "miners", "rejected", "stale", "start", "work", "workers")

    def __init__(self, start: int) -> None:
        self.start = start
        self.accepted = 0  # accepted shares
        self.stale = 0  # rejected as stale (a block change race)
        self.rejected: dict[str, int] = NO_REJECTS  # reason -> rejected shares (stale not included)
        self.work = 0  # sum of 16**share_zeros over accepted shares
        # the most miners / workers online sampled in the bucket (History.sample: the pool's only)
        self.miners = 0
        self.workers = 0

    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class Series:
    """The buckets of one (scope, key): a minute and an hour deque, oldest first."""

    __slots__ = ("changes", "hours", "last", "minutes")

    def __init__(self) -> None:
        self.minutes: deque[Bucket] = deque()  # 1-minute buckets, newest last, at most 24 h
        self.hours: deque[Bucket] = deque()  # 1-hour buckets, newest last, at most 30 d
        # the newest bucket's start ever seen: a series whose buckets left memory (MEMORY) is
        # kept (its miner listed) while the store still holds some of them
        self.last = 0
        # bumped by every bucket() (a share answer, a load): readers that cache a figure of the
        # series (the miner list's sort keys) recompute it only when this moved
        self.changes = 0

    def of(self, width: int) -> deque[Bucket]:
        return self.minutes if width == MINUTE else self.hours

    def bucket(self, width: int, start: int) -> Bucket:
        """The bucket starting at ``start`` (created at the new end; answers come in time order)."""
        self.changes += 1
        dq = self.of(width)
        if dq and dq[-1].start == start:
            return dq[-1]
        if start > self.last:
            self.last = start
        if dq and dq[-1].start > start:  # a late answer (clock step): find or insert it in place
            for b in reversed(dq):
                if b.start == start:
                    return b
            b = Bucket(start)
            items = sorted([*dq, b], key=lambda x: x.start)
            dq.clear()
            dq.extend(items)
            return b
        b = Bucket(start)
        dq.append(b)
        return b

    def prune(self, now: float, keep: Mapping[int, int] = KEEP) -> None:
        for width, dq in ((MINUTE, self.minutes), (HOUR, self.hours)):
            cutoff = now - keep[width]
            while dq and dq[0].start + width <= cutoff:
                dq.popleft()

    def empty(self) -> bool:
        return not self.minutes and not self.hours

    def gone(self, now: float) -> bool:
        """Nothing left of it anywhere: no bucket in memory, none within retention in the store."""
        return self.empty() and self.last + HOUR <= now - HOUR_KEEP


class History:
    """See the module docstring. ``source`` names the worker behind a share answer; ``durable``
    False (no store): nothing is marked for :meth:`take`, the aggregates are kept in memory only."""

    def __init__(
        self,
        source: Source,
        *,
        durable: bool = True,
        writes_blocks: bool = True,
        memory: Mapping[int, int] = KEEP,
        blocks_memory: int = BLOCKS_KEEP,
        online: Online | None = None,
    ) -> None:
        self._source = source  # names the worker and difficulty behind a share answer
        self._online = online  # counts who is online, sampled by observe() (None: not kept)
        self._sampled_at = -float(SAMPLE_S)  # when observe() last sampled the online counts
        self.durable = durable  # False: no store behind it, nothing is marked for take()
        # how long buckets stay in memory, per width: KEEP (all of the retention), or MEMORY when
        # the store answers older ranges (pooler.stats.views reads them there)
        self.memory = dict(memory)
        # False (a group member): block summaries are folded in memory for display but written
        # by the leader's cycle runner only, through cycle_feed() (one writer per block)
        self.writes_blocks = writes_blocks
        # (scope, key) -> its buckets; scope "pool" (key ""), "miner", "worker" ("miner/worker")
        self.series: dict[tuple[str, str], Series] = {("pool", ""): Series()}
        self.blocks: dict[int, BlockHistory] = {}  # block -> its summary, insertion (block) order
        # the newest summaries kept in memory: BLOCKS_KEEP, or the store's block window when it
        # pages older ones (a summary leaves memory only once written: see _trim)
        self.blocks_memory = blocks_memory
        self._feeds: list[BlockFeed] = []  # the cycle feeds over this history (their unwritten blocks)
        # answers the stats views keep for a few seconds (the sorted miner list): key -> (at, rows)
        self.view_cache: dict[tuple[str, ...], tuple[float, Any]] = {}
        self.workers_of: dict[str, set[str]] = {}  # miner id -> its worker names with history
        # farmer id -> block -> stroops harvested for it (the farmer's rewards, without a block scan),
        # for the blocks in memory; a farmer stays listed (an empty dict) once it was in a block
        self.rewards: dict[str, dict[int, int]] = {}
        self._pruned_at = 0.0  # when the last prune pass ran (at most one a minute)
        # buckets changed since the last take(), by (scope, key, width, start): written next commit
        self._dirty: dict[tuple[str, str, int, int], Bucket] = {}
        self._dirty_blocks: set[int] = set()  # blocks whose summary changed since the last take()

    # ------------------------------------------------------------ feeding

    def observe(self, effects: Iterable[Effect], now: float) -> None:
        """Fold a batch's share answers and records into the aggregates (marks what changed)."""
        touched: dict[tuple[str, str, int, int], Bucket] = self._dirty if self.durable else {}
        blocks = self._dirty_blocks if self.durable and self.writes_blocks else set()
        for effect in effects:
            if type(effect) is Send:
                msg = effect.msg
                if type(msg) is Accepted:
                    self._answer(msg.job, effect.conn, None, now, touched)
                elif type(msg) is Rejected:
                    self._answer(msg.job, effect.conn, msg.code, now, touched)
            elif type(effect) is Persist:
                self._record(effect.record, now, blocks)
        if self._online is not None and not 0 <= now - self._sampled_at < SAMPLE_S:
            self._sampled_at = now
            self.sample(*self._online(), now, touched)
        if now - self._pruned_at >= MINUTE:
            self.prune(now)

    def take(self) -> list[Persist]:
        """The records of every bucket and block changed since the last take (absolute values).

        The runner takes them into a batch that commits core records anyway (an accepted share
        always brings its ``ShareCounts``), so rejected-only batches cost no commit of their own:
        their counts ride on the next one, as the core's tallies do."""
        out = [
            Persist(self._bucket_record(scope, key, width, b))
            for (scope, key, width, _), b in self._dirty.items()
        ]
        out.extend(Persist(self.blocks[i]) for i in sorted(self._dirty_blocks) if i in self.blocks)
        self._dirty = {}
        self._dirty_blocks = set()
        self._trim()
        return out

    def _answer(
        self,
        job: str | None,
        conn: int,
        code: Code | None,
        now: float,
        touched: dict[tuple[str, str, int, int], Bucket],
    ) -> None:
        if code is Code.UNAVAILABLE:
            return  # not a verdict on the share: the store could not take it
        src = self._source(job, conn)
        keys: list[tuple[str, str]] = [("pool", "")]
        zeros = 0
        if src is not None:
            miner_id, worker, zeros = src
            keys += [("miner", miner_id), ("worker", f"{miner_id}/{worker}")]
            names = self.workers_of.get(miner_id)
            if names is None:
                names = self.workers_of[miner_id] = set()
            names.add(worker)
        t = int(now)
        for sk in keys:
            series = self.series.get(sk)
            if series is None:
                series = self.series[sk] = Series()
            for width in (MINUTE, HOUR):
                b = series.bucket(width, t - t % width)
                if code is None:
                    b.accepted += 1
                    b.work += 16**zeros
                elif code is Code.STALE:
                    b.stale += 1
                else:
                    rejected = b.rejected
                    if rejected is NO_REJECTS:
                        rejected = b.rejected = {}
                    rejected[code.reason] = rejected.get(code.reason, 0) + 1
                touched[sk[0], sk[1], width, b.start] = b

    def sample(
        self,
        miners: int,
        workers: int,
        now: float,
        touched: dict[tuple[str, str, int, int], Bucket] | None = None,
    ) -> None:
        """Fold one sample of who is online into the pool's minute and hour buckets: each keeps
        the most it saw (the hour's is then the most of its minutes: the minutes downsampled)."""
        series = self.series["pool", ""]
        t = int(now)
        for width in (MINUTE, HOUR):
            b = series.bucket(width, t - t % width)
            if miners > b.miners or workers > b.workers:
                b.miners = max(b.miners, miners)
                b.workers = max(b.workers, workers)
                if touched is not None:
                    touched["pool", "", width, b.start] = b

    def _record(self, record: object, now: float, blocks: set[int]) -> None:
        match record:
            case BlockSeen(index, _, timestamp):
                old = self.blocks.get(index)
                self.blocks[index] = (
                    BlockHistory(index, timestamp) if old is None else replace(old, timestamp=timestamp)
                )
                self._trim()
            case BlockOnChain(index, chain):
                self.blocks[index] = replace(self._block(index), chain=chain)
            case BestFound(block, farmer_id, best):
                bh = self._block(block)
                gap = None if not bh.timestamp else max(0.0, best.found_at - bh.timestamp)
                known = next((f.best_zeros for f in bh.farmers if f.farmer_id == farmer_id), -1)
                if best.zeros > known:  # bests only grow (in a group two feeds tell of them)
                    self._farmer(block, farmer_id, best_zeros=best.zeros, gap_s=gap)
            case PlantCalled(block, reply, _):
                if reply is not None:  # each call counts what it planted: a block's are summed
                    bh = self._block(block)
                    self.blocks[block] = replace(
                        bh, planted=bh.planted + reply.successful, staked=bh.staked + reply.total_staked
                    )
                    for r in reply.results or ():
                        if r.ok or r.already_planted:
                            self._farmer(block, r.farmer_id, planted=True)
            case WorkCalled(block, submissions, reply, error):
                self.blocks[block] = replace(
                    self._block(block), work_at=now, work_ok=reply is not None, work_error=error
                )
                verdict = {o.farmer_id: o for o in ((reply.results or ()) if reply is not None else ())}
                for s in submissions:
                    v = verdict.get(s.farmer_id)
                    ok = reply is not None and (v is None or v.ok)
                    self._farmer(
                        block,
                        s.farmer_id,
                        worked=ok,
                        work_zeros=s.zeros,
                        error="" if ok else (v.error if v else error),
                    )
            case HarvestCalled(block, reply, _):
                if reply is not None:  # summed too: a reconciled part, then the retry of the rest
                    bh = self._block(block)
                    total = reply.total_rewards
                    if bh.harvest_total is not None and total is not None:
                        total += bh.harvest_total
                    self.blocks[block] = replace(
                        bh, harvest_total=total if total is not None else bh.harvest_total
                    )
                    for r in reply.results or ():
                        if r.reward is not None:
                            self._farmer(block, r.farmer_id, reward=r.reward)
            case FarmerStatusChanged(farmer_id, block, status, reason, _, reward):
                if status == "planted":
                    self._farmer(block, farmer_id, planted=True)
                elif status == "harvested" and reward is not None:
                    self._farmer(block, farmer_id, reward=reward)
                elif status == "failed":
                    self._farmer(block, farmer_id, error=reason)
            case _:
                return
        which = getattr(record, "block", getattr(record, "index", None))
        if isinstance(which, int) and which in self.blocks:
            blocks.add(which)

    def _trim(self) -> None:
        """Drop the oldest summaries past ``blocks_memory``, but none not yet taken for a commit
        (this history's or a cycle feed's): those go at a later trim, once written."""
        blocks = self.blocks
        while len(blocks) > self.blocks_memory:
            oldest = next(iter(blocks))
            if oldest in self._dirty_blocks or any(oldest in feed._dirty for feed in self._feeds):
                return
            self._drop_block(oldest)

    def _drop_block(self, block: int) -> None:
        bh = self.blocks.pop(block)
        for f in bh.farmers:
            self.rewards.get(f.farmer_id, {}).pop(block, None)

    def _block(self, block: int) -> BlockHistory:
        bh = self.blocks.get(block)
        if bh is None:
            bh = self.blocks[block] = BlockHistory(block)
        return bh

    def _farmer(self, block: int, farmer_id: str, **changes: object) -> None:
        bh = self._block(block)
        farmers = list(bh.farmers)
        for i, f in enumerate(farmers):
            if f.farmer_id == farmer_id:
                farmers[i] = replace(f, **changes)  # type: ignore[arg-type]
                break
        else:
            farmers.append(replace(FarmerOfBlock(farmer_id), **changes))  # type: ignore[arg-type]
        self.blocks[block] = replace(bh, farmers=tuple(farmers))
        per = self.rewards.setdefault(farmer_id, {})  # a farmer is listed once it is in a block
        reward = changes.get("reward")
        if isinstance(reward, int):
            per[block] = reward

    def cycle_feed(self) -> BlockFeed:
        """The block side of this history for a group leader's cycle runner (see :class:`BlockFeed`)."""
        feed = BlockFeed(self)
        self._feeds.append(feed)
        return feed

    # ------------------------------------------------------------ pruning and loading

    def prune(self, now: float) -> None:
        """Drop what is past retention (called at most once a minute by :meth:`observe`)."""
        self._pruned_at = now
        dead = []
        for sk, series in self.series.items():
            series.prune(now, self.memory)
            if sk[0] != "pool" and series.gone(now):
                dead.append(sk)
        for sk in dead:
            del self.series[sk]
            if sk[0] == "worker":
                miner_id, _, worker = sk[1].partition("/")
                self.workers_of.get(miner_id, set()).discard(worker)

    def load(self, records: Iterable[HistoryBucket | BlockHistory], now: float) -> None:
        """Rebuild from what a store kept (oldest first per series), then prune."""
        for r in records:
            if isinstance(r, BlockHistory):
                self.blocks[r.block] = r
                for f in r.farmers:
                    per = self.rewards.setdefault(f.farmer_id, {})
                    if f.reward is not None:
                        per[r.block] = f.reward
                continue
            if r.scope == "worker":
                miner_id, _, worker = r.key.partition("/")
                self.workers_of.setdefault(miner_id, set()).add(worker)
            series = self.series.get((r.scope, r.key))
            if series is None:
                series = self.series[r.scope, r.key] = Series()
            if r.start + r.width <= now - self.memory[r.width]:  # in the store only (MEMORY)
                series.last = max(series.last, r.start)
                continue
            b = series.bucket(r.width, r.start)
            b.accepted, b.stale, b.work = r.accepted, r.stale, r.work
            b.miners, b.workers = r.miners, r.workers
            b.rejected = dict(r.rejected) if r.rejected else NO_REJECTS
        self.blocks = dict(sorted(self.blocks.items()))
        self._trim()
        self.prune(now)

    # ------------------------------------------------------------ reading

    @staticmethod
    def _bucket_record(scope: str, key: str, width: int, b: Bucket) -> HistoryBucket:
        return HistoryBucket(
            scope,
            key,
            width,
            b.start,
            b.accepted,
            b.stale,
            tuple(sorted(b.rejected.items())),
            b.work,
            b.miners,
            b.workers,
        )

    def buckets(self, scope: str, key: str, width: int, since: float) -> Iterator[Bucket]:
        """The buckets of a series starting at or after ``since``, oldest first."""
        series = self.series.get((scope, key))
        if series is None:
            return
        dq = series.of(width)
        # walk back from the new end: cost proportional to what is returned
        picked: list[Bucket] = []
        for b in reversed(dq):
            if b.start < since:
                break
            picked.append(b)
        yield from reversed(picked)


class BlockFeed:
    """A group leader's cycle runner's history port: its records (plant, work, harvest, the
    group's bests, the chain's Block(N)) fold into the same :class:`History` the stats API reads,
    and the block summaries they change are taken into the cycle's own (fenced) commits. The
    miner-serving runner of a group member takes only its share buckets
    (``History(writes_blocks=False)``), so each block has one writer: whoever leads."""

    def __init__(self, history: History) -> None:
        self._history = history
        self._dirty: set[int] = set()  # blocks whose summary this feed changed since its last take()

    def observe(self, effects: Iterable[Effect], now: float) -> None:
        blocks = self._dirty if self._history.durable else set()
        for effect in effects:
            if type(effect) is Persist:
                self._history._record(effect.record, now, blocks)

    def take(self) -> list[Persist]:
        blocks = self._history.blocks
        out = [Persist(blocks[i]) for i in sorted(self._dirty) if i in blocks]
        self._dirty = set()
        self._history._trim()
        return out

    def restore(self, stored: Iterable[BlockHistory]) -> None:
        """A new term begins: the summaries the previous leader wrote replace what this instance
        folded while following (its own miners' view), so nothing it wrote is lost."""
        h = self._history
        for b in stored:
            h.blocks[b.block] = b
            for f in b.farmers:
                per = h.rewards.setdefault(f.farmer_id, {})
                if f.reward is not None:
                    per[b.block] = f.reward
        h.blocks = dict(sorted(h.blocks.items()))
        h._trim()
