"""The server side of a benchmark, as a child process: the real Pooler, or the bare-websockets baseline.

    python -m bench.server pooler [--db PATH] [--miners K]
    python -m bench.server pooler --redis URL --instance ID [--join CHAIN_JSON --expect-miners K]
    python -m bench.server baseline | ws-send | raw

Both run on uvloop (as ``pooler serve`` does) on 127.0.0.1, print one ``ready`` line and then
answer JSON-line commands on stdin (see :mod:`bench.common`):

- ``{"cmd": "block"}``: a new block. The Pooler: the devnet's contract opens block N+1 (its clock
  jumps one block interval) and ``NewBlock`` goes straight into ``pooler.runner.post`` with the
  block's real entropy and timestamp (the monitor, polling later, sees an index it already has).
  The baseline: one job frame, encoded once, goes to every socket with ``websockets.broadcast``.
  ``ws-send``: the same library with a distinct job per socket (a copy of the job's dict with
  that socket's nonce range, orjson-encoded) and ``await ws.send()`` per socket, the stack the
  issue's table calls bare websockets (``../shared/perf/stacks``: ``push_distinct``).
  ``raw``: the floor, the baseline's frame framed once and written to every transport.
  The answer carries ``t0``, ``time.time()`` just before the hand-off: clients time receipt on
  the same clock (one host).
- ``{"cmd": "stats"}``: counters (events handled, store commits and records, sockets open).
- ``{"cmd": "quit"}`` or end of input: stop cleanly.

The Pooler runs with its devnet in this process (the Backend answers the Pooler's plant calls);
its share difficulty is 0 (min = initial = max), so any nonce of a job's range is a valid share
and load generators need no hashing; the per-socket message rate limit is lifted.

With ``--redis`` the Pooler is one instance of a group on that Redis (``STORE=redis``, as
``pooler serve`` builds it: a ClusterNode, the Redis store, shared nonce chunks). The first
instance runs the devnet and registers the miners; its ``ready`` line carries the chain's URLs
(``chain``), which a second instance takes as ``--join`` (no devnet of its own: it polls the
first one's RPC) and it waits until the miners reached it through Redis (``--expect-miners``).
A ``block`` then goes through the instance's ClusterNode gate (``pooler.cluster.emit``, what the
block monitor calls): nonce chunks drawn from Redis, then the block to this instance's miners
and, from the leader, to every other instance over pub/sub.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import gc
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal, cast

import orjson

from bench.common import Stdin, pin_from_env, raise_nofile, reply, run_child


class GcWatch:
    """Pauses of the cyclic garbage collector, by generation: a full collection over a heap holding
    ten thousand sockets' objects takes long enough to show up in the push and ack latencies."""

    def __init__(self) -> None:
        self._started = 0.0
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}  # generation -> pause seconds

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)

    def report(self) -> dict[str, Any]:
        return {
            f"gen{g}": {
                "count": len(p),
                "total_ms": round(sum(p) * 1000, 2),
                "max_ms": round(max(p, default=0) * 1000, 2),
            }
            for g, p in self.pauses.items()
        }


GC = GcWatch()
MEM: list[Any] = []  # the tracemalloc snapshot taken at "ready" (BENCH_TRACEMALLOC=1 only)
gc.callbacks.append(GC)

BLOCK_INTERVAL = 300  # the devnet's and the coordinator's: no block ends during a benchmark
FARMER = "GBQHTQ7NTSKHVTSVM6EHUO3TU4P4BK2TAAII25V2TT2Q6OWXUJWEKALE"  # plants to open blocks


