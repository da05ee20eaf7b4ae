"""The reference Phase-1 Backend on the devnet: custodial farmers, plant / work / harvest.

Same paths, camelCase shapes and error body (``{error, message, timestamp}``) as the real
Backend (KALE.md). It holds each farmer's custodial keypair (the secret never leaves this
process) and calls the farm contract model directly, as the real Backend would sign and
submit Soroban transactions. Responses carry extra fields the Pooler may use: ``results``,
one entry per farmer, with the contract's error when a farmer's call failed; ``/plant`` takes
an extra request field, ``farmerIds``: plant only these (of the pooler's active farmers).

Every request is validated in full before anything is applied, and a handler runs without
awaiting between its contract calls, so a batch is never half-applied or interleaved with
another request.

Fault injection (:class:`BackendFaults`) sits in front of every route except ``/_devnet/*``:
added latency, a share of 5xx/429 answers, and an outage window answered with 503 or with a
dropped connection. Tests mutate the object in-process, or ``POST /_devnet/faults``.
"""

from __future__ import annotations

import asyncio
import http
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson
from aiohttp import web
from stellar_sdk import Keypair

from pooler.devnet.contract import FarmContract
from pooler.devnet.serve import LoopbackServer
from pooler.errors import ContractError
from protocol.work import MAX_INDEX, MAX_NONCE, address_bytes, count_zeros, work_hash

VERSION = "devnet-1"
MAX_SUBMISSIONS = 10_000  # one /work batch; bounds the time a request holds the loop
OutageMode = Literal["503", "refuse"]


# ---------------------------------------------------------------- fault injection


@dataclass
class BackendFaults:
    """What goes wrong, changeable at any time (tests mutate it; ``POST /_devnet/faults``).

    ``outage`` is a ``(start, end)`` window in the Backend's clock; inside it every request is
    answered with 503 (``outage_mode="503"``) or its connection is dropped (``"refuse"``).
    """

    latency: float = 0.0  # seconds added before every answer
    error_rate: float = 0.0  # share of requests answered with error_status instead
    error_status: int = 503  # 500, 502, 503 or 429
    outage: tuple[float, float] | None = None
    outage_mode: OutageMode = "503"
    seed: int | None = None  # makes the error_rate draws repeatable
    rng: random.Random = field(init=False, repr=False)  # the draws; reseeded with seed

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def outage_for(self, seconds: float, now: float, mode: OutageMode = "503") -> None:
        """Start an outage now for ``seconds``."""
        self.outage = (now, now + seconds)
        self.outage_mode = mode

    def in_outage(self, now: float) -> bool:
        return self.outage is not None and self.outage[0] <= now < self.outage[1]

    def draw_error(self) -> bool:
        return self.error_rate > 0 and self.rng.random() < self.error_rate

    def clear(self) -> None:
        self.latency, self.error_rate, self.error_status, self.outage = 0.0, 0.0, 503, None

    def update(self, body: dict[str, Any], now: float) -> None:
        """Apply a ``POST /_devnet/faults`` body (validated in full first)."""
        allowed = {"latencyMs", "errorRate", "errorStatus", "outageSeconds", "outageMode", "seed", "clear"}
        unknown = set(body) - allowed
        if unknown:
            raise web.HTTPBadRequest(text=f"unknown fault fields {sorted(unknown)}; known: {sorted(allowed)}")
        latency = _number(body, "latencyMs", 0, 60_000, required=False)
        rate = _number(body, "errorRate", 0, 1, required=False)
        status = _integer(body, "errorStatus", 400, 599, required=False)
        if status is not None and status not in (429, 500, 502, 503, 504):
            raise web.HTTPBadRequest(text="errorStatus must be one of 429, 500, 502, 503, 504")
        outage = _number(body, "outageSeconds", 0, 86_400, required=False)
        mode = body.get("outageMode", self.outage_mode)
        if mode not in ("503", "refuse"):
            raise web.HTTPBadRequest(text='outageMode must be "503" or "refuse"')
        seed = _integer(body, "seed", 0, 2**63, required=False)
        if body.get("clear", False) is True:
            self.clear()
        if latency is not None:
            self.latency = latency / 1000
        if rate is not None:
            self.error_rate = rate
        if status is not None:
            self.error_status = status
        self.outage_mode = mode
        if outage is not None:
            self.outage = (now, now + outage) if outage > 0 else None
        if seed is not None:
            self.seed = seed
            self.rng = random.Random(seed)

    def as_json(self, now: float) -> dict[str, Any]:
        return {
            "latencyMs": round(self.latency * 1000, 3),
            "errorRate": self.error_rate,
            "errorStatus": self.error_status,
            "outageMode": self.outage_mode,
            "outageRemainingSeconds": max(self.outage[1] - now, 0.0)
            if self.in_outage(now) and self.outage
            else 0,
            "seed": self.seed,
        }


