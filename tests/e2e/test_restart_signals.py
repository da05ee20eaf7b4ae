"""``pooler serve`` stops gracefully on SIGINT and SIGTERM: 1012 to miners, store flushed, exit 0.

``STELLAR_NETWORK=devnet`` with no URLs: the Pooler brings its own devnet in-process.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake

from tests.e2e.crashkit import FAST_SETTINGS, Acks, StreamMiner, lost_acks, read_store
from tests.support.processes import start_pooler
from tests.support.system import register_miner
from tests.support.wait import wait_until


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_stops_serve_gracefully(tmp_path: Path, sig: signal.Signals) -> None:
    db = tmp_path / "pooler.db"
    pooler = await start_pooler(
        tmp_path,
        {**FAST_SETTINGS, "STELLAR_NETWORK": "devnet", "BLOCK_INTERVAL_SECONDS": "30", "POOLER_DB": str(db)},
    )
    try:
        reg = await register_miner(pooler.url, "graceful", stake_percentage=0.2)
        acks = Acks()
        stop = asyncio.Event()
        miners = [asyncio.create_task(StreamMiner(pooler.ws_url, reg, w, acks).run(stop)) for w in ("a", "b")]

        def streaming() -> bool:
            assert not any(m.done() for m in miners), acks.close_codes
            return sum(acks.accepted.values()) >= 50

        await wait_until(streaming, "50 shares acknowledged (streaming for real before the signal)")
        code, _took = await pooler.stop(sig, within=15)  # bounded: shutdown_timeout + the devnet's stop
        assert code == 0
        # the store was closed cleanly: its last connection checkpointed the WAL into the file
        assert _wal_size(db) == 0
        await asyncio.wait_for(asyncio.gather(*miners), 10)
        assert acks.close_codes == [1012, 1012]
        with pytest.raises((OSError, InvalidHandshake)):  # nothing listens any more
            async with connect(pooler.ws_url, open_timeout=2):
                pass
    finally:
        await pooler.kill()
    view = read_store(db)
    assert view.integrity == "ok"
    assert lost_acks(view, acks) == []


def _wal_size(db: Path) -> int:
    wal = Path(f"{db}-wal")
    return wal.stat().st_size if wal.exists() else 0
