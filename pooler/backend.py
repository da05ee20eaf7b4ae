"""Client of the Phase-1 Backend (the service that holds the farmers' custodial keys).

The request and response shapes are the Phase-1 API's, camelCase, exactly:
``POST /farmers/register``, ``POST /plant``, ``POST /work``, ``POST /harvest``, ``GET /health``.

Retry policy (``call``): network errors, timeouts, 5xx and 429 are retried with exponential
backoff and jitter (a ``Retry-After`` header sets the minimum wait), at most ``retry_attempts``
attempts in all; any other 4xx is our request's fault and raises ``BackendRejected`` at once
(``BackendFenced`` for a 409 whose ``error`` is ``"fenced"``: a group's deposed leader).
Every call serves a phase of a block and carries that phase's ``deadline`` (unix seconds): each
attempt's timeout is ``min(timeout, time left)``, and a retry that could not start before the
deadline is not made (``BackendDeadline``, a ``BackendUnavailable``).

Unknown outcomes (``BackendUnknownOutcome``, never retried here): a 2xx whose body is not the
documented shape (not JSON, not an object, a field missing or mistyped, another block's answer),
and a POST that timed out or whose connection was cut once it could have been sent (the request
may have acted: repeating it blindly could act twice, giving up could forfeit a stake). The block
cycle reconciles those with the chain (``pooler/core/reconcile.py``). A POST that never reached
the Backend (connection refused, connect timeout) is retried like any network error.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, overload

import aiohttp
import orjson

from pooler.chain.backoff import Backoff
from pooler.core.backend_calls import (
    BackendOp,
    BackendReply,
    BackendRequest,
    FarmerOutcome,
    HarvestReply,
    HarvestRequest,
    PlantReply,
    PlantRequest,
    Submission,
    WorkReply,
    WorkRequest,
)
from pooler.errors import (
    BackendDeadline,
    BackendError,
    BackendFenced,
    BackendRejected,
    BackendUnavailable,
    BackendUnknownOutcome,
)

log = logging.getLogger("pooler.backend")

Observe = Callable[[str, float, str], None]
"""Metrics hook: ``(op, seconds, outcome)`` once per call; outcome is ok, rejected, unavailable,
unknown (sent, answer unreadable), bad_response or cancelled."""

_DECIMAL = re.compile(r"[0-9]+")

FENCED = "fenced"
"""The ``error`` of a 409 by which a Backend refuses an older fencing token (``X-Fencing-Token``,
pooler/cluster/fence.py): the call raises :class:`~pooler.errors.BackendFenced`."""

# Required response fields per op: name -> accepted JSON types. Counts are integers; amounts the
# API documents as strings (i128 values do not fit a JS number) must be decimal strings.
_INT = (int,)
_STR = (str,)
_NUM = (int, float)
_RESPONSE_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "register": {"farmerId": _STR, "custodialWallet": _STR, "poolerId": _STR, "status": _STR},
    "plant": {
        "blockIndex": _INT,
        "poolerId": _STR,
        "totalRequested": _INT,
        "successfulPlants": _INT,
        "failedPlants": _INT,
        "totalStaked": _STR,
        "processingTimeMs": _NUM,
        "timestamp": (str, int, float),
    },
    "work": {
        "blockIndex": _INT,
        "poolerId": _STR,
        "totalSubmissions": _INT,
        "validNonces": _INT,
        "invalidNonces": _INT,
        "submittedWork": _INT,
        "totalRewards": _STR,
        "processingTimeMs": _NUM,
        "timestamp": (str, int, float),
    },
    "harvest": {
        "blockIndex": _INT,
        "poolerId": _STR,
        "totalEligible": _INT,
        "successfulHarvests": _INT,
        "failedHarvests": _INT,
        # KALE.md does not give this one's type (the /work one is a string): accept both.
        "totalRewards": (str, int),
        "processingTimeMs": _NUM,
        "timestamp": (str, int, float),
    },
    "health": {"status": _STR},
}
_DECIMAL_FIELDS = frozenset({"totalStaked", "totalRewards"})


def validate_response(op: str, body: Mapping[str, Any], request: Mapping[str, Any] | None = None) -> None:
    """Raise ``BackendError`` naming the first missing or mistyped Phase-1 field of ``body``.

    With ``request``, ``blockIndex``/``poolerId`` must echo the request's (an answer about
    another block is not an answer to this call).
    """
    for name, kinds in _RESPONSE_FIELDS.get(op, {}).items():
        if name not in body:
            raise BackendError(f"{op}: response lacks field {name!r}")
        value = body[name]
        # bool is an int in Python but not a count in JSON.
        if isinstance(value, bool) or not isinstance(value, kinds):
            want = " or ".join(k.__name__ for k in kinds)
            raise BackendError(f"{op}: response field {name!r} should be {want}, got {type(value).__name__}")
        if name in _DECIMAL_FIELDS and isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value):
            raise BackendError(
                f"{op}: response field {name!r} should be a decimal string, got {value[:40]!r}"
            )
    if request is not None:
        for name in ("blockIndex", "poolerId"):
            if name in request and body.get(name) != request[name]:
                raise BackendError(
                    f"{op}: response {name} {body.get(name)!r} does not match the request's {request[name]!r}"
                )


def normalize_submission(item: Mapping[str, Any], position: int) -> dict[str, Any]:
    """One ``/work`` submission: ``{farmerId, nonce (decimal string), timestamp (ms)}`` plus
    the optional extras ``hash`` (hex) and ``zeros``. An int nonce becomes its decimal string."""
    where = f"submissions[{position}]"
    farmer_id = item.get("farmerId")
    if not isinstance(farmer_id, str) or not farmer_id:
        raise ValueError(f"{where}.farmerId must be a non-empty string, got {farmer_id!r}")
    nonce = item.get("nonce")
    if isinstance(nonce, int) and not isinstance(nonce, bool) and 0 <= nonce < 2**64:
        nonce = str(nonce)
    elif not (isinstance(nonce, str) and _DECIMAL.fullmatch(nonce) and int(nonce) < 2**64):
        raise ValueError(f"{where}.nonce must be a u64 as a decimal string or int, got {nonce!r}")
    ts = item.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise ValueError(f"{where}.timestamp must be unix milliseconds (int), got {ts!r}")
    out: dict[str, Any] = {"farmerId": farmer_id, "nonce": nonce, "timestamp": ts}
    if "hash" in item:
        h = item["hash"]
        if isinstance(h, bytes):
            h = h.hex()
        if not (isinstance(h, str) and re.fullmatch(r"[0-9a-fA-F]{64}", h)):
            raise ValueError(f"{where}.hash must be 32 bytes or 64 hex digits, got {item['hash']!r}")
        out["hash"] = h.lower()
    if "zeros" in item:
        z = item["zeros"]
        if isinstance(z, bool) or not isinstance(z, int) or not 0 <= z <= 64:
            raise ValueError(f"{where}.zeros must be an int in 0..64, got {z!r}")
        out["zeros"] = z
    unknown = set(item) - {"farmerId", "nonce", "timestamp", "hash", "zeros"}
    if unknown:
        raise ValueError(f"{where} has unknown fields {sorted(unknown)}")
    return out


# ---------------------------------------------------------------- the core's calls, as JSON


def request_path(request: BackendRequest) -> str:
    """The route of the core's ``request`` (``/plant``, ``/work``, ``/harvest``)."""
    return f"/{request.op}"


