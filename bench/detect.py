"""Block detection latency: from the plant that changed FarmIndex to the monitor's NewBlock.

python -m bench.detect [--blocks 40] [--poll 0.2] [--json]

The devnet's contract model runs on real time plus an offset; opening a block advances the
offset by one block interval and plants, at a random phase relative to the monitor's poll
grid. The state is visible over RPC from that instant (the devnet's "ledger close"), so the
latency measured is what the monitor adds: at most one poll interval plus one round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import time

import orjson
from stellar_sdk import Keypair

from bench.common import pin_from_env, run_on_uvloop, summarize_ms
from pooler.chain.monitor import BlockMonitor
from pooler.core.events import Event, NewBlock
from pooler.devnet import ledger
from pooler.devnet.contract import FarmContract
from pooler.devnet.rpc import SorobanRpc


async def measure(blocks: int, poll: float) -> list[float]:
    offset = 0.0
    contract = FarmContract(
        clock=lambda: time.time() + offset,
        start_index=1,
        homesteader=ledger.HOMESTEADER,
        asset=ledger.ASSET_ID,
    )
    farmer = Keypair.from_raw_ed25519_seed(bytes([9]) * 32).public_key
    server = SorobanRpc(contract).server()
    url = await server.start()
    seen: asyncio.Queue[tuple[int, float]] = asyncio.Queue()

    def emit(event: Event) -> None:
        if isinstance(event, NewBlock):
            seen.put_nowait((event.index, time.perf_counter()))

    monitor = BlockMonitor(url, ledger.CONTRACT_ID, emit, poll)
    task = asyncio.create_task(monitor.run())
    latencies: list[float] = []
    try:
        await seen.get()  # the current block, announced by the first read
        rng = random.Random(7)
        for _ in range(blocks):
            await asyncio.sleep(rng.uniform(0, poll))  # a random phase against the poll grid
            offset += contract.block_interval
            planted_at = time.perf_counter()
            index = contract.plant(farmer, 0)
            got, at = await asyncio.wait_for(seen.get(), timeout=10 * poll + 5)
            assert got == index, f"expected NewBlock({index}), got {got}"
            latencies.append(at - planted_at)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout (for python -m bench)")
    args = parser.parse_args()
    pin_from_env()
    lat = sorted(run_on_uvloop(measure(args.blocks, args.poll)))
    target = args.poll + 0.050
    if args.json:
        summary = summarize_ms(lat)
        print(
            orjson.dumps(
                {**summary, "poll_ms": args.poll * 1000, "target_ms": target * 1000, "met": lat[-1] <= target}
            ).decode()
        )
        return
    print(f"blocks={len(lat)} poll={args.poll * 1000:.0f} ms")
    print(
        f"detect latency: p50={statistics.median(lat) * 1000:.1f} ms "
        f"p90={lat[int(0.9 * (len(lat) - 1))] * 1000:.1f} ms max={lat[-1] * 1000:.1f} ms "
        f"(target <= poll + 50 ms = {target * 1000:.0f} ms: {'met' if lat[-1] <= target else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
