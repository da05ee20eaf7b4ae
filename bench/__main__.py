"""Run the benchmarks: ``python -m bench [--quick] [--only NAME[,NAME]] [--profile] [--out DIR]``.

Benchmarks (in this order): ``verify`` (one share verification, the job codec, the coordinator
alone), ``detect`` (block detection), ``push`` (new-block push against the bare-websockets
baseline, and memory per idle socket), ``shares`` (verified shares/s end to end, ack latency),
``rest`` (the REST fallback); on request only (``--only cluster``, it needs ``redis-server``):
``cluster`` (the same push and share load on 1 and on 2 Pooler instances sharing one Redis,
see :mod:`bench.cluster`). Every load runs on 127.0.0.1, in child processes bounded in count
and time. The run's machine record and results go to ``DIR/<time>[-quick].json`` and a Markdown
table to ``DIR/<time>[-quick].md`` (default DIR: bench/results, git-ignored); the table is
printed too. ``--quick`` (~200 sockets, seconds per step) proves the harness works; its figures
are not the published ones. Nothing here asserts a speed: missed targets are reported, not raised.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import cluster, push, rest, shares
from bench.common import ROOT, child_env, machine, placement, raise_nofile
from bench.report import markdown

NAMES = ("verify", "detect", "push", "shares", "rest", "cluster")
DEFAULT = NAMES[:-1]  # cluster runs on request only: it needs a redis-server and ~3 minutes of its own


@dataclass(frozen=True)
class Plan:
    """How big each benchmark is: the full plan is the published one, the quick one proves the harness."""

    push_levels: tuple[int, ...]
    push_rounds: int
    push_procs: int
    share_conns: tuple[int, ...]
    share_seconds: float
    share_procs: int
    rest_seconds: float
    rest_procs: int
    rest_concurrency: int
    detect_blocks: int
    detect_poll: float
    verify_n: int
    cluster_push_n: int  # sockets of the scale-out push, split over the instances
    cluster_rounds: int
    cluster_share_conns: int
    cluster_share_seconds: float
    cluster_procs: int  # load-generator processes (spread over the instances)
    cluster_poll: float  # the instances' block-monitor poll (the quick run's first block comes sooner)


FULL = Plan(
    (1000, 5000, 10_000), 5, 4, (100, 1000), 8.0, 3, 6.0, 2, 32, 40, 0.2, 200_000, 1000, 8, 100, 8.0, 4, 1.0
)
QUICK = Plan((200,), 3, 2, (100,), 1.5, 2, 1.5, 1, 16, 5, 0.2, 20_000, 8, 2, 4, 1.0, 2, 0.25)


async def _json_child(module: str, *args: str, within: float) -> dict[str, Any]:
    """A ``--json`` benchmark module as a child process on the server's CPU; its one JSON line."""
    server_cpus, _ = placement()
    env = child_env()
    if server_cpus:
        env["BENCH_CPUS"] = ",".join(map(str, sorted(server_cpus)))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, "--json", stdout=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT)
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{module} did not finish within {within:g} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{module} exited with code {proc.returncode}")
    result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    return result


async def _run(names: list[str], plan: Plan, profile_dir: Path | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        started = time.perf_counter()
        print(f"{name}...", flush=True)
        match name:
            case "verify":
                results[name] = {
                    **await _json_child("bench.verify", "--n", str(plan.verify_n), within=300),
                    "coordinator": await _json_child(
                        "bench.core_shares", "--n", str(plan.verify_n), within=300
                    ),
                }
                v = results[name]
                print(
                    f"  verify {v['verify_template_us']} us, job encode {v['job_encode_us']} us / decode "
                    f"{v['job_decode_us']} us; coordinator alone "
                    f"{v['coordinator']['accepted_per_s']:,} shares/s",
                    flush=True,
                )
            case "detect":
                results[name] = await _json_child(
                    "bench.detect",
                    "--blocks",
                    str(plan.detect_blocks),
                    "--poll",
                    str(plan.detect_poll),
                    within=60 + plan.detect_blocks * 2,
                )
                d = results[name]
                print(f"  detect p50/p99/max {d['p50_ms']}/{d['p99_ms']}/{d['max_ms']} ms", flush=True)
            case "push":
                results[name] = await push.run(
                    list(plan.push_levels), plan.push_rounds, plan.push_procs, profile_dir=profile_dir
                )
            case "shares":
                results[name] = await shares.run(
                    list(plan.share_conns), plan.share_seconds, plan.share_procs, profile_dir=profile_dir
                )
                # the same load on MINER_SOCKET=picows, in the same run
                results[name]["picows"] = await shares.run(
                    list(plan.share_conns), plan.share_seconds, plan.share_procs, miner_socket="picows"
                )
            case "rest":
                results[name] = await rest.run(plan.rest_seconds, plan.rest_procs, plan.rest_concurrency)
            case "cluster":
                results[name] = await cluster.run(
                    plan.cluster_push_n,
                    plan.cluster_rounds,
                    plan.cluster_share_conns,
                    plan.cluster_share_seconds,
                    plan.cluster_procs,
                    plan.cluster_poll,
                )
        results[name]["seconds_taken"] = round(time.perf_counter() - started, 1)
    return results


def _names(only: list[str] | None) -> list[str]:
    if not only:
        return list(DEFAULT)
    wanted = {n.strip() for item in only for n in item.split(",") if n.strip()}
    unknown = wanted - set(NAMES)
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(NAMES)}")
    return [n for n in NAMES if n in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small and short: proves the harness works")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these: {', '.join(NAMES)} (cluster only on request)",
    )
    parser.add_argument(
        "--push-levels", metavar="N,N", help="push only at these socket counts (a loaded machine: smaller)"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the Pooler during push and max shares")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where results go")
    args = parser.parse_args(argv)
    names = _names(args.only)
    plan = QUICK if args.quick else FULL
    if args.push_levels:
        levels = tuple(int(n) for n in args.push_levels.split(",") if n.strip())
        plan = dataclasses.replace(plan, push_levels=levels)
    raise_nofile(1 << 20)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + ("-quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "plan": plan.__dict__,
    }
    t0 = time.perf_counter()
    record["results"] = asyncio.run(_run(names, plan, args.out if args.profile else None))
    record["seconds"] = round(time.perf_counter() - t0, 1)
    record["machine"]["loadavg_at_end"] = os.getloadavg()[0]
    json_path = args.out / f"{stamp}.json"
    md_path = args.out / f"{stamp}.md"
    json_path.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    table = markdown(record)
    md_path.write_text(table)
    print()
    print(table)
    print(f"results: {json_path} and {md_path} ({record['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
