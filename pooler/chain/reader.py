"""The farm contract's storage, read through Soroban RPC ``getLedgerEntries`` and decoded.

The KALE farm contract has no getters: its state lives in ledger entries.
- the contract instance (PERSISTENT, key ``SCV_LEDGER_KEY_CONTRACT_INSTANCE``) holds the instance
  storage map, whose keys are ``Storage`` enum variants written as vectors (``[Symbol "FarmIndex"]``):
  ``FarmIndex`` u32 (absent = 0), ``FarmBlock`` Block (absent before the first plant),
  ``FarmPaused`` bool (absent = false); other variants (Homesteader, HomesteadAsset) are ignored;
- TEMPORARY ``Block(index)`` = ``[Symbol "Block", U32]`` and ``Pail(farmer, index)`` =
  ``[Symbol "Pail", Address, U32]``. ``#[contracttype]`` structs are maps keyed by field-name
  Symbols. Fields are found by name (order does not matter); extra fields are ignored so a
  contract upgrade that adds one does not blind the Pooler, but a missing or mistyped field
  raises ``ChainDataError`` naming it.

Read path (``FarmReader.read``): Block's index is only known from the instance, so one call
asks for the instance plus ``Block(last)`` and ``Block(last + 1)`` (``last`` = the index seen
by the previous read). Steady state and the "next block opened" case are then one round trip,
and all three entries come from the same ledger. Only the first read and a jump of more than
one block need a second call.

Pails: :meth:`FarmReader.watch` names a block and the farmers the Pooler planted in it; every
read then also asks for their ``Pail(farmer, index)`` in the same call (and ``Block(index)``,
so a block's final state is read with its pails even after FarmIndex moved on). The RPC caps
the keys of one request (:data:`MAX_KEYS_PER_REQUEST`); pails past the cap go in further calls.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from stellar_sdk import Address, scval, xdr
from stellar_sdk.exceptions import BaseHorizonError, SorobanRpcErrorResponse
from stellar_sdk.exceptions import ConnectionError as SdkConnectionError
from stellar_sdk.soroban_rpc import GetLedgerEntriesResponse, LedgerEntryResult

from pooler.errors import ChainDataError, RpcErrorReply, RpcTimeout, RpcUnavailable

# ---------------------------------------------------------------- typed records


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """A ``Block`` struct: a ``Block(index)`` entry, or the instance's ``FarmBlock`` accumulator."""

    timestamp: int
    min_gap: int
    min_stake: int
    min_zeros: int
    max_gap: int
    max_stake: int
    max_zeros: int
    entropy: bytes
    staked_total: int
    normalized_total: int


@dataclass(frozen=True, slots=True)
class PailRecord:
    """A ``Pail`` struct: one farmer's plant in one block; gap/zeros are None until ``work``."""

    sequence: int
    gap: int | None
    stake: int
    zeros: int | None


@dataclass(frozen=True, slots=True)
class FarmState:
    """What the instance storage says about the farm."""

    index: int
    farm_block: BlockRecord | None
    paused: bool


@dataclass(frozen=True, slots=True)
class ChainSnapshot:
    """One consistent read: the farm state and ``Block(state.index)`` at ledger ``ledger``.

    ``block`` is None when ``Block(index)`` does not exist (genesis before the first plant,
    or an evicted block). ``rpc_calls`` is 1 on the fast path, 2 after a first read or a jump.
    """

    state: FarmState
    block: BlockRecord | None
    ledger: int
    rpc_calls: int
    # The watched block (``FarmReader.watch``) as read with its pails: its index, its Block entry
    # (None if missing) and the pails found, by the caller's farmer label. None: nothing watched.
    watched: WatchedBlock | None = None


@dataclass(frozen=True, slots=True)
class WatchedBlock:
    """``Block(index)`` and the watched farmers' ``Pail(farmer, index)``, read in one snapshot."""

    index: int
    block: BlockRecord | None
    pails: Mapping[str, PailRecord]  # farmer label -> pail; a farmer with no pail is absent


# ---------------------------------------------------------------- keys


def _contract_data_key(
    contract_id: str, key: xdr.SCVal, durability: xdr.ContractDataDurability
) -> xdr.LedgerKey:
    try:
        contract = Address(contract_id).to_xdr_sc_address()
    except Exception as exc:  # the SDK raises several types for a bad strkey
        raise ValueError(f"contract id {contract_id!r} is not a valid C... address: {exc}") from exc
    return xdr.LedgerKey(
        xdr.LedgerEntryType.CONTRACT_DATA,
        contract_data=xdr.LedgerKeyContractData(contract=contract, key=key, durability=durability),
    )


def instance_key(contract_id: str) -> xdr.LedgerKey:
    """The contract instance entry (holds FarmIndex, FarmBlock, FarmPaused)."""
    return _contract_data_key(
        contract_id,
        xdr.SCVal(xdr.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE),
        xdr.ContractDataDurability.PERSISTENT,
    )


