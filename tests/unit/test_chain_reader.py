"""Ledger keys and storage decoding of the farm contract, with XDR built here via stellar_sdk.xdr."""

from __future__ import annotations

import base64
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from stellar_sdk import Keypair, scval, xdr
from stellar_sdk.base_soroban_server import _build_contract_instance_key
from stellar_sdk.soroban_rpc import GetLedgerEntriesResponse, LedgerEntryResult

from pooler.chain.reader import (
    MAX_KEYS_PER_REQUEST,
    BlockRecord,
    FarmReader,
    PailRecord,
    block_key,
    decode_block_entry,
    decode_instance,
    decode_pail_entry,
    entries_by_key,
    instance_key,
    pail_key,
)
from pooler.errors import ChainDataError

CONTRACT = "CDL74RF5BLYR2YBLCCI7F5FB6TPSCLKEJUBSD2RSVWZ4YHF3VMFAIGWA"
FARMER = Keypair.from_raw_ed25519_seed(bytes(range(32))).public_key
ENTROPY = bytes(range(100, 132))

BLOCK_FIELDS: dict[str, xdr.SCVal] = {
    "timestamp": scval.to_uint64(1_700_000_000),
    "min_gap": scval.to_uint32(1),
    "min_stake": scval.to_int128(0),
    "min_zeros": scval.to_uint32(5),
    "max_gap": scval.to_uint32(9),
    "max_stake": scval.to_int128(2**100),
    "max_zeros": scval.to_uint32(11),
    "entropy": scval.to_bytes(ENTROPY),
    "staked_total": scval.to_int128(-(2**70)),
    "normalized_total": scval.to_int128(123),
}
BLOCK = BlockRecord(
    timestamp=1_700_000_000,
    min_gap=1,
    min_stake=0,
    min_zeros=5,
    max_gap=9,
    max_stake=2**100,
    max_zeros=11,
    entropy=ENTROPY,
    staked_total=-(2**70),
    normalized_total=123,
)


def struct(fields: dict[str, xdr.SCVal]) -> xdr.SCVal:
    # A #[contracttype] struct: map entries keyed by Symbol, in field-name order.
    return xdr.SCVal(
        xdr.SCValType.SCV_MAP,
        map=xdr.SCMap([xdr.SCMapEntry(scval.to_symbol(k), v) for k, v in sorted(fields.items())]),
    )


def contract_data(
    key: xdr.SCVal, val: xdr.SCVal, durability: xdr.ContractDataDurability
) -> xdr.LedgerEntryData:
    from stellar_sdk import Address

    return xdr.LedgerEntryData(
        xdr.LedgerEntryType.CONTRACT_DATA,
        contract_data=xdr.ContractDataEntry(
            ext=xdr.ExtensionPoint(0),
            contract=Address(CONTRACT).to_xdr_sc_address(),
            key=key,
            durability=durability,
            val=val,
        ),
    )


def instance_entry(storage: list[tuple[xdr.SCVal, xdr.SCVal]] | None) -> xdr.LedgerEntryData:
    inst = xdr.SCContractInstance(
        executable=xdr.ContractExecutable(
            xdr.ContractExecutableType.CONTRACT_EXECUTABLE_WASM, wasm_hash=xdr.Hash(bytes(32))
        ),
        storage=None if storage is None else xdr.SCMap([xdr.SCMapEntry(k, v) for k, v in storage]),
    )
    return contract_data(
        xdr.SCVal(xdr.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE),
        xdr.SCVal(xdr.SCValType.SCV_CONTRACT_INSTANCE, instance=inst),
        xdr.ContractDataDurability.PERSISTENT,
    )


def unit_key(name: str) -> xdr.SCVal:
    return scval.to_vec([scval.to_symbol(name)])


def full_storage() -> list[tuple[xdr.SCVal, xdr.SCVal]]:
    return [
        (unit_key("Homesteader"), scval.to_address(FARMER)),
        (unit_key("HomesteadAsset"), scval.to_address(CONTRACT)),
        (unit_key("FarmIndex"), scval.to_uint32(42)),
        (unit_key("FarmBlock"), struct(BLOCK_FIELDS)),
        (unit_key("FarmPaused"), scval.to_bool(True)),
    ]


def block_entry(fields: dict[str, xdr.SCVal], index: int = 7) -> xdr.LedgerEntryData:
    key = scval.to_vec([scval.to_symbol("Block"), scval.to_uint32(index)])
    return contract_data(key, struct(fields), xdr.ContractDataDurability.TEMPORARY)


# ---------------------------------------------------------------- keys


