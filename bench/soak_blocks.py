"""A bounded soak over many short devnet blocks: does memory or disk grow with the block count?

``python -m bench.soak_blocks --blocks 150 --farmers 30 --block-interval 2 --window 20``

The parent runs the devnet (chain RPC + reference Backend) in-process and ``--farmers`` miners
(one farmer each) as WebSocket clients that send ``--shares`` shares per job; the Pooler runs
alone in a child process (SQLite in a temporary directory), so its heap and RSS are its own.
Every ``--every`` blocks the child reports its Python heap (``tracemalloc``, started once the
first block is open), its RSS and the SQLite file's size (database + WAL). At the end the
growth per 100 blocks is fitted (least squares) over the samples after the first ``--window``
+ 10 blocks (everything kept per block is bounded by the window, so past it nothing should
grow). ``--churn K``: at each new block K miners leave (``POST /miner/leave``) and K new ones
register, and the planted farmers of each block are counted on the chain: they must stay
near ``--farmers``, not grow with every registration.

The run stops by itself after ``--blocks`` blocks or ``--max-seconds`` (default 290 s), whichever
comes first. It prints one JSON object (``--json``) or a short table. Figures depend on the
machine; on the project's shared 2-core machine other suites run beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import Child, Stdin, reply, rss_kb, run_child, run_on_uvloop

# ---------------------------------------------------------------- the child: one Pooler


def _census(kind: str) -> dict[str, Any]:
    """The most common live object types, and for ``kind`` the types of its holders' holders."""
    import collections
    import gc

    objs = gc.get_objects()
    counts = collections.Counter(type(o).__qualname__ for o in objs)
    holders: collections.Counter[str] = collections.Counter()
    for o in [o for o in objs if type(o).__qualname__ == kind][:200]:
        for r in gc.get_referrers(o):
            if r is objs:
                continue
            up = [type(x).__qualname__ for x in gc.get_referrers(r) if x is not objs][:3]
            holders[f"{type(r).__qualname__} <- {up}"] += 1
    return {"top": counts.most_common(30), "holders": holders.most_common(10)}


def _db_bytes(folder: str) -> int:
    """The SQLite file's size on disk: the database, its WAL and shared-memory index."""
    return sum(p.stat().st_size for p in Path(folder).glob("pooler.db*"))


async def _child(args: argparse.Namespace) -> None:
    import tracemalloc

    from pooler.app.options import TUNING, Endpoints, pooler_options
    from pooler.app.service import Pooler
    from pooler.config import Settings

    chain = orjson.loads(args.chain)
    interval = args.block_interval
    stdin = await Stdin.open()
    with tempfile.TemporaryDirectory(prefix="kale-soak-") as tmp:
        db = Path(tmp) / "pooler.db"
        settings = Settings(
            pooler_id="kale-soak",
            stellar_network="devnet",
            port=0,
            block_poll_interval_ms=100,
            block_interval_seconds=interval,
            optimal_work_delay_ms=round(interval * 500),
            work_safety_margin_ms=round(interval * 250),
            late_plant_grace_ms=200,
            share_zeros_initial=0,
            share_zeros_min=0,
            share_zeros_max=0,  # every nonce is a share: the load is in blocks, not hashing
            summary_interval_ms=1000,
            messages_per_second=1e6,
            messages_burst=1_000_000,
            max_connections_per_ip=100_000,
            max_concurrent_miners=100_000,
            # every miner registers from 127.0.0.1 (and anew each block with --churn): no limit
            registrations_per_ip_per_hour=0,
            registrations_per_hour=0,
            store="sqlite",
            pooler_db=str(db),
        )
        import dataclasses

        tuning = dataclasses.replace(
            TUNING,
            late_plant_retry=max(0.5, interval / 2),
            backend_retry_delay=0.3,
            harvest_retry_delay=1.0,
            harvest_retention_blocks=args.window,  # the SQLite file keeps this + 12 blocks
            history_blocks=args.window,
            local_search_lead=interval * 0.2,
            local_search_max_hashes=2_000,
            shutdown_timeout=1.0,
        )
        endpoints = Endpoints(chain["rpc_url"], chain["backend_url"], chain["contract_id"])
        options = pooler_options(settings, endpoints, tuning=tuning, gc_freeze=False)
        async with Pooler(options) as pooler:
            reply({"ready": True, "port": pooler.port})
            traced = False
            marks: list[tracemalloc.Snapshot] = []  # heap snapshots the memtop compares against
            while True:
                cmd = await stdin.command()
                if cmd.get("cmd") == "quit":
                    return
                if cmd.get("cmd") == "mark" and traced:  # where the heap grows from here (--memtop)
                    marks.append(tracemalloc.take_snapshot())
                    reply({"marked": True})
                    continue
                if cmd.get("cmd") == "memtop":
                    top = tracemalloc.take_snapshot().compare_to(marks[-1], "lineno") if marks else []
                    reply({"memtop": [str(x) for x in top[: int(cmd.get("top", 25))]]})
                    continue
                if cmd.get("cmd") == "census":  # which values are alive, and who holds them
                    reply({"census": _census(str(cmd.get("kind", "")))})
                    continue
                view = pooler.core.view(time.time())
                if not traced and view.block is not None:
                    tracemalloc.start(1)
                    traced = True
                size = _db_bytes(tmp)
                reply(
                    {
                        "block": view.block,
                        "heap": tracemalloc.get_traced_memory()[0] if traced else 0,
                        "rss_kb": rss_kb(os.getpid()),
                        "db_bytes": size,
                        "failures": pooler.runner.failures,
                    }
                )