async def _pooler(args: argparse.Namespace) -> None:
    from pooler.app.options import TUNING, Endpoints, pooler_options
    from pooler.app.service import Pooler
    from pooler.config import Settings
    from pooler.core.events import NewBlock
    from pooler.devnet.net import Devnet

    offset = [0.0]  # the devnet's clock runs ahead by this much: jumping it opens the next block

    def chain_clock() -> float:
        return time.time() + offset[0]

    stdin = await Stdin.open()
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="kale-bench-"))
        net: Devnet | None = None  # None: a second group instance, on the first one's devnet
        if args.join:
            chain = orjson.loads(args.join)
        else:
            net = await stack.enter_async_context(
                Devnet(block_interval=BLOCK_INTERVAL, ledger_seconds=1.0, clock=chain_clock)
            )
            # Open block 2 a whole interval ahead of real time, so none of the Pooler's block timers
            # (work, end, late plant) fires while a benchmark runs against it.
            offset[0] += BLOCK_INTERVAL
            net.contract.plant(FARMER, 0)
            chain = {"rpc_url": net.rpc_url, "backend_url": net.backend_url, "contract_id": net.contract_id}
        db = None
        if not args.redis:
            db = None if args.db == "none" else (args.db or str(Path(tmp) / "pooler.db"))
        settings = Settings(
            pooler_id="kale-bench",
            stellar_network="devnet",
            port=0,
            block_poll_interval_ms=round(args.poll * 1000),
            block_interval_seconds=BLOCK_INTERVAL,
            optimal_work_delay_ms=round(BLOCK_INTERVAL * 0.9 * 1000),
            work_safety_margin_ms=10_000,
            max_concurrent_miners=100_000,
            share_zeros_initial=0,
            share_zeros_min=0,
            share_zeros_max=0,  # any nonce is a share, and vardiff cannot raise it mid-run
            messages_per_second=1e9,  # load generators send far above a miner's rate
            messages_burst=1_000_000_000,
            max_connections_per_ip=100_000,
            max_pending_connections=100_000,  # load generators connect thousands at once from one address
            registrations_per_ip_per_hour=0,
            registrations_per_hour=0,
            outbox_size=4096,
            store="redis" if args.redis else ("sqlite" if db else "memory"),
            pooler_db=db or "",  # read only with STORE=sqlite
            redis_url=args.redis or None,
            pooler_instance_id=args.instance if args.redis else None,
            miner_socket=args.miner_socket,
        )
        tuning = dataclasses.replace(
            TUNING,
            # On a group a job's range is cut from a Redis chunk of 2**44 nonces per (block, farmer):
            # keep ranges at the production default there, so one chunk serves thousands of workers.
            range_default=1 << 32 if args.redis else 1 << 40,
            range_max=1 << 40 if args.redis else 1 << 44,
            max_jobs_per_worker=1024,
            key_prefix=args.key_prefix,
        )
        endpoints = Endpoints(chain["rpc_url"], chain["backend_url"], chain["contract_id"])
        options = pooler_options(settings, endpoints, tuning=tuning, gc_freeze=True)
        pooler = await stack.enter_async_context(Pooler(options))
        tokens = []
        for i in range(args.miners):
            _record, token = await pooler.register_miner(f"bench-{i}", 0.0, None)
            tokens.append(token)
        deadline = time.monotonic() + 120  # generous: a busy machine slows the first RPC read
        while (
            pooler.core.view(time.time()).block is None  # the monitor's first read opens it
            or len(pooler.registry.records()) < args.expect_miners  # a group's miners arrive via Redis
            or (args.lead and pooler.cluster is not None and pooler.cluster.status()["role"] != "leader")
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the Pooler saw no block (or no miners, or no lease) within 120 s")
            await asyncio.sleep(0.05)
        if os.environ.get("BENCH_TRACEMALLOC"):
            import tracemalloc

            tracemalloc.start(1)
            MEM.append(tracemalloc.take_snapshot())
        reply(
            {
                "ready": True,
                "port": pooler.port,
                "tokens": tokens,
                "db": db,
                "chain": chain,
                "cluster": pooler.cluster.status() if pooler.cluster is not None else None,
                "gc_tracked": len(gc.get_objects()),
            }
        )
        while True:
            cmd = await stdin.command()
            match cmd.get("cmd"):
                case "block":
                    if net is None:
                        reply({"error": "this instance has no devnet: send blocks to the first one"})
                        continue
                    offset[0] += BLOCK_INTERVAL
                    index = net.contract.plant(FARMER, 0)
                    blk = net.contract.get_block(index)
                    assert blk is not None
                    event = NewBlock(index, blk.entropy, blk.timestamp, net.contract.ledger_sequence())
                    t0 = time.time()
                    if pooler.cluster is not None:
                        pooler.cluster.emit(event)  # the monitor's path on a group: the gate
                    else:
                        pooler.runner.post(event)
                    reply({"t0": t0, "block": index})
                case "stats":
                    store = pooler.store
                    reply(
                        {
                            "handled": pooler.runner.handled,
                            "failures": pooler.runner.failures,
                            "commits": store.commits if store else 0,
                            "records": getattr(store, "records", 0),
                            "sockets": len(pooler.runner.conns),
                            "cluster": pooler.cluster.status() if pooler.cluster is not None else None,
                            "gc": GC.report(),
                            "gc_tracked": len(gc.get_objects()),
                            "gc_frozen": gc.get_freeze_count(),
                        }
                    )
                case "memtop":  # with BENCH_TRACEMALLOC=1: where the memory since "ready" went
                    import tracemalloc

                    snap = tracemalloc.take_snapshot()
                    stats = snap.compare_to(MEM[0], "lineno")[: int(cmd.get("top", 30))]
                    reply({"memtop": [str(x) for x in stats]})
                case "census":
                    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
                    reply({"census": counts.most_common(int(cmd.get("top", 40)))})
                case "quit":
                    return
                case other:
                    reply({"error": f"unknown command {other!r}"})


def _job_dict(block: int) -> dict[str, Any]:
    """A job of the Pooler's shape and size (what every baseline kind sends)."""
    return {
        "type": "job",
        "job": f"b.{block:x}",
        "block": block,
        "entropy": "00" * 32,
        "farmer": FARMER,
        "nonceStart": "0",
        "nonceEnd": str(1 << 40),
        "shareZeros": 0,
        "clean": True,
        "workAt": int(time.time() * 1000),
        "blockEndsAt": int(time.time() * 1000) + 300_000,
    }


def _baseline_job(block: int) -> str:
    """The one job frame the broadcast baseline and the floor send to everyone."""
    return orjson.dumps(_job_dict(block)).decode()


def _frame(text: str) -> bytes:
    """An unmasked server text frame (RFC 6455 5.2) holding ``text``: the floor writes it itself."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 1 << 16:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + payload


BaselineMode = Literal["baseline", "ws-send", "raw"]


async def _baseline(args: argparse.Namespace, mode: BaselineMode = "baseline") -> None:
    """The bare-library baseline: websockets' own server, one set of sockets, ``broadcast``.

    ``mode`` ``ws-send`` sends each socket a job of its own with ``await ws.send()`` (the issue's
    "bare websockets": per-socket encoding and framing by the library). ``raw`` (``bench.server
    raw``) is the floor: the same server for the handshake and the ``hello``, but a block's job
    frame is framed once here and written with ``transport.write`` to every socket: no library
    work per socket, only the send.
    """
    raw = mode == "raw"
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.exceptions import ConnectionClosed

    conns: set[ServerConnection] = set()  # sockets that said hello: the push's audience
    block = [1]
    welcome = orjson.dumps({"type": "welcome", "minerId": "m", "worker": "w", "farmerId": "f"}).decode()

    async def handler(ws: ServerConnection) -> None:
        hello = orjson.loads(await ws.recv())
        if hello.get("type") != "hello":
            return
        await ws.send(welcome)
        await ws.send(_baseline_job(block[0]))
        conns.add(ws)
        try:
            async for _ in ws:  # shares are not part of the baseline; keep reading until close
                pass
        finally:
            conns.discard(ws)

    stdin = await Stdin.open()
    pings = None if raw else 20  # the floor writes behind the library's back: no pings of its own
    async with serve(
        handler, "127.0.0.1", 0, compression=None, ping_interval=pings, ping_timeout=pings, backlog=4096
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        reply({"ready": True, "port": port, "tokens": [mode]})
        while True:
            cmd = await stdin.command()
            match cmd.get("cmd"):
                case "block":
                    block[0] += 1
                    t0 = time.time()
                    if raw:
                        frame = _frame(_baseline_job(block[0]))
                        for ws in conns:
                            ws.transport.write(frame)
                    elif mode == "ws-send":
                        job = _job_dict(block[0])
                        for i, ws in enumerate(list(conns)):
                            mine = job.copy()  # this socket's own nonce range, encoded for it alone
                            mine["nonceStart"] = str(i << 40)
                            mine["nonceEnd"] = str((i + 1) << 40)
                            with contextlib.suppress(ConnectionClosed):
                                await ws.send(orjson.dumps(mine).decode())
                    else:
                        broadcast(conns, _baseline_job(block[0]))
                    reply({"t0": t0, "block": block[0]})
                case "stats":
                    reply({"sockets": len(conns), "gc": GC.report()})
                case "quit":
                    server.close()
                    return
                case other:
                    reply({"error": f"unknown command {other!r}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["pooler", "baseline", "ws-send", "raw"])
    parser.add_argument("--db", default="", help="SQLite path; default a temporary file; 'none' for no store")
    parser.add_argument("--miners", type=int, default=8, help="miners registered (tokens handed out)")
    parser.add_argument("--poll", type=float, default=1.0, help="block monitor poll interval, seconds")
    parser.add_argument("--redis", default="", help="Redis URL: run as one instance of a group (STORE=redis)")
    parser.add_argument("--instance", default="bench-a", help="this instance's id in the group")
    parser.add_argument("--key-prefix", default="kb", help="the group's Redis key prefix")
    parser.add_argument("--join", default="", help="chain JSON of the first instance (no devnet here)")
    parser.add_argument("--expect-miners", type=int, default=0, help="wait for this many miners")
    parser.add_argument("--miner-socket", default="asgi", choices=["asgi", "picows"], help="MINER_SOCKET")
    parser.add_argument("--lead", action="store_true", help="wait until this instance holds the lease")
    args = parser.parse_args(argv)
    raise_nofile(1 << 20)
    pin_from_env()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # Blocks opened by the benchmark are never worked, so every farmer "fails" each block: expected here.
    logging.getLogger("pooler.events").setLevel(logging.ERROR)
    body: Any = _pooler(args) if args.kind == "pooler" else _baseline(args, cast(BaselineMode, args.kind))
    return run_child(body)


if __name__ == "__main__":
    sys.exit(main())