def request_body(request: BackendRequest) -> dict[str, Any]:
    """The exact JSON body of the core's ``request`` (camelCase; a nonce as a decimal string)."""
    match request:
        case PlantRequest(block, pooler_id, capacity, farmer_ids):
            body: dict[str, Any] = {
                "blockIndex": block,
                "poolerId": pooler_id,
                "maxFarmersCapacity": capacity,
            }
            if farmer_ids is not None:  # an extra field (docs/devnet.md): only these farmers
                body["farmerIds"] = list(farmer_ids)
            return body
        case WorkRequest(block, pooler_id, submissions):
            items = [submission_body(s) for s in submissions]
            return {"blockIndex": block, "poolerId": pooler_id, "submissions": items}
        case HarvestRequest(block, pooler_id):
            return {"blockIndex": block, "poolerId": pooler_id}


def submission_body(sub: Submission) -> dict[str, Any]:
    """One ``/work`` submission (see ``normalize_submission`` for the accepted shape)."""
    return {
        "farmerId": sub.farmer_id,
        "nonce": str(sub.nonce),
        "timestamp": sub.timestamp,
        "hash": sub.hash.hex(),
        "zeros": sub.zeros,
    }


@overload
def parse_reply(op: Literal["plant"], body: Mapping[str, Any]) -> PlantReply: ...
@overload
def parse_reply(op: Literal["work"], body: Mapping[str, Any]) -> WorkReply: ...
@overload
def parse_reply(op: Literal["harvest"], body: Mapping[str, Any]) -> HarvestReply: ...
@overload
def parse_reply(op: BackendOp, body: Mapping[str, Any]) -> BackendReply: ...


