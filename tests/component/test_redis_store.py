"""The Redis store against a real redis-server: what each side writes, what a new leader loads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from pooler.backend import parse_reply
from pooler.cluster.lease import LeaderLease
from pooler.core.coordinator import Coordinator
from pooler.core.effects import CallBackend, Effect, Persist, Send
from pooler.core.records import (
    Best,
    BestFound,
    BlockSeen,
    FarmerStatusChanged,
    HarvestCalled,
    MinerCounts,
    NonceCredited,
    PlantCalled,
    ShareCounts,
)
from pooler.core.snapshot import CountsRecord
from pooler.errors import StoreError, StoreUnavailable
from pooler.miners import MinerRecord
from pooler.runtime.hub import EventHub
from pooler.runtime.runner import Runner
from pooler.store.keys import BEST_GROUP, Keys
from pooler.store.redis import RedisStore
from protocol.errors import Code
from protocol.messages import Accepted, Rejected
from tests.component.redis_support import rclient, redis_server  # noqa: F401
from tests.redis_server import RedisServer
from tests.support.config import core as core_config

KEYS = Keys("kp")
ENTROPY = bytes(range(32))


def store(client: aioredis.Redis, instance: str) -> RedisStore:
    return RedisStore(client, KEYS, instance=instance, block_ttl=3600, clock=lambda: 1_700_000_000.0)


def best(block: int, fid: str, nonce: int, zeros: int, miner: str = "m1") -> Persist:
    digest = b"\x00" * zeros + b"\xff" * (32 - zeros)
    return Persist(BestFound(block, fid, Best(nonce, digest, zeros, 1_700_000_001.0, miner, "w")))


def shares(block: int, miner: str, worker: str, accepted: int, rejected: int) -> Persist:
    return Persist(ShareCounts(block, miner, worker, accepted, rejected))


def credit(block: int, fid: str, nonce: int, job: str) -> Persist:
    return Persist(NonceCredited(block, fid, nonce, job))


async def test_bests_keep_the_most_zeros_and_reach_the_stream_only_when_better(
    rclient: aioredis.Redis,  # noqa: F811
) -> None:
    a, b = store(rclient, "a"), store(rclient, "b")
    await a.commit([best(5, "f1", 10, 3)])
    await b.commit([best(5, "f1", 20, 2)])  # worse than the group's best: not a candidate
    await b.commit([best(5, "f1", 30, 6), best(5, "f2", 40, 1)])
    table = {k: orjson.loads(v) for k, v in (await rclient.hgetall(KEYS.best(5))).items()}
    assert (table["f1"]["nonce"], table["f1"]["zeros"], table["f2"]["zeros"]) == ("30", 6, 1)
    entries = await rclient.xrange(KEYS.bests)
    assert [orjson.loads(f["best"])["nonce"] for _id, f in entries] == ["10", "30", "40"]


async def test_tallies_are_kept_per_instance_and_never_go_down(rclient: aioredis.Redis) -> None:  # noqa: F811
    a, b = store(rclient, "a"), store(rclient, "b")
    await a.commit([shares(5, "m1", "rig", 4, 1)])
    await b.commit([shares(5, "m1", "rig", 2, 0)])  # the same worker name on another instance
    await a.commit([shares(5, "m1", "rig", 3, 0)])  # an older count replayed: max wins
    tally = {
        tuple(orjson.loads(k)): orjson.loads(v) for k, v in (await rclient.hgetall(KEYS.tally(5))).items()
    }
    assert tally == {("m1", "rig", "a"): [4, 1], ("m1", "rig", "b"): [2, 0]}
    # a batch of one worker's share records (one per accepted share) is written as its newest
    batch = [shares(6, "m1", "rig", n, 0) for n in range(1, 501)] + [shares(6, "m2", "gpu", 7, 2)]
    await a.commit(batch)
    tally = {
        tuple(orjson.loads(k)): orjson.loads(v) for k, v in (await rclient.hgetall(KEYS.tally(6))).items()
    }
    assert tally == {("m1", "rig", "a"): [500, 0], ("m2", "gpu", "a"): [7, 2]}


async def test_a_nonce_credited_on_one_instance_is_refused_on_another(rclient: aioredis.Redis) -> None:  # noqa: F811
    a, b = store(rclient, "a"), store(rclient, "b")
    await a.commit([credit(5, "f1", 77, "j1"), shares(5, "m1", "w", 1, 0), best(5, "f1", 77, 2)])
    assert a.review([Send(1, Accepted("j1", 77, 2, True))]) == [Send(1, Accepted("j1", 77, 2, True))]
    credits = [credit(5, "f1", 77, "j2"), credit(5, "f1", 78, "j3"), credit(5, "f2", 77, "j4")]
    await b.commit([*credits, best(5, "f1", 77, 2, miner="m9"), shares(5, "m9", "w", 3, 0)])
    held: list[Effect] = [
        Send(2, Accepted("j2", 77, 2, True)),
        Send(3, Accepted("j3", 78, 1, False)),
        Send(4, Accepted("j4", 77, 1, False)),
    ]
    out = b.review(held)
    first = out[0]
    assert isinstance(first, Send) and isinstance(first.msg, Rejected)
    assert (first.msg.code, first.msg.nonce) == (Code.DUPLICATE, 77)
    assert out[1:] == held[1:]  # other nonces, and f2's nonce 77, are credited
    assert b.duplicates == 1
    assert orjson.loads(await rclient.hget(KEYS.best(5), "f1"))["minerId"] == "m1"  # the duplicate is no best
    assert await rclient.xlen(KEYS.bests) == 1
    assert await rclient.pttl(KEYS.seen(5, "f1")) > 0


async def test_a_refused_credit_rejects_the_accepted_of_its_own_farmer(rclient: aioredis.Redis) -> None:  # noqa: F811
    """Two farmers' shares with the same nonce in one batch, and another instance credited the
    second farmer's first: only that farmer's accepted becomes a duplicate (matching refused
    credits to acks by nonce alone rejected the first farmer's share instead)."""
    a, b = store(rclient, "a"), store(rclient, "b")
    await a.commit([credit(5, "f1", 77, "a.1")])
    await b.commit([credit(5, "f2", 77, "b.2"), credit(5, "f1", 77, "b.1")])
    held: list[Effect] = [Send(2, Accepted("b.2", 77, 1, False)), Send(1, Accepted("b.1", 77, 1, False))]
    out = b.review(held)
    assert out[0] == held[0]  # farmer f2's nonce 77 was nobody's yet
    second = out[1]
    assert isinstance(second, Send) and isinstance(second.msg, Rejected)
    assert (second.conn, second.msg.job, second.msg.code) == (1, "b.1", Code.DUPLICATE)
    assert b.duplicates == 1


async def test_miner_counters_add_up_over_instances_and_restarts_with_one_field_per_counter(
    rclient: aioredis.Redis,  # noqa: F811
) -> None:
    """Each instance's core sends absolute counters (what it loaded plus its own shares); the
    store adds only the difference with HINCRBY, so the group's total is the sum, a restarted
    instance goes on from it, and the hash holds three fields per miner, however often the
    instances restart (no field per instance)."""
    miners = {"m1", "m2"}

    def counts(miner: str, accepted: int, rejected: int, stale: int) -> Persist:
        return Persist(MinerCounts(miner, accepted, rejected, stale))

    a, b = store(rclient, "a"), store(rclient, "b")
    assert (await a.open()).snapshot.counts == ()
    await b.open()
    await a.commit([counts("m1", 3, 1, 0), counts("m1", 5, 1, 1)])  # the newest of a batch stands
    await b.commit([counts("m1", 2, 0, 0), counts("m2", 4, 0, 0)])
    await a.commit([counts("m1", 5, 1, 1)])  # replayed (a batch sent again): nothing added
    for _ in range(3):  # restarts: each goes on from the group's total
        again = store(rclient, "a")
        restored = await again.open()
        assert restored.snapshot.counts == ()  # no miner registered in this test: none loaded
        loaded = await again.load_counts(miners)
        assert loaded == (CountsRecord("m1", 7, 1, 1), CountsRecord("m2", 4, 0, 0))
    await a.save_miner(MinerRecord("m1", "f1", "G" + "A" * 55, "rig", b"\x01" * 32, 0.1))
    c = store(rclient, "c")
    assert (await c.open()).snapshot.counts == (CountsRecord("m1", 7, 1, 1),)  # its core starts there
    await c.commit([counts("m1", 9, 1, 1)])  # two more shares on c
    assert await c.load_counts(miners) == (CountsRecord("m1", 9, 1, 1), CountsRecord("m2", 4, 0, 0))
    assert set(await rclient.hkeys(KEYS.miner_counts)) == {"m1:a", "m1:r", "m1:s", "m2:a"}
    await a.revoke_miner("m2")
    assert set(await rclient.hkeys(KEYS.miner_counts)) == {"m1:a", "m1:r", "m1:s"}


class _NoBackend:
    async def call(
        self, op: str, method: str, path: str, payload: Mapping[str, object] | None, deadline: float
    ) -> dict[str, Any]:
        raise AssertionError("no Backend call is expected here")


async def test_redis_away_makes_a_commit_unavailable_and_the_runner_keeps_the_batch() -> None:
    """One contract for both stores: a failure the same batch may survive later is StoreUnavailable,
    so the runner keeps the records and writes them once Redis is back (a StoreError made it drop
    them while the store kept retry buffers of its own)."""
    with RedisServer() as server:
        client = aioredis.Redis.from_url(
            server.url, decode_responses=True, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        try:
            s = store(client, "a")
            runner = Runner(Coordinator(core_config()), _NoBackend(), EventHub(clock=lambda: 0.0), store=s)
            server.stop()
            with pytest.raises(StoreUnavailable):
                await s.commit([shares(5, "m1", "w", 1, 0)])
            await runner.perform([best(5, "f1", 10, 4), Send(1, Accepted("j", 10, 4, True))])
            assert runner.unsaved == 1 and runner.refused_acks == 1  # kept, and no ack went out for it
            server.start()
            await runner.flush()
            assert runner.unsaved == 0
            written = await client.hget(KEYS.best(5), "f1")
            assert written is not None and orjson.loads(written)["zeros"] == 4
        finally:
            await client.aclose()


async def test_the_credits_of_every_commit_reach_the_shared_set(
    rclient: aioredis.Redis,  # noqa: F811
) -> None:
    """Each batch carries its own credits (they once flowed through a list the coordinator and the
    store shared, and a commit that rebound it lost all later credits: duplicates across
    instances went undetected after an instance's first commit)."""
    a = store(rclient, "a")
    for nonce in (1, 2, 3):
        await a.commit([credit(5, "f1", nonce, f"j{nonce}")])
    assert await rclient.smembers(KEYS.seen(5, "f1")) == {"1", "2", "3"}


async def test_a_failed_commit_is_unavailable_and_its_batch_is_written_when_sent_again(
    rclient: aioredis.Redis,  # noqa: F811
) -> None:
    """The store keeps nothing of a failed batch: it says StoreUnavailable and the runner sends the
    batch again ahead of the next one (the store used to keep retry buffers of its own)."""
    broken = aioredis.Redis(host="127.0.0.1", port=1, decode_responses=True, socket_connect_timeout=0.5)
    s = RedisStore(broken, KEYS, instance="a", block_ttl=3600)
    with pytest.raises(StoreUnavailable, match="Redis commit failed"):
        await s.commit([best(5, "f1", 10, 4)])
    await broken.aclose()
    s._redis = rclient
    s._commit = rclient.register_script(s._commit.script)
    await s.commit([best(5, "f1", 10, 4), shares(5, "m1", "w", 1, 0)])  # the kept batch, then the next
    assert orjson.loads(await rclient.hget(KEYS.best(5), "f1"))["zeros"] == 4


async def test_miners_are_shared_and_announced(rclient: aioredis.Redis) -> None:  # noqa: F811
    s = store(rclient, "a")
    record = MinerRecord("m_1", "f_1", "GADDR", "rig", b"\x01" * 32, 0.25)
    pubsub = rclient.pubsub()
    await pubsub.subscribe(KEYS.control)
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    await s.save_miner(record)
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
    assert message is not None and orjson.loads(message["data"])["op"] == "joined"
    assert (await store(rclient, "b").open()).miners == [record]  # token kept hashed, as given
    await s.revoke_miner("m_1")
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
    assert message is not None and orjson.loads(message["data"]) == {"op": "left", "minerId": "m_1"}
    assert (await s.open()).miners == []
    await pubsub.aclose()


async def test_the_leader_writes_a_snapshot_a_new_leader_restores(rclient: aioredis.Redis) -> None:  # noqa: F811
    lease = LeaderLease(rclient, KEYS, "a", 5.0)
    assert await lease.try_acquire()
    assert lease.token is not None
    s = store(rclient, "a")
    records = [
        Persist(BlockSeen(8, ENTROPY, 1_699_999_700)),
        Persist(BlockSeen(9, ENTROPY, 1_700_000_000)),
        best(9, "f1", 1234, 5),
        Persist(FarmerStatusChanged("f1", 9, "planted")),
        Persist(FarmerStatusChanged("f1", 8, "worked", zeros=4)),
        Persist(PlantCalled(9, parse_reply("plant", {"successfulPlants": 1}))),
    ]
    await s.commit_cycle(records, lease.token)
    harvest = parse_reply("harvest", {"totalRewards": "500"})
    await s.commit_cycle(
        [
            Persist(HarvestCalled(8, harvest)),
            Persist(FarmerStatusChanged("f1", 8, "harvested", reward=500)),
        ],
        lease.token,
    )
    snap = await store(rclient, "b").load_snapshot()
    assert [b.index for b in snap.blocks] == [8, 9]
    assert [(b.block, b.farmer_id, b.nonce, b.zeros) for b in snap.bests] == [(9, "f1", 1234, 5)]
    assert {(st.block, st.status) for st in snap.statuses} == {(9, "planted"), (8, "harvested")}
    assert {(r.block, r.farmer_id, r.reward) for r in snap.rewards} == {(8, "f1", 500), (8, "", 500)}
    assert await rclient.xlen(KEYS.calls) == 2
    # A new leader's core resumes from it: block 9 open, planted, no second plant call.
    core = Coordinator(core_config(pooler_id="p", block_interval=300, work_delay=200))
    effects = core.restore(snap, 1_700_000_010.0)
    assert not [e for e in effects if isinstance(e, CallBackend) and e.op == "plant"]
    assert core.view(1_700_000_010.0).best_zeros == {"f1": 5}


async def test_a_deposed_leader_cannot_write(rclient: aioredis.Redis) -> None:  # noqa: F811
    a = LeaderLease(rclient, KEYS, "a", 5.0)
    b = LeaderLease(rclient, KEYS, "b", 5.0)
    assert await a.try_acquire()
    old = a.token
    assert old is not None
    await rclient.delete(KEYS.lease)
    assert await b.try_acquire()
    s = store(rclient, "a")
    status = Persist(FarmerStatusChanged("f1", 9, "failed", "x"))
    with pytest.raises(StoreError, match="FENCED"):
        await s.commit_cycle([status], old)
    assert await rclient.hgetall(KEYS.status(9)) == {}


async def test_the_best_stream_group_replays_unacknowledged_entries(rclient: aioredis.Redis) -> None:  # noqa: F811
    s = store(rclient, "a")
    await rclient.xgroup_create(KEYS.bests, BEST_GROUP, id="0", mkstream=True)
    await s.commit([best(5, "f1", 1, 2)])
    got = await rclient.xreadgroup(BEST_GROUP, "dead-leader", {KEYS.bests: ">"}, count=10)
    assert len(got[0][1]) == 1  # delivered, never acknowledged: the leader died
    _next, claimed, *_ = await rclient.xautoclaim(KEYS.bests, BEST_GROUP, "new-leader", 0, "0-0")
    assert [orjson.loads(f["best"])["nonce"] for _id, f in claimed] == ["1"]