def block_key(contract_id: str, index: int) -> xdr.LedgerKey:
    """TEMPORARY ``Block(index)``."""
    return _contract_data_key(
        contract_id,
        scval.to_vec([scval.to_symbol("Block"), scval.to_uint32(index)]),
        xdr.ContractDataDurability.TEMPORARY,
    )


def pail_key(contract_id: str, farmer: str, index: int) -> xdr.LedgerKey:
    """TEMPORARY ``Pail(farmer, index)``; ``farmer`` is a G... or C... strkey."""
    return _contract_data_key(
        contract_id,
        scval.to_vec([scval.to_symbol("Pail"), scval.to_address(farmer), scval.to_uint32(index)]),
        xdr.ContractDataDurability.TEMPORARY,
    )


# ---------------------------------------------------------------- decoding


def _type_name(val: xdr.SCVal) -> str:
    return val.type.name if isinstance(val.type, xdr.SCValType) else str(val.type)


def _expect(val: xdr.SCVal, kind: xdr.SCValType, where: str) -> None:
    if val.type != kind:
        raise ChainDataError(f"{where}: expected {kind.name}, got {_type_name(val)}")


def _u32(val: xdr.SCVal, where: str) -> int:
    _expect(val, xdr.SCValType.SCV_U32, where)
    assert val.u32 is not None
    return val.u32.uint32


def _u64(val: xdr.SCVal, where: str) -> int:
    _expect(val, xdr.SCValType.SCV_U64, where)
    assert val.u64 is not None
    return val.u64.uint64


def _i128(val: xdr.SCVal, where: str) -> int:
    _expect(val, xdr.SCValType.SCV_I128, where)
    return scval.from_int128(val)


def _bool(val: xdr.SCVal, where: str) -> bool:
    _expect(val, xdr.SCValType.SCV_BOOL, where)
    assert val.b is not None
    return val.b


def _bytes32(val: xdr.SCVal, where: str) -> bytes:
    _expect(val, xdr.SCValType.SCV_BYTES, where)
    assert val.bytes is not None
    raw = bytes(val.bytes.sc_bytes)
    if len(raw) != 32:
        raise ChainDataError(f"{where}: expected 32 bytes (BytesN<32>), got {len(raw)}")
    return raw


def _opt_u32(val: xdr.SCVal, where: str) -> int | None:
    # Option<u32> is Void for None, the bare value for Some.
    if val.type == xdr.SCValType.SCV_VOID:
        return None
    return _u32(val, where)


def _symbol(val: xdr.SCVal, where: str) -> str:
    _expect(val, xdr.SCValType.SCV_SYMBOL, where)
    assert val.sym is not None
    try:
        return val.sym.sc_symbol.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ChainDataError(f"{where}: symbol is not ASCII") from exc


def _struct_fields(val: xdr.SCVal, where: str) -> dict[str, xdr.SCVal]:
    """A ``#[contracttype]`` struct: an ScMap keyed by field-name Symbols."""
    _expect(val, xdr.SCValType.SCV_MAP, where)
    fields: dict[str, xdr.SCVal] = {}
    for entry in val.map.sc_map if val.map is not None else []:
        fields[_symbol(entry.key, f"{where} field name")] = entry.val
    return fields


def _field(fields: Mapping[str, xdr.SCVal], name: str, where: str) -> xdr.SCVal:
    try:
        return fields[name]
    except KeyError:
        raise ChainDataError(f"{where}: field {name!r} missing (has {sorted(fields)})") from None


def decode_block(val: xdr.SCVal, where: str) -> BlockRecord:
    """A ``Block`` struct; ``where`` names it in error messages (e.g. ``"Block(12)"``)."""
    f = _struct_fields(val, where)

    def g(name: str) -> tuple[xdr.SCVal, str]:
        return _field(f, name, where), f"{where}.{name}"

    return BlockRecord(
        timestamp=_u64(*g("timestamp")),
        min_gap=_u32(*g("min_gap")),
        min_stake=_i128(*g("min_stake")),
        min_zeros=_u32(*g("min_zeros")),
        max_gap=_u32(*g("max_gap")),
        max_stake=_i128(*g("max_stake")),
        max_zeros=_u32(*g("max_zeros")),
        entropy=_bytes32(*g("entropy")),
        staked_total=_i128(*g("staked_total")),
        normalized_total=_i128(*g("normalized_total")),
    )


def decode_pail(val: xdr.SCVal, where: str) -> PailRecord:
    """A ``Pail`` struct."""
    f = _struct_fields(val, where)
    return PailRecord(
        sequence=_u32(_field(f, "sequence", where), f"{where}.sequence"),
        gap=_opt_u32(_field(f, "gap", where), f"{where}.gap"),
        stake=_i128(_field(f, "stake", where), f"{where}.stake"),
        zeros=_opt_u32(_field(f, "zeros", where), f"{where}.zeros"),
    )