def test_instance_key_is_the_sdk_contract_instance_key() -> None:
    key = instance_key(CONTRACT)
    assert key.to_xdr_bytes() == _build_contract_instance_key(CONTRACT).to_xdr_bytes()
    assert key.contract_data is not None
    assert key.contract_data.durability == xdr.ContractDataDurability.PERSISTENT
    assert key.contract_data.key.type == xdr.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE


def test_block_key_is_temporary_vec_of_symbol_and_u32() -> None:
    key = block_key(CONTRACT, 12345)
    assert key.type == xdr.LedgerEntryType.CONTRACT_DATA
    assert key.contract_data is not None
    assert key.contract_data.durability == xdr.ContractDataDurability.TEMPORARY
    assert scval.from_address(
        xdr.SCVal(xdr.SCValType.SCV_ADDRESS, address=key.contract_data.contract)
    ).address == (CONTRACT)
    items = scval.from_vec(key.contract_data.key)
    assert [scval.from_symbol(items[0]), scval.from_uint32(items[1])] == ["Block", 12345]
    assert len(items) == 2
    # round-trips through base64 as the RPC carries it
    assert xdr.LedgerKey.from_xdr(key.to_xdr()) == key


def test_pail_key_is_temporary_vec_of_symbol_address_u32() -> None:
    key = pail_key(CONTRACT, FARMER, 9)
    assert key.contract_data is not None
    assert key.contract_data.durability == xdr.ContractDataDurability.TEMPORARY
    items = scval.from_vec(key.contract_data.key)
    assert scval.from_symbol(items[0]) == "Pail"
    assert scval.from_address(items[1]).address == FARMER
    assert scval.from_uint32(items[2]) == 9
    assert block_key(CONTRACT, 9) != pail_key(CONTRACT, FARMER, 9)


def test_bad_contract_id_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"not a valid C\.\.\. address"):
        instance_key("CNOTACONTRACT")


# ---------------------------------------------------------------- instance


def test_decode_instance_walks_the_storage_map() -> None:
    state = decode_instance(instance_entry(full_storage()))
    assert state.index == 42
    assert state.paused is True
    assert state.farm_block == BLOCK


def test_decode_instance_defaults_like_the_contract() -> None:
    # absent FarmIndex reads as 0, absent FarmPaused as false, FarmBlock as missing
    for storage in (None, [(unit_key("Homesteader"), scval.to_address(FARMER))]):
        state = decode_instance(instance_entry(storage))
        assert (state.index, state.paused, state.farm_block) == (0, False, None)


def test_decode_instance_ignores_keys_that_are_not_farm_variants() -> None:
    storage = [
        (scval.to_symbol("FarmIndex"), scval.to_uint32(99)),  # a bare symbol, not the enum vector
        (scval.to_vec([scval.to_uint32(1)]), scval.to_uint32(2)),
        (scval.to_vec([]), scval.to_uint32(3)),
        (unit_key("FarmIndex"), scval.to_uint32(5)),
    ]
    assert decode_instance(instance_entry(storage)).index == 5


def test_to_native_cannot_read_the_instance_map_which_is_why_we_walk_it() -> None:
    data = instance_entry(full_storage())
    assert data.contract_data is not None and data.contract_data.val.instance is not None
    storage = data.contract_data.val.instance.storage
    assert storage is not None
    with pytest.raises(TypeError):
        scval.to_native(xdr.SCVal(xdr.SCValType.SCV_MAP, map=storage))


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ([(unit_key("FarmIndex"), scval.to_int32(4))], "FarmIndex: expected SCV_U32, got SCV_I32"),
        ([(unit_key("FarmPaused"), scval.to_uint32(1))], "FarmPaused: expected SCV_BOOL, got SCV_U32"),
        ([(unit_key("FarmBlock"), scval.to_uint32(1))], "FarmBlock: expected SCV_MAP, got SCV_U32"),
        (
            [(scval.to_vec([scval.to_symbol("FarmIndex"), scval.to_uint32(1)]), scval.to_uint32(4))],
            "FarmIndex: expected a unit variant",
        ),
        (
            [(unit_key("FarmBlock"), struct({k: v for k, v in BLOCK_FIELDS.items() if k != "max_zeros"}))],
            "FarmBlock: field 'max_zeros' missing",
        ),
    ],
)
def test_decode_instance_bad_shapes_name_the_key(
    storage: list[tuple[xdr.SCVal, xdr.SCVal]], message: str
) -> None:
    with pytest.raises(ChainDataError, match=message):
        decode_instance(instance_entry(storage))


