"""Scale-out: the same load on 1 Pooler instance on Redis and on 2 instances sharing that Redis.

    python -m bench --only cluster            # N=1,000 sockets for the push, 100 connections for shares
    python -m bench --quick --only cluster    # a few sockets: proves the harness works

One ``redis-server`` of its own (a free loopback port, a temp dir, no persistence: ``--save ""
--appendonly no``, so the figures are Redis's round trips and scripts, not fsyncs), then, one
configuration after the other in the same run and with the same load:

- ``1``: one instance (``bench.server pooler --redis``, the devnet in its process), every socket on it;
- ``2``: two instances on the same Redis (the first, which holds the leader lease, runs the devnet;
  the second polls its RPC), the sockets split evenly between their ports (each load-generator
  process talks to one instance; no load balancer is needed for that).

Between the configurations Redis is emptied (``FLUSHALL``) and every process is new.

Measured per configuration:

- **broadcast**: a new block goes into the leader's ClusterNode gate (``pooler.cluster.emit``,
  the block monitor's path on a group): nonce chunks are drawn from Redis, the block reaches the
  leader's miners and, over pub/sub, the other instance, which draws its own chunks and serves
  its miners. ``t0`` is taken just before the gate; latencies are receipt - ``t0`` for every socket
  of both instances (p50/p99/max over all rounds, and per instance), so a figure covers the block
  reaching the last socket of either instance.
- **shares**: K connections keep ``3200 / K`` valid shares each unanswered for a few seconds; the
  rate is ``accepted`` answers per second across all connections (each batch made durable by one
  Lua script in Redis before its acks leave). Recorded beside it: CPU seconds of each instance, of
  Redis and of the load generators, and Redis's per-command counts and times (``INFO commandstats``).

Nothing is pinned to a CPU here (unlike the other sections): with 2 instances there is no core to
spare, and the point is how the same machine's CPU is spent. Every child is bounded in time and
stopped, with the redis-server, even on error. Nothing asserts a speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from bench.common import Child, close_all, cpu_seconds, split, summarize_ms

CONFIGS = (1, 2)  # instances per configuration, in the order they run
MINERS = 8  # registered miners (one farmer each): sockets use their tokens round-robin
INSTANCES = ("bench-a", "bench-b")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisProc:
    """A ``redis-server`` of this benchmark: its own port and temp dir; no persistence (see above)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.proc: asyncio.subprocess.Process | None = None  # owned: stopped by stop()
        self._dir = tempfile.TemporaryDirectory(prefix="kale-bench-redis-")  # removed by stop()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        self.proc = await asyncio.create_subprocess_exec(
            exe,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self._dir.name,
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
            "--logfile",
            str(Path(self._dir.name) / "redis.log"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
        )
        client = aioredis.Redis.from_url(self.url, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            deadline = time.monotonic() + 10
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"redis-server exited with code {self.proc.returncode}")
                try:
                    if await client.ping():
                        return
                except (OSError, aioredis.RedisError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer PING within 10 s")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self._dir.cleanup()


async def _commandstats(r: aioredis.Redis) -> dict[str, dict[str, float]]:
    """Redis's own count and time per command since the last ``CONFIG RESETSTAT``."""
    info: dict[str, Any] = await r.info("commandstats")
    out: dict[str, dict[str, float]] = {}
    for key, value in info.items():
        name = key.removeprefix("cmdstat_")
        out[name] = {"calls": value["calls"], "usec": value["usec"], "usec_per_call": value["usec_per_call"]}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["usec"]))