# ---------------------------------------------------------------- the parent: devnet and miners


class Miner:
    """One registered miner on one WebSocket: ``shares`` shares of every job it gets."""

    def __init__(self, url: str, token: str, miner_id: str, shares: int) -> None:
        self.url = url
        self.token = token
        self.miner_id = miner_id
        self.shares = shares
        self.task: asyncio.Task[None] | None = None  # its socket's loop, cancelled when it leaves
        self.accepted = 0

    async def run(self) -> None:
        from websockets.asyncio.client import connect

        from protocol.codec import decode_server, encode
        from protocol.messages import Accepted, Hello, Job, Share

        with contextlib.suppress(Exception):
            async with connect(self.url) as ws:
                await ws.send(encode(Hello(self.token, "w")).decode())
                async for frame in ws:
                    msg = decode_server(frame)
                    if isinstance(msg, Job):
                        for i in range(self.shares):
                            nonce = msg.nonce_start + i
                            if nonce < msg.nonce_end:
                                await ws.send(encode(Share(msg.job, nonce)).decode())
                    elif isinstance(msg, Accepted):
                        self.accepted += 1


async def _register(http: aiohttp.ClientSession, base: str, i: int, shares: int) -> Miner:
    async with http.post(f"{base}/miner/register", json={"name": f"soak-{i}"}) as resp:
        body = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"register answered {resp.status}: {body}")
    miner = Miner(base.replace("http://", "ws://") + "/ws/miner", body["token"], body["minerId"], shares)
    miner.task = asyncio.create_task(miner.run())
    return miner


async def _leave(http: aiohttp.ClientSession, base: str, miner: Miner) -> None:
    async with http.post(f"{base}/miner/leave", headers={"Authorization": f"Bearer {miner.token}"}) as resp:
        await resp.read()
    if miner.task is not None:
        miner.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await miner.task