def _contract_data(data: xdr.LedgerEntryData, where: str) -> xdr.ContractDataEntry:
    if data.type != xdr.LedgerEntryType.CONTRACT_DATA or data.contract_data is None:
        raise ChainDataError(f"{where}: expected a CONTRACT_DATA ledger entry, got {data.type.name}")
    return data.contract_data


def decode_instance(data: xdr.LedgerEntryData) -> FarmState:
    """Walk the instance storage map (``to_native`` cannot: its keys are vectors)."""
    where = "contract instance"
    val = _contract_data(data, where).val
    _expect(val, xdr.SCValType.SCV_CONTRACT_INSTANCE, where)
    assert val.instance is not None
    storage = val.instance.storage.sc_map if val.instance.storage is not None else []
    index = 0  # the contract reads an absent FarmIndex as 0
    paused = False  # ... and an absent FarmPaused as false
    farm_block: BlockRecord | None = None
    for entry in storage:
        key = entry.key
        # Other kinds of keys are not the farm's Storage enum: not ours to judge.
        if key.type != xdr.SCValType.SCV_VEC or key.vec is None or not key.vec.sc_vec:
            continue
        head = key.vec.sc_vec[0]
        if head.type != xdr.SCValType.SCV_SYMBOL:
            continue
        name = _symbol(head, "instance storage key")
        if name not in ("FarmIndex", "FarmBlock", "FarmPaused"):
            continue
        if len(key.vec.sc_vec) != 1:
            raise ChainDataError(
                f"instance storage key {name}: expected a unit variant [Symbol], "
                f"got {len(key.vec.sc_vec)} items"
            )
        if name == "FarmIndex":
            index = _u32(entry.val, "instance storage FarmIndex")
        elif name == "FarmPaused":
            paused = _bool(entry.val, "instance storage FarmPaused")
        else:
            farm_block = decode_block(entry.val, "instance storage FarmBlock")
    return FarmState(index=index, farm_block=farm_block, paused=paused)


def decode_block_entry(data: xdr.LedgerEntryData, index: int) -> BlockRecord:
    where = f"Block({index})"
    return decode_block(_contract_data(data, where).val, where)


def decode_pail_entry(data: xdr.LedgerEntryData, farmer: str, index: int) -> PailRecord:
    where = f"Pail({farmer}, {index})"
    return decode_pail(_contract_data(data, where).val, where)


