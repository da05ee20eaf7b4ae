"""The devnet's Soroban JSON-RPC 2.0 server, answering from the farm contract model.

Methods: ``getHealth``, ``getNetwork``, ``getLatestLedger``, ``getLedgerEntries`` (with real
XDR from :mod:`pooler.devnet.ledger`). Result fields are the ones stellar-sdk 16 requires.
Errors are JSON-RPC error objects with the standard codes: -32700 parse error, -32600
invalid request, -32601 unknown method, -32602 invalid params. The server is stateless
apart from the model: every answer reads the model at the moment of the request.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from aiohttp import web
from stellar_sdk import xdr as x

from pooler.devnet.contract import FarmContract
from pooler.devnet.ledger import (
    CONTRACT_ID,
    NETWORK_PASSPHRASE,
    PROTOCOL_VERSION,
    ledger_close_meta,
    ledger_hash,
    ledger_header,
    lookup,
)
from pooler.devnet.serve import LoopbackServer

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
MAX_KEYS = 200  # Soroban RPC's limit on getLedgerEntries keys
RETENTION_WINDOW = 17_280  # ledgers of history a default RPC keeps (one day)


class RpcError(Exception):
    """A JSON-RPC error object to send back."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _params_object(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "params must be an object")
    return params


class SorobanRpc:
    """JSON-RPC handlers over one :class:`FarmContract` (call :meth:`app` to serve them)."""

    def __init__(
        self,
        contract: FarmContract,
        *,
        contract_id: str = CONTRACT_ID,
        passphrase: str = NETWORK_PASSPHRASE,
    ) -> None:
        self.contract = contract
        self.contract_id = contract_id
        self.passphrase = passphrase

    # ------------------------------------------------------------ methods

    def get_health(self, params: Any) -> dict[str, Any]:
        _params_object(params)
        latest = self.contract.ledger_sequence()
        oldest = max(self.contract.genesis_sequence, latest - RETENTION_WINDOW + 1)
        return {
            "status": "healthy",
            "latestLedger": latest,
            "oldestLedger": oldest,
            "ledgerRetentionWindow": RETENTION_WINDOW,
        }

    def get_network(self, params: Any) -> dict[str, Any]:
        _params_object(params)
        return {"passphrase": self.passphrase, "protocolVersion": PROTOCOL_VERSION}

    def get_latest_ledger(self, params: Any) -> dict[str, Any]:
        _params_object(params)
        seq = self.contract.ledger_sequence()
        return {
            "id": ledger_hash(seq).hex(),
            "protocolVersion": PROTOCOL_VERSION,
            "sequence": seq,
            "closeTime": str(self.contract.ledger_close_time(seq)),
            "headerXdr": ledger_header(self.contract, seq).to_xdr(),
            "metadataXdr": ledger_close_meta(self.contract, seq).to_xdr(),
        }

    def get_ledger_entries(self, params: Any) -> dict[str, Any]:
        p = _params_object(params)
        fmt = p.get("xdrFormat")
        if fmt not in (None, "base64"):
            raise RpcError(INVALID_PARAMS, f"xdrFormat {fmt!r} is not supported by the devnet (use base64)")
        keys = p.get("keys")
        if not isinstance(keys, list) or not keys:
            raise RpcError(INVALID_PARAMS, "keys must be a non-empty array of base64 LedgerKey XDR strings")
        if len(keys) > MAX_KEYS:
            raise RpcError(INVALID_PARAMS, f"key count ({len(keys)}) exceeds maximum supported ({MAX_KEYS})")
        decoded: list[x.LedgerKey] = []
        for i, raw in enumerate(keys):
            if not isinstance(raw, str):
                raise RpcError(INVALID_PARAMS, f"keys[{i}] must be a base64 string")
            try:
                decoded.append(x.LedgerKey.from_xdr_bytes(base64.b64decode(raw, validate=True)))
            except Exception as e:  # the XDR decoder raises assorted types on garbage
                raise RpcError(INVALID_PARAMS, f"cannot unmarshal key value keys[{i}]: {e}") from None
        latest = self.contract.ledger_sequence()
        entries = []
        for key in decoded:
            found = lookup(self.contract, key, self.contract_id)
            if found is None:
                continue
            entries.append(
                {
                    "key": key.to_xdr(),
                    "xdr": found.data.to_xdr(),
                    "lastModifiedLedgerSeq": found.last_modified,
                    "liveUntilLedgerSeq": found.live_until,
                }
            )
        return {"entries": entries, "latestLedger": latest}

    # ------------------------------------------------------------ transport

    def dispatch(self, body: bytes) -> dict[str, Any]:
        """One JSON-RPC request body -> one response object (never raises)."""
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            return _error(None, PARSE_ERROR, f"parse error: {e}")
        if not isinstance(request, dict):
            return _error(
                None, INVALID_REQUEST, "the request must be a JSON object (batches are not supported)"
            )
        rid = request.get("id")
        if isinstance(rid, (dict, list)):
            return _error(None, INVALID_REQUEST, "id must be a string, a number or null")
        if request.get("jsonrpc") != "2.0":
            return _error(rid, INVALID_REQUEST, 'jsonrpc must be exactly "2.0"')
        method = request.get("method")
        if not isinstance(method, str):
            return _error(rid, INVALID_REQUEST, "method must be a string")
        handler = {
            "getHealth": self.get_health,
            "getNetwork": self.get_network,
            "getLatestLedger": self.get_latest_ledger,
            "getLedgerEntries": self.get_ledger_entries,
        }.get(method)
        if handler is None:
            return _error(rid, METHOD_NOT_FOUND, f"method {method!r} not found")
        try:
            return {"jsonrpc": "2.0", "id": rid, "result": handler(request.get("params"))}
        except RpcError as e:
            return _error(rid, e.code, e.message)

    async def handle(self, request: web.Request) -> web.Response:
        response = self.dispatch(await request.read())
        return web.Response(body=orjson.dumps(response), content_type="application/json")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self.handle)
        return app

    def server(self, *, host: str = "127.0.0.1", port: int = 0) -> LoopbackServer:
        return LoopbackServer(self.app(), host=host, port=port)


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}
