"""The devnet's Soroban JSON-RPC server, driven over a real socket by stellar-sdk's async client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from stellar_sdk import Keypair, SorobanServerAsync, scval
from stellar_sdk import xdr as x
from stellar_sdk.client.aiohttp_client import AiohttpClient
from stellar_sdk.exceptions import SorobanRpcErrorResponse
from stellar_sdk.soroban_server_async import Durability

from pooler.devnet import ledger
from pooler.devnet.contract import FarmContract
from pooler.devnet.miner import find_nonce
from pooler.devnet.rpc import SorobanRpc

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


FARMER = Keypair.from_raw_ed25519_seed(bytes([7]) * 32).public_key


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def contract(clock: FakeClock) -> FarmContract:
    c = FarmContract(clock=clock, start_index=5, homesteader=ledger.HOMESTEADER, asset=ledger.ASSET_ID)
    c.fund(FARMER)
    return c


@pytest.fixture
async def url(contract: FarmContract) -> AsyncIterator[str]:
    server = SorobanRpc(contract).server()
    base = await server.start()
    try:
        yield base
    finally:
        await server.stop()


@pytest.fixture
async def sdk(url: str) -> AsyncIterator[SorobanServerAsync]:
    client = SorobanServerAsync(url, client=AiohttpClient())
    try:
        yield client
    finally:
        await client.close()


async def read_instance(sdk: SorobanServerAsync) -> dict[str, x.SCVal]:
    resp = await sdk.get_ledger_entries([ledger.instance_key()])
    assert resp.entries is not None and len(resp.entries) == 1
    return ledger.decode_instance_storage(x.LedgerEntryData.from_xdr(resp.entries[0].xdr))


async def test_health_network_and_latest_ledger(sdk: SorobanServerAsync, clock: FakeClock) -> None:
    health = await sdk.get_health()
    assert health.status == "healthy" and health.latest_ledger == 1000
    network = await sdk.get_network()
    assert network.passphrase == ledger.NETWORK_PASSPHRASE and network.protocol_version == 23
    clock.t += 12  # two ledgers later
    latest = await sdk.get_latest_ledger()
    assert latest.sequence == 1002 and latest.close_time == int(T0) + 10
    header = x.LedgerHeaderHistoryEntry.from_xdr(latest.header_xdr)
    assert header.header.ledger_seq.uint32 == 1002
    assert header.hash.hash.hex() == latest.id
    meta = x.LedgerCloseMeta.from_xdr(latest.metadata_xdr)
    assert meta.v0 is not None and meta.v0.ledger_header.header.ledger_seq.uint32 == 1002


async def test_sdk_reads_farm_index_farm_block_and_block(
    sdk: SorobanServerAsync, contract: FarmContract, clock: FakeClock
) -> None:
    storage = await read_instance(sdk)
    assert scval.from_uint32(storage["FarmIndex"]) == 5
    assert scval.from_bool(storage["FarmPaused"]) is False
    assert scval.from_address(storage["Homesteader"]).address == ledger.HOMESTEADER
    assert scval.from_address(storage["HomesteadAsset"]).address == ledger.ASSET_ID
    # plant + work so FarmBlock and Block(5) hold real observations
    contract.plant(FARMER, 123_0000000)
    clock.t += 5
    nonce, digest = find_nonce(5, bytes(32), FARMER, 2)
    contract.work(FARMER, digest, nonce)
    storage = await read_instance(sdk)
    farm_block = ledger.decode_block(storage["FarmBlock"])
    assert farm_block == contract.farm_block
    assert farm_block.entropy == digest and farm_block.min_stake == farm_block.max_stake == 123_0000000
    assert (farm_block.min_gap, farm_block.max_zeros) == (1, 2)
    # Block(5) through the SDK's own contract-data helper (TEMPORARY durability)
    entry = await sdk.get_contract_data(
        ledger.CONTRACT_ID, ledger.storage_key("Block", scval.to_uint32(5)), Durability.TEMPORARY
    )
    assert entry is not None
    block = ledger.decode_block(x.LedgerEntryData.from_xdr(entry.xdr).contract_data.val)
    assert block == contract.get_block(5)
    assert block.timestamp == int(T0) and block.normalized_total == 3
    assert entry.last_modified_ledger == 1001
    assert entry.live_until_ledger == 1000 + contract.temporary_ttl - 1
    # the Pail, and keys that are absent are simply left out
    resp = await sdk.get_ledger_entries(
        [ledger.pail_key(FARMER, 5), ledger.block_key(6), ledger.pail_key(FARMER, 4), ledger.block_key(5)]
    )
    assert resp.entries is not None
    by_key = {e.key: e for e in resp.entries}
    assert set(by_key) == {ledger.pail_key(FARMER, 5).to_xdr(), ledger.block_key(5).to_xdr()}
    pail = ledger.decode_pail(
        x.LedgerEntryData.from_xdr(by_key[ledger.pail_key(FARMER, 5).to_xdr()].xdr).contract_data.val
    )
    assert (pail.sequence, pail.gap, pail.stake, pail.zeros) == (1000, 1, 123_0000000, 2)
    assert resp.latest_ledger == 1001


async def test_unplanted_pail_has_void_options(sdk: SorobanServerAsync, contract: FarmContract) -> None:
    contract.plant(FARMER, 0)
    resp = await sdk.get_ledger_entries([ledger.pail_key(FARMER, 5)])
    assert resp.entries is not None
    val = x.LedgerEntryData.from_xdr(resp.entries[0].xdr).contract_data.val
    fields = scval.from_struct(val)
    assert list(fields) == ["gap", "sequence", "stake", "zeros"]  # sorted field names
    assert fields["gap"].type == x.SCValType.SCV_VOID and fields["zeros"].type == x.SCValType.SCV_VOID


async def test_another_contract_or_wrong_durability_is_absent(sdk: SorobanServerAsync) -> None:
    other = ledger.ASSET_ID
    resp = await sdk.get_ledger_entries(
        [
            ledger.instance_key(other),
            ledger.block_key(5, other),
            x.LedgerKey(
                x.LedgerEntryType.CONTRACT_DATA,
                contract_data=x.LedgerKeyContractData(
                    ledger.block_key(5).contract_data.contract,
                    ledger.storage_key("Block", scval.to_uint32(5)),
                    x.ContractDataDurability.PERSISTENT,
                ),
            ),
        ]
    )
    assert not resp.entries


async def test_unknown_method_is_32601(sdk: SorobanServerAsync, url: str) -> None:
    async with aiohttp.ClientSession() as session:
        body = await post(session, url, {"jsonrpc": "2.0", "id": 9, "method": "getFeeStats"})
    assert body == {
        "jsonrpc": "2.0",
        "id": 9,
        "error": {"code": -32601, "message": "method 'getFeeStats' not found"},
    }


async def post(session: aiohttp.ClientSession, url: str, payload: Any) -> Any:
    data = payload if isinstance(payload, bytes) else None
    async with session.post(url, data=data, json=None if data is not None else payload) as resp:
        assert resp.status == 200
        return await resp.json()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", -32700),
        ([{"jsonrpc": "2.0", "id": 1, "method": "getHealth"}], -32600),
        ({"id": 1, "method": "getHealth"}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "getLedgerEntries", "params": {"keys": []}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "getLedgerEntries", "params": {"keys": ["@@@"]}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "getLedgerEntries", "params": {"keys": ["AAAAYw=="]}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "getLedgerEntries", "params": {"keys": [7]}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "getLedgerEntries", "params": [["AAAA"]]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "getLedgerEntries", "params": {"keys": ["A"] * 201}}, -32602),
    ],
)
async def test_malformed_requests_get_standard_codes(url: str, payload: Any, code: int) -> None:
    async with aiohttp.ClientSession() as session:
        body = await post(session, url, payload)
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "result" not in body


async def test_sdk_raises_on_an_error_object(sdk: SorobanServerAsync) -> None:
    with pytest.raises(SorobanRpcErrorResponse) as info:
        await sdk.get_ledger_entries([])
    assert info.value.code == -32602