def entries_by_key(entries: Iterable[LedgerEntryResult] | None) -> dict[bytes, xdr.LedgerEntryData]:
    """Index a ``getLedgerEntries`` answer by raw key XDR (entries may come in any order)."""
    found: dict[bytes, xdr.LedgerEntryData] = {}
    for entry in entries or ():
        try:
            key = base64.b64decode(entry.key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ChainDataError(f"getLedgerEntries: entry key is not base64: {entry.key[:40]!r}") from exc
        try:
            found[key] = xdr.LedgerEntryData.from_xdr(entry.xdr)
        except Exception as exc:  # the XDR unpacker raises assorted types on garbage
            raise ChainDataError(f"getLedgerEntries: entry xdr is not LedgerEntryData: {exc}") from exc
    return found


# ---------------------------------------------------------------- the read path


MAX_KEYS_PER_REQUEST = 200
"""Soroban RPC's default cap on the keys of one ``getLedgerEntries`` (``--max-ledger-entries``)."""


class LedgerSource(Protocol):
    """What the reader needs from ``SorobanServerAsync``."""

    async def get_ledger_entries(self, keys: list[xdr.LedgerKey]) -> GetLedgerEntriesResponse: ...


class FarmReader:
    """Reads ``ChainSnapshot``s of one farm contract; raises ``RpcUnavailable`` (``RpcTimeout``,
    ``RpcErrorReply`` for those kinds) or ``ChainDataError``."""

    def __init__(self, server: LedgerSource, contract_id: str) -> None:
        self._server = server
        self.contract_id = contract_id
        self._instance_key = instance_key(contract_id)
        self._instance_key_bytes = self._instance_key.to_xdr_bytes()
        # The FarmIndex of the previous successful read: it decides which Block keys ride along
        # with the instance in the next call. None until the first read.
        self._last_index: int | None = None
        # The block whose pails are read with every call and the farmers to read them for
        # (label, G... address), set by watch(); None: no pails read.
        self._watch: tuple[int, tuple[tuple[str, str], ...]] | None = None

    def watch(self, index: int, farmers: Iterable[tuple[str, str]]) -> None:
        """Read ``Pail(address, index)`` for each ``(label, address)`` (and ``Block(index)``) with
        every following read, until the next ``watch``; no farmers: stop reading pails."""
        listed = tuple(farmers)
        self._watch = (index, listed) if listed else None

    async def _get(self, keys: list[xdr.LedgerKey]) -> GetLedgerEntriesResponse:
        try:
            return await self._server.get_ledger_entries(keys)
        except SorobanRpcErrorResponse as exc:
            raise RpcErrorReply(f"getLedgerEntries: JSON-RPC error {exc.code}: {exc.message}") from exc
        except BaseHorizonError as exc:  # HTTP 4xx (429 included) / 5xx with a non-JSON-RPC body
            raise RpcUnavailable(f"getLedgerEntries: HTTP {exc.status}: {exc.message[:200]}") from exc
        except SdkConnectionError as exc:
            raise RpcUnavailable(f"getLedgerEntries: connection failed: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise RpcUnavailable(f"getLedgerEntries: connection failed: {exc}") from exc
        except TimeoutError as exc:
            raise RpcTimeout("getLedgerEntries: timed out") from exc
        except ValueError as exc:  # JSON decode error or pydantic validation of the result
            raise ChainDataError(f"getLedgerEntries: answer is not a valid result: {exc}") from exc

    async def read_pails(
        self, index: int, farmers: Iterable[tuple[str, str]]
    ) -> tuple[dict[str, PailRecord], int]:
        """``Pail(address, index)`` of each ``(label, address)``, read now (once, not watched):
        by label, a farmer without a pail absent; and the ledger the read reflects (the lowest
        ``latestLedger`` of its requests; 0 when nothing was read). What settles a Backend call
        whose answer was lost."""
        keyed = [(label, pail_key(self.contract_id, addr, index)) for label, addr in farmers]
        found: dict[bytes, xdr.LedgerEntryData] = {}
        ledgers: list[int] = []
        for start in range(0, len(keyed), MAX_KEYS_PER_REQUEST):
            resp = await self._get([k for _, k in keyed[start : start + MAX_KEYS_PER_REQUEST]])
            found.update(entries_by_key(resp.entries))
            ledgers.append(resp.latest_ledger)
        pails: dict[str, PailRecord] = {}
        for label, key in keyed:
            data = found.get(key.to_xdr_bytes())
            if data is not None:
                pails[label] = decode_pail_entry(data, label, index)
        return pails, min(ledgers, default=0)

    async def read(self) -> ChainSnapshot:
        last = self._last_index
        keys = [self._instance_key]
        if last is not None:
            keys += [block_key(self.contract_id, last), block_key(self.contract_id, last + 1)]
        watch = self._watch
        pail_keys: list[tuple[str, xdr.LedgerKey]] = []
        if watch is not None:
            windex, farmers = watch
            if last is None or windex not in (last, last + 1):
                keys.append(block_key(self.contract_id, windex))
            pail_keys = [(label, pail_key(self.contract_id, addr, windex)) for label, addr in farmers]
        room = MAX_KEYS_PER_REQUEST - len(keys)
        first, rest = pail_keys[:room], pail_keys[room:]
        resp = await self._get(keys + [k for _, k in first])
        found = entries_by_key(resp.entries)
        extra = 0
        for start in range(0, len(rest), MAX_KEYS_PER_REQUEST):
            more = await self._get([k for _, k in rest[start : start + MAX_KEYS_PER_REQUEST]])
            found.update(entries_by_key(more.entries))
            extra += 1
        inst = found.get(self._instance_key_bytes)
        if inst is None:
            raise ChainDataError(
                f"contract {self.contract_id} has no instance entry (wrong contract id or network?)"
            )
        state = decode_instance(inst)
        calls = 1
        want = block_key(self.contract_id, state.index).to_xdr_bytes()
        if last is None or state.index not in (last, last + 1):
            resp2 = await self._get([block_key(self.contract_id, state.index)])
            found.update(entries_by_key(resp2.entries))
            calls = 2
        data = found.get(want)
        block = decode_block_entry(data, state.index) if data is not None else None
        watched: WatchedBlock | None = None
        if watch is not None:
            windex = watch[0]
            if windex == state.index:
                wblock = block
            else:
                wdata = found.get(block_key(self.contract_id, windex).to_xdr_bytes())
                wblock = decode_block_entry(wdata, windex) if wdata is not None else None
            pails: dict[str, PailRecord] = {}
            for label, key in pail_keys:
                pdata = found.get(key.to_xdr_bytes())
                if pdata is not None:
                    pails[label] = decode_pail_entry(pdata, label, windex)
            watched = WatchedBlock(windex, wblock, pails)
        self._last_index = state.index
        return ChainSnapshot(
            state=state, block=block, ledger=resp.latest_ledger, rpc_calls=calls + extra, watched=watched
        )
