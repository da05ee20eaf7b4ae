"""The farm contract model's state as Soroban ledger entries (real XDR, built with stellar-sdk).

This is what the devnet's ``getLedgerEntries`` serves, encoded the way soroban-sdk stores
the contract's ``Storage`` enum and ``#[contracttype]`` structs:

* a unit enum variant ``FarmIndex`` -> ``ScVec[Symbol "FarmIndex"]``; a tuple variant
  ``Block(u32)`` -> ``ScVec[Symbol "Block", U32]``, ``Pail(Address, u32)`` ->
  ``ScVec[Symbol "Pail", Address, U32]``;
* a struct -> ``ScMap`` keyed by field-name Symbols in ascending order;
* ``u32`` -> U32, ``u64`` -> U64, ``i128`` -> I128 (hi/lo parts), ``BytesN<32>`` -> Bytes,
  ``Option::None`` -> Void, ``bool`` -> Bool, ``Address`` -> Address.

Instance storage lives in the contract instance entry (key ``SCV_LEDGER_KEY_CONTRACT_INSTANCE``,
PERSISTENT); ``Block`` and ``Pail`` are TEMPORARY entries of their own.

The decode helpers at the bottom read those encodings back; the devnet's tests use them to
show a stellar-sdk client gets what the model holds. (The Pooler's own reader lives in
``pooler/chain/``.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from stellar_sdk import Address, Keypair, scval
from stellar_sdk import xdr as x

from pooler.devnet.contract import Block, FarmContract, Pail
from pooler.errors import DevnetError
from protocol import strkey

# Deterministic ids: the same devnet always has the same contract, asset and homesteader.
CONTRACT_ID = strkey.encode("C", hashlib.sha256(b"kale-devnet/farm-contract").digest())
ASSET_ID = strkey.encode("C", hashlib.sha256(b"kale-devnet/kale-asset").digest())
HOMESTEADER = Keypair.from_raw_ed25519_seed(hashlib.sha256(b"kale-devnet/homesteader").digest()).public_key
# stellar-core's standalone (local) network: transactions signed for it are valid nowhere else.
NETWORK_PASSPHRASE = "Standalone Network ; February 2017"
PROTOCOL_VERSION = 23
WASM_HASH = hashlib.sha256(b"kale-devnet/kale-sc.wasm").digest()

INSTANCE_KEYS = ("FarmIndex", "FarmBlock", "FarmPaused", "Homesteader", "HomesteadAsset")


# ---------------------------------------------------------------- keys


def _contract_address(contract_id: str) -> x.SCAddress:
    return Address(contract_id).to_xdr_sc_address()


def instance_key(contract_id: str = CONTRACT_ID) -> x.LedgerKey:
    """The ledger key of the contract instance entry (instance storage)."""
    return _data_key(
        contract_id,
        x.SCVal(x.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE),
        x.ContractDataDurability.PERSISTENT,
    )


def storage_key(name: str, *args: x.SCVal) -> x.SCVal:
    """A ``Storage`` enum variant as soroban-sdk encodes it: ``ScVec[Symbol name, args...]``."""
    return scval.to_vec([scval.to_symbol(name), *args])


def block_key(index: int, contract_id: str = CONTRACT_ID) -> x.LedgerKey:
    """The TEMPORARY ledger key of ``Block(index)``."""
    return _data_key(
        contract_id, storage_key("Block", scval.to_uint32(index)), x.ContractDataDurability.TEMPORARY
    )


def pail_key(farmer: str, index: int, contract_id: str = CONTRACT_ID) -> x.LedgerKey:
    """The TEMPORARY ledger key of ``Pail(farmer, index)``."""
    return _data_key(
        contract_id,
        storage_key("Pail", scval.to_address(farmer), scval.to_uint32(index)),
        x.ContractDataDurability.TEMPORARY,
    )


def _data_key(contract_id: str, key: x.SCVal, durability: x.ContractDataDurability) -> x.LedgerKey:
    return x.LedgerKey(
        x.LedgerEntryType.CONTRACT_DATA,
        contract_data=x.LedgerKeyContractData(_contract_address(contract_id), key, durability),
    )


# ---------------------------------------------------------------- values


def block_scval(block: Block) -> x.SCVal:
    return scval.to_map(
        {
            scval.to_symbol("timestamp"): scval.to_uint64(block.timestamp),
            scval.to_symbol("min_gap"): scval.to_uint32(block.min_gap),
            scval.to_symbol("min_stake"): scval.to_int128(block.min_stake),
            scval.to_symbol("min_zeros"): scval.to_uint32(block.min_zeros),
            scval.to_symbol("max_gap"): scval.to_uint32(block.max_gap),
            scval.to_symbol("max_stake"): scval.to_int128(block.max_stake),
            scval.to_symbol("max_zeros"): scval.to_uint32(block.max_zeros),
            scval.to_symbol("entropy"): scval.to_bytes(block.entropy),
            scval.to_symbol("staked_total"): scval.to_int128(block.staked_total),
            scval.to_symbol("normalized_total"): scval.to_int128(block.normalized_total),
        }
    )


def _option_u32(value: int | None) -> x.SCVal:
    return scval.to_void() if value is None else scval.to_uint32(value)


def pail_scval(pail: Pail) -> x.SCVal:
    return scval.to_map(
        {
            scval.to_symbol("sequence"): scval.to_uint32(pail.sequence),
            scval.to_symbol("gap"): _option_u32(pail.gap),
            scval.to_symbol("stake"): scval.to_int128(pail.stake),
            scval.to_symbol("zeros"): _option_u32(pail.zeros),
        }
    )


def instance_scval(contract: FarmContract) -> x.SCVal:
    """The contract instance value: WASM executable plus the instance storage map."""
    storage: dict[str, x.SCVal] = {
        "FarmIndex": scval.to_uint32(contract.farm_index),
        "FarmPaused": scval.to_bool(contract.farm_paused),
        "Homesteader": scval.to_address(contract.homesteader),
        "HomesteadAsset": scval.to_address(contract.asset),
    }
    if contract.farm_block is not None:
        storage["FarmBlock"] = block_scval(contract.farm_block)
    # Keys are one-Symbol vectors (unhashable in stellar-sdk, so no scval.to_map): Soroban
    # orders vectors element by element, so sorting by the symbol's bytes is the map order.
    as_map = x.SCMap(
        [x.SCMapEntry(storage_key(name), storage[name]) for name in sorted(storage, key=str.encode)]
    )
    executable = x.ContractExecutable(
        x.ContractExecutableType.CONTRACT_EXECUTABLE_WASM, wasm_hash=x.Hash(WASM_HASH)
    )
    return x.SCVal(x.SCValType.SCV_CONTRACT_INSTANCE, instance=x.SCContractInstance(executable, as_map))


# ---------------------------------------------------------------- lookup


@dataclass(frozen=True, slots=True)
class FoundEntry:
    """One ledger entry as ``getLedgerEntries`` reports it."""

    key: x.LedgerKey
    data: x.LedgerEntryData
    last_modified: int
    live_until: int


def _entry(kd: x.LedgerKeyContractData, val: x.SCVal, last_modified: int, live_until: int) -> FoundEntry:
    data = x.LedgerEntryData(
        x.LedgerEntryType.CONTRACT_DATA,
        contract_data=x.ContractDataEntry(x.ExtensionPoint(0), kd.contract, kd.key, kd.durability, val),
    )
    key = x.LedgerKey(x.LedgerEntryType.CONTRACT_DATA, contract_data=kd)
    return FoundEntry(key, data, last_modified, live_until)


def _u32(v: x.SCVal) -> int | None:
    return v.u32.uint32 if v.type == x.SCValType.SCV_U32 and v.u32 is not None else None


def lookup(contract: FarmContract, key: x.LedgerKey, contract_id: str = CONTRACT_ID) -> FoundEntry | None:
    """The entry stored under ``key``, or None (not ours, unknown, absent or expired)."""
    kd = key.contract_data
    if key.type != x.LedgerEntryType.CONTRACT_DATA or kd is None:
        return None
    if kd.contract != _contract_address(contract_id):
        return None
    temporary = kd.durability == x.ContractDataDurability.TEMPORARY
    if kd.key.type == x.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE:
        if temporary:
            return None
        return _entry(kd, instance_scval(contract), contract.instance_modified, contract.instance_live_until)
    vec = kd.key.vec
    if not temporary or kd.key.type != x.SCValType.SCV_VEC or vec is None:
        return None
    parts = vec.sc_vec
    if not parts or parts[0].type != x.SCValType.SCV_SYMBOL or parts[0].sym is None:
        return None
    name = parts[0].sym.sc_symbol
    if name == b"Block" and len(parts) == 2 and (index := _u32(parts[1])) is not None:
        b = contract.block_entry(index)
        return None if b is None else _entry(kd, block_scval(b.value), b.last_modified, b.live_until)
    address = parts[1].address if len(parts) == 3 else None
    if name == b"Pail" and address is not None and (index := _u32(parts[2])) is not None:
        p = contract.pail_entry(Address.from_xdr_sc_address(address).address, index)
        return None if p is None else _entry(kd, pail_scval(p.value), p.last_modified, p.live_until)
    return None


# ---------------------------------------------------------------- ledger headers


def ledger_hash(sequence: int) -> bytes:
    """A stable made-up hash for devnet ledger ``sequence``."""
    return hashlib.sha256(b"kale-devnet/ledger/" + sequence.to_bytes(8, "big")).digest()


def ledger_header(contract: FarmContract, sequence: int) -> x.LedgerHeaderHistoryEntry:
    """A well-formed LedgerHeaderHistoryEntry for ``sequence`` (hashes are made up)."""
    zero = x.Hash(bytes(32))
    header = x.LedgerHeader(
        ledger_version=x.Uint32(PROTOCOL_VERSION),
        previous_ledger_hash=x.Hash(ledger_hash(sequence - 1)),
        scp_value=x.StellarValue(
            tx_set_hash=zero,
            close_time=x.TimePoint(x.Uint64(contract.ledger_close_time(sequence))),
            upgrades=[],
            ext=x.StellarValueExt(x.StellarValueType.STELLAR_VALUE_BASIC),
        ),
        tx_set_result_hash=zero,
        bucket_list_hash=zero,
        ledger_seq=x.Uint32(sequence),
        total_coins=x.Int64(1_000_000_000_000_000_000),
        fee_pool=x.Int64(0),
        inflation_seq=x.Uint32(0),
        id_pool=x.Uint64(0),
        base_fee=x.Uint32(100),
        base_reserve=x.Uint32(5_000_000),
        max_tx_set_size=x.Uint32(1000),
        skip_list=[zero, zero, zero, zero],
        ext=x.LedgerHeaderExt(0),
    )
    return x.LedgerHeaderHistoryEntry(x.Hash(ledger_hash(sequence)), header, x.LedgerHeaderHistoryEntryExt(0))


def ledger_close_meta(contract: FarmContract, sequence: int) -> x.LedgerCloseMeta:
    """An empty (no transactions) LedgerCloseMeta v0 for ``sequence``."""
    return x.LedgerCloseMeta(
        0,
        v0=x.LedgerCloseMetaV0(
            ledger_header=ledger_header(contract, sequence),
            tx_set=x.TransactionSet(x.Hash(ledger_hash(sequence - 1)), []),
            tx_processing=[],
            upgrades_processing=[],
            scp_info=[],
        ),
    )


# ---------------------------------------------------------------- decoding (tests, tools)


def _field(fields: dict[str, x.SCVal], name: str) -> x.SCVal:
    try:
        return fields[name]
    except KeyError:
        raise DevnetError(f"struct has no field {name!r} (has {sorted(fields)})") from None


def _opt_u32(v: x.SCVal) -> int | None:
    return None if v.type == x.SCValType.SCV_VOID else scval.from_uint32(v)


def decode_block(val: x.SCVal) -> Block:
    """A ``Block`` ScMap back into the model's dataclass."""
    f = scval.from_struct(val)
    return Block(
        timestamp=scval.from_uint64(_field(f, "timestamp")),
        min_gap=scval.from_uint32(_field(f, "min_gap")),
        min_stake=scval.from_int128(_field(f, "min_stake")),
        min_zeros=scval.from_uint32(_field(f, "min_zeros")),
        max_gap=scval.from_uint32(_field(f, "max_gap")),
        max_stake=scval.from_int128(_field(f, "max_stake")),
        max_zeros=scval.from_uint32(_field(f, "max_zeros")),
        entropy=scval.from_bytes(_field(f, "entropy")),
        staked_total=scval.from_int128(_field(f, "staked_total")),
        normalized_total=scval.from_int128(_field(f, "normalized_total")),
    )


def decode_pail(val: x.SCVal) -> Pail:
    f = scval.from_struct(val)
    return Pail(
        sequence=scval.from_uint32(_field(f, "sequence")),
        gap=_opt_u32(_field(f, "gap")),
        stake=scval.from_int128(_field(f, "stake")),
        zeros=_opt_u32(_field(f, "zeros")),
    )


def decode_instance_storage(data: x.LedgerEntryData) -> dict[str, x.SCVal]:
    """The instance storage map of a contract instance entry, keyed by variant name.

    The keys are ``ScVec[Symbol]`` (unhashable for ``scval.to_native``), so walk the map.
    """
    if data.type != x.LedgerEntryType.CONTRACT_DATA:
        raise DevnetError(f"not contract data: {data.type!r}")
    val = data.contract_data.val if data.contract_data is not None else None
    if val is None or val.type != x.SCValType.SCV_CONTRACT_INSTANCE or val.instance is None:
        raise DevnetError("not a contract instance entry")
    out: dict[str, x.SCVal] = {}
    storage = val.instance.storage
    for item in storage.sc_map if storage is not None else []:
        parts = scval.from_vec(item.key)
        out[scval.from_symbol(parts[0])] = item.val
    return out