# ---------------------------------------------------------------- validation


class _Fenced(Exception):
    """A call carried a fencing token older than the newest seen for its pool."""


def _missing(name: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"{name} is required")


def _integer(body: dict[str, Any], name: str, lo: int, hi: int, *, required: bool = True) -> int | None:
    if name not in body or body[name] is None:
        if required:
            raise _missing(name)
        return None
    v = body[name]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise web.HTTPBadRequest(text=f"{name} must be an integer in {lo}..{hi}, got {v!r:.60}")
    return v


def _required_int(body: dict[str, Any], name: str, lo: int, hi: int) -> int:
    v = _integer(body, name, lo, hi)
    assert v is not None
    return v


def _number(body: dict[str, Any], name: str, lo: float, hi: float, *, required: bool = True) -> float | None:
    if name not in body or body[name] is None:
        if required:
            raise _missing(name)
        return None
    v = body[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise web.HTTPBadRequest(text=f"{name} must be a number in {lo}..{hi}, got {v!r:.60}")
    return float(v)


def _string(body: dict[str, Any], name: str, *, max_len: int = 200) -> str:
    v = body.get(name)
    if v is None:
        raise _missing(name)
    if not isinstance(v, str) or not v.strip() or len(v) > max_len:
        raise web.HTTPBadRequest(text=f"{name} must be a non-empty string of at most {max_len} characters")
    return v


def _nonce(v: Any, where: str) -> int:
    if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 20:
        n = int(v)
    elif isinstance(v, int) and not isinstance(v, bool):
        n = v
    else:
        raise web.HTTPBadRequest(text=f"{where}.nonce must be a decimal string (u64), got {v!r:.60}")
    if not 0 <= n <= MAX_NONCE:
        raise web.HTTPBadRequest(text=f"{where}.nonce {n} is outside 0..{MAX_NONCE}")
    return n


# ---------------------------------------------------------------- state


@dataclass
class Farmer:
    """A registered farmer and its custodial wallet."""

    farmer_id: str
    pooler_id: str
    keypair: Keypair  # custodial: the secret stays in this object, never serialised
    stake_percentage: float
    metadata: dict[str, Any] | None
    registered_at: str
    status: str = "active"
    total_earnings: int = 0  # stroops harvested through this Backend

    @property
    def address(self) -> str:
        return str(self.keypair.public_key)


@dataclass(frozen=True)
class _Submission:
    farmer: Farmer
    nonce: int
    hash: bytes | None
    index: int  # position in the request, for messages


def _contract_error(e: ContractError) -> dict[str, Any]:
    return {"error": e.name, "errorCode": e.number, "message": str(e)}


class Backend:
    """The Phase-1 Backend over one :class:`FarmContract` (serve it with :meth:`server`)."""

    def __init__(
        self,
        contract: FarmContract,
        *,
        faults: BackendFaults | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.contract = contract
        self.faults = faults if faults is not None else BackendFaults()
        self._sleep = sleep  # injectable so latency faults cost no real time in tests
        self.farmers: dict[str, Farmer] = {}  # by farmerId, in registration order
        self.started_at = contract.now()  # for /health uptime
        # poolerId -> highest X-Fencing-Token seen on plant/work/harvest: an older one is refused,
        # so a deposed group leader's delayed call can never act after its successor's
        self.fences: dict[str, int] = {}
        self.fenced = 0  # calls refused for an older token

    # ------------------------------------------------------------ helpers

    def _timestamp(self) -> str:
        return (
            datetime.fromtimestamp(self.contract.now(), UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    def _error(self, status: int, message: str, error: str | None = None) -> web.Response:
        """``{error, message, timestamp}``; ``error`` is the HTTP phrase unless a kind is given."""
        kind = error or http.HTTPStatus(status).phrase
        body = {"error": kind, "message": message, "timestamp": self._timestamp()}
        headers = {"Retry-After": "1"} if status in (429, 503) else None
        return web.Response(
            status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
        )

    def _json(self, body: dict[str, Any], status: int = 200) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise web.HTTPBadRequest(text=f"body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return body

    def _farmers_of(self, pooler_id: str) -> list[Farmer]:
        return [f for f in self.farmers.values() if f.pooler_id == pooler_id]

    def farmer_json(self, f: Farmer) -> dict[str, Any]:
        return {
            "farmerId": f.farmer_id,
            "custodialWallet": f.address,
            "poolerId": f.pooler_id,
            "stakePercentage": f.stake_percentage,
            "status": f.status,
            "currentBalance": str(self.contract.balance(f.address)),
            "totalEarnings": str(f.total_earnings),
            "registeredAt": f.registered_at,
        }

    # ------------------------------------------------------------ middleware

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every error leaves as ``{error, message, timestamp}``; faults apply outside /_devnet."""
        try:
            if not request.path.startswith("/_devnet/"):
                faulted = await self._apply_faults(request)
                if faulted is not None:
                    return faulted
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            message = e.text if e.text and not e.text.startswith(f"{e.status}:") else e.reason
            if e.status == 404 and message == e.reason:
                message = f"no route {request.method} {request.path}"
            return self._error(e.status, message or e.reason)
        except _Fenced as e:
            return self._error(409, str(e), error="fenced")
        except ContractError as e:  # should be handled per farmer; a stray one is still a clean 409
            return self._error(409, str(e))

    async def _apply_faults(self, request: web.Request) -> web.StreamResponse | None:
        f = self.faults
        if f.latency > 0:
            await self._sleep(f.latency)
        if f.in_outage(self.contract.now()):
            if f.outage_mode == "refuse":
                if request.transport is not None:
                    request.transport.abort()  # the client sees its connection dropped, no answer
                raise asyncio.CancelledError  # aiohttp ends the handler of a lost connection quietly
            return self._error(503, "the Backend is in an injected outage")
        if f.draw_error():
            return self._error(f.error_status, f"injected fault: HTTP {f.error_status}")
        return None

    def _check_fence(self, request: web.Request, pooler_id: str) -> None:
        """Refuse (409, ``error: "fenced"``) a call whose fencing token is older than the newest
        seen for ``pooler_id``. Calls without the header (a single Pooler) are not fenced."""
        raw = request.headers.get("X-Fencing-Token")
        if raw is None:
            return
        if not raw.isdigit() or len(raw) > 19:
            raise web.HTTPBadRequest(text=f"X-Fencing-Token must be a decimal integer, got {raw[:40]!r}")
        token = int(raw)
        newest = self.fences.get(pooler_id, 0)
        if token < newest:
            self.fenced += 1
            raise _Fenced(
                f"fenced: token {token} of pooler {pooler_id!r} is older than {newest};"
                " a newer leader of this pool has called since"
            )
        self.fences[pooler_id] = token

    # ------------------------------------------------------------ routes

    async def register(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        pooler_id = _string(body, "poolerId")
        pct = _number(body, "stakePercentage", 0, 1)
        assert pct is not None
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise web.HTTPBadRequest(text="metadata must be an object when given")
        farmer = Farmer(
            farmer_id=str(uuid.uuid4()),
            pooler_id=pooler_id,
            keypair=Keypair.random(),
            stake_percentage=pct,
            metadata=metadata,
            registered_at=self._timestamp(),
        )
        self.contract.fund(farmer.address)  # the devnet faucet: a balance to stake from
        self.farmers[farmer.farmer_id] = farmer
        return self._json(self.farmer_json(farmer), status=201)

    async def get_farmer(self, request: web.Request) -> web.Response:
        farmer = self.farmers.get(request.match_info["farmer_id"])
        if farmer is None:
            raise web.HTTPNotFound(text=f"unknown farmerId {request.match_info['farmer_id']!r}")
        return self._json(self.farmer_json(farmer))

    async def plant(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = await self._body(request)
        block_index = _required_int(body, "blockIndex", 0, MAX_INDEX)
        pooler_id = _string(body, "poolerId")
        capacity = _required_int(body, "maxFarmersCapacity", 0, 1_000_000)
        named = self._named_farmers(body, pooler_id)  # all validated before any plant
        self._check_fence(request, pooler_id)
        chosen = [
            f
            for f in self._farmers_of(pooler_id)
            if f.status == "active" and (named is None or f.farmer_id in named)
        ][:capacity]
        results: list[dict[str, Any]] = []
        total = 0
        for f in chosen:
            stake = int(Decimal(repr(f.stake_percentage)) * self.contract.balance(f.address))
            r: dict[str, Any] = {"farmerId": f.farmer_id, "custodialWallet": f.address, "stake": str(stake)}
            try:
                r["blockIndex"] = self.contract.plant(f.address, stake)
                r["ok"] = True
                total += stake
            except ContractError as e:
                r.update(ok=False, **_contract_error(e))
            results.append(r)
        ok = sum(1 for r in results if r["ok"])
        return self._json(
            {
                "blockIndex": block_index,
                "poolerId": pooler_id,
                "totalRequested": len(chosen),
                "successfulPlants": ok,
                "failedPlants": len(chosen) - ok,
                "totalStaked": str(total),
                "processingTimeMs": round((time.perf_counter() - started) * 1000, 3),
                "timestamp": self._timestamp(),
                "results": results,
            }
        )

    def _named_farmers(self, body: dict[str, Any], pooler_id: str) -> set[str] | None:
        """``farmerIds`` of a ``/plant`` (an extra field): plant only these; None when absent."""
        raw = body.get("farmerIds")
        if raw is None:
            return None
        if not isinstance(raw, list) or len(raw) > 1_000_000:
            raise web.HTTPBadRequest(text="farmerIds must be an array of farmer ids (strings) when given")
        for i, fid in enumerate(raw):
            where = f"farmerIds[{i}]"
            if not isinstance(fid, str) or not fid:
                raise web.HTTPBadRequest(text=f"{where} must be a non-empty string (a farmerId)")
            farmer = self.farmers.get(fid)
            if farmer is None:
                raise web.HTTPNotFound(text=f"{where} {fid!r} is not a registered farmer")
            if farmer.pooler_id != pooler_id:
                raise web.HTTPForbidden(text=f"{where} {fid!r} belongs to another pooler")
        return set(raw)

    def _submissions(self, body: dict[str, Any], pooler_id: str) -> list[_Submission]:
        raw = body.get("submissions")
        if not isinstance(raw, list):
            raise web.HTTPBadRequest(text="submissions must be an array of {farmerId, nonce, timestamp}")
        if len(raw) > MAX_SUBMISSIONS:
            raise web.HTTPBadRequest(
                text=f"at most {MAX_SUBMISSIONS} submissions per request, got {len(raw)}"
            )
        out = []
        for i, s in enumerate(raw):
            where = f"submissions[{i}]"
            if not isinstance(s, dict):
                raise web.HTTPBadRequest(text=f"{where} must be an object")
            farmer_id = s.get("farmerId")
            if not isinstance(farmer_id, str) or not farmer_id:
                raise web.HTTPBadRequest(text=f"{where}.farmerId must be a non-empty string")
            farmer = self.farmers.get(farmer_id)
            if farmer is None:
                raise web.HTTPNotFound(text=f"{where}.farmerId {farmer_id!r} is not a registered farmer")
            if farmer.pooler_id != pooler_id:
                raise web.HTTPForbidden(text=f"{where}.farmerId {farmer_id!r} belongs to another pooler")
            nonce = _nonce(s.get("nonce"), where)
            ts = s.get("timestamp")
            if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float))):
                raise web.HTTPBadRequest(text=f"{where}.timestamp must be a number (ms since epoch)")
            digest: bytes | None = None
            if s.get("hash") is not None:
                h = s["hash"]
                try:
                    digest = bytes.fromhex(h) if isinstance(h, str) else b""
                except ValueError:
                    digest = b""
                if len(digest) != 32:
                    raise web.HTTPBadRequest(text=f"{where}.hash must be 64 hex digits")
            zeros = s.get("zeros")
            if zeros is not None and (
                isinstance(zeros, bool) or not isinstance(zeros, int) or not 0 <= zeros <= 64
            ):
                raise web.HTTPBadRequest(text=f"{where}.zeros must be an integer in 0..64")
            out.append(_Submission(farmer, nonce, digest, i))
        return out

    async def work(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = await self._body(request)
        block_index = _required_int(body, "blockIndex", 0, MAX_INDEX)
        pooler_id = _string(body, "poolerId")
        submissions = self._submissions(body, pooler_id)  # all validated before any call
        self._check_fence(request, pooler_id)
        block = self.contract.get_block(block_index)
        results: list[dict[str, Any]] = []
        for s in submissions:
            r: dict[str, Any] = {"farmerId": s.farmer.farmer_id, "nonce": str(s.nonce)}
            results.append(r)
            if block is None:
                r.update(
                    ok=False,
                    error="BlockMissing",
                    errorCode=11,
                    message=f"Block({block_index}) is not on chain",
                )
                continue
            digest = work_hash(block_index, s.nonce, block.entropy, address_bytes(s.farmer.address))
            r.update(hash=digest.hex(), zeros=count_zeros(digest))
            if s.hash is not None and s.hash != digest:
                r.update(
                    ok=False, error="HashMismatch", message="the given hash is not the hash of this nonce"
                )
                continue
            try:
                r["gap"] = self.contract.work(s.farmer.address, digest, s.nonce)
                r["ok"] = True
            except ContractError as e:
                r.update(ok=False, **_contract_error(e))
        valid = sum(1 for r in results if r["ok"])
        return self._json(
            {
                "blockIndex": block_index,
                "poolerId": pooler_id,
                "totalSubmissions": len(submissions),
                "validNonces": valid,
                "invalidNonces": len(submissions) - valid,
                "submittedWork": valid,
                "totalRewards": "0",
                "processingTimeMs": round((time.perf_counter() - started) * 1000, 3),
                "timestamp": self._timestamp(),
                "results": results,
            }
        )

    async def harvest(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = await self._body(request)
        block_index = _required_int(body, "blockIndex", 0, MAX_INDEX)
        pooler_id = _string(body, "poolerId")
        self._check_fence(request, pooler_id)
        results: list[dict[str, Any]] = []
        total = 0
        for f in self._farmers_of(pooler_id):
            pail = self.contract.get_pail(f.address, block_index)
            if pail is None:
                continue  # did not plant this block (or already harvested): not eligible
            r: dict[str, Any] = {"farmerId": f.farmer_id, "stake": str(pail.stake)}
            try:
                reward = self.contract.harvest(f.address, block_index)
                f.total_earnings += reward
                total += reward
                r.update(ok=True, reward=str(reward))
            except ContractError as e:
                r.update(ok=False, reward="0", **_contract_error(e))
            results.append(r)
        ok = sum(1 for r in results if r["ok"])
        return self._json(
            {
                "blockIndex": block_index,
                "poolerId": pooler_id,
                "totalEligible": len(results),
                "successfulHarvests": ok,
                "failedHarvests": len(results) - ok,
                "totalRewards": str(total),
                "processingTimeMs": round((time.perf_counter() - started) * 1000, 3),
                "timestamp": self._timestamp(),
                "results": results,
            }
        )

    async def health(self, request: web.Request) -> web.Response:
        return self._json(
            {
                "status": "healthy",
                "timestamp": self._timestamp(),
                "version": VERSION,
                "services": {
                    "plant": "healthy",
                    "work": "healthy",
                    "harvest": "healthy",
                    "wallet": "healthy",
                },
                "uptime": round(self.contract.now() - self.started_at, 3),
            }
        )

    async def get_faults(self, request: web.Request) -> web.Response:
        return self._json(self.faults.as_json(self.contract.now()))

    async def set_faults(self, request: web.Request) -> web.Response:
        self.faults.update(await self._body(request), self.contract.now())
        return self._json(self.faults.as_json(self.contract.now()))

    # ------------------------------------------------------------ serving

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=4 * 1024 * 1024)
        app.router.add_post("/farmers/register", self.register)
        app.router.add_get("/farmers/{farmer_id}", self.get_farmer)
        app.router.add_post("/plant", self.plant)
        app.router.add_post("/work", self.work)
        app.router.add_post("/harvest", self.harvest)
        app.router.add_get("/health", self.health)
        app.router.add_get("/_devnet/faults", self.get_faults)
        app.router.add_post("/_devnet/faults", self.set_faults)
        return app

    def server(self, *, host: str = "127.0.0.1", port: int = 0) -> LoopbackServer:
        return LoopbackServer(self.app(), host=host, port=port)


__all__ = ["Backend", "BackendFaults", "Farmer"]
