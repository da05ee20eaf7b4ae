"""Three farmers, several workers each, three consecutive blocks on the devnet: issue 4 and 5's acceptance.

- Farmer A: two ``examples/ws_miner.py`` processes (workers a1, a2).
- Farmer B: two in-process WebSocket workers and one in-process REST worker (b1, b2, b-rest).
- Farmer C: one ``examples/rest_miner.py`` process and one in-process WebSocket worker (c-rest, c1).

The devnet opens its first block before anyone registers; from then on nobody but the Pooler
plants, so every block is opened by the Pooler's own late plant. For each of the three blocks
after the first, the test checks, against the devnet's contract model: planted (all three Pails
exist as soon as the plant that opened the block returns), worked at workAt with each farmer's
best nonce (the Pail's zeros are the zeros of the last nonce the Pooler reported submitting, whose
hash the test recomputes), harvested (Pails gone, rewards paid), rewards recorded (stats, Backend
earnings, balances). B's workers stop submitting just before workAt, so B's submitted nonce must be
exactly its best credited share.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from pooler.app.service import Pooler
from pooler.devnet.contract import FarmContract
from protocol.work import address_bytes, count_zeros, work_hash
from tests.support.miners import MinerLog, example_process, rest_miner, ws_miner
from tests.support.system import System, bearer, register_miner, running_system
from tests.support.wait import FAILSAFE, wait_until

BLOCK_INTERVAL = 6
BLOCKS = 3


@dataclass
class Watch:
    """The Pooler's event stream, with the contract's Pails read the moment each result came out."""

    events: list[dict[str, Any]] = field(default_factory=list)
    # (block, farmer id) -> the Pail's zeros right after each ok `work` event naming the farmer
    pail_zeros: dict[tuple[int, str], int | None] = field(default_factory=dict)
    # block -> farmer ids whose Pail existed right after the `plant` event of the block
    planted: dict[int, set[str]] = field(default_factory=dict)

    def of(self, kind: str, block: int | None = None) -> list[dict[str, Any]]:
        return [
            e for e in self.events if e["kind"] == kind and (block is None or e["data"].get("block") == block)
        ]

    def index(self, kind: str, block: int) -> int:
        return next(
            i for i, e in enumerate(self.events) if e["kind"] == kind and e["data"].get("block") == block
        )


async def watch(pooler: Pooler, contract: FarmContract, farmers: dict[str, str], into: Watch) -> None:
    """Record every event; read the Pails at once (in-process: a harvest later deletes them)."""
    sub = pooler.hub.subscribe()
    try:
        while True:
            for frame in await sub.next_batch():
                event = orjson.loads(frame)
                into.events.append(event)
                data = event["data"]
                if event["kind"] == "plant" and data.get("ok"):
                    into.planted[data["block"]] = {
                        fid
                        for fid, addr in farmers.items()
                        if contract.get_pail(addr, data["block"]) is not None
                    }
                elif event["kind"] == "work" and data.get("ok"):
                    for sub_ in data["submissions"]:
                        pail = contract.get_pail(farmers[sub_["farmerId"]], data["block"])
                        into.pail_zeros[(data["block"], sub_["farmerId"])] = (
                            None if pail is None else pail.zeros
                        )
    finally:
        sub.close()


@contextlib.asynccontextmanager
async def background(*coros: Any) -> AsyncIterator[list[asyncio.Task[Any]]]:
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield tasks
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def test_three_farmers_three_blocks_planted_worked_harvested() -> None:
    async with running_system(block_interval=BLOCK_INTERVAL, share_zeros=2, vardiff=True) as system:
        await run_cycle(system)


async def run_cycle(system: System) -> None:
    net, pooler = system.net, system.pooler
    first_block = system.block()
    assert first_block is not None
    async with aiohttp.ClientSession() as http:
        regs = {name: await register_miner(system.url, f"farmer-{name}", http=http) for name in "ABC"}
    farmers = {r.farmer_id: r.farmer for r in regs.values()}
    fid = {name: r.farmer_id for name, r in regs.items()}
    start_balance = {f: net.contract.balance(addr) for f, addr in farmers.items()}
    assert all(b > 0 for b in start_balance.values())  # the devnet faucet funded each custodial wallet
    targets = list(range(first_block + 1, first_block + 1 + BLOCKS))  # the blocks the farmers are planted in
    last = targets[-1]

    seen = Watch()
    stop = asyncio.Event()
    logs = {name: MinerLog(name) for name in ("b1", "b2", "b-rest", "c1")}
    one_process = ("--processes", "1", "--duration", "120")
    children = [
        example_process(
            "ws_miner.py", "--url", system.ws_url, "--token", regs["A"].token, "--worker", w, *one_process
        )
        for w in ("a1", "a2")
    ]
    children.append(
        example_process(
            "rest_miner.py", "--url", system.url, "--token", regs["C"].token, "--worker", "c-rest",
            "--poll", "0.2", *one_process,
        )
    )  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        procs = [await stack.enter_async_context(c) for c in children]
        async with background(
            watch(pooler, net.contract, farmers, seen),
            ws_miner(system.ws_url, regs["B"].token, logs["b1"], stop),
            ws_miner(system.ws_url, regs["B"].token, logs["b2"], stop),
            rest_miner(system.url, regs["B"].token, logs["b-rest"], stop),
            ws_miner(system.ws_url, regs["C"].token, logs["c1"], stop),
        ) as tasks:
            await wait_until(
                lambda: (
                    any(e["data"].get("ok") for e in seen.of("harvest", last))
                    or any(t.done() for t in tasks[1:])
                ),
                f"block {last} to be harvested",
                within=(BLOCKS + 3) * BLOCK_INTERVAL * 3 + FAILSAFE,
            )
            for t in tasks[1:]:
                if t.done():
                    t.result()  # a miner crashed: show why
            async with aiohttp.ClientSession() as http:
                stats = {}
                for name, reg in regs.items():
                    async with http.get(f"{system.url}/miner/stats", headers=bearer(reg.token)) as resp:
                        assert resp.status == 200
                        stats[name] = await resp.json()
            # the Backend's books read with the stats: the system runs on, and block last+1's
            # harvest would credit both later; its Pails still existing proves it has not happened
            earned = {f: net.backend.farmers[f].total_earnings for f in farmers}
            unharvested = {f: net.contract.get_pail(a, last + 1) is not None for f, a in farmers.items()}
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks[1:]), FAILSAFE)
    outputs = [p.output for p in procs]  # type: ignore[attr-defined]

    try:
        assert all(unharvested.values()), f"block {last + 1} was harvested before the stats were read"
        check_cycle(system, seen, targets, fid, farmers, logs, stats, earned, start_balance)
    except AssertionError:
        for out in outputs:
            print(out[-3000:])
        raise


def check_cycle(
    system: System,
    seen: Watch,
    targets: list[int],
    fid: dict[str, str],
    farmers: dict[str, str],
    logs: dict[str, MinerLog],
    stats: dict[str, dict[str, Any]],
    earned: dict[str, int],
    start_balance: dict[str, int],
) -> None:
    contract = system.net.contract
    rewards: dict[str, int] = dict.fromkeys(farmers, 0)
    for n in targets:
        # --- planted, by the plant that opened the block (the Pooler's own late plant)
        plants = seen.of("plant", n)
        assert len(plants) == 1, f"block {n} planted {len(plants)} times"
        plant = plants[0]["data"]
        assert plant["ok"] and plant["successfulPlants"] == 3, plant
        assert seen.index("plant", n) < seen.index("block", n), f"block {n} was not opened by our plant"
        assert seen.planted[n] == set(farmers), f"Pails of block {n} after the plant: {seen.planted[n]}"
        block = seen.of("block", n)[0]["data"]
        stored = contract.get_block(n)
        assert stored is not None and stored.entropy.hex() == block["entropy"]
        entropy = bytes.fromhex(block["entropy"])

        # --- worked at workAt with each farmer's best nonce
        works = [e for e in seen.of("work", n) if e["data"]["ok"]]
        assert works, f"no work submitted for block {n}"
        assert works[0]["at"] >= block["workAt"], "work went out before workAt"
        assert all(e["at"] < block["blockEndsAt"] for e in works)
        for f, address in farmers.items():
            subs = [s for e in works for s in e["data"]["submissions"] if s["farmerId"] == f]
            assert subs, f"farmer {f} had no work in block {n}"
            zeros = [s["zeros"] for s in subs]
            assert zeros == sorted(set(zeros)), f"resubmissions must improve: {zeros}"
            for s in subs:  # what the Pooler says it submitted is a real hash of that many zeros
                assert (
                    count_zeros(work_hash(n, int(s["nonce"]), entropy, address_bytes(address))) == s["zeros"]
                )
            assert seen.pail_zeros[(n, f)] == zeros[-1], f"Pail of {f} in block {n}"
            best_in_summaries = max(
                (e["data"]["bestZeros"].get(f, -1) for e in seen.of("summary", n)), default=-1
            )
            assert zeros[-1] <= best_in_summaries
        # B's workers stopped before workAt: its one submission is exactly its best credited share
        b_subs = [s for e in works for s in e["data"]["submissions"] if s["farmerId"] == fid["B"]]
        b_credits = [c for name in ("b1", "b2", "b-rest") for c in logs[name].accepted if c.block == n]
        assert b_credits, f"B's workers found nothing in block {n}"
        b_best = max(c.zeros for c in b_credits)
        assert len(b_subs) == 1 and b_subs[0]["zeros"] == b_best
        assert int(b_subs[0]["nonce"]) in {c.nonce for c in b_credits if c.zeros == b_best}
        # C's submitted work is at least as good as anything its in-process worker was credited
        c_final = [s for e in works for s in e["data"]["submissions"] if s["farmerId"] == fid["C"]][-1]
        assert c_final["zeros"] >= logs["c1"].best(n)

        # --- harvested: rewards for all three, Pails gone
        harvests = [e["data"] for e in seen.of("harvest", n) if e["data"]["ok"]]
        assert len(harvests) == 1, seen.of("harvest", n)
        harvest = harvests[0]
        assert harvest["successfulHarvests"] == 3 and harvest["failedHarvests"] == 0
        paid = {r["farmerId"]: int(r["reward"]) for r in harvest["rewards"]}
        assert set(paid) == set(farmers) and all(v > 0 for v in paid.values()), paid
        assert sum(paid.values()) == int(harvest["totalRewards"])
        for f, v in paid.items():
            rewards[f] += v
        for f, address in farmers.items():
            assert contract.get_pail(address, n) is None
            statuses = [e["data"]["status"] for e in seen.of("farmer", n) if e["data"]["farmerId"] == f]
            assert statuses[0] == "planted" and statuses[-1] == "harvested", statuses
            assert "failed" not in statuses
        assert seen.index("harvest", n) > seen.index("block", n + 1)  # harvested once block n+1 was seen

    # --- rewards recorded: the Pooler's stats, the Backend's books and the balances agree
    for name, f in fid.items():
        assert int(stats[name]["rewards"]) == rewards[f], (name, stats[name], rewards[f])
        assert earned[f] == rewards[f], (name, earned[f], rewards[f])
        assert contract.balance(farmers[f]) > start_balance[f], f"{name}'s balance did not grow"
        assert stats[name]["accepted"] > 0, stats[name]

    # --- the workers: clean jobs every block, disjoint ranges, nothing refused
    for name in ("b1", "b2", "c1"):
        log = logs[name]
        for n in targets:
            clean = [j for j in log.jobs if j["block"] == n and j["clean"]]
            assert clean, f"{name} got no clean job for block {n}"
        assert log.rejected == [], (name, log.rejected[:3])
    assert set(targets) <= set(logs["b-rest"].blocks())
    assert {r["code"] for r in logs["b-rest"].rejected} <= {23}  # a REST worker learns a new difficulty late
    for n in targets:
        ranges = sorted(
            (int(j["nonceStart"]), int(j["nonceEnd"]))
            for name in ("b1", "b2", "b-rest")
            for j in logs[name].jobs
            if j["block"] == n
        )
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(ranges)), f"overlapping ranges in block {n}"
