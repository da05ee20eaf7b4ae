"""The example programs against the real Pooler on the devnet, as a third party would run them."""

from __future__ import annotations

import asyncio
import shlex
import sys

import aiohttp
import orjson
import pytest

from tests.support.miners import EXAMPLES, ROOT, example_process
from tests.support.system import System, bearer, register_miner
from tests.support.wait import FAILSAFE, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def stats_of(system: System, token: str) -> dict[str, object]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{system.url}/miner/stats", headers=bearer(token)) as resp,
    ):
        assert resp.status == 200
        return dict(await resp.json())


async def test_kale_miner_bridge_with_the_stand_in_binary_gets_shares_accepted(shared_system: System) -> None:
    system = shared_system
    async with aiohttp.ClientSession() as http:
        reg = await register_miner(system.url, "bridge", http=http)
    stand_in = shlex.join([sys.executable, str(EXAMPLES / "fake_kale_miner.py")])
    async with example_process(
        "kale_miner_bridge.py", "--url", system.ws_url, "--token", reg.token, "--worker", "bridge",
        "--miner", stand_in, "--threads", "1", "--duration", "120", "--verbose",
    ) as proc:  # fmt: skip

        async def three_accepted_or_stopped() -> bool:
            stats = await stats_of(system, reg.token)
            return int(str(stats["accepted"])) >= 3 or proc.returncode is not None

        await wait_until(three_accepted_or_stopped, "three of the bridge's shares accepted", step=0.2)
        assert proc.returncode is None, "the bridge stopped early"
    stats = await stats_of(system, reg.token)
    assert int(str(stats["accepted"])) >= 3
    assert stats["bestZeros"] is not None
    assert "accepted" in proc.output or "share" in proc.output, proc.output[-2000:]  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/ws/events", "/events"])
async def test_dashboard_tail_prints_the_real_event_stream(shared_system: System, path: str) -> None:
    system = shared_system
    scheme = "ws" if path.startswith("/ws") else "http"
    url = f"{scheme}://127.0.0.1:{system.pooler.port}{path}"
    async with example_process("dashboard_tail.py", "--url", url, "--count", "3", "--json", nice=0) as proc:
        assert await asyncio.wait_for(proc.wait(), FAILSAFE) == 0
    lines = [line for line in proc.output.splitlines() if line.strip()]  # type: ignore[attr-defined]
    events = [orjson.loads(line) for line in lines]
    assert len(events) == 3
    assert events[0]["kind"] == "snapshot"
    assert all(e["type"] == "event" for e in events)
    async with example_process("dashboard_tail.py", "--url", url, "--count", "2", nice=0) as proc:
        assert await asyncio.wait_for(proc.wait(), FAILSAFE) == 0
    text = proc.output  # type: ignore[attr-defined]
    assert "snapshot" in text and len(text.splitlines()) == 2


async def test_pooler_demo_runs_one_full_block_cycle_and_exits_0() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pooler.cli", "demo", "--blocks", "1", "--port", "0", "--block-interval", "5",
        "--miners", "2", "--quiet",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert "at least one full plant -> work -> harvest cycle succeeded" in text
    assert "harvested" in text and "dashboard: http://127.0.0.1:" in text
