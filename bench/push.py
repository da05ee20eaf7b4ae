"""New-block push: N live miner sockets, from NewBlock to the last miner holding its job.

The Pooler on each miner socket path (``bench.server pooler``: MINER_SOCKET=asgi; ``pooler
--miner-socket picows``) and the bare-websockets baseline (``bench.server baseline``) run side by
side, each in its own process on uvloop, each with its own load-generator processes
(``bench.clients``). For each N the sockets are opened (grown from the previous N), then rounds
alternate: a block on each Pooler, then one on the baseline. A round's latencies are
``receipt time - t0`` for every socket, both on ``time.time()`` of this host; pooled over the
rounds they give p50/p99/max. The ratio column is Pooler p99 / baseline p99 of the same run
(``picows_p99_ratio`` for picows).

The same run measures memory: the server's RSS before any socket and with N idle sockets open
(after the pushes of the previous level, before this level's), divided by N.

``pooler-bc`` and ``picows-bc`` are the same two Poolers with clients that ask for the
``block-broadcast`` feature: a new block is then ONE ``block`` frame, encoded once and queued on
every socket, instead of a ``job`` built, recorded and encoded per socket; their CPU per push
beside the per-worker push's is what the feature saves (``broadcast_cpu_ratio``).

Each round runs with the other servers stopped (SIGSTOP, continued after the round, then
``CATCH_UP`` seconds with all of them running, so what came due meanwhile is not done inside the
next round): idle Poolers with thousands of sockets are not idle (pings, views, block polls), and
all servers share the server core.

``ws-send`` is bare websockets sending each socket a job of its own with ``await ws.send()`` (the
"bare websockets" row of the issue's stack table; ``baseline`` broadcasts one frame); every kind's
p99 over its p99 is its ``send_ratio``, the ratio issue #17's 0.7x target is stated in.

``raw`` is the floor: a websockets server for the handshake whose push frames the job once and
writes the same bytes to every socket's transport (no library work per socket); every kind's p99
over the floor's is its ``floor_ratio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Child, Profiler, close_all, cpu_seconds, placement, rss_kb, split, summarize_ms

# "pooler": MINER_SOCKET=asgi; "picows": MINER_SOCKET=picows; "-bc": their clients ask for block-broadcast
# "raw": the floor (bench.server raw: one pre-framed frame written to every transport)
# "ws-send": bare websockets with a distinct job and ``await ws.send()`` per socket (the stack table)
SERVERS = ("pooler", "picows", "pooler-bc", "picows-bc", "baseline", "ws-send", "raw")
_ARGS = {
    "pooler": ["pooler"],
    "picows": ["pooler", "--miner-socket", "picows"],
    "pooler-bc": ["pooler"],
    "picows-bc": ["pooler", "--miner-socket", "picows"],
    "baseline": ["baseline"],
    "ws-send": ["ws-send"],
    "raw": ["raw"],
}


def gc_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Collections (and their total pause) by generation between two ``stats`` answers."""
    return {
        g: {
            "count": after[g]["count"] - before[g]["count"],
            "total_ms": round(after[g]["total_ms"] - before[g]["total_ms"], 1),
        }
        for g in after
    }


CATCH_UP = 1.5  # seconds between rounds, every server running (0.2 below 1,000 sockets: --quick)


@contextlib.contextmanager
def _alone(kind: str, servers: dict[str, Child]) -> Iterator[None]:
    """The other servers stopped (SIGSTOP) during ``kind``'s round, continued after: an idle Pooler
    with thousands of sockets still spends a fifth of a core (pings, views, block polls), and they
    share the server core, so each round gets that core to itself as on a machine serving one."""
    others = [s.pid for k, s in servers.items() if k != kind]
    for pid in others:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


async def _round(server: Child, clients: list[Child]) -> tuple[list[float], int, float]:
    cpu0 = cpu_seconds(server.pid)
    started = await server.ask({"cmd": "block"}, 30)
    t0, block = started["t0"], started["block"]
    reports = await asyncio.gather(
        *(c.ask({"cmd": "report", "block": block, "timeout": 60}, 90) for c in clients)
    )
    latencies = [t - t0 for r in reports for t in r["times"]]
    return latencies, sum(r["missing"] for r in reports), cpu_seconds(server.pid) - cpu0