def _slope(points: list[tuple[int, float]]) -> float:
    """Least-squares growth of y per 100 blocks (0 with fewer than two points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return 0.0 if den == 0 else 100 * sum((x - mx) * (y - my) for x, y in points) / den


async def _parent(args: argparse.Namespace) -> dict[str, Any]:
    from pooler.devnet import Devnet

    started = time.monotonic()
    ledger = min(0.25, args.block_interval / 8)
    async with Devnet(block_interval=args.block_interval, ledger_seconds=ledger) as net:
        chain = {"rpc_url": net.rpc_url, "backend_url": net.backend_url, "contract_id": net.contract_id}
        child = await Child.start(
            "bench.soak_blocks",
            "--child",
            "--chain",
            orjson.dumps(chain).decode(),
            "--block-interval",
            str(args.block_interval),
            "--window",
            str(args.window),
            name="pooler",
        )
        miners: list[Miner] = []
        samples: list[dict[str, Any]] = []
        planted: dict[int, int] = {}  # block -> farmers with a pail in it (the most seen)
        registered = 0
        blocks_done = 0  # blocks run past the first
        census: dict[str, Any] = {}  # --census KIND: live objects at the end
        memtop: list[str] = []  # --memtop: the lines whose allocations grew most after the warm-up
        try:
            ready = await child.read(within=120)
            if not ready.get("ready"):
                raise RuntimeError(f"the Pooler child did not start: {ready}")
            base = f"http://127.0.0.1:{ready['port']}"
            async with aiohttp.ClientSession() as http:
                for _ in range(args.farmers):
                    miners.append(await _register(http, base, registered, args.shares))
                    registered += 1
                first: int | None = None
                last_block = -1
                while time.monotonic() - started < args.max_seconds:
                    await asyncio.sleep(0.2)
                    index = net.contract.farm_index
                    pails = sum(1 for (_f, i) in net.contract._pails if i == index)
                    planted[index] = max(planted.get(index, 0), pails)
                    if index == last_block:
                        continue
                    last_block = index
                    if first is None:
                        first = index
                    done = index - first
                    if args.churn and done > 0:
                        for m in miners[: args.churn]:
                            await _leave(http, base, m)
                        miners = miners[args.churn :]
                        for _ in range(args.churn):
                            miners.append(await _register(http, base, registered, args.shares))
                            registered += 1
                    if done % args.every == 0:
                        stats = await child.ask({"cmd": "stats"}, within=30)
                        stats["done"] = done
                        samples.append(stats)
                        if args.memtop and done == args.window + 10:
                            await child.ask({"cmd": "mark"}, within=60)
                    blocks_done = done
                    if done >= args.blocks:
                        break
            if args.memtop:
                memtop = (await child.ask({"cmd": "memtop"}, within=120))["memtop"]
            if args.census:
                census = (await child.ask({"cmd": "census", "kind": args.census}, within=120))["census"]
        finally:
            for m in miners:
                if m.task is not None:
                    m.task.cancel()
            with contextlib.suppress(Exception):
                child.send({"cmd": "quit"})
            await child.close()
    warm = args.window + 10
    tail = [s for s in samples if s["done"] >= warm] or samples[-2:]
    mib = 1024 * 1024
    result = {
        "blocks": blocks_done,
        "seconds": round(time.monotonic() - started, 1),
        "farmers": args.farmers,
        "window": args.window,
        "churn": args.churn,
        "registered": registered,
        "heap_mb_per_100_blocks": round(_slope([(s["done"], s["heap"] / mib) for s in tail]), 2),
        "rss_mb_per_100_blocks": round(_slope([(s["done"], s["rss_kb"] / 1024) for s in tail]), 2),
        "sqlite_kib_per_100_blocks": round(_slope([(s["done"], s["db_bytes"] / 1024) for s in tail]), 1),
        "planted_max": max(planted.values(), default=0),
        "planted_last": planted[max(planted)] if planted else 0,
        "failures": samples[-1]["failures"] if samples else 0,
        "loadavg": os.getloadavg()[0],
        "memtop": memtop,
        "census": census,
        "samples": [
            {
                "done": s["done"],
                "heap_mb": round(s["heap"] / mib, 2),
                "rss_mb": round(s["rss_kb"] / 1024, 1),
                "db_kib": round(s["db_bytes"] / 1024, 1),
            }
            for s in samples
        ],
    }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak_blocks", description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=150, help="blocks to run (default 150)")
    p.add_argument("--farmers", type=int, default=30, help="miners, one farmer each (default 30)")
    p.add_argument("--block-interval", type=int, default=2, help="seconds per devnet block (default 2)")
    p.add_argument("--window", type=int, default=20, help="the Pooler's block window (default 20)")
    p.add_argument("--shares", type=int, default=5, help="shares each miner sends per job (default 5)")
    p.add_argument("--churn", type=int, default=0, help="miners that leave and register anew each block")
    p.add_argument("--every", type=int, default=10, help="blocks between samples (default 10)")
    p.add_argument("--max-seconds", type=float, default=290.0, help="stop after this long (default 290)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--memtop", action="store_true", help="also list where the heap grew after the warm-up")
    p.add_argument("--census", default="", help="also count live objects, and who holds those of this type")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--chain", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return run_child(_child(args))
    result = run_on_uvloop(_parent(args))
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    else:
        for key, value in result.items():
            if key not in ("samples", "memtop", "census"):
                print(f"{key:28} {value}")
        for line in result["memtop"]:
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
