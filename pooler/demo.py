"""``pooler demo``: the devnet, the Pooler and a few miners on loopback, a few blocks, a report.

Starts everything in this process except the miners, which are the real example miners
(``examples/ws_miner.py`` and ``examples/rest_miner.py``) run as child processes, so the
demo exercises exactly what a third-party miner would. Exit 0 only if at least one block
went through plant -> work -> harvest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

HELP = "run the devnet, the Pooler and example miners for a few blocks, then report"

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MINER_LOGS = Path(tempfile.gettempdir()) / f"kale-pooler-demo-{os.getpid()}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--blocks", type=int, default=3, help="blocks to run (0: until interrupted)")
    parser.add_argument("--miners", type=int, default=3, help="miners (farmers); each runs its own workers")
    parser.add_argument("--block-interval", type=int, default=20, help="devnet block interval, whole seconds")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3001")), help="Pooler port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--quiet", action="store_true", help="no live progress lines")


def run(args: argparse.Namespace) -> int:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # uvloop is optional; asyncio's loop works, only slower
        runner = asyncio.run
    try:
        return int(runner(_demo(args)))
    except KeyboardInterrupt:
        return 130


def _fmt_kale(stroops: object) -> str:
    try:
        return f"{int(str(stroops)) / 1e7:,.4f}"
    except ValueError:
        return str(stroops)


async def _demo(args: argparse.Namespace) -> int:
    from pooler.app.options import TUNING, Endpoints, pooler_options
    from pooler.app.service import Pooler
    from pooler.config import Settings
    from pooler.devnet import Devnet

    interval = args.block_interval
    # The demo's own configuration (the environment is not read): short blocks on the devnet.
    settings = Settings(
        pooler_id="demo-pooler",
        host=args.host,
        port=args.port,
        stellar_network="devnet",
        block_poll_interval_ms=250,
        block_interval_seconds=interval,
        optimal_work_delay_ms=round(interval * 600),
        work_safety_margin_ms=round(max(1.0, interval * 0.15) * 1000),
        late_plant_grace_ms=500,
        stake_percentage=0.2,
        share_zeros_initial=3,
        share_zeros_min=1,
        # ~10 shares a second per worker (vardiff keeps it within 2.5-40): a demo of a minute
        # or two then gives each worker hundreds of shares, enough evidence for the +-20% the
        # hashrate table shows (30 shares are +-18% at 1 sigma: docs/protocol.md)
        vardiff_target_seconds=0.1,
        messages_per_second=500.0,  # those shares, well inside the per-connection limit
        messages_burst=1000,
        store="memory",
        summary_interval_ms=1000,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    async with Devnet(block_interval=interval, ledger_seconds=1.0) as net:
        endpoints = Endpoints(net.rpc_url, net.backend_url, net.contract_id)
        options = pooler_options(settings, endpoints, tuning=TUNING, gc_freeze=False)
        async with Pooler(options) as pooler:
            print(f"devnet RPC      {net.rpc_url}  (contract {net.contract_id})")
            print(f"devnet Backend  {net.backend_url}")
            print(f"Pooler          {pooler.url}   miners: ws://{args.host}:{pooler.port}/ws/miner")
            print(f"dashboard       {pooler.url}/   (open it in a browser: Overview, Blocks, Miners, Events)")
            print(
                f"block interval  {interval:g} s; running {args.blocks or 'unlimited'} blocks;"
                " Ctrl-C to stop\n"
            )
            sub = pooler.hub.subscribe()
            MINER_LOGS.mkdir(exist_ok=True)
            miners = await _start_miners(pooler.url, args.miners, interval)
            view = None
            try:
                result = await _watch(pooler, sub, args, stop)
                view = pooler.core.view(time.time())  # the Pooler's figures, as the miners stop
            finally:
                sub.close()
                _report_failed_miners(miners)
                for proc in miners:
                    if proc.returncode is None:
                        proc.terminate()
                for proc in miners:
                    try:
                        async with asyncio.timeout(5):  # not wait_for: pooler/runtime/tasks.py
                            await proc.wait()
                    except TimeoutError:
                        proc.kill()
                        await proc.wait()
                computed = {_worker_name(i, len(miners)): _computed(i) for i in range(len(miners))}
                shutil.rmtree(MINER_LOGS, ignore_errors=True)
            if view is not None:
                _hashrates(view, computed)
            print(
                "\nresult:",
                "at least one full plant -> work -> harvest cycle succeeded"
                if result == 0
                else "no full cycle completed",
            )
    return result


def _worker_name(i: int, count: int) -> str:
    return "rest-0" if i == count - 1 and count > 1 else f"cpu-{i}"


def _computed(i: int) -> float | None:
    """Hashes/s miner ``i`` really computed: from its ``summary`` line (hashes, firstJobAt, endedAt)."""
    try:
        text = (MINER_LOGS / f"miner-{i}.log").read_text(errors="replace")
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        if line.startswith("summary {"):
            try:
                s = orjson.loads(line.removeprefix("summary "))
                seconds = float(s["endedAt"]) - float(s["firstJobAt"])
                return float(s["hashes"]) / seconds if seconds > 0 else None
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                return None
    return None


async def _start_miners(url: str, count: int, interval: float) -> list[asyncio.subprocess.Process]:
    """The example miners as child processes: WebSocket ones, and the last one over REST."""
    procs = []
    ws_url = url.replace("http://", "ws://") + "/ws/miner"
    for i in range(count):
        worker = _worker_name(i, count)
        if worker.startswith("rest"):
            script, args = "rest_miner.py", ["--url", url, "--register", "--worker", worker]
        else:
            script, args = "ws_miner.py", ["--url", ws_url, "--register", url, "--worker", worker]
            args += ["--report-interval", str(max(2.0, interval / 4))]  # its own rate, for the table
        # a tiny local file, opened once per miner at start; the child process writes to it
        log = open(MINER_LOGS / f"miner-{i}.log", "wb")  # noqa: ASYNC230, SIM115
        try:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(EXAMPLES / script),
                    *args,
                    "--processes",
                    "1",
                    stdout=log,  # its block lines and, at its end, its `summary` (hashes computed)
                    stderr=asyncio.subprocess.STDOUT,
                )
            )
        finally:
            log.close()
    return procs


def _report_failed_miners(procs: list[asyncio.subprocess.Process]) -> None:
    """A miner that died on its own says why: the last lines it wrote to stderr."""
    for i, proc in enumerate(procs):
        if proc.returncode not in (None, 0, -15):
            tail = (MINER_LOGS / f"miner-{i}.log").read_text(errors="replace").strip().splitlines()[-5:]
            print(f"miner {i} exited with {proc.returncode}:", *tail, sep="\n  ", file=sys.stderr)


async def _watch(pooler: Any, sub: Any, args: argparse.Namespace, stop: asyncio.Event) -> int:
    blocks: dict[int, dict[str, Any]] = {}  # block -> what happened to it, for the final table
    harvested_ok: set[int] = set()
    deadline = time.time() + (args.blocks * args.block_interval * 3 + 60 if args.blocks else float("inf"))
    while not stop.is_set() and time.time() < deadline:
        try:  # a bounded wait: Ctrl-C (stop) and the deadline are looked at every 2 s
            async with asyncio.timeout(2.0):
                batch = await sub.next_batch()
        except TimeoutError:
            continue
        for frame in batch:
            event = orjson.loads(frame)
            kind, data = event["kind"], event["data"]
            block = data.get("block")
            if kind == "block":
                blocks.setdefault(block, {"plant": None, "work": [], "harvest": None})
                _line(args, f"block {block} opened  entropy {data['entropy'][:16]}...")
            elif kind == "plant" and isinstance(block, int):
                blocks.setdefault(block, {"plant": None, "work": [], "harvest": None})["plant"] = data
                _line(
                    args,
                    f"block {block} planted: {data.get('successfulPlants')} farmers, ok={data.get('ok')}",
                )
            elif kind == "work" and isinstance(block, int):
                blocks.setdefault(block, {"plant": None, "work": [], "harvest": None})["work"].append(data)
                subs = ", ".join(
                    f"{s['farmerId'][:8]}:{s.get('zeros')}z" for s in data.get("submissions", [])
                )
                _line(args, f"block {block} work submitted ok={data.get('ok')} [{subs}]")
            elif kind == "harvest" and isinstance(block, int):
                blocks.setdefault(block, {"plant": None, "work": [], "harvest": None})["harvest"] = data
                if data.get("ok") and data.get("successfulHarvests"):
                    harvested_ok.add(block)
                _line(
                    args,
                    f"block {block} harvested: {_fmt_kale(data.get('totalRewards', 0))} KALE,"
                    f" ok={data.get('ok')}",
                )
            elif kind == "summary" and not args.quiet:
                now = time.time() * 1000
                work_in = max(0, (data.get("workAt") or now) - now) / 1000
                ends_in = max(0, (data.get("blockEndsAt") or now) - now) / 1000
                best = ", ".join(f"{f[:8]}:{z}" for f, z in sorted((data.get("bestZeros") or {}).items()))
                print(
                    f"  [{data.get('phase')}] block {data.get('block')}"
                    f"  work in {work_in:4.1f}s  ends in {ends_in:4.1f}s"
                    f"  workers {data.get('workers')}  shares {data.get('accepted')}/{data.get('rejected')}"
                    f"  best {best}",
                    flush=True,
                )
        if args.blocks and len(harvested_ok) >= args.blocks:
            break
    _table(blocks)
    return 0 if harvested_ok else 1


def format_rate(hashes_per_second: float) -> str:
    """Three significant digits or more (the table's % difference is read from these)."""
    for unit in ("H/s", "kH/s", "MH/s"):
        if hashes_per_second < 1000:
            return f"{hashes_per_second:.{1 if hashes_per_second >= 100 else 2}f} {unit}"
        hashes_per_second /= 1000
    return f"{hashes_per_second:.2f} GH/s"


def _off(pooler: float, computed: float | None) -> str:
    return f"{(pooler - computed) / computed:+.0%}" if computed else "-"


def _hashrates(view: Any, computed: dict[str, float | None]) -> None:
    """Per worker and for the pool: the Pooler's effective hashrate beside the hashes the miner
    really computed over the time it mined (its ``summary``), and the shares behind the figure."""
    print("\n worker       | Pooler (effective) | miner computed | off by | shares | miner reported")
    print("--------------+--------------------+----------------+--------+--------+---------------")
    for w in sorted(view.worker_list, key=lambda w: w.worker):
        real = computed.get(w.worker)
        told = format_rate(w.reported_hashrate) if w.reported_hashrate is not None else "- (REST)"
        shown, off = (format_rate(real) if real else "-"), _off(w.hashrate, real)
        print(
            f" {w.worker:<12.12} | {format_rate(w.hashrate):>18} | {shown:>14} | {off:>6} |"
            f" {w.accepted:>6} | {told:>14}"
        )
    known = [c for c in computed.values() if c]
    total = sum(known) if len(known) == len(computed) else None
    shares = sum(w.accepted for w in view.worker_list)
    shown = format_rate(total) if total else "-"
    print(
        f" {'pool':<12} | {format_rate(view.hashrate):>18} | {shown:>14} | {_off(view.hashrate, total):>6} |"
        f" {shares:>6} |"
    )
    print(
        " (computed: the miner's hashes / the time since its first job;"
        " Pooler: its shares and ranges, 10-min window)"
    )


def _line(args: argparse.Namespace, text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def _table(blocks: dict[int, dict[str, Any]]) -> None:
    print("\n block | planted | work submitted (farmer: zeros)            | rewards harvested (KALE)")
    print("-------+---------+--------------------------------------------+-------------------------")
    for block in sorted(blocks):
        row = blocks[block]
        planted = row["plant"].get("successfulPlants") if row["plant"] else "-"
        subs: dict[str, Any] = {}
        for w in row["work"]:
            if w.get("ok"):
                for s in w.get("submissions", []):
                    subs[s["farmerId"]] = s.get("zeros")
        work = ", ".join(f"{f[:8]}: {z}" for f, z in sorted(subs.items())) or "-"
        harvest = row["harvest"]
        rewards = _fmt_kale(harvest.get("totalRewards", 0)) if harvest and harvest.get("ok") else "-"
        print(f" {block:5d} | {planted!s:>7} | {work:<42.42} | {rewards}")
    if any(row["plant"] and not row["plant"].get("successfulPlants") for row in blocks.values()):
        print(" (a block planted by 0 farmers opened before any miner had registered)")
