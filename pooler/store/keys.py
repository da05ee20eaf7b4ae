"""Every Redis key and channel the Pooler group uses, in one place (all under one prefix).

Here, below both of its users: the Redis store writes these keys and the cluster
(pooler/cluster) reads and publishes on them; the cluster imports the store, never the reverse.

Scalar keys:
    {p}:lease               leader lease: "<instance>:<epoch>", SET NX PX, renewed by its holder
    {p}:epoch               INCR'd on every acquisition: the fencing token's number
    {p}:miners              hash miner id -> miner record (token stored hashed)
    {p}:minercounts         hash "{miner}:a|r|s" -> the miner's accepted/rejected/stale (HINCRBY by
                            each instance's increments; its fields go when the miner leaves)
    {p}:blocks              sorted set: blocks seen (score = index, member = JSON)
    {p}:rewards             hash block -> the block's total harvested (stroops)
    {p}:calls               stream: every Backend call's outcome (the leader's audit trail)
    {p}:bests               stream: best candidates for the leader (consumer group ``leader``)
    {p}:blockhist           hash block -> the block's history summary (the newest 8640 blocks)
    {p}:hist:{width}:{start}  hash [scope, key, instance] -> a history bucket (expires past retention)
    {p}:instances           sorted set: instance -> last time it shared its summary (ms)
    {p}:summary:{instance}  that instance's last dashboard summary (expires after 3 intervals)
Per block (expire with the block's harvest retention):
    {p}:best:{block}        hash farmer id -> the farmer's best (max zeros wins)
    {p}:status:{block}      hash farmer id -> the farmer's latest status
    {p}:tally:{block}       hash [miner, worker, instance] -> [accepted, rejected] (max wins)
    {p}:nonce:{block}:{f}   INCRBY counter: end of the last nonce chunk handed out
    {p}:seen:{block}:{f}    set of accepted nonces: the shared duplicate check
    {p}:job:{id}            a REST job as issued (any instance takes shares on it); expires with the seen sets
Pub/sub channels:
    {p}:events              dashboard events of the leader's block cycle
    {p}:control             miners joined/left, new blocks seen by the leader
"""

from __future__ import annotations

from dataclasses import dataclass

BEST_GROUP = "leader"  # the consumer group reading best candidates: only the leader consumes


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    @property
    def base(self) -> str:
        return self.prefix + ":"

    @property
    def lease(self) -> str:
        return self.base + "lease"

    @property
    def epoch(self) -> str:
        return self.base + "epoch"

    @property
    def miners(self) -> str:
        return self.base + "miners"

    @property
    def miner_counts(self) -> str:
        return self.base + "minercounts"

    @property
    def blocks(self) -> str:
        return self.base + "blocks"

    @property
    def rewards(self) -> str:
        return self.base + "rewards"

    @property
    def calls(self) -> str:
        return self.base + "calls"

    @property
    def bests(self) -> str:
        return self.base + "bests"

    @property
    def instances(self) -> str:
        return self.base + "instances"

    def summary(self, instance: str) -> str:
        return f"{self.base}summary:{instance}"

    @property
    def events(self) -> str:
        return self.base + "events"

    @property
    def control(self) -> str:
        return self.base + "control"

    def best(self, block: int) -> str:
        return f"{self.base}best:{block}"

    def status(self, block: int) -> str:
        return f"{self.base}status:{block}"

    def tally(self, block: int) -> str:
        return f"{self.base}tally:{block}"

    def nonce(self, block: int, farmer_id: str) -> str:
        return f"{self.base}nonce:{block}:{farmer_id}"

    def job(self, job_id: str) -> str:
        return f"{self.base}job:{job_id}"

    def seen(self, block: int, farmer_id: str) -> str:
        return f"{self.base}seen:{block}:{farmer_id}"
