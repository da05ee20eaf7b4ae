"""The kale-miner bridge as a third party runs it, against the real Pooler on the devnet: the real
binary (built from its source, tests/support/kale_miner.py) with two threads, and the stand-in's
GPU mode. The Pooler runs with vardiff and small nonce ranges, so the run sees the difficulty move
and asks ``more`` many times; blocks of 15 s, so it also crosses block changes.

What the bridge says it hashed (its ``summary`` line, per difficulty) must match what the Pooler
credited: its accepted shares are a Poisson count of mean ``sum(hashes / 16**zeros)``.
"""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from examples.minerkit import format_rate
from tests.support.kale_miner import kale_miner_binary
from tests.support.miners import EXAMPLES, example_process, output_so_far, summary_of
from tests.support.system import System, bearer, register_miner, running_system
from tests.support.wait import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

BLOCK_INTERVAL = 15
RANGE = 1 << 17  # nonces per job: the real binary exhausts one in ~0.1 s, the stand-in in ~3 s
SHARE_ZEROS = 3  # where every worker starts; vardiff aims at 10 shares a second
SIGMAS = 4.5  # Poisson bound: a false failure about once in 150,000 runs


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vardiff_system() -> AsyncIterator[System]:
    async with running_system(
        block_interval=BLOCK_INTERVAL,
        share_zeros=SHARE_ZEROS,
        vardiff=True,
        vardiff_target_seconds=0.1,
        messages_per_second=5000.0,  # a share at low difficulty every millisecond is not abuse here
        messages_burst=10_000,
        tuning={"range_min": 1 << 14, "range_default": RANGE, "range_max": RANGE, "range_seconds": 1.0},
    ) as system:
        yield system


async def stats_of(system: System, token: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{system.url}/miner/stats", headers=bearer(token)) as resp,
    ):
        assert resp.status == 200
        return dict(await resp.json())


async def run_bridge(
    system: System, name: str, shares: int, *args: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the bridge until the Pooler accepted ``shares`` of its shares: its summary, the Pooler's stats."""
    reg = await register_miner(system.url, name)
    seen: list[dict[str, Any]] = []  # the Pooler's stats of the miner, a sample every 0.25 s
    async with example_process(
        "kale_miner_bridge.py", "--url", system.ws_url, "--token", reg.token, "--worker", name,
        "--verbose", "--duration", "600", *args,
    ) as proc:  # fmt: skip

        async def accepted_or_stopped() -> bool:
            seen.append(await stats_of(system, reg.token))
            return bool(seen[-1]["accepted"] >= shares or proc.returncode is not None)

        await wait_until(accepted_or_stopped, f"{shares} accepted shares", within=240, step=0.25)
        assert proc.returncode is None, output_so_far(proc)[-3000:]
    # stopped with SIGTERM: it sent its last shares and bye, and printed its summary
    output: str = proc.output  # type: ignore[attr-defined]
    summary = summary_of(output)
    final = await stats_of(system, reg.token)
    final["shownHashrate"] = seen[-1]["hashrate"]  # the Pooler's figure while it still mined
    rates = [s["hashrate"] for s in seen[len(seen) // 2 :]]  # the Pooler's figure, second half of the run
    print(
        f"\n{name}: {summary['hashes']} nonces in {summary['seconds']} s"
        f" = {format_rate(summary['hashrate'])};"
        f" {summary['lanes']} binaries measured at {format_rate(summary['laneRate'])} each"
        f" (they printed {format_rate(summary['binaryRate'])}); the Pooler showed"
        f" {format_rate(min(rates))} .. {format_rate(max(rates))};"
        f" accepted {final['accepted']} of {summary['expectedShares']:.0f} expected; by zeros"
        f" {summary['hashesByZeros']}; {summary['runs']} runs, {summary['mores']} more"
    )
    return summary, final


def check_against_the_pool(summary: dict[str, Any], final: dict[str, Any], mores: int) -> None:
    """Every share sent was answered; none was refused but as stale (a block change in flight); the
    Pooler credited what the hashes predict; nothing was hashed outside the ranges given."""
    rejected_by: dict[str, int] = summary["rejectedBy"]
    assert set(rejected_by) <= {"stale"}, rejected_by  # no out-of-range, low-zeros, duplicate, invalid
    assert summary["dropped"] == 0
    assert summary["accepted"] + summary["rejected"] == summary["shares"]
    assert final["accepted"] == summary["accepted"]
    expected = summary["expectedShares"]
    sent = final["accepted"] + rejected_by.get("stale", 0)
    assert abs(sent - expected) <= SIGMAS * math.sqrt(expected) + 1, (sent, expected)
    assert summary["outside"] <= 2  # finds in a last batch's few nonces past a range: dropped, not sent
    assert summary["mores"] >= mores  # ranges were exhausted and more asked for
    assert summary["estimatedHashes"] <= 0.1 * summary["hashes"]


async def test_the_real_binary_with_two_threads_sends_every_share_and_follows_vardiff(
    vardiff_system: System,
) -> None:
    binary = kale_miner_binary()
    summary, final = await run_bridge(
        vardiff_system, "cpu-rig", 400, "--miner", str(binary), "--threads", "2"
    )
    check_against_the_pool(summary, final, mores=10)
    # the Pooler's effective hashrate against the hashes the bridge really computed (#15): its
    # exhausted ranges are exact evidence, so +-20% holds after a short run
    shown, real = final["shownHashrate"], summary["hashrate"]
    print(f"cpu-rig: the Pooler showed {format_rate(shown)}, the bridge computed {format_rate(real)}")
    assert abs(shown - real) <= 0.2 * real, (shown, real)
    assert summary["lanes"] == 2 and summary["expiredRuns"] == 0
    by_zeros = {int(z): n for z, n in summary["hashesByZeros"].items()}
    assert len(by_zeros) >= 2 and SHARE_ZEROS in by_zeros  # vardiff moved it, and the bridge followed
    assert sum(by_zeros.values()) == summary["hashes"]


async def test_the_gpu_mode_stays_inside_its_ranges(vardiff_system: System) -> None:
    stand_in = shlex.join([sys.executable, str(EXAMPLES / "fake_kale_miner.py"), "--as-gpu-build"])
    summary, final = await run_bridge(
        vardiff_system,
        "gpu-rig",
        100,
        "--miner",
        stand_in,
        "--gpu",
        "--threads",
        "7",
        "--batch-size",
        "20000",
    )
    check_against_the_pool(summary, final, mores=2)
    assert summary["engine"] == "kale-miner-gpu" and summary["lanes"] == 1
    assert summary["expiredRuns"] == 0  # its lines kept coming: the deadline never had to stop it