def test_decode_instance_rejects_a_value_that_is_not_an_instance() -> None:
    data = contract_data(
        xdr.SCVal(xdr.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE),
        scval.to_uint32(1),
        xdr.ContractDataDurability.PERSISTENT,
    )
    with pytest.raises(ChainDataError, match="contract instance: expected SCV_CONTRACT_INSTANCE"):
        decode_instance(data)


def test_decode_instance_rejects_another_entry_type() -> None:
    data = xdr.LedgerEntryData(xdr.LedgerEntryType.TTL, ttl=xdr.TTLEntry(xdr.Hash(bytes(32)), xdr.Uint32(5)))
    with pytest.raises(ChainDataError, match="expected a CONTRACT_DATA ledger entry, got TTL"):
        decode_instance(data)


# ---------------------------------------------------------------- Block


def test_decode_block_reads_fields_by_name() -> None:
    assert decode_block_entry(block_entry(BLOCK_FIELDS), 7) == BLOCK


def test_decode_block_ignores_extra_fields() -> None:
    fields = dict(BLOCK_FIELDS, zz_new_field=scval.to_uint32(1))
    assert decode_block_entry(block_entry(fields), 7) == BLOCK


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timestamp", scval.to_uint32(5), r"Block\(7\)\.timestamp: expected SCV_U64, got SCV_U32"),
        ("min_gap", scval.to_uint64(5), r"Block\(7\)\.min_gap: expected SCV_U32, got SCV_U64"),
        ("max_stake", scval.to_int64(5), r"Block\(7\)\.max_stake: expected SCV_I128, got SCV_I64"),
        ("entropy", scval.to_bytes(bytes(31)), r"Block\(7\)\.entropy: expected 32 bytes"),
        ("entropy", scval.to_string("x" * 32), r"Block\(7\)\.entropy: expected SCV_BYTES, got SCV_STRING"),
        ("normalized_total", scval.to_void(), r"Block\(7\)\.normalized_total: expected SCV_I128"),
    ],
)
def test_decode_block_bad_field_names_it(field: str, value: xdr.SCVal, message: str) -> None:
    with pytest.raises(ChainDataError, match=message):
        decode_block_entry(block_entry(dict(BLOCK_FIELDS, **{field: value})), 7)


def test_decode_block_missing_field_names_it() -> None:
    fields = {k: v for k, v in BLOCK_FIELDS.items() if k != "entropy"}
    with pytest.raises(ChainDataError, match=r"Block\(7\): field 'entropy' missing"):
        decode_block_entry(block_entry(fields), 7)


def test_decode_block_rejects_non_symbol_field_names() -> None:
    bad = xdr.SCVal(
        xdr.SCValType.SCV_MAP, map=xdr.SCMap([xdr.SCMapEntry(scval.to_uint32(1), scval.to_uint32(1))])
    )
    data = contract_data(
        scval.to_vec([scval.to_symbol("Block"), scval.to_uint32(3)]),
        bad,
        xdr.ContractDataDurability.TEMPORARY,
    )
    with pytest.raises(ChainDataError, match=r"Block\(3\) field name: expected SCV_SYMBOL, got SCV_U32"):
        decode_block_entry(data, 3)


# ---------------------------------------------------------------- Pail


def pail_entry(fields: dict[str, xdr.SCVal]) -> xdr.LedgerEntryData:
    key = pail_key(CONTRACT, FARMER, 4).contract_data
    assert key is not None
    return contract_data(key.key, struct(fields), xdr.ContractDataDurability.TEMPORARY)


def test_decode_pail_with_and_without_work() -> None:
    planted = {
        "sequence": scval.to_uint32(100),
        "gap": scval.to_void(),
        "stake": scval.to_int128(5),
        "zeros": scval.to_void(),
    }
    assert decode_pail_entry(pail_entry(planted), FARMER, 4) == PailRecord(100, None, 5, None)
    worked = dict(planted, gap=scval.to_uint32(3), zeros=scval.to_uint32(9))
    assert decode_pail_entry(pail_entry(worked), FARMER, 4) == PailRecord(100, 3, 5, 9)
    with pytest.raises(ChainDataError, match=rf"Pail\({FARMER}, 4\)\.zeros: expected SCV_U32, got SCV_BOOL"):
        decode_pail_entry(pail_entry(dict(planted, zeros=scval.to_bool(True))), FARMER, 4)


# ---------------------------------------------------------------- matching RPC entries


