"""Effective hashrate of one worker, from exact evidence over a trailing window.

Theory of operation
===================

Evidence (what a worker's hashes are known by):

- An accepted share weighed at ``z`` zeros stands for 16**z hashes on average (one hash in
  16**z has z leading zero nibbles), provided the worker sends every hash at or above ``z``.
  ``z`` is the difficulty the worker was *mining at* when it found the share, not the
  worker's difficulty of the moment: :func:`counted_zeros` derives it from what the core
  knows. Weighing by the difficulty of the moment is what turned a REST worker still mining
  its job's 3 zeros into 470 MH/s once vardiff had raised it to 7.
- An exhausted range (a WebSocket ``more`` naming its job: S nonces hashed through) is S
  hashes, exactly. A GPU that exhausts ranges in seconds is then known exactly, long before
  its few shares say anything.

No hash counts twice: a range's shares are hashes of that range. Rule: **a completed range
replaces its own shares** (they move to a "covered" account and the range's S counts
instead); shares of ranges never completed (abandoned at a new block, a CPU's block-long
range, every REST job) count as themselves. Exact where ranges complete, statistical
elsewhere, and no bias either way (a per-window max of the two would pick the luckier one).
Ranges are believed only while they are plausible: the share work found in the window's
completed ranges must be at least S - 3 sd - 2 x 16**z (sd: the standard deviation of
that work, sqrt(S x 16**z); at one difficulty z this is m - 3 sqrt(m) - 2 shares, m = S / 16**z
the count their sizes predict; in work it also holds across vardiff changes)
(a Poisson lower bound an honest worker misses in at most ~0.2% of windows, and then
merely falls back to its shares). A client asking ``more`` without hashing gains at most
about 3 sqrt(m) + 2 shares' worth before its ranges are ignored.

Window: the trailing ``window`` (default 10 min, as pools show) in ``bucket``-second buckets
(default 1 min): a bucket is dropped whole once it is older than the window, and the rate is

    rate = work in the kept buckets / observed time
    observed time = end - max(the worker's first job or evidence, start of the oldest kept bucket)

so a worker that joined mid-window is not diluted by the time before it. Work is placed where
it was done, not where it arrived: a range over the time it took; the shares of a job
delivered at one instant over the time since that job's previous delivery (a REST batch:
since the job was handed out; a stream: since the previous share), so a batch leaving the
window takes its own time with it.

``end`` is ``now``, except while the worker's newest job is *held*: not yet counted, its time
and its shares, because its evidence is still to come. That is a job with no evidence yet
(a REST worker hashing a range it will submit in one batch), for at most ``max_pending``
seconds (a block: a dead worker's figure still decays); and, for a worker that exhausts
ranges, its current range while such a range would last (twice the last one's time, plus
``min_span``): its exact S is about to replace those shares. Then ``end`` is the later of
the held job's start and the newest counted evidence. Observed time is never taken below
``min_span``: evidence arriving at the very instant a worker was first seen (a burst from a
worker whose jobs this instance never issued) cannot divide by ~0.

Reconnects: the owner keeps one estimator per (miner id, worker name) across connections, so
a reconnect continues the same history (the seconds offline count as time without work). The
history restarts only when the worker comes back after more than a window of silence, when
nothing of it is left to continue.

Confidence: a share count N has a relative error of 1/sqrt(N) (Poisson): 30 shares are +-18%
(1 sigma), so "30 shares or 2 minutes" alone cannot promise +-20%. :meth:`confident` asks for
that *and* a relative error (:meth:`error`, from the evidence itself: sqrt(sum of squared share
weights) / work, ranges count as exact) of at most ``max_error`` (default 1/15: +-20% at 3
sigma, about 225 shares' worth of evidence in the window, or exact ranges).

Cost: per share one dict lookup and a few float additions in a preallocated array (no
allocation but the first share of a job in a new bucket), about 3 us; reading a rate is O(1)
(running sums, re-summed when a bucket rolls), about 3 us. Memory per worker: one array of
6 x buckets doubles (480 bytes at the defaults), about 1.6 kB with a job and its shares; at
most ``max_jobs`` job records. Pure: no clock (time is passed in), no I/O.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

# 16**z for every possible zero count: a share's weight without a pow() per share
_UNIT = tuple(16.0**z for z in range(65))

# The fields of one bucket, interleaved in one array (bucket slot * _FIELDS + field):
_FREE_W = 0  # work of shares not inside a completed range (sum of 16**z)
_FREE_SQ = 1  # sum of their squared weights: the variance of that work
_COV_W = 2  # work of shares inside completed ranges (replaced by the ranges' S while credible)
_COV_SQ = 3  # sum of their squared weights (the credibility check's share count)
_RANGED = 4  # hashes of completed ranges, spread over the time each range took
# the variance of the share work those ranges should have produced (S * 16**z: S / 16**z
# shares of 16**z hashes each), spread the same way
_EXPECT = 5
_FIELDS = 6
_ZEROS = array("d", bytes(8 * _FIELDS))  # one bucket's fields, cleared


@dataclass(frozen=True, slots=True)
class HashrateConfig:
    """Settings shared by every worker's estimator (one instance for the whole pool).

    window / bucket: the trailing window and its granularity, seconds; ``window`` must be a
        whole number of buckets.
    min_span: observed time is never taken below this (a burst at the instant a worker is
        first seen); confident() is false before it.
    max_pending: the longest the time spent on a job without evidence is held back (a block).
    min_shares / min_seconds: confident() needs this much evidence (share equivalents) or
        observed time, as the issue words it ("30 accepted shares or 2 minutes of work") ...
    max_error: ... and a relative standard error at most this (1/15: +-20% at 3 sigma).
    max_jobs: jobs remembered per worker (oldest forgotten first; a forgotten job's shares
        keep counting, its completion is then ignored, so nothing counts twice).
    """

    window: float = 600.0
    bucket: float = 60.0
    min_span: float = 5.0
    max_pending: float = 300.0
    min_shares: int = 30
    min_seconds: float = 120.0
    max_error: float = 1 / 15
    max_jobs: int = 16

    def __post_init__(self) -> None:
        buckets = self.window / self.bucket
        if self.bucket <= 0 or buckets < 1 or abs(buckets - round(buckets)) > 1e-9:
            raise ValueError(f"window {self.window} s is not a whole number of {self.bucket} s buckets")
        if self.min_span <= 0 or self.max_pending < 0 or self.max_error <= 0 or self.max_jobs < 1:
            raise ValueError("min_span and max_error must be > 0, max_pending >= 0, max_jobs >= 1")

    @property
    def buckets(self) -> int:
        return round(self.window / self.bucket)


def counted_zeros(found: int, current: int, floor: int) -> int:
    """The difficulty an accepted share is weighed at (16**result hashes).

    ``current``: the difficulty the worker was last told to mine at (a WebSocket worker's
    vardiff difficulty; a REST worker's job's ``shareZeros``, which it cannot be told to change).
    ``floor``: the lowest difficulty the share was accepted at (the previous, lower one during
    the grace after a raise; for a REST job, the lower of vardiff's and the job's).

    A share meeting ``current`` counts at ``current``; one below it (accepted in the grace)
    was surely mined at the old difficulty and counts at ``floor``. After a raise this errs only
    while the worker has not yet switched (its rare shares >= ``current`` count at ``current``
    on top of the others: about one round trip of extra work); weighing every grace share at
    ``floor`` would instead lose 15/16 of the work of the whole grace period.
    """
    return current if found >= current else floor


_Cells = dict[int, list[float]]  # absolute bucket -> [work, squared work]


class _Job:
    """A job (nonce range) the worker holds: when it began, its deliveries, its shares by bucket."""

    __slots__ = ("at", "cells", "done", "issued", "mark")

    def __init__(self, issued: float) -> None:
        self.issued = issued  # when the range was handed out: its hashes were all done after this
        # its latest delivery instant, and the one before it (or the issue): the shares delivered
        # at ``at`` were mined during [mark, at] (a REST batch: since the job began; a stream:
        # since the previous share), which is where their work is placed
        self.at = issued
        self.mark = issued
        self.done = False  # exhausted (range_done): its S has replaced its shares
        # its shares' work by absolute bucket, [work, squared work]: moved to the covered
        # account if the range completes (emptied then: no longer needed)
        self.cells: _Cells = {}


class WorkerHashrate:
    """Effective (and reported) hashrate of one worker. Not thread-safe; time is passed in.

    Feed it: :meth:`job` for every job handed to the worker, :meth:`share` for every accepted
    share, :meth:`range_done` when the worker says a job's range is exhausted, :meth:`connect`
    / :meth:`disconnect`, :meth:`report` for what the miner claims.
    """

    __slots__ = (
        "_cells",
        "_cfg",
        "_head",
        "_jobs",
        "_last",
        "_newest",
        "_seen",
        "_since",
        "_took",
        "_tot",
        "online",
        "reported",
        "reported_at",
    )

    def __init__(self, config: HashrateConfig) -> None:
        self._cfg = config  # shared by all workers: one reference, not eight floats each
        # the window's buckets, each _FIELDS doubles (see the field constants); slot = bucket % n
        self._cells = array("d", bytes(8 * _FIELDS * config.buckets))
        # the _FIELDS sums over the kept buckets as of _head: a rate is O(1), not a scan
        self._tot = array("d", bytes(8 * _FIELDS))
        self._head = -1  # absolute index (time // bucket) of the newest bucket written; -1: none
        self._since: float | None = None  # start of observed time: first job or evidence
        # time of the newest evidence counted now (not the newest job's shares while it is held)
        self._last = -math.inf
        self._seen = -math.inf  # last time anything was heard of the worker (history restart)
        self._newest: _Job | None = None  # the job handed out last: the one it is hashing now
        # how long its last exhausted range took (0: it never exhausted one): a worker that does
        # exhaust ranges has its current range held back while such a range would last
        self._took = 0.0
        self._jobs: dict[str, _Job] = {}  # jobs still held, oldest first (bounded: max_jobs)
        self.online = False  # between connect() and disconnect(): expired() keeps it meanwhile
        self.reported = 0.0  # hashes/s the miner claims (display only, never used here); 0 = none
        self.reported_at = -math.inf  # when it claimed it, to show its age or hide a stale claim

    # ------------------------------------------------------------------ feeding

    def connect(self, now: float) -> None:
        """The worker (re)connected: its history continues unless it was gone a whole window."""
        self._restart_if_gone(now)
        self.online = True
        self._seen = now

    def disconnect(self, now: float) -> None:
        """The worker left: from now on time runs on (its figure decays over the window)."""
        self.online = False
        self._release()
        self._seen = now

    def job(self, now: float, job: str) -> None:
        """A job (nonce range) was handed to the worker at ``now`` (for a REST job another
        instance issued and this one adopts: its ``issuedAt``); observed time starts here."""
        self._restart_if_gone(now)
        if self._since is None:
            self._since = now
        self._release()
        rec = _Job(now)
        jobs = self._jobs
        jobs[job] = rec
        if len(jobs) > self._cfg.max_jobs:
            del jobs[next(iter(jobs))]  # the oldest: its shares stay counted as shares
        self._newest = rec
        self._seen = max(self._seen, now)

    def share(self, now: float, zeros: int, job: str | None = None) -> None:
        """An accepted share, weighed at ``zeros`` (:func:`counted_zeros`), on ``job``."""
        w = _UNIT[zeros if 0 <= zeros <= 64 else min(max(zeros, 0), 64)]
        k = int(now // self._cfg.bucket)
        if k > self._head:
            self._advance(now)
        else:
            k = self._head
        rec = self._jobs.get(job) if job is not None else None
        if rec is None:  # a job not (or no longer) known: its work goes where it arrived
            self._place(now, now, k, w, w * w, _FREE_W, None)
            self._last = now
        elif rec.done:  # a straggler of an exhausted range: its S counted these hashes
            self._place(now, now, k, w, w * w, _COV_W, None)
            self._last = now
        else:
            if now > rec.at:  # a new delivery instant (else: more of the same batch)
                rec.mark = rec.at
                rec.at = now
            self._place(rec.mark, now, k, w, w * w, _FREE_W, rec.cells)
            if rec is not self._newest:  # the newest job's own shares: see _held
                self._last = now
        self._seen = now
        if self._since is None:
            self._since = now

    def range_done(self, now: float, job: str, size: int, zeros: int) -> None:
        """The worker hashed all ``size`` nonces of ``job`` (mined at ``zeros``): exact work.

        Ignored for a job it does not hold (never handed out here, forgotten, or already done):
        its shares, if any, keep counting, so nothing counts twice."""
        rec = self._jobs.get(job)
        if rec is None or rec.done or size <= 0:
            return
        k = self._advance(now)
        n = self._cfg.buckets
        cells = self._cells
        tot = self._tot
        for b, (w, sq) in rec.cells.items():  # its shares become covered, where they are
            if b > k - n:
                base = (b % n) * _FIELDS
                cells[base + _FREE_W] -= w
                cells[base + _FREE_SQ] -= sq
                cells[base + _COV_W] += w
                cells[base + _COV_SQ] += sq
                tot[_FREE_W] -= w
                tot[_FREE_SQ] -= sq
                tot[_COV_W] += w
                tot[_COV_SQ] += sq
        rec.cells = {}
        rec.done = True
        # S over the time the range took; with it the variance of the share work it should hold
        # (the credibility check)
        self._place(rec.issued, now, k, float(size), size * _UNIT[min(max(zeros, 0), 64)], _RANGED, None)
        self._took = max(now - rec.issued, 0.0)
        self._last = now
        self._seen = now

    def report(self, now: float, hashrate: float) -> None:
        """What the miner says it hashes (hello or a periodic message): display only."""
        if math.isfinite(hashrate) and hashrate >= 0:
            self.reported = hashrate
            self.reported_at = now

    # ------------------------------------------------------------------ reading

    def rate(self, now: float) -> float:
        """Effective hashrate, hashes/s, over the trailing window; 0 before any job."""
        work, _, span = self._measure(now)
        return work / max(span, self._cfg.min_span) if work > 0 else 0.0

    def error(self, now: float) -> float:
        """Relative standard error of :meth:`rate` (0.1 = +-10% at 1 sigma); inf without evidence."""
        work, var, _ = self._measure(now)
        return math.sqrt(var) / work if work > 0 else math.inf

    def confident(self, now: float) -> bool:
        """Enough evidence to show :meth:`rate` as the worker's hashrate (see the module doc)."""
        return self.rate_confident(now)[1]

    def rate_confident(self, now: float) -> tuple[float, bool]:
        """:meth:`rate` and :meth:`confident` from one measurement (a view of 10,000 workers
        measures each once)."""
        cfg = self._cfg
        work, var, span = self._measure(now)
        rate = work / max(span, cfg.min_span) if work > 0 else 0.0
        if span < cfg.min_span or work <= 0 or var > (cfg.max_error * work) ** 2:
            return rate, False
        return rate, span >= cfg.min_seconds or work * work >= cfg.min_shares * var  # share equivalents

    def expired(self, now: float) -> bool:
        """Offline and silent for a whole window: nothing is left to show; the owner may drop it."""
        return not self.online and now - self._seen > self._cfg.window

    # ------------------------------------------------------------------ internals

    def _restart_if_gone(self, now: float) -> None:
        if self._since is not None and now - self._seen > self._cfg.window:
            self._since = None  # every bucket is older than the window: a new history begins
            self._jobs.clear()
            self._newest = None
            self._last = -math.inf
            self._took = 0.0

    def _release(self) -> None:
        """The newest job is no longer the one being hashed: its deliveries count from now on."""
        newest = self._newest
        if newest is not None:
            self._last = max(self._last, newest.at)
            self._newest = None

    def _held(self, now: float) -> _Job | None:
        """The newest job while its evidence is held back (see the module doc), else None."""
        rec = self._newest
        if rec is None or rec.done:
            return None
        cfg = self._cfg
        age = now - rec.issued
        if self._took > 0:  # it exhausts ranges: this one is awaited as long as one takes
            return rec if age <= min(cfg.max_pending, 2 * self._took + cfg.min_span) else None
        return rec if not rec.cells and age <= cfg.max_pending else None  # awaiting its first

    def _place(
        self, lo: float, hi: float, k: int, a: float, b: float, field: int, into: _Cells | None
    ) -> None:
        """Add ``a`` to ``field`` and ``b`` to the field after it, spread evenly over [lo, hi]
        (k: the bucket of hi, the newest), the part before the window dropped (that work was
        done before it); each bucket's share also noted in ``into`` (a job's own account)."""
        cfg = self._cfg
        size = cfg.bucket
        n = cfg.buckets
        cells = self._cells
        tot = self._tot
        took = hi - lo
        first = int(lo // size) if took > 0 else k
        if first >= k:  # the common case, all in the newest bucket: no allocation
            base = (k % n) * _FIELDS + field
            cells[base] += a
            cells[base + 1] += b
            tot[field] += a
            tot[field + 1] += b
            if into is not None:
                got = into.get(k)
                if got is None:
                    into[k] = [a, b]
                else:
                    got[0] += a
                    got[1] += b
            return
        for j in range(max(first, k - n + 1), k + 1):
            frac = (min(hi, (j + 1) * size) - max(lo, j * size)) / took
            if frac <= 0:
                continue
            x, y = a * frac, b * frac
            base = (j % n) * _FIELDS + field
            cells[base] += x
            cells[base + 1] += y
            tot[field] += x
            tot[field + 1] += y
            if into is not None:
                got = into.get(j)
                if got is None:
                    into[j] = [x, y]
                else:
                    got[0] += x
                    got[1] += y

    def _advance(self, now: float) -> int:
        """The absolute bucket of ``now``, rolling the window forward to it (never back)."""
        k = int(now // self._cfg.bucket)
        head = self._head
        if k <= head:
            return head  # same bucket (or a clock step back: counted in the newest bucket)
        n = self._cfg.buckets
        cells = self._cells
        if head < 0 or k - head >= n:
            for i in range(len(cells)):
                cells[i] = 0.0
        else:
            for b in range(head + 1, k + 1):  # these slots held the buckets now too old
                base = (b % n) * _FIELDS
                cells[base : base + _FIELDS] = _ZEROS
        self._head = k
        tot = self._tot
        for f in range(_FIELDS):  # re-summed, not subtracted: no drift over a long life
            tot[f] = sum(cells[f::_FIELDS])
        return k

    def _measure(self, now: float) -> tuple[float, float, float]:
        """(hashes, their variance, observed time before the min_span floor) at ``now``: the
        buckets kept at ``now`` (without rolling: a read), ranges for what they cover while
        credible, a held job left out."""
        cfg = self._cfg
        since = self._since
        if since is None:
            return 0.0, 0.0, 0.0
        tot = self._tot
        free_w, free_sq, cov_w, cov_sq, ranged, expect = tot
        head = self._head
        n = cfg.buckets
        k = int(now // cfg.bucket)
        if k - head >= n:  # every bucket written is older than the window (or none was)
            free_w = free_sq = cov_w = cov_sq = ranged = expect = 0.0  # idle workers: no scan
        elif k > head:  # buckets too old at ``now`` but not rolled out yet
            cells = self._cells
            for b in range(head + 1, min(k, head + n) + 1):
                base = (b % n) * _FIELDS
                free_w -= cells[base + _FREE_W]
                free_sq -= cells[base + _FREE_SQ]
                cov_w -= cells[base + _COV_W]
                cov_sq -= cells[base + _COV_SQ]
                ranged -= cells[base + _RANGED]
                expect -= cells[base + _EXPECT]
        else:
            k = head
        end = now
        held = self._held(now)
        if held is not None:
            end = min(now, max(held.issued, self._last))
            for b, (w, sq) in held.cells.items():  # its range is awaited: they would count twice
                if b > k - n:
                    free_w -= w
                    free_sq -= sq
        span = end - max(since, (k - n + 1) * cfg.bucket)
        # the share work found in completed ranges against what their sizes predict, in work
        # (not a share count: shares weighed at several difficulties, vardiff having moved
        # during the window, have no single count): at z zeros alone this is exactly
        # found >= m - 3 sqrt(m) - 2 shares, m = S / 16**z, as var / S = 16**z
        var_e = max(expect, 0.0)
        if ranged > 0 and cov_w >= ranged - 3 * math.sqrt(var_e) - 2 * var_e / ranged:
            return max(free_w + ranged, 0.0), max(free_sq, 0.0), span
        return max(free_w + cov_w, 0.0), max(free_sq + cov_sq, 0.0), span
