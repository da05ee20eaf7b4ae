"""The example programs against the real Pooler on the devnet, as a third party would run them."""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.e2e.crashkit import FAST_SETTINGS
from tests.redis_server import free_port
from tests.support.miners import EXAMPLES, ROOT, example_process, output_so_far
from tests.support.processes import start_pooler
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


@pytest.mark.parametrize("path", ["/ws/events", "/events"])
async def test_dashboard_tail_reconnects_when_the_pooler_restarts(tmp_path: Path, path: str) -> None:
    port = free_port()
    scheme = "ws" if path.startswith("/ws") else "http"
    url = f"{scheme}://127.0.0.1:{port}{path}"
    # `pooler serve` processes on one port (each with its own devnet), stopped by SIGTERM as a
    # restart stops them: the WebSocket gets 1012, an SSE response ends with the process
    settings = {
        **FAST_SETTINGS,
        "STELLAR_NETWORK": "devnet",
        "PORT": str(port),
        "POOLER_DB": str(tmp_path / "db"),
    }
    first = await start_pooler(tmp_path, settings)
    try:
        async with example_process(
            "dashboard_tail.py", "--url", url, "--json", "--duration", "120", nice=0
        ) as proc:

            def snapshots() -> int:
                return output_so_far(proc).count('"kind":"snapshot"')

            await wait_until(lambda: snapshots() == 1, "the first snapshot")
            code, _ = await first.stop(signal.SIGTERM, within=15)
            assert code == 0
            await wait_until(lambda: "reconnecting in" in output_so_far(proc), "the tail to notice")
            assert proc.returncode is None
            again = await start_pooler(tmp_path, settings)  # the restarted Pooler, same port
            try:
                await wait_until(lambda: snapshots() == 2, "the tail to reconnect")
                assert proc.returncode is None
            finally:
                await again.kill()
    finally:
        await first.kill()
    text: str = proc.output  # type: ignore[attr-defined]
    notices = [line for line in text.splitlines() if "reconnecting in" in line]
    assert notices, text
    print(*notices, sep="\n")
    if scheme == "ws":
        assert "closed with code 1012" in notices[0], notices  # a Pooler restart says "come back"
    events = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert [e["kind"] for e in events].count("snapshot") == 2


async def test_dashboard_tail_without_a_pooler_says_so_and_exits_1() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws/events"  # nothing listens: the first connection fails
    async with example_process("dashboard_tail.py", "--url", url, nice=0) as proc:
        assert await asyncio.wait_for(proc.wait(), FAILSAFE) == 1
    assert f"event stream {url}:" in proc.output  # type: ignore[attr-defined]


RATE = {"H/s": 1.0, "kH/s": 1e3, "MH/s": 1e6, "GH/s": 1e9}


def demo_hashrates(text: str) -> dict[str, tuple[float, float, int]]:
    """The demo's hashrate table: worker (and "pool") -> (Pooler's rate, miner's computed rate, shares)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) >= 5 and cells[0] and cells[0] != "worker" and cells[1].endswith("H/s"):
            pooler, computed = (
                float(c.split()[0]) * RATE[c.split()[1]] if c.endswith("H/s") else 0.0  # "-": none
                for c in cells[1:3]
            )
            rows[cells[0]] = (pooler, computed, int(cells[4]))
    return rows


async def test_pooler_demo_shows_hashrates_within_20_percent_of_what_its_miners_computed() -> None:
    """`pooler demo` (#15): a full block cycle (one block planted, worked and harvested: two blocks of
    chain time), and per worker and for the pool the Pooler's effective
    hashrate within +-20% of the hashes its miners really computed, from at least 150 shares each."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pooler.cli", "demo", "--blocks", "1", "--port", "0", "--block-interval", "20",
        "--miners", "3", "--quiet",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert "at least one full plant -> work -> harvest cycle succeeded" in text
    assert "harvested" in text and re.search(r"dashboard +http://127\.0\.0\.1:", text), text[:500]
    print(text[text.index(" worker ") :])
    rows = demo_hashrates(text)
    assert set(rows) == {"cpu-0", "cpu-1", "rest-0", "pool"}, text[-3000:]
    for name, (pooler, computed, shares) in rows.items():
        assert computed > 0 and abs(pooler - computed) <= 0.2 * computed, (name, pooler, computed)
        assert shares >= (150 if name != "pool" else 450), (name, shares)
