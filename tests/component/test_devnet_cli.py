"""``pooler devnet`` as a separate process: prints its settings, serves, faults over HTTP, exits 0."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
from stellar_sdk import SorobanServerAsync, scval
from stellar_sdk import xdr as x
from stellar_sdk.client.aiohttp_client import AiohttpClient

from pooler.devnet import ledger


async def test_pooler_devnet_runs_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pooler.cli",
        "devnet",
        "--block-interval",
        "20",
        "--ledger-seconds",
        "1",
        "--start-index",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        settings: dict[str, str] = {}
        while len(settings) < 5:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
            assert line, "pooler devnet exited before printing its settings"
            name, _, value = line.partition("=")
            settings[name] = value
        assert settings["STELLAR_NETWORK"] == "devnet"
        assert settings["KALE_CONTRACT_ID"] == ledger.CONTRACT_ID
        assert settings["STELLAR_NETWORK_PASSPHRASE"] == "'Standalone Network ; February 2017'"
        assert settings["STELLAR_RPC_URL"].startswith("http://127.0.0.1:")
        backend = settings["BACKEND_API_URL"]
        assert backend.startswith("http://127.0.0.1:")

        async with SorobanServerAsync(settings["STELLAR_RPC_URL"], client=AiohttpClient()) as sdk:
            resp = await sdk.get_ledger_entries([ledger.instance_key()])
            assert resp.entries is not None
            storage = ledger.decode_instance_storage(x.LedgerEntryData.from_xdr(resp.entries[0].xdr))
            assert scval.from_uint32(storage["FarmIndex"]) == 3

        async with aiohttp.ClientSession() as http:
            async with http.get(backend + "/health") as r:
                assert r.status == 200
            async with http.post(backend + "/_devnet/faults", json={"outageSeconds": 600}) as r:
                assert r.status == 200
            async with http.get(backend + "/health") as r:
                assert r.status == 503 and (await r.json())["error"] == "Service Unavailable"
            async with http.post(backend + "/_devnet/faults", json={"outageSeconds": 0}) as r:
                assert r.status == 200
            async with http.get(backend + "/health") as r:
                assert r.status == 200

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_pooler_devnet_refuses_a_bad_interval() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pooler.cli",
        "devnet",
        "--block-interval",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and b"block_interval" in err