def rpc_entry(key: xdr.LedgerKey, data: xdr.LedgerEntryData | str) -> LedgerEntryResult:
    return LedgerEntryResult.model_validate(
        {
            "key": key.to_xdr(),
            "xdr": data if isinstance(data, str) else data.to_xdr(),
            "lastModifiedLedgerSeq": 10,
            "liveUntilLedgerSeq": 20,
        }
    )


def test_entries_are_matched_by_key_whatever_their_order() -> None:
    inst = instance_entry(full_storage())
    blk = block_entry(BLOCK_FIELDS, 42)
    found = entries_by_key([rpc_entry(block_key(CONTRACT, 42), blk), rpc_entry(instance_key(CONTRACT), inst)])
    assert found[instance_key(CONTRACT).to_xdr_bytes()] == inst
    assert found[block_key(CONTRACT, 42).to_xdr_bytes()] == blk
    assert block_key(CONTRACT, 43).to_xdr_bytes() not in found
    assert entries_by_key(None) == {}


def test_bad_entry_xdr_is_chain_data_error() -> None:
    with pytest.raises(ChainDataError, match="not LedgerEntryData"):
        entries_by_key(
            [rpc_entry(instance_key(CONTRACT), base64.b64encode(b"\x00\x00\x00\x06junk").decode())]
        )
    bad_key = LedgerEntryResult.model_validate(
        {"key": "!!notbase64!!", "xdr": instance_entry(None).to_xdr(), "lastModifiedLedgerSeq": 1}
    )
    with pytest.raises(ChainDataError, match="key is not base64"):
        entries_by_key([bad_key])


# ---------------------------------------------------------------- watched pails (FarmReader.watch)


R = TypeVar("R")


def run_now(coro: Coroutine[Any, Any, R]) -> R:
    """Run a coroutine that never suspends (the fake ledger answers at once): no event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("the coroutine suspended")


class FakeLedger:
    """A LedgerSource over a dict of entries; records how many keys each call asked for."""

    def __init__(self, entries: dict[bytes, tuple[xdr.LedgerKey, xdr.LedgerEntryData]]) -> None:
        self.entries = entries
        self.calls: list[int] = []

    async def get_ledger_entries(self, keys: list[xdr.LedgerKey]) -> GetLedgerEntriesResponse:
        self.calls.append(len(keys))
        found = [self.entries[k.to_xdr_bytes()] for k in keys if k.to_xdr_bytes() in self.entries]
        return GetLedgerEntriesResponse.model_validate(
            {"entries": [rpc_entry(k, d).model_dump(by_alias=True) for k, d in found], "latestLedger": 77}
        )


def _pail_data(key: xdr.LedgerKey, sequence: int) -> xdr.LedgerEntryData:
    fields = {
        "sequence": scval.to_uint32(sequence),
        "gap": scval.to_void(),
        "stake": scval.to_int128(5),
        "zeros": scval.to_void(),
    }
    assert key.contract_data is not None
    return contract_data(key.contract_data.key, struct(fields), xdr.ContractDataDurability.TEMPORARY)


def test_watched_pails_ride_along_and_are_batched_past_the_key_cap() -> None:
    farmers = [(f"f{i}", Keypair.from_raw_ed25519_seed(bytes([i + 1]) * 32).public_key) for i in range(250)]
    entries: dict[bytes, tuple[xdr.LedgerKey, xdr.LedgerEntryData]] = {}
    ikey = instance_key(CONTRACT)
    entries[ikey.to_xdr_bytes()] = (ikey, instance_entry(full_storage()))
    bkey = block_key(CONTRACT, 42)
    entries[bkey.to_xdr_bytes()] = (bkey, block_entry(BLOCK_FIELDS, 42))
    for i, (_, address) in enumerate(farmers[:-1]):  # the last farmer has no pail
        pkey = pail_key(CONTRACT, address, 42)
        entries[pkey.to_xdr_bytes()] = (pkey, _pail_data(pkey, 1000 + i))
    ledger = FakeLedger(entries)
    reader = FarmReader(ledger, CONTRACT)
    reader.watch(42, farmers)
    snap = run_now(reader.read())
    assert all(n <= MAX_KEYS_PER_REQUEST for n in ledger.calls)
    assert sum(ledger.calls) == 1 + 1 + 250 + 1  # instance + Block(42) + pails, then Block(42) (first read)
    assert snap.watched is not None and snap.watched.index == 42 and snap.watched.block == BLOCK
    assert len(snap.watched.pails) == 249 and "f249" not in snap.watched.pails
    assert snap.watched.pails["f3"] == PailRecord(1003, None, 5, None)
    reader.watch(42, ())
    assert run_now(reader.read()).watched is None
