"""kill -9 during share streaming loses nothing acknowledged, and the database stays sound.

A real ``pooler serve`` process against a ``pooler devnet`` process (the chain outlives every
Pooler); three WebSocket workers of two miners mine real nonces at 1-2 zeros and stream
shares; at a random moment (seeded) the Pooler gets SIGKILL. After each kill the database
file must hold at least every share count and every best the workers were told was accepted,
and pass ``PRAGMA integrity_check``; the next Pooler reloads it and the same tokens work.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

from tests.e2e.crashkit import FAST_SETTINGS, Acks, StreamMiner, lost_acks, read_store
from tests.support.processes import start_devnet, start_pooler
from tests.support.system import register_miner

ROUNDS = 12  # each a fresh process killed at a seeded random moment (~2.5 s a round)
SEED = 6  # the kill moments are random, but the same on every run


async def test_sigkill_at_random_moments_loses_no_acknowledged_share_or_best(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    db = tmp_path / "pooler.db"
    net = await start_devnet(tmp_path, block_interval=20)
    try:
        settings = {
            **FAST_SETTINGS,
            **net.env,
            "POOLER_DB": str(db),
            "BLOCK_INTERVAL_SECONDS": "20",
            "OPTIMAL_WORK_DELAY_MS": "12000",
            "WORK_SAFETY_MARGIN_MS": "3000",
        }
        acks = Acks()
        regs = None
        streamed_rounds = 0
        for round_no in range(ROUNDS):
            pooler = await start_pooler(tmp_path, settings)
            try:
                if regs is None:  # registered once: the tokens must keep working across every restart
                    regs = [
                        await register_miner(pooler.url, "alpha", stake_percentage=0.2),
                        await register_miner(pooler.url, "beta", stake_percentage=0.2),
                    ]
                workers = [(regs[0], "w1"), (regs[0], "w2"), (regs[1], "w1")]
                stop = asyncio.Event()
                before = sum(acks.accepted.values())
                miners = [
                    asyncio.create_task(StreamMiner(pooler.ws_url, r, w, acks, in_flight=8).run(stop))
                    for r, w in workers
                ]
                # the kill moment: random on purpose (seeded), wherever the streaming is then
                await asyncio.sleep(rng.uniform(0.4, 1.0))
            finally:
                await pooler.kill()  # SIGKILL: mid-commit, mid-send, wherever it is
            stop.set()
            await asyncio.wait_for(asyncio.gather(*miners), 10)
            if sum(acks.accepted.values()) > before:
                streamed_rounds += 1
            view = read_store(db)
            assert view.integrity == "ok", f"round {round_no}: {view.integrity}"
            assert lost_acks(view, acks) == [], f"round {round_no}"
        assert acks.welcomes == ROUNDS * 3, "a token stopped working after a restart"
        assert acks.rejected["unauthorized"] == 0
        assert streamed_rounds >= ROUNDS - 2, f"only {streamed_rounds} rounds got shares acknowledged"
        assert sum(acks.accepted.values()) > ROUNDS * 10
        # no range was handed out twice: every job of a block starts above what earlier ones had
        ranges: dict[tuple[int, str], list[tuple[int, int]]] = {}
        for job in acks.jobs:
            ranges.setdefault((job.block, job.farmer), []).append((job.nonce_start, job.nonce_end))
        for key, spans in ranges.items():
            spans.sort()
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), f"overlap in {key}"
    finally:
        await net.stop()