class Group:
    """One configuration: its instances (server children) and its load-generator children."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.servers: list[Child] = []  # owned: instance 0 runs the devnet and leads
        self.ready: list[dict[str, Any]] = []  # each instance's ready line
        self.clients: list[Child] = []  # owned: load generators of the current phase
        self.client_instance: list[int] = []  # which instance each load generator talks to

    async def start(self, redis_url: str, poll: float) -> None:
        common = ("--redis", redis_url, "--poll", str(poll))
        first = await Child.start(
            "bench.server",
            "pooler",
            *common,
            "--instance",
            INSTANCES[0],
            "--miners",
            str(MINERS),
            "--lead",
            name=f"{self.size}-instance group: {INSTANCES[0]}",
        )
        self.servers.append(first)
        self.ready.append(await first.read(180))
        for i in range(1, self.size):
            child = await Child.start(
                "bench.server",
                "pooler",
                *common,
                "--instance",
                INSTANCES[i],
                "--miners",
                "0",
                "--expect-miners",
                str(MINERS),
                "--join",
                orjson.dumps(self.ready[0]["chain"]).decode(),
                name=f"{self.size}-instance group: {INSTANCES[i]}",
            )
            self.servers.append(child)
            self.ready.append(await child.read(180))

    async def open_clients(self, procs: int, tag: str) -> None:
        """``procs`` load generators (at least one per instance), assigned to instances in turn."""
        await close_all(self.clients)
        self.clients, self.client_instance = [], []
        tokens = ",".join(self.ready[0]["tokens"])
        for p in range(max(procs, self.size)):
            i = p % self.size
            url = f"ws://127.0.0.1:{self.ready[i]['port']}/ws/miner"
            child = await Child.start(
                "bench.clients",
                "--url",
                url,
                "--tokens",
                tokens,
                "--ip",
                f"127.0.{10 + self.size}.{p + 1}",
                "--prefix",
                f"{tag}{self.size}{p}w",
                name=f"{tag} clients {p} -> {INSTANCES[i]}",
            )
            self.clients.append(child)
            self.client_instance.append(i)

    async def connect(self, n: int) -> int:
        opened = await asyncio.gather(
            *(
                c.ask({"cmd": "connect", "n": k}, 300)
                for c, k in zip(self.clients, split(n, len(self.clients)), strict=False)
            )
        )
        return sum(o["open"] for o in opened)

    def cpu(self) -> list[float]:
        return [cpu_seconds(s.pid) for s in self.servers]

    def clients_cpu(self) -> float:
        return sum(cpu_seconds(c.pid) for c in self.clients)

    async def close(self) -> None:
        await close_all(self.clients)
        self.clients = []
        # followers first: they poll the first instance's devnet, which goes with it
        servers, self.servers = self.servers, []
        for server in reversed(servers):
            await server.close()


async def _broadcast(group: Group, n: int, rounds: int, redis: RedisProc) -> dict[str, Any]:
    total = await group.connect(n)
    if total != n:
        raise RuntimeError(f"{group.size} instance(s): {total} sockets open, expected {n}")
    await asyncio.sleep(0.5)
    lat: list[float] = []
    per_instance: list[list[float]] = [[] for _ in range(group.size)]
    lasts: list[float] = []
    missing = 0
    cpu0, redis0 = group.cpu(), cpu_seconds(redis.pid)
    for _ in range(rounds):
        started = await group.servers[0].ask({"cmd": "block"}, 30)
        t0, block = started["t0"], started["block"]
        reports = await asyncio.gather(
            *(c.ask({"cmd": "report", "block": block, "timeout": 60}, 90) for c in group.clients)
        )
        got = []
        for i, r in zip(group.client_instance, reports, strict=True):
            times = [t - t0 for t in r["times"]]
            per_instance[i] += times
            got += times
            missing += r["missing"]
        lat += got
        lasts.append(max(got))
        await asyncio.sleep(0.2)
    cpu = [b - a for a, b in zip(cpu0, group.cpu(), strict=True)]
    return {
        **summarize_ms(lat),  # its "n" counts latencies: every socket of every round
        "sockets": n,
        "rounds": rounds,
        "last_mean_ms": round(sum(lasts) / len(lasts) * 1000, 3),
        "missing": missing,
        "per_instance": [summarize_ms(x) for x in per_instance],
        "cpu_ms_per_push": [round(c / rounds * 1000, 1) for c in cpu],
        "cpu_ms_per_push_total": round(sum(cpu) / rounds * 1000, 1),
        "redis_cpu_ms_per_push": round((cpu_seconds(redis.pid) - redis0) / rounds * 1000, 1),
    }


async def _shares(
    group: Group, conns: int, seconds: float, redis: RedisProc, r: aioredis.Redis
) -> dict[str, Any]:
    total = await group.connect(conns)
    if total != conns:
        raise RuntimeError(f"{group.size} instance(s): {total} connections open, expected {conns}")
    await asyncio.sleep(0.5)
    window = max(2, 3200 // conns)  # ~3,200 shares in flight in total, as in bench/shares.py
    before = [await s.ask({"cmd": "stats"}, 30) for s in group.servers]
    await r.config_resetstat()
    cpu0, redis0, clients0 = group.cpu(), cpu_seconds(redis.pid), group.clients_cpu()
    reports = await asyncio.gather(
        *(
            c.ask({"cmd": "shares", "rate": 0, "window": window, "seconds": seconds}, seconds + 120)
            for c in group.clients
        )
    )
    cpu = [b - a for a, b in zip(cpu0, group.cpu(), strict=True)]
    redis_cpu = cpu_seconds(redis.pid) - redis0
    clients_cpu = group.clients_cpu() - clients0
    commands = await _commandstats(r)
    after = [await s.ask({"cmd": "stats"}, 30) for s in group.servers]
    elapsed = max(x["elapsed"] for x in reports)
    answered = sum(x["answered_in_window"] for x in reports)
    accepted = sum(x["accepted"] for x in reports)
    per_instance_answered = [0] * group.size  # answered within the window, like "rate"
    for i, x in zip(group.client_instance, reports, strict=True):
        per_instance_answered[i] += x["answered_in_window"]
    commits = [b["commits"] - a["commits"] for a, b in zip(before, after, strict=True)]
    return {
        "connections": conns,
        "window": window,
        "seconds": round(elapsed, 2),
        "sent": sum(x["sent"] for x in reports),
        "accepted": accepted,
        "rejected": sum(x["rejected"] for x in reports),
        "errors": sum(x["errors"] for x in reports),
        "unanswered": sum(x["unanswered"] for x in reports),
        "rate": round(answered / elapsed),
        "per_instance_rate": [round(a / elapsed) for a in per_instance_answered],
        "latency": summarize_ms([v for x in reports for v in x["latencies"]]),
        "server_cpu_s": [round(c, 2) for c in cpu],
        "server_cpu_share": [round(c / elapsed, 2) for c in cpu],
        "server_us_per_share": round(sum(cpu) / max(accepted, 1) * 1e6, 1),
        "redis_cpu_s": round(redis_cpu, 2),
        "redis_cpu_share": round(redis_cpu / elapsed, 2),
        "redis_us_per_share": round(redis_cpu / max(accepted, 1) * 1e6, 1),
        "clients_cpu_share": round(clients_cpu / elapsed, 2),
        "commits": commits,
        "shares_per_commit": round(accepted / max(sum(commits), 1), 1),
        "redis_commands": dict(list(commands.items())[:12]),
    }


async def _configuration(
    size: int,
    redis: RedisProc,
    r: aioredis.Redis,
    push_n: int,
    rounds: int,
    conns: int,
    seconds: float,
    procs: int,
    poll: float,
) -> dict[str, Any]:
    await r.flushall()
    group = Group(size)
    try:
        await group.start(redis.url, poll)
        await group.open_clients(procs, "p")
        push = await _broadcast(group, push_n, rounds, redis)
        await group.open_clients(procs, "s")  # the push's sockets close: shares run on K fresh ones
        shares = await _shares(group, conns, seconds, redis, r)
        stats = [await s.ask({"cmd": "stats"}, 30) for s in group.servers]
        roles = [x["cluster"]["role"] for x in stats]
        return {
            "instances": size,
            "roles": roles,
            "push": push,
            "shares": shares,
            "client_procs": len(group.clients),
        }
    finally:
        await group.close()


async def run(
    push_n: int, rounds: int, conns: int, seconds: float, procs: int, poll: float = 1.0
) -> dict[str, Any]:
    """Both configurations in turn (see the module docstring); ``poll``: the block monitors' interval."""
    redis = RedisProc()
    r: aioredis.Redis | None = None
    try:
        await redis.start()
        r = aioredis.Redis.from_url(redis.url, decode_responses=True, socket_timeout=10)
        version = (await r.info("server"))["redis_version"]
        configs: dict[str, Any] = {}
        for size in CONFIGS:
            configs[str(size)] = res = await _configuration(
                size, redis, r, push_n, rounds, conns, seconds, procs, poll
            )
            p, s = res["push"], res["shares"]
            print(
                f"  cluster {size} instance(s): push N={p['sockets']} "
                f"p50/p99/max {p['p50_ms']}/{p['p99_ms']}/"
                f"{p['max_ms']} ms (CPU/push {p['cpu_ms_per_push']} ms, "
                f"Redis {p['redis_cpu_ms_per_push']} ms); "
                f"shares C={s['connections']}: {s['rate']:,}/s ({s['server_us_per_share']} us server CPU "
                f"a share, Redis {s['redis_us_per_share']} us, {s['shares_per_commit']} shares a commit)",
                flush=True,
            )
        one, two = configs["1"], configs["2"]
        return {
            "redis": {"version": version, "persistence": "none (--save '' --appendonly no)"},
            "configs": configs,
            "push_p99_ratio": round(two["push"]["p99_ms"] / max(one["push"]["p99_ms"], 1e-3), 2),
            "shares_rate_ratio": round(two["shares"]["rate"] / max(one["shares"]["rate"], 1), 2),
        }
    finally:
        if r is not None:
            with contextlib.suppress(Exception):
                await r.aclose()
        await redis.stop()
