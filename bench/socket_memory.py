"""Where an idle miner socket's memory goes: RSS, the Python heap by source line, live objects by type.

    python -m bench.socket_memory                      # 2,000 sockets on each MINER_SOCKET path
    python -m bench.socket_memory --sockets 5000 --path picows --broadcast --json

The Pooler runs alone (``bench.server pooler``, with ``BENCH_TRACEMALLOC=1``: a heap snapshot at
``ready``) and one load generator opens N sockets that say ``hello`` and hold their first job.
Then, per socket: the RSS growth; the traced Python heap's growth (tracemalloc, everything
allocated through Python's allocators, picows' Cython objects included) and its biggest source
lines; and the object types whose live count grew by about N or more (``gc`` census: who is
allocated per socket). RSS minus the traced heap is what Python does not see (C buffers, the
allocator's slack). tracemalloc slows the server, so these runs give the shape, not the push's
figures; ``python -m bench`` measures the RSS per socket without it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from typing import Any

import orjson

from bench.common import Child, close_all, placement, rss_kb

_LINE = re.compile(r"^(?P<where>.+?):(?P<line>\d+): size=.*?\(\+(?P<grew>[\d.]+) (?P<unit>B|KiB|MiB|GiB)\)")
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1 << 20, "GiB": 1 << 30}


def _grew(line: str) -> tuple[str, float] | None:
    """``file:line`` and its growth in bytes from one tracemalloc comparison line."""
    m = _LINE.match(line)
    if m is None:
        return None
    where = m["where"]
    for marker in ("site-packages/", "/work/"):  # shorter and machine-independent
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{where}:{m['line']}", float(m["grew"]) * _UNITS[m["unit"]]


async def measure(path: str, sockets: int, broadcast: bool, top: int) -> dict[str, Any]:
    server_cpus, client_cpus = placement()
    os.environ["BENCH_TRACEMALLOC"] = "1"  # the child inherits it (bench.common.child_env)
    server = await Child.start(
        "bench.server", "pooler", "--miner-socket", path, "--miners", "8", name="pooler", cpus=server_cpus
    )
    children = [server]
    try:
        ready = await server.read(180)
        census0 = dict((await server.ask({"cmd": "census", "top": 400}, 60))["census"])
        rss0 = rss_kb(server.pid)
        client = await Child.start(
            "bench.clients",
            "--url",
            f"ws://127.0.0.1:{ready['port']}/ws/miner",
            "--tokens",
            ",".join(ready["tokens"]),
            "--ip",
            "127.0.9.1",
            "--prefix",
            "m",
            *(["--broadcast"] if broadcast else []),
            name="clients",
            cpus=client_cpus,
        )
        children.append(client)
        opened = await client.ask({"cmd": "connect", "n": sockets}, 600)
        if opened["open"] != sockets:
            raise RuntimeError(f"{opened['open']} sockets open, expected {sockets}")
        await asyncio.sleep(2.0)
        rss = rss_kb(server.pid)
        lines = (await server.ask({"cmd": "memtop", "top": 400}, 300))["memtop"]
        census = dict((await server.ask({"cmd": "census", "top": 400}, 60))["census"])
    finally:
        await close_all(children)
    by_line = [g for g in map(_grew, lines) if g is not None]
    traced = sum(b for _, b in by_line)
    grown = sorted(
        ((kind, census.get(kind, 0) - census0.get(kind, 0)) for kind in census),
        key=lambda kv: -kv[1],
    )
    return {
        "path": path,
        "broadcast": broadcast,
        "sockets": sockets,
        "rss_kb_per_socket": round((rss - rss0) / sockets, 2),
        "traced_kb_per_socket": round(traced / sockets / 1024, 2),
        "top_lines": [
            {"where": w, "bytes_per_socket": round(b / sockets)} for w, b in by_line[:top] if b >= sockets
        ],
        "objects_per_socket": {kind: round(n / sockets, 2) for kind, n in grown if n >= sockets * 0.9},
    }


def _print(r: dict[str, Any]) -> None:
    bc = ", block-broadcast clients" if r["broadcast"] else ""
    print(
        f"MINER_SOCKET={r['path']}{bc}, {r['sockets']:,} idle sockets: RSS {r['rss_kb_per_socket']} KB a "
        f"socket, of it traced Python heap {r['traced_kb_per_socket']} KB"
    )
    for t in r["top_lines"]:
        print(f"  {t['bytes_per_socket']:>6} B  {t['where']}")
    print("  objects a socket: " + ", ".join(f"{k} {v:g}" for k, v in r["objects_per_socket"].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--path", choices=["asgi", "picows", "both"], default="both")
    parser.add_argument("--broadcast", action="store_true", help="clients ask for block-broadcast")
    parser.add_argument("--top", type=int, default=20, help="source lines shown")
    parser.add_argument("--json", action="store_true", help="one JSON line per path instead of text")
    args = parser.parse_args(argv)
    for path in ("asgi", "picows") if args.path == "both" else (args.path,):
        result = asyncio.run(measure(path, args.sockets, args.broadcast, args.top))
        if args.json:
            print(orjson.dumps(result).decode(), flush=True)
        else:
            _print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