async def run(
    levels: list[int], rounds: int, procs: int, settle: float = 1.0, profile_dir: Path | None = None
) -> dict[str, Any]:
    servers: dict[str, Child] = {}
    clients: dict[str, list[Child]] = {}
    server_cpus, client_cpus = placement()
    try:
        for kind in SERVERS:
            servers[kind] = await Child.start(
                "bench.server", *_ARGS[kind], "--miners", "8", name=f"{kind} server", cpus=server_cpus
            )
        ready = {kind: await servers[kind].read(180) for kind in SERVERS}
        await asyncio.sleep(0.5)
        rss0 = {kind: rss_kb(servers[kind].pid) for kind in SERVERS}
        for s, kind in enumerate(SERVERS):
            url = f"ws://127.0.0.1:{ready[kind]['port']}/ws/miner"
            clients[kind] = [
                await Child.start(
                    "bench.clients",
                    "--url",
                    url,
                    "--tokens",
                    ",".join(ready[kind]["tokens"]),
                    "--ip",
                    f"127.0.{s + 1}.{p + 1}",
                    "--prefix",
                    f"p{p}w",
                    *(["--broadcast"] if kind.endswith("-bc") else []),
                    name=f"{kind} clients {p}",
                    cpus=client_cpus,
                )
                for p in range(procs)
            ]
        results: list[dict[str, Any]] = []
        current = 0
        for n in levels:
            add = n - current
            t_open = time.perf_counter()
            for kind in SERVERS:
                parts = split(add, len(clients[kind]))
                opened = await asyncio.gather(
                    *(
                        c.ask({"cmd": "connect", "n": k}, 300)
                        for c, k in zip(clients[kind], parts, strict=False)
                    )
                )
                total = sum(o["open"] for o in opened)
                if total != n:
                    raise RuntimeError(f"{kind}: {total} sockets open, expected {n}")
            open_seconds = time.perf_counter() - t_open
            current = n
            await asyncio.sleep(settle)
            rss = {kind: rss_kb(servers[kind].pid) for kind in SERVERS}
            lat: dict[str, list[float]] = {kind: [] for kind in SERVERS}
            lasts: dict[str, list[float]] = {kind: [] for kind in SERVERS}
            missing = dict.fromkeys(SERVERS, 0)
            cpu = dict.fromkeys(SERVERS, 0.0)
            gc_before = {kind: (await servers[kind].ask({"cmd": "stats"}, 30))["gc"] for kind in SERVERS}
            spy = None
            if profile_dir is not None:
                spy = await Profiler.attach(servers["pooler"].pid, profile_dir / f"profile-push-{n}.txt")
            for _ in range(rounds):
                for kind in SERVERS:
                    with _alone(kind, servers):
                        got, miss, used = await _round(servers[kind], clients[kind])
                    cpu[kind] += used
                    lat[kind] += got
                    lasts[kind].append(max(got))
                    missing[kind] += miss
                    # all continued: what came due while they were stopped (pings, ticks) is done
                    # here, between rounds, not inside the next one
                    await asyncio.sleep(CATCH_UP if n >= 1000 else 0.2)
            if spy is not None:
                await spy.stop()
            gc_after = {kind: (await servers[kind].ask({"cmd": "stats"}, 30))["gc"] for kind in SERVERS}
            row: dict[str, Any] = {"n": n, "rounds": rounds, "open_seconds": round(open_seconds, 1)}
            for kind in SERVERS:
                row[kind] = {
                    **summarize_ms(lat[kind]),
                    "last_mean_ms": round(sum(lasts[kind]) / len(lasts[kind]) * 1000, 3),
                    "missing": missing[kind],
                    "cpu_ms_per_push": round(cpu[kind] / rounds * 1000, 1),
                    "rss_kb": rss[kind],
                    "kb_per_socket": round((rss[kind] - rss0[kind]) / n, 2),
                    "gc_during_pushes": gc_delta(gc_before[kind], gc_after[kind]),
                }
            row["p99_ratio"] = round(row["pooler"]["p99_ms"] / row["baseline"]["p99_ms"], 2)
            row["max_ratio"] = round(row["pooler"]["max_ms"] / row["baseline"]["max_ms"], 2)
            row["picows_p99_ratio"] = round(row["picows"]["p99_ms"] / row["baseline"]["p99_ms"], 2)
            for kind in ("pooler", "picows"):
                bc = row[f"{kind}-bc"]
                bc["p99_ratio"] = round(bc["p99_ms"] / row["baseline"]["p99_ms"], 2)
                bc["cpu_ratio"] = round(bc["cpu_ms_per_push"] / max(row[kind]["cpu_ms_per_push"], 0.1), 2)
            row["broadcast_cpu_ratio"] = row["pooler-bc"]["cpu_ratio"]
            for kind in ("pooler", "picows", "pooler-bc", "picows-bc", "baseline", "ws-send"):
                row[kind]["floor_ratio"] = round(row[kind]["p99_ms"] / row["raw"]["p99_ms"], 2)
                row[kind]["send_ratio"] = round(row[kind]["p99_ms"] / row["ws-send"]["p99_ms"], 2)
            results.append(row)
            print(
                f"  push N={n}: pooler p50/p99/max {row['pooler']['p50_ms']}/{row['pooler']['p99_ms']}/"
                f"{row['pooler']['max_ms']} ms, baseline {row['baseline']['p50_ms']}/"
                f"{row['baseline']['p99_ms']}/"
                f"{row['baseline']['max_ms']} ms, p99 ratio {row['p99_ratio']}x; "
                f"CPU/push {row['pooler']['cpu_ms_per_push']} ms "
                f"(baseline {row['baseline']['cpu_ms_per_push']}); "
                f"{row['pooler']['kb_per_socket']} KB/socket (baseline {row['baseline']['kb_per_socket']})",
                flush=True,
            )
            print(
                f"  push N={n}: picows p50/p99/max {row['picows']['p50_ms']}/{row['picows']['p99_ms']}/"
                f"{row['picows']['max_ms']} ms, p99 ratio {row['picows_p99_ratio']}x; CPU/push "
                f"{row['picows']['cpu_ms_per_push']} ms; {row['picows']['kb_per_socket']} KB/socket",
                flush=True,
            )
            for kind in ("pooler", "picows"):
                bc = row[f"{kind}-bc"]
                print(
                    f"  push N={n}: {kind} block-broadcast p50/p99/max {bc['p50_ms']}/{bc['p99_ms']}/"
                    f"{bc['max_ms']} ms, p99 ratio {bc['p99_ratio']}x; CPU/push {bc['cpu_ms_per_push']} ms"
                    f" ({bc['cpu_ratio']}x the per-worker push's)",
                    flush=True,
                )
        stats = {kind: await servers[kind].ask({"cmd": "stats"}, 30) for kind in SERVERS}
        return {"levels": results, "rss0_kb": rss0, "server_stats": stats, "client_procs": procs}
    finally:
        await close_all([c for cs in clients.values() for c in cs])
        await close_all(list(servers.values()))
