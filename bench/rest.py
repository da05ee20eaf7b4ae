"""REST fallback: requests/s and latency of ``GET /miner/work`` and ``POST /miner/submit``.

    python -m bench.rest --url http://127.0.0.1:PORT --token T --route work --seconds 5   (child)

Each load-generator process runs ``concurrency`` closed-loop workers over keep-alive connections
(aiohttp's client); every worker is a REST worker of its own name. ``submit`` workers first take
a job with ``GET /miner/work`` and then submit distinct nonces of its range (difficulty 0: every
one is accepted). The orchestrator side (:func:`run`) starts the Pooler and the processes.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from typing import Any

import orjson

from bench.common import (
    Child,
    close_all,
    cpu_seconds,
    pin_from_env,
    placement,
    reply,
    run_child,
    summarize_ms,
)


async def _worker(
    session: Any, url: str, headers: dict[str, str], route: str, name: str, until: float, lat: list[float]
) -> tuple[int, int]:
    ok = bad = 0
    work_url = f"{url}/miner/work?worker={name}"
    nonce = end = 0
    job = ""
    if route == "submit":
        async with session.get(work_url, headers=headers) as r:
            body = await r.json(loads=orjson.loads)
        job, nonce, end = body["job"], int(body["nonceStart"]), int(body["nonceEnd"])
    while time.monotonic() < until:
        t0 = time.perf_counter()
        if route == "work":
            async with session.get(work_url, headers=headers) as r:
                await r.read()
                status = r.status
        else:
            payload = orjson.dumps({"job": job, "nonce": str(nonce)})
            nonce += 1
            async with session.post(f"{url}/miner/submit", data=payload, headers=headers) as r:
                await r.read()
                status = r.status
            if nonce >= end:
                break
        lat.append(time.perf_counter() - t0)
        if status == 200:
            ok += 1
        else:
            bad += 1
    return ok, bad


async def _child(args: argparse.Namespace) -> None:
    import aiohttp

    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    lat: list[float] = []
    connector = aiohttp.TCPConnector(limit=args.concurrency, local_addr=(args.ip, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        until = time.monotonic() + args.seconds
        t0 = time.perf_counter()
        counts = await asyncio.gather(
            *(
                _worker(session, args.url, headers, args.route, f"{args.prefix}{i}", until, lat)
                for i in range(args.concurrency)
            )
        )
        elapsed = time.perf_counter() - t0
    sample = lat if len(lat) <= 100_000 else random.Random(1).sample(lat, 100_000)
    reply(
        {
            "ok": sum(c[0] for c in counts),
            "bad": sum(c[1] for c in counts),
            "elapsed": elapsed,
            "latencies": sample,
        }
    )


async def run(seconds: float, procs: int, concurrency: int) -> dict[str, Any]:
    server_cpus, client_cpus = placement()
    server = await Child.start(
        "bench.server", "pooler", "--miners", "2", name="pooler server", cpus=server_cpus
    )
    try:
        ready = await server.read(180)
        url = f"http://127.0.0.1:{ready['port']}"
        results: dict[str, Any] = {"concurrency_per_process": concurrency, "client_procs": procs}
        for route in ("work", "submit"):
            cpu0 = cpu_seconds(server.pid)
            children = [
                await Child.start(
                    "bench.rest",
                    "--url",
                    url,
                    "--token",
                    ready["tokens"][p % len(ready["tokens"])],
                    "--route",
                    route,
                    "--seconds",
                    str(seconds),
                    "--concurrency",
                    str(concurrency),
                    "--ip",
                    f"127.0.4.{p + 1}",
                    "--prefix",
                    f"r{route[0]}{p}w",
                    name=f"rest {route} clients {p}",
                    cpus=client_cpus,
                )
                for p in range(procs)
            ]
            try:
                reports = await asyncio.gather(*(c.read(seconds + 60) for c in children))
            finally:
                await close_all(children)
            cpu = cpu_seconds(server.pid) - cpu0
            elapsed = max(r["elapsed"] for r in reports)
            ok = sum(r["ok"] for r in reports)
            results[route] = {
                "ok": ok,
                "bad": sum(r["bad"] for r in reports),
                "requests_per_s": round(ok / elapsed),
                "latency": summarize_ms([x for r in reports for x in r["latencies"]]),
                "server_us_per_request": round(cpu / max(ok, 1) * 1e6, 1),
            }
            print(
                f"  rest {route}: {results[route]['requests_per_s']:,} req/s, p50/p99 "
                f"{results[route]['latency']['p50_ms']}/{results[route]['latency']['p99_ms']} ms"
                f" ({results[route]['bad']} non-200)",
                flush=True,
            )
        return results
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--route", choices=["work", "submit"], required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--prefix", default="r")
    args = parser.parse_args(argv)
    if not args.ip.startswith("127."):
        parser.error("load generators bind loopback addresses only")
    pin_from_env()
    return run_child(_child(args))


if __name__ == "__main__":
    sys.exit(main())