def parse_reply(op: BackendOp, body: Mapping[str, Any]) -> BackendReply:
    """The answer to a plant/work/harvest call as the core reads it.

    Lenient where the core must go on: a count the Backend left out is 0 (``validNonces``:
    unknown), amounts may be numbers or decimal strings, ``results`` items without a string
    ``farmerId`` are skipped (a farmer listed twice: the last item counts). A strict check of
    the documented shape (``validate_response``) already ran in the client.
    """
    results = _outcomes(body, op)
    kept = dict(body)  # as received, for the store's record of the call
    if op == "plant":
        return PlantReply(
            _int(body, "successfulPlants") or 0,
            _int(body, "failedPlants") or 0,
            _int(body, "totalStaked") or 0,
            results,
            kept,
        )
    if op == "work":
        return WorkReply(_int(body, "validNonces"), _int(body, "invalidNonces") or 0, results, kept)
    return HarvestReply(
        _int(body, "successfulHarvests") or 0,
        _int(body, "failedHarvests") or 0,
        _int(body, "totalRewards"),
        results,
        kept,
    )


def _as_int(value: object) -> int | None:
    """An integer from a JSON number or a decimal string (stroops travel as strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return None


def _int(body: Mapping[str, Any], key: str) -> int | None:
    return _as_int(body.get(key))


def _outcomes(body: Mapping[str, Any], op: BackendOp) -> tuple[FarmerOutcome, ...] | None:
    items = body.get("results")
    if not isinstance(items, list):
        return None
    by_farmer: dict[str, FarmerOutcome] = {}
    for item in items:
        if not isinstance(item, Mapping):
            continue
        fid = item.get("farmerId")
        if not isinstance(fid, str):
            continue
        ok = item.get("ok") is True
        by_farmer[fid] = FarmerOutcome(
            fid,
            ok,
            "" if ok else _item_error(item),
            already_planted=op == "plant" and not ok and _already_planted(item),
            already_worked=op == "work" and not ok and _already_worked(item),
            reward=_as_int(item.get("reward")) if op == "harvest" else None,
        )
    return tuple(by_farmer.values())


def _already_planted(item: Mapping[str, Any]) -> bool:
    """A per-farmer plant refusal that means "planted already" (contract error #8, PailExists).

    A repeated late plant meets it for farmers the earlier one planted: they are planted.
    """
    code = item.get("errorCode")
    return code in (8, "8") or "PailExists" in str(item.get("error", ""))


def _already_worked(item: Mapping[str, Any]) -> bool:
    """A per-farmer work refusal #7 (ZeroCountTooLow): the pail already has this many zeros or more.

    A nonce sent again after a lost answer meets it when the first send landed: it is worked.
    """
    code = item.get("errorCode")
    return code in (7, "7") or "ZeroCountTooLow" in str(item.get("error", ""))


def _item_error(item: Mapping[str, Any]) -> str:
    for key in ("error", "message", "reason"):
        value = item.get(key)
        if isinstance(value, str) and value:
            return value
    return "refused by the Backend"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class _Retryable(Exception):
    """One attempt failed in a way worth retrying (internal to ``call``)."""

    def __init__(self, detail: str, status: int | None, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.retry_after = retry_after


class BackendClient:
    """The Phase-1 Backend over aiohttp. Use as ``async with BackendClient(...) as backend:``.

    ``clock`` is unix seconds (deadlines are unix seconds); ``sleep`` and ``rng`` are injectable.
    A ``session`` passed in is used and left open; otherwise the client owns one.
    """

    def __init__(
        self,
        base_url: str,
        timeout: float,
        retry_attempts: int,
        session: aiohttp.ClientSession | None = None,
        *,
        backoff_base: float = 0.25,
        backoff_cap: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        observe: Observe | None = None,
        headers: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"BACKEND_TIMEOUT must be > 0 seconds, got {timeout}")
        if retry_attempts < 1:
            raise ValueError(f"RETRY_ATTEMPTS must be >= 1, got {retry_attempts}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry_attempts = retry_attempts
        self._backoff = Backoff(base=backoff_base, cap=max(backoff_cap, backoff_base))
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._observe = observe
        # Extra headers of every attempt, asked for anew each time (a group leader's fencing token)
        self._headers = headers
        # The session in use; created on first use unless one was given.
        self._session = session
        # Whether close() must close it (only the one we created).
        self._owns_session = session is None

    async def __aenter__(self) -> BackendClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            if not self._owns_session:
                raise BackendError("BackendClient is closed (its session was given and released)")
            self._session = aiohttp.ClientSession(headers={"Accept": "application/json"})
        return self._session

    # ------------------------------------------------------------ Phase-1 operations

    async def register_farmer(
        self,
        pooler_id: str,
        stake_percentage: float,
        metadata: Mapping[str, Any] | None = None,
        *,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """``POST /farmers/register``: a new farmer (custodial wallet) for this pooler."""
        if isinstance(stake_percentage, bool) or not 0.0 <= float(stake_percentage) <= 1.0:
            raise ValueError(f"stakePercentage must be within 0..1, got {stake_percentage!r}")
        payload: dict[str, Any] = {"poolerId": pooler_id, "stakePercentage": stake_percentage}
        if metadata is not None:
            payload["metadata"] = dict(metadata)
        return await self.call("register", "POST", "/farmers/register", payload, deadline)

    async def plant(
        self, block_index: int, pooler_id: str, max_farmers_capacity: int, *, deadline: float
    ) -> dict[str, Any]:
        """``POST /plant``: the Backend plants every active farmer of this pooler into the block."""
        payload = {
            "blockIndex": block_index,
            "poolerId": pooler_id,
            "maxFarmersCapacity": max_farmers_capacity,
        }
        return await self.call("plant", "POST", "/plant", payload, deadline)

    async def work(
        self, block_index: int, pooler_id: str, submissions: Sequence[Mapping[str, Any]], *, deadline: float
    ) -> dict[str, Any]:
        """``POST /work``: one nonce per planted farmer (see ``normalize_submission``)."""
        items = [normalize_submission(s, i) for i, s in enumerate(submissions)]
        payload = {"blockIndex": block_index, "poolerId": pooler_id, "submissions": items}
        return await self.call("work", "POST", "/work", payload, deadline)

    async def harvest(self, block_index: int, pooler_id: str, *, deadline: float) -> dict[str, Any]:
        """``POST /harvest``: claim the block's rewards for every farmer that worked it."""
        payload = {"blockIndex": block_index, "poolerId": pooler_id}
        return await self.call("harvest", "POST", "/harvest", payload, deadline)

    async def health(self) -> dict[str, Any]:
        """``GET /health``, one attempt; a 503 is an answer (an unhealthy Backend), returned as is."""
        return await self.call(
            "health", "GET", "/health", None, self._clock() + self.timeout, attempts=1, answer_statuses={503}
        )

    # ------------------------------------------------------------ the shared call

    async def call(
        self,
        op: str,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None,
        deadline: float | None,
        *,
        attempts: int | None = None,
        answer_statuses: frozenset[int] | set[int] = frozenset(),
    ) -> dict[str, Any]:
        """One Backend request with the retry policy of the module docstring.

        ``deadline`` None bounds the call by the attempt count alone. Statuses in
        ``answer_statuses`` are returned like a 2xx. Returns the validated JSON object.
        """
        started = self._clock()
        outcome = "cancelled"  # what is left if nothing below sets it: the caller gave up on us
        try:
            body = await self._call(
                op, method, path, payload, deadline, attempts or self.retry_attempts, answer_statuses
            )
            outcome = "ok"
            return body
        except BackendRejected:
            outcome = "rejected"
            raise
        except BackendUnavailable:
            outcome = "unavailable"
            raise
        except BackendUnknownOutcome:
            outcome = "unknown"
            raise
        except BackendError:
            outcome = "bad_response"
            raise
        finally:
            if self._observe is not None:
                self._observe(op, self._clock() - started, outcome)

    async def _call(
        self,
        op: str,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None,
        deadline: float | None,
        attempts: int,
        answer_statuses: frozenset[int] | set[int],
    ) -> dict[str, Any]:
        url = self.base_url + path
        data = orjson.dumps(payload) if payload is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        session = self._get_session()
        last = "no attempt made"
        status: int | None = None
        for attempt in range(1, attempts + 1):
            left = self.timeout if deadline is None else deadline - self._clock()
            if left <= 0:
                raise BackendDeadline(
                    f"{op}: deadline passed after {attempt - 1} attempt(s); last error: {last}", status=status
                )
            sent = headers if self._headers is None else {**(headers or {}), **self._headers()}
            try:
                return await self._attempt(
                    op, session, method, url, data, sent, min(self.timeout, left), payload, answer_statuses
                )
            except _Retryable as exc:
                last, status = str(exc), exc.status
                retry_after = exc.retry_after
            if attempt == attempts:
                break
            delay = self._backoff.delay(attempt, self._rng)
            if retry_after is not None:
                delay = max(delay, retry_after)
            if deadline is not None and self._clock() + delay >= deadline:
                raise BackendDeadline(
                    f"{op}: next retry (in {delay:.2f} s) would pass the deadline; "
                    f"gave up after {attempt} attempt(s); last error: {last}",
                    status=status,
                )
            log.info("backend %s attempt %d failed (%s); retrying in %.2f s", op, attempt, last, delay)
            await self._sleep(delay)
        raise BackendUnavailable(
            f"{op}: gave up after {attempts} attempt(s); last error: {last}", status=status
        )

    async def _attempt(
        self,
        op: str,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, str] | None,
        attempt_timeout: float,
        payload: Mapping[str, Any] | None,
        answer_statuses: frozenset[int] | set[int],
    ) -> dict[str, Any]:
        try:
            async with session.request(
                method, url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=attempt_timeout)
            ) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after_header = resp.headers.get("Retry-After")
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # never connected: the request did not reach the Backend, a retry is safe
            raise _Retryable(f"network error: {type(exc).__name__}: {exc}", None) from exc
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutError (some also ClientError)
            if method == "POST":  # it may have been sent and acted: only the chain can tell
                raise BackendUnknownOutcome(
                    f"{op}: no answer within {attempt_timeout:.2f} s after the request was sent"
                ) from exc
            raise _Retryable(f"timed out after {attempt_timeout:.2f} s", None) from exc
        except aiohttp.ClientError as exc:
            if method == "POST":
                raise BackendUnknownOutcome(
                    f"{op}: connection lost after the request was sent: {type(exc).__name__}: {exc}"
                ) from exc
            raise _Retryable(f"network error: {type(exc).__name__}: {exc}", None) from exc

        if status == 429 or (status >= 500 and status not in answer_statuses):
            retry_after = parse_retry_after(retry_after_header, self._clock())
            raise _Retryable(f"HTTP {status}{_error_text(raw)}", status, retry_after)
        if status == 409 and _error_code(raw) == FENCED:
            raise BackendFenced(f"{op}: HTTP {status}{_error_text(raw)}", status=status)
        if 400 <= status < 500:
            raise BackendRejected(f"{op}: HTTP {status}{_error_text(raw)}", status=status)
        if not (200 <= status < 300 or status in answer_statuses):
            raise BackendError(f"{op}: unexpected HTTP {status}", status=status)
        # a POST answered 2xx acted; what it did is unknown when the answer cannot be read
        unknown = BackendUnknownOutcome if method == "POST" and 200 <= status < 300 else BackendError
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise unknown(f"{op}: HTTP {status} body is not JSON: {raw[:80]!r}", status=status) from None
        if not isinstance(body, dict):
            raise unknown(f"{op}: HTTP {status} body is not a JSON object", status=status)
        try:
            validate_response(op, body, payload if op in ("plant", "work", "harvest") else None)
        except BackendError as exc:
            raise unknown(str(exc), status=status) from None
        return body


def _error_code(raw: bytes) -> str | None:
    """The ``error`` field of a Backend error body (its machine-readable kind), if any."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def _error_text(raw: bytes) -> str:
    """The Backend's ``{error, message}`` as ``": error: message"`` (or a snippet of the body)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        snippet = raw[:120].decode("utf-8", "replace").strip()
        return f": {snippet}" if snippet else ""
    if isinstance(body, dict) and ("error" in body or "message" in body):
        return f": {body.get('error', '')}: {body.get('message', '')}"
    return f": {str(body)[:120]}"
