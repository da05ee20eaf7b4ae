"""Redis store: the state a group of Pooler instances shares (``STORE=redis``).

Two writers use it, each through one Lua script per batch (a script runs atomically, so a
batch is durable entirely or not at all, and with ``appendfsync always`` it is on disk
before the reply; see docs/scale-out.md):

- Every instance's miner-serving coordinator (:meth:`RedisStore.commit`): share tallies,
  the instance's best candidates and the nonces it credited (the core's ``NonceCredited``
  records, in the same batch as the shares' acks). In the same script the nonces
  go into the shared duplicate sets (a nonce already there is refused and reported back, so
  its ``accepted`` becomes a ``rejected``), and a candidate that beats the group's best for
  its farmer replaces it in ``{p}:best:{block}`` and is appended to the ``{p}:bests`` stream
  the leader consumes. So every acknowledged best is durable in the shared best table before
  its ``accepted`` leaves, whichever instance the leader is.
- The leader's cycle coordinator (:meth:`RedisStore.commit_cycle`): blocks, bests, Backend
  call outcomes, farmer statuses and rewards. Its script first checks the leader token:
  a deposed leader's writes are refused whole (fencing of the shared state).

Failures keep the contract of :mod:`pooler.store`, as SQLite does: Redis unreachable, timed
out, loading, out of memory or read-only raises :class:`StoreUnavailable` (the runner keeps the
batch and sends it again with the next one; the store itself keeps nothing of it); a refusal
of the request itself (a script error, the fencing check, bad credentials) raises
:class:`StoreError`.

``open`` returns the miners and an empty snapshot: round state of the group lives with the
leader, which loads it with :meth:`load_snapshot` when it takes over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pooler.core.effects import Effect, Persist, Send
from pooler.core.events import IssuedJob
from pooler.core.records import (
    BestFound,
    BlockHistory,
    BlockSeen,
    FarmerStatusChanged,
    HarvestCalled,
    HistoryBucket,
    MinerCounts,
    NonceCredited,
    PlantCalled,
    RestJobIssued,
    ShareCounts,
    WorkCalled,
)
from pooler.core.snapshot import (
    BestRecord,
    BlockRecord,
    CoreSnapshot,
    CountsRecord,
    RewardRecord,
    StatusRecord,
)
from pooler.errors import StoreError, StoreUnavailable
from pooler.miners import MinerRecord
from pooler.stats.history import BLOCKS_KEEP, KEEP
from pooler.store import Restored
from pooler.store.codec import (
    best_data,
    block_history_data,
    block_history_from,
    bucket_data,
    bucket_from,
    bucket_sum,
    record_data,
    record_kind,
)
from pooler.store.keys import Keys
from protocol.errors import Code
from protocol.messages import Accepted, Rejected

Credit = tuple[int, str, int]  # (block, farmer id, nonce) credited by an accepted share

log = logging.getLogger("pooler.store")

# ARGV: prefix, ttl ms, payload JSON, stream maxlen, seen-set ttl ms, block summaries kept.
# Returns the 0-based positions of refused credits.
_COMMIT = """
local pre, ttl, p, maxlen = ARGV[1], tonumber(ARGV[2]), cjson.decode(ARGV[3]), ARGV[4]
local seen_ttl = tonumber(ARGV[5])
local dups, dupset, touched = {}, {}, {}
for i, c in ipairs(p.seen) do
  local k = pre .. 'seen:' .. c[1] .. ':' .. c[2]
  if redis.call('SADD', k, c[3]) == 0 then
    dups[#dups + 1] = i - 1
    dupset[c[1] .. ':' .. c[2] .. ':' .. c[3]] = true
  end
  touched[k] = true
end
for k in pairs(touched) do
  redis.call('PEXPIRE', k, seen_ttl)  -- once a set a batch, not once a share
end
for _, b in ipairs(p.blocks) do
  redis.call('ZADD', pre .. 'blocks', 'NX', b[1], b[2])
end
for _, j in ipairs(p.jobs) do
  redis.call('SET', pre .. 'job:' .. j[1], j[2], 'PX', seen_ttl)
end
for _, t in ipairs(p.tallies) do
  local k = pre .. 'tally:' .. t[1]
  local a, r = t[3], t[4]
  local old = redis.call('HGET', k, t[2])
  if old then
    local o = cjson.decode(old)
    if o[1] > a then a = o[1] end
    if o[2] > r then r = o[2] end
  end
  redis.call('HSET', k, t[2], '[' .. a .. ',' .. r .. ']')
  redis.call('PEXPIRE', k, ttl)
end
for _, b in ipairs(p.bests) do
  if not dupset[b[1] .. ':' .. b[2] .. ':' .. b[3]] then
    local k = pre .. 'best:' .. b[1]
    local old = redis.call('HGET', k, b[2])
    if (not old) or cjson.decode(old).zeros < b[4] then
      redis.call('HSET', k, b[2], b[5])
      redis.call('PEXPIRE', k, ttl)
      redis.call('XADD', pre .. 'bests', 'MAXLEN', '~', maxlen, '*', 'best', b[5])
    end
  end
end
for _, h in ipairs(p.hist) do
  local k = pre .. 'hist:' .. h[1]
  redis.call('HSET', k, h[2], h[3])
  redis.call('PEXPIRE', k, h[4])
end
for _, b in ipairs(p.blockhist) do
  redis.call('HSET', pre .. 'blockhist', b[1], b[2])
  redis.call('HDEL', pre .. 'blockhist', tostring(tonumber(b[1]) - tonumber(ARGV[6])))
end
for _, c in ipairs(p.counts) do
  if c[2] ~= 0 then redis.call('HINCRBY', pre .. 'minercounts', c[1] .. ':a', c[2]) end
  if c[3] ~= 0 then redis.call('HINCRBY', pre .. 'minercounts', c[1] .. ':r', c[3]) end
  if c[4] ~= 0 then redis.call('HINCRBY', pre .. 'minercounts', c[1] .. ':s', c[4]) end
end
return dups
"""

# ARGV: prefix, ttl ms, payload JSON, leader token, calls maxlen, blocks kept, block summaries kept.
_COMMIT_CYCLE = """
local pre, ttl, p = ARGV[1], tonumber(ARGV[2]), cjson.decode(ARGV[3])
local token, maxlen, keep = ARGV[4], ARGV[5], tonumber(ARGV[6])
if redis.call('GET', pre .. 'lease') ~= token then
  return redis.error_reply('FENCED the leader lease is not held by ' .. token)
end
for _, b in ipairs(p.blocks) do
  redis.call('ZADD', pre .. 'blocks', 'NX', b[1], b[2])
  redis.call('ZREMRANGEBYSCORE', pre .. 'blocks', '-inf', '(' .. (tonumber(b[1]) - keep))
end
for _, b in ipairs(p.bests) do
  local k = pre .. 'best:' .. b[1]
  local old = redis.call('HGET', k, b[2])
  if (not old) or cjson.decode(old).zeros < b[4] then
    redis.call('HSET', k, b[2], b[5])
  end
  redis.call('PEXPIRE', k, ttl)
end
for _, s in ipairs(p.statuses) do
  local k = pre .. 'status:' .. s[1]
  redis.call('HSET', k, s[2], s[3])
  redis.call('PEXPIRE', k, ttl)
end
for _, c in ipairs(p.calls) do
  redis.call('XADD', pre .. 'calls', 'MAXLEN', '~', maxlen, '*', 'op', c[1], 'block', c[2], 'record', c[3])
end
for _, r in ipairs(p.rewards) do
  redis.call('HSET', pre .. 'rewards', r[1], r[2])
end
for _, b in ipairs(p.blockhist) do
  redis.call('HSET', pre .. 'blockhist', b[1], b[2])
  redis.call('HDEL', pre .. 'blockhist', tostring(tonumber(b[1]) - tonumber(ARGV[7])))
end
return 1
"""


class RedisStore:
    """See the module docstring. ``client`` is a ``redis.asyncio.Redis`` with ``decode_responses=True``."""

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        *,
        instance: str,
        block_ttl: float,
        seen_ttl: float = 900.0,
        clock: Callable[[], float] = time.time,
        keep_blocks: int = 300,
        stream_maxlen: int = 100_000,
    ) -> None:
        self._redis = client
        self._keys = keys
        self.instance = instance  # this instance's name: its tally fields
        self._ttl_ms = max(1000, round(block_ttl * 1000))  # per-block keys live as long as a harvest can
        # duplicate sets only matter while their block takes shares: they go soon after (memory)
        self._seen_ttl_ms = max(1000, round(seen_ttl * 1000))
        self._clock = clock
        self.keep_blocks = keep_blocks
        self._maxlen = str(stream_maxlen)
        # (job, nonce) of the last commit's credits that the shared duplicate set refused: the
        # accepted sent for each becomes a rejected (a job hashes for one (block, farmer), so the
        # pair names the credit's (block, farmer, nonce)). Nothing else outlives a commit: a
        # batch Redis could not take is the runner's to keep and send again (StoreUnavailable).
        self._refused: set[tuple[str, int]] = set()
        self._commit = client.register_script(_COMMIT)
        self._commit_cycle = client.register_script(_COMMIT_CYCLE)
        self.commits = 0  # batches committed (metrics, benchmarks)
        # the Store protocol's readiness field; a failed commit shows through the runner's report
        # (the observer's store_ok) instead, so this stays "" here
        self.last_error = ""
        self.duplicates = 0  # credits refused by the shared duplicate set since start
        # miner id -> (accepted, rejected, stale) this instance's counters stood at in Redis: read
        # at open (the core starts from them), then what the last commit added. A MinerCounts is
        # absolute (that start plus this process's shares), so the commit sends the difference
        # as HINCRBY: each instance adds its own shares, nothing is keyed by instance (#18)
        self._counted: dict[str, tuple[int, int, int]] = {}

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> Restored:
        try:
            raw = await self._redis.hgetall(self._keys.miners)
        except RedisError as exc:
            raise _failure("cannot read the miners from Redis", exc) from exc
        miners = sorted((miner_from_json(v) for v in raw.values()), key=lambda m: m.miner_id)
        counts = await self.load_counts({m.miner_id for m in miners})
        self._counted = {c.miner_id: (c.accepted, c.rejected, c.stale) for c in counts}
        return Restored(miners, CoreSnapshot(counts=counts), await self.load_history())

    async def load_counts(self, miner_ids: set[str]) -> tuple[CountsRecord, ...]:
        """The registered miners' counters (fields of miners not in ``miner_ids`` are left out)."""
        try:
            raw = await self._redis.hgetall(self._keys.miner_counts)
        except RedisError as exc:
            raise _failure("cannot read the miner counters from Redis", exc) from exc
        got: dict[str, list[int]] = {}
        for name, value in raw.items():
            miner_id, _, which = str(name).rpartition(":")
            if miner_id in miner_ids and which in ("a", "r", "s"):
                got.setdefault(miner_id, [0, 0, 0])["ars".index(which)] = int(value)
        return tuple(CountsRecord(m, a, r, s) for m, (a, r, s) in sorted(got.items()))

    def _hist_row(self, b: HistoryBucket) -> tuple[str, str, list[Any]]:
        """(key suffix, field, script row) of a bucket: one hash per (width, start), one field per
        (scope, key, instance): each instance writes its own shares, a reader sums them."""
        suffix = f"{b.width}:{b.start}"
        field = orjson.dumps([b.scope, b.key, self.instance]).decode()
        ttl = (KEEP[b.width] + b.width) * 1000  # Redis prunes it: no pass over old keys
        return suffix, field, [suffix, field, orjson.dumps(bucket_data(b)).decode(), ttl]

    async def load_history(self) -> list[HistoryBucket | BlockHistory]:
        """Buckets (summed over instances, oldest first) and block summaries (at start only: one
        SCAN over the history keys, at most 24 * 60 + 30 * 24 of them)."""
        sums: dict[tuple[str, str, int, int], HistoryBucket] = {}
        try:
            keys = [k async for k in self._redis.scan_iter(match=self._keys.base + "hist:*", count=1000)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for k in keys:
                    pipe.hgetall(k)
                pipe.hgetall(self._keys.base + "blockhist")
                replies = await pipe.execute()
        except RedisError as exc:
            raise _failure("cannot load the history from Redis", exc) from exc
        for fields in replies[:-1]:
            for raw in fields.values():
                b = bucket_from(orjson.loads(raw))
                at = (b.scope, b.key, b.width, b.start)
                old = sums.get(at)
                # each instance writes its own shares and online counts: the group's are the sums
                sums[at] = b if old is None else bucket_sum(old, b)
        out: list[HistoryBucket | BlockHistory] = [sums[k] for k in sorted(sums, key=lambda k: k[3])]
        blocks = sorted(
            (block_history_from(orjson.loads(v)) for v in replies[-1].values()), key=lambda b: b.block
        )
        out.extend(blocks[-BLOCKS_KEEP:])
        return out

    async def load_block_history(self, blocks: Iterable[int]) -> list[BlockHistory]:
        """The stored summaries of ``blocks`` (those a new leader's round state restores: the
        previous leader wrote them, the new one goes on from there). One HMGET."""
        wanted = [str(b) for b in blocks]
        if not wanted:
            return []
        try:
            raw = await self._redis.hmget(self._keys.base + "blockhist", wanted)
        except RedisError as exc:
            raise _failure("cannot load the block history from Redis", exc) from exc
        return [block_history_from(orjson.loads(v)) for v in raw if v is not None]

    async def close(self) -> None:
        """The client belongs to the cluster node, which closes it."""

    async def integrity_check(self) -> str:
        """Redis has no file to check; "ok" when the server answers (the Store protocol asks for one)."""
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise _failure("Redis does not answer", exc) from exc
        return "ok"

    # ------------------------------------------------------------ miners

    async def save_miner(self, record: MinerRecord) -> None:
        data = miner_to_json(record)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._keys.miners, record.miner_id, data)
                pipe.publish(self._keys.control, orjson.dumps({"op": "joined", "miner": orjson.loads(data)}))
                await pipe.execute()
        except RedisError as exc:
            raise _failure(f"cannot save miner {record.miner_id}", exc) from exc

    async def revoke_miner(self, miner_id: str) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self._keys.miners, miner_id)
                pipe.hdel(self._keys.miner_counts, f"{miner_id}:a", f"{miner_id}:r", f"{miner_id}:s")
                pipe.publish(self._keys.control, orjson.dumps({"op": "left", "minerId": miner_id}))
                await pipe.execute()
        except RedisError as exc:
            raise _failure(f"cannot revoke miner {miner_id}", exc) from exc

    # ------------------------------------------------------------ the miner-serving side

    async def commit(self, records: list[Persist]) -> None:
        credits: list[NonceCredited] = []  # the nonces the batch's shares credited, in order
        bests: list[list[Any]] = []
        # (block, miner, worker) -> its newest tally: counts are absolute, so one row a worker
        # a batch says it all (the script's per-row HGET/HSET/PEXPIRE was most of its cost)
        tallies: dict[tuple[object, object, object], list[Any]] = {}
        blocks: list[list[Any]] = []
        jobs: list[list[str]] = []
        hist: dict[tuple[str, str], list[Any]] = {}  # (key suffix, field) -> its newest row
        counts: dict[str, tuple[int, int, int]] = {}  # miner id -> its newest absolute counters
        blockhist: dict[int, list[Any]] = {}  # block -> its newest summary
        for p in records:
            match p.record:
                case HistoryBucket() as b:
                    suffix, field, row = self._hist_row(b)
                    hist[suffix, field] = row
                case BlockHistory() as bh:
                    blockhist[bh.block] = _blockhist_row(bh)
                case ShareCounts(block, miner_id, worker, accepted, rejected):
                    field = orjson.dumps([miner_id, worker, self.instance]).decode()
                    tallies[block, miner_id, worker] = [str(block), field, accepted, rejected]
                case BestFound() as found:
                    bests.append(_best_row(found))
                case MinerCounts(miner_id, accepted, rejected, stale):
                    counts[miner_id] = (accepted, rejected, stale)
                case BlockSeen() as seen:
                    blocks.append(_block_row(seen))
                case RestJobIssued(job) as issued:
                    jobs.append([job.job_id, orjson.dumps(record_data(issued)).decode()])
                case NonceCredited() as credit:
                    credits.append(credit)
                case _:
                    pass  # plant/work/harvest/farmer_status here come from refused follower calls: not facts
        increments = []
        for miner_id, now in counts.items():
            was = self._counted.get(miner_id, (0, 0, 0))
            increments.append([miner_id, *(max(0, n - w) for n, w in zip(now, was, strict=True))])
        payload = {
            "counts": increments,
            "seen": [[str(c.block), c.farmer_id, str(c.nonce)] for c in credits],
            "tallies": list(tallies.values()),
            "bests": bests,
            "blocks": blocks,
            "jobs": jobs,
            "hist": list(hist.values()),
            "blockhist": list(blockhist.values()),
        }
        try:
            args: list[str | int] = [
                self._keys.base,
                self._ttl_ms,
                _lua_json(payload),
                self._maxlen,
                self._seen_ttl_ms,
                BLOCKS_KEEP,
            ]
            dups = await self._commit(args=args)
        except RedisError as exc:
            self._refused = set()
            raise _failure("Redis commit failed", exc) from exc  # the runner keeps the batch if it may pass
        for miner_id, now in counts.items():  # written: the next increments start from here
            was = self._counted.get(miner_id, (0, 0, 0))
            self._counted[miner_id] = (max(now[0], was[0]), max(now[1], was[1]), max(now[2], was[2]))
        refused = [credits[int(i)] for i in dups or ()]
        self._refused = {(c.job, c.nonce) for c in refused}
        self.duplicates += len(refused)
        self.commits += 1

    async def load_job(self, job_id: str) -> IssuedJob | None:
        """The REST job ``job_id`` as its instance recorded it; None when unknown or expired.

        Raises StoreError when Redis does not answer, or when the record is not one this
        project wrote (a share must never be checked against a range nobody issued)."""
        try:
            raw = await self._redis.get(self._keys.job(job_id))
        except RedisError as exc:
            raise _failure(f"cannot read job {job_id!r} from Redis", exc) from exc
        if raw is None:
            return None
        try:
            d = orjson.loads(raw)
            issued = IssuedJob(
                job_id=str(d["job"]),
                block=int(d["block"]),
                miner_id=str(d["minerId"]),
                farmer_id=str(d["farmerId"]),
                worker=str(d["worker"]),
                nonce_start=int(d["nonceStart"]),
                nonce_end=int(d["nonceEnd"]),
                share_zeros=int(d["shareZeros"]),
                issued_at=float(d["issuedAt"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"job {job_id!r} in Redis is not a job record: {exc}") from exc
        if issued.job_id != job_id:
            raise StoreError(f"job record under {job_id!r} names job {issued.job_id!r}")
        return issued

    def review(self, held: list[Effect]) -> list[Effect]:
        """After a commit: the ``accepted`` of each credit the shared duplicate set refused becomes
        a ``rejected`` DUPLICATE (Runner hook, called before the batch's held acks go out)."""
        refused, self._refused = self._refused, set()
        if not refused:
            return held
        out: list[Effect] = []
        for effect in held:
            if (
                isinstance(effect, Send)
                and isinstance(effect.msg, Accepted)
                and (effect.msg.job, effect.msg.nonce) in refused
            ):
                refused.discard((effect.msg.job, effect.msg.nonce))
                msg = effect.msg
                why = "this nonce was already accepted by another instance of the pool"
                out.append(Send(effect.conn, Rejected(msg.job, msg.nonce, Code.DUPLICATE, why)))
            else:
                out.append(effect)
        return out

    # ------------------------------------------------------------ the leader's cycle

    async def commit_cycle(self, records: list[Persist], token: str) -> None:
        """The leader's records, written only while ``token`` is the lease's (else StoreError)."""
        blocks: list[list[Any]] = []
        bests: list[list[Any]] = []
        statuses: list[list[Any]] = []
        calls: list[list[Any]] = []
        rewards: list[list[Any]] = []
        blockhist: dict[int, list[Any]] = {}  # block -> its newest summary
        for p in records:
            match p.record:
                case BlockHistory() as bh:
                    blockhist[bh.block] = _blockhist_row(bh)
                case BlockSeen() as seen:
                    blocks.append(_block_row(seen))
                case BestFound() as found:
                    bests.append(_best_row(found))
                case FarmerStatusChanged(farmer_id, block, status, reason, zeros, reward):
                    row: dict[str, Any] = {"status": status}
                    if reason:
                        row["reason"] = reason
                    if zeros is not None:
                        row["zeros"] = zeros
                    if reward is not None:
                        row["reward"] = str(reward)
                    statuses.append([str(block), farmer_id, orjson.dumps(row).decode()])
                case PlantCalled() | WorkCalled() | HarvestCalled() as call:
                    record = orjson.dumps(record_data(call), default=_default).decode()
                    calls.append([record_kind(call), str(call.block), record])
                    if isinstance(call, HarvestCalled) and call.reply is not None:
                        total = _decimal(call.reply.body.get("totalRewards"))
                        if total is not None:
                            rewards.append([str(call.block), str(total)])
                case _:
                    pass  # shares, jobs and the rest are the miner-serving side's
        payload = {
            "blocks": blocks,
            "bests": bests,
            "statuses": statuses,
            "calls": calls,
            "rewards": rewards,
            "blockhist": list(blockhist.values()),
        }
        args: list[str | int] = [
            self._keys.base,
            self._ttl_ms,
            _lua_json(payload),
            token,
            self._maxlen,
            self.keep_blocks,
            BLOCKS_KEEP,
        ]
        try:
            await self._commit_cycle(args=args)
        except RedisError as exc:  # FENCED (a deposed leader) is a refusal: never retried
            raise _failure("leader records refused or not written", exc) from exc
        self.commits += 1

    async def load_snapshot(self) -> CoreSnapshot:
        """The group's round state, as a new leader restores it (``Coordinator.restore``)."""
        try:
            rows: Any = await self._redis.zrange(self._keys.blocks, -self.keep_blocks, -1)
            decoded: list[dict[str, Any]] = [orjson.loads(r) for r in rows]
            blocks = [
                BlockRecord(int(b["index"]), bytes.fromhex(b["entropy"]), int(b["timestamp"]))
                for b in decoded
            ]
            blocks.sort(key=lambda b: b.index)
            if not blocks:
                return CoreSnapshot()
            async with self._redis.pipeline(transaction=False) as pipe:
                for b in blocks:
                    pipe.hgetall(self._keys.best(b.index))
                    pipe.hgetall(self._keys.status(b.index))
                pipe.hgetall(self._keys.rewards)
                replies = await pipe.execute()
        except RedisError as exc:
            raise _failure("cannot load the round state from Redis", exc) from exc
        bests: list[BestRecord] = []
        statuses: list[StatusRecord] = []
        rewards: list[RewardRecord] = []
        # the last status of a block after the newest one: our late plant opened it (restore adopts it)
        for i, b in enumerate(blocks):
            for fid, raw in replies[2 * i].items():
                d = orjson.loads(raw)
                found = d.get("foundAt")
                bests.append(
                    BestRecord(
                        b.index,
                        fid,
                        int(d["nonce"]),
                        bytes.fromhex(d["hash"]),
                        int(d["zeros"]),
                        found / 1000 if isinstance(found, int | float) else self._clock(),
                        str(d.get("minerId", "")),
                        str(d.get("worker", "")),
                    )
                )
            for fid, raw in replies[2 * i + 1].items():
                d = orjson.loads(raw)
                statuses.append(StatusRecord(b.index, fid, d["status"], d.get("reason", ""), d.get("zeros")))
                reward = _decimal(d.get("reward"))
                if d["status"] == "harvested" and reward is not None:
                    rewards.append(RewardRecord(b.index, fid, reward))
        kept = {b.index for b in blocks}
        for index, total in replies[-1].items():
            value = _decimal(total)
            if int(index) in kept and value is not None:
                rewards.append(RewardRecord(int(index), "", value))
        return CoreSnapshot(
            blocks=tuple(blocks), bests=tuple(bests), statuses=tuple(statuses), rewards=tuple(rewards)
        )


# ---------------------------------------------------------------- failures

# Redis could not serve the request now; the same one may succeed later (the Store contract's
# StoreUnavailable: the runner keeps the batch and writes it with the next one)
_TRANSIENT = (
    RedisConnectionError,
    RedisTimeoutError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
    ClusterDownError,
)
_MISCONFIGURED = (AuthenticationError, AuthorizationError)  # connection errors no retry mends


def _failure(what: str, exc: RedisError) -> StoreError:
    """StoreUnavailable for a failure the same request may survive later, else StoreError (the
    request itself was refused: a script error, a fencing refusal, bad credentials)."""
    if isinstance(exc, _TRANSIENT) and not isinstance(exc, _MISCONFIGURED):
        return StoreUnavailable(f"{what}: {exc}")
    return StoreError(f"{what}: {exc}")


# ---------------------------------------------------------------- encoding


def miner_to_json(record: MinerRecord) -> str:
    return orjson.dumps(
        {
            "minerId": record.miner_id,
            "farmerId": record.farmer_id,
            "farmer": record.farmer,
            "name": record.name,
            "tokenHash": record.token_hash.hex(),
            "stakePercentage": record.stake_percentage,
        }
    ).decode()


def miner_from_json(raw: str | bytes | Mapping[str, Any]) -> MinerRecord:
    d = raw if isinstance(raw, Mapping) else orjson.loads(raw)
    try:
        return MinerRecord(
            miner_id=str(d["minerId"]),
            farmer_id=str(d["farmerId"]),
            farmer=str(d["farmer"]),
            name=str(d.get("name", "")),
            token_hash=bytes.fromhex(str(d["tokenHash"])),
            stake_percentage=float(d.get("stakePercentage", 0.0)),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise StoreError(f"a miner record in Redis is malformed ({exc}): {str(d)[:120]}") from exc


def _best_row(found: BestFound) -> list[Any]:
    """[block, farmer, nonce, zeros, JSON] of a best, as the scripts take it."""
    d = best_data(found)
    best = {
        "nonce": d["nonce"],
        "hash": d["hash"],
        "zeros": d["zeros"],
        "foundAt": d["foundAt"],
        "minerId": d["minerId"],
        "worker": d["worker"],
        "block": d["block"],
        "farmerId": d["farmerId"],
    }
    return [str(found.block), found.farmer_id, d["nonce"], found.best.zeros, orjson.dumps(best).decode()]


def _blockhist_row(bh: BlockHistory) -> list[Any]:
    return [str(bh.block), orjson.dumps(block_history_data(bh)).decode()]


def _block_row(seen: BlockSeen) -> list[Any]:
    return [str(seen.index), orjson.dumps(record_data(seen)).decode()]


def _lua_json(payload: Mapping[str, Any]) -> str:
    # Lua's cjson turns an empty JSON array into an empty table either way; numbers above 2**53
    # would lose precision there, so every nonce and block travels as a string.
    return orjson.dumps(payload).decode()


def _default(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store {type(value).__name__}")


def _decimal(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_best(raw: str | bytes) -> dict[str, Any]:
    """A best as written in ``{p}:best:{block}`` and the ``{p}:bests`` stream."""
    d = orjson.loads(raw)
    if not isinstance(d, dict):
        raise StoreError(f"a best record in Redis is not an object: {str(raw)[:80]}")
    return d
