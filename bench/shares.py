"""Shares end to end: WS frame in -> hash recomputed -> state updated -> durable -> ``accepted`` out.

The Pooler runs with its SQLite store (``synchronous=FULL``, group commit) and share difficulty 0,
so every nonce of a job's range is a valid share and the load generators send distinct nonces
without hashing. For each connection count:

1. maximum: every socket keeps ``window`` shares unanswered, for ``seconds``; the rate is the
   accepted answers per second (all shares of the run are answered, none is dropped);
2. ack latency at 50% and 90% of that maximum: an open-loop schedule (shares leave on time
   whatever the answers do), latency = ``accepted`` received - share sent, per share.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench.common import Child, Profiler, close_all, cpu_seconds, placement, split, summarize_ms


async def _run(
    server: Child, clients: list[Child], rate: float, window: int, seconds: float
) -> dict[str, Any]:
    before = await server.ask({"cmd": "stats"}, 30)
    cpu0 = cpu_seconds(server.pid)
    client_cpu0 = sum(cpu_seconds(c.pid) for c in clients)
    per = rate / len(clients)
    reports = await asyncio.gather(
        *(
            c.ask({"cmd": "shares", "rate": per, "window": window, "seconds": seconds}, seconds + 120)
            for c in clients
        )
    )
    cpu = cpu_seconds(server.pid) - cpu0
    client_cpu = sum(cpu_seconds(c.pid) for c in clients) - client_cpu0
    after = await server.ask({"cmd": "stats"}, 30)
    elapsed = max(r["elapsed"] for r in reports)
    answered = sum(r["answered_in_window"] for r in reports)
    accepted = sum(r["accepted"] for r in reports)
    commits = after["commits"] - before["commits"]
    records = after["records"] - before["records"]
    return {
        "target_rate": round(rate),
        "sent": sum(r["sent"] for r in reports),
        "accepted": accepted,
        "rejected": sum(r["rejected"] for r in reports),
        "errors": sum(r["errors"] for r in reports),
        "unanswered": sum(r["unanswered"] for r in reports),
        "rate": round(answered / elapsed),
        "latency": summarize_ms([x for r in reports for x in r["latencies"]]),
        "server_cpu_share": round(cpu / elapsed, 2),
        "clients_cpu_share": round(client_cpu / elapsed, 2),
        "server_us_per_share": round(cpu / max(accepted, 1) * 1e6, 1),
        "commits_per_s": round(commits / elapsed),
        "records_per_commit": round(records / max(commits, 1), 1),
    }


async def run(
    conns: list[int],
    seconds: float,
    procs: int,
    profile_dir: Path | None = None,
    miner_socket: str = "asgi",
) -> dict[str, Any]:
    server_cpus, client_cpus = placement()
    server = await Child.start(
        "bench.server",
        "pooler",
        "--miner-socket",
        miner_socket,
        "--miners",
        "8",
        name=f"pooler server ({miner_socket})",
        cpus=server_cpus,
    )
    clients: list[Child] = []
    try:
        ready = await server.read(180)
        url = f"ws://127.0.0.1:{ready['port']}/ws/miner"
        clients = [
            await Child.start(
                "bench.clients",
                "--url",
                url,
                "--tokens",
                ",".join(ready["tokens"]),
                "--ip",
                f"127.0.3.{p + 1}",
                "--prefix",
                f"s{p}w",
                name=f"share clients {p}",
                cpus=client_cpus,
            )
            for p in range(procs)
        ]
        results: list[dict[str, Any]] = []
        current = 0
        for n in conns:
            await asyncio.gather(
                *(
                    c.ask({"cmd": "connect", "n": k}, 300)
                    for c, k in zip(clients, split(n - current, procs), strict=False)
                )
            )
            current = n
            window = max(2, 3200 // n)  # ~3,200 shares in flight in total: enough to keep the server busy
            row: dict[str, Any] = {"connections": n, "window": window}
            for key, frac in (("max", 0.0), ("at_50", 0.5), ("at_90", 0.9)):
                spy = None
                if profile_dir is not None:
                    spy = await Profiler.attach(server.pid, profile_dir / f"profile-shares-{n}-{key}.txt")
                row[key] = await _run(
                    server, clients, frac * row["max"]["rate"] if frac else 0, window, seconds
                )
                if spy is not None:
                    await spy.stop()
            peak = row["max"]
            results.append(row)
            print(
                f"  shares ({miner_socket}) C={n}: max {peak['rate']:,}/s "
                f"({peak['server_us_per_share']} us server CPU a share, "
                f"{peak['records_per_commit']} records a commit); ack p50/p99 at 50%: "
                f"{row['at_50']['latency']['p50_ms']}/{row['at_50']['latency']['p99_ms']} ms, at 90%: "
                f"{row['at_90']['latency']['p50_ms']}/{row['at_90']['latency']['p99_ms']} ms",
                flush=True,
            )
        stats = await server.ask({"cmd": "stats"}, 30)
        return {"levels": results, "seconds": seconds, "client_procs": procs, "server_stats": stats}
    finally:
        await close_all(clients)
        await server.close()
