"""REST fallback for legacy miners: the same JSON shapes as the WebSocket messages.

Status codes for ``POST /miner/submit`` rejections (docs/protocol.md has the table):
400 malformed / out-of-range / invalid-hash / low-zeros, 401 unauthorized, 409 duplicate,
410 stale, 413 too-large, 429 rate-limited, 503 unavailable. Every non-200 answer of ``/miner/submit`` is a
``rejected`` object (``job``/``nonce`` null when they could not be read); the other routes
answer errors with ``{error, message, timestamp, code}``.

Each miner's REST requests share one token bucket (``messages_per_second`` and
``message_burst`` of the options, as a WebSocket connection has): over it, 429. The routes
reach the rest of the Pooler only through their ports (pooler/web/ports.py).

With ``ADMIN_TOKEN`` set, ``POST /miner/register`` is the operator's alone (:func:`admin_refusal`);
without it, registrations are limited per client address and in total (``RegistrationLimits``:
429 with ``Retry-After`` and ``retryAfter``). Wrong tokens (a miner's bearer token, or a wrong
ADMIN_TOKEN) back the client's address off (``AuthBackoff``, shared with ``/ws/miner``): its token
checks are then answered 429 with ``Retry-After`` without looking at the token. A keep-alive
connection's first good miner token settles it in the connection gate (pooler/web/gate.py): it no
longer counts as a connection that has not authenticated.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from pooler.core.events import (
    IssuedJob,
    MalformedSubmitted,
    RestShareSubmitted,
    RestWorkRequested,
    StatsRequested,
)
from pooler.errors import BackendError, BackendRejected, StoreError
from pooler.miners import MinerRecord
from pooler.web.gate import CONNECTION, Ticket
from pooler.web.limits import AuthBackoff, Refusal, RegistrationLimits, TokenBucket
from pooler.web.ports import LimitHits, Miners, Requests, RestJobs, WebSettings
from protocol.codec import MAX_WORKER_LEN, decode_client, server_to_dict
from protocol.errors import Code, ProtocolError
from protocol.messages import Error, Job, Rejected, ServerMessage, Share

STATUS_OF: dict[Code, int] = {
    Code.MALFORMED: 400,
    Code.OUT_OF_RANGE: 400,
    Code.INVALID_HASH: 400,
    Code.LOW_ZEROS: 400,
    Code.UNAUTHORIZED: 401,
    Code.NO_HELLO: 401,
    Code.DUPLICATE: 409,
    Code.STALE: 410,
    Code.TOO_LARGE: 413,
    Code.RATE_LIMITED: 429,
    Code.UNAVAILABLE: 503,
}


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_body(error: str, message: str, **extra: Any) -> dict[str, Any]:
    """The Phase-1 error shape ``{error, message, timestamp}`` used by every REST error."""
    return {"error": error, "message": message, "timestamp": int(time.time() * 1000), **extra}


def protocol_error(code: Code, message: str) -> JSON:
    return JSON(error_body(code.reason, message, code=int(code)), status_code=STATUS_OF.get(code, 400))


@dataclass(frozen=True, slots=True)
class Denied:
    """Why a request's token was not accepted; ``retry_after`` (seconds) when a back-off refused it."""

    code: Code
    message: str
    retry_after: int | None = None


def _backed_off(refusal: Refusal) -> Denied:
    why = f"too many wrong tokens from your address; try again in {refusal.retry_seconds} s"
    return Denied(Code.RATE_LIMITED, why, refusal.retry_seconds)


def _with_retry(answer: JSON, retry_after: int | None) -> JSON:
    if retry_after is not None:
        answer.headers["Retry-After"] = str(retry_after)
    return answer


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _settle(request: Request) -> None:
    """The request's connection authenticated (keep-alive: it stays settled for its next requests)."""
    ticket = (request.scope.get("extensions") or {}).get(CONNECTION)
    if isinstance(ticket, Ticket):
        ticket.settle()


def rejected(code: Code, message: str, job: object = None, nonce: int | None = None) -> JSON:
    """A ``rejected`` object with the status of ``code`` (the body of every failed submit)."""
    job_id = job if isinstance(job, str) and len(job) <= 64 and job.isprintable() else None
    body = server_to_dict(Rejected(job_id, nonce, code, message))
    return JSON(body, status_code=STATUS_OF.get(code, 400))


async def _read_limited(request: Request, limit: int) -> bytes | JSON:
    """The body, read no further than ``limit`` bytes (a huge body is refused, not buffered)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return protocol_error(Code.TOO_LARGE, f"body is {int(declared)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return protocol_error(Code.TOO_LARGE, f"body is over {limit} bytes; the limit is {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(msg: ServerMessage, ok_status: int = 200) -> JSON:
    if isinstance(msg, Rejected):
        return JSON(server_to_dict(msg), status_code=STATUS_OF.get(msg.code, 400))
    if isinstance(msg, Error):
        if msg.code in (Code.UNAUTHORIZED, Code.RATE_LIMITED):
            return protocol_error(msg.code, msg.message)
        reason = msg.code.reason if msg.code is Code.UNAVAILABLE else "no-work"
        return JSON(error_body(reason, msg.message, code=int(msg.code)), status_code=503)
    return JSON(server_to_dict(msg), status_code=ok_status)


def admin_refusal(authorization: str, admin_token: str | None) -> JSON | None:
    """Why a registration is refused when the operator set ``ADMIN_TOKEN``: 401 without a bearer
    token, 403 with another one; None when it may go ahead (or no ADMIN_TOKEN is set)."""
    if admin_token is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        refused = protocol_error(
            Code.UNAUTHORIZED,
            "this pool registers miners for its operator only: send 'Authorization: Bearer <ADMIN_TOKEN>'",
        )
        refused.headers["WWW-Authenticate"] = 'Bearer realm="registration"'
        return refused
    # digests of equal length: the comparison takes as long whatever the token's length
    given, wanted = (hashlib.sha256(t.encode()).digest() for t in (token.strip(), admin_token))
    if not hmac.compare_digest(given, wanted):
        message = "the bearer token is not this pool's ADMIN_TOKEN; registering needs the operator's token"
        return JSON(error_body("forbidden", message), status_code=403)
    return None


def _registration_refused(refusal: Refusal) -> JSON:
    where = "from your address" if refusal.limit == "registrations-per-ip" else "in total"
    seconds = refusal.retry_seconds
    why = f"too many registrations {where} this hour; try again in {seconds} s"
    body = error_body(
        Code.RATE_LIMITED.reason, why, code=int(Code.RATE_LIMITED), retryAfter=seconds, limit=refusal.limit
    )
    return _with_retry(JSON(body, status_code=429), seconds)


class RestRoutes:
    """The ``/miner/*`` routes (register, work, submit, stats, leave) with the ports they use."""

    def __init__(
        self,
        settings: WebSettings,
        *,
        miners: Miners,
        requests: Requests,
        jobs: RestJobs,
        limits: LimitHits,
        backoff: AuthBackoff,
    ) -> None:
        self._settings = settings
        self._backoff = backoff  # wrong tokens per address, shared with /ws/miner
        # registrations per address and in total (unused when ADMIN_TOKEN is set)
        self._registrations = RegistrationLimits(
            settings.registrations_per_ip_per_hour, settings.registrations_per_hour, time.monotonic()
        )
        self._miners = miners  # token checks, registration, leaving
        self._requests = requests  # events to the coordinator, and its answers
        self._jobs = jobs  # a group's jobs issued on other instances
        self._limits = limits  # refusals, counted
        self._buckets: dict[str, TokenBucket] = {}  # miner id -> its REST requests' bucket (dropped on leave)

    async def _authenticate(self, request: Request) -> MinerRecord | Denied:
        """The miner of the bearer token; Denied when missing, unknown, backed off or over its rate
        limit. (A miner in its invalid-share cool-down is refused by the coordinator, which knows it.)"""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Denied(
                Code.UNAUTHORIZED, "send 'Authorization: Bearer <token>' (the token from /miner/register)"
            )
        host = _client(request)
        now = time.monotonic()
        backed_off = self._backoff.check(host, now)
        if backed_off is not None:
            self._limits.hit(backed_off.limit)
            return _backed_off(backed_off)
        miner = await self._miners.authenticate(token.strip())
        if miner is None:
            self._backoff.failed(host, now)
            return Denied(Code.UNAUTHORIZED, "unknown or revoked token")
        _settle(request)
        buckets = self._buckets
        bucket = buckets.get(miner.miner_id)
        opts = self._settings
        if bucket is None:
            bucket = buckets[miner.miner_id] = TokenBucket(opts.messages_per_second, opts.message_burst, now)
        if not bucket.take(now):
            return Denied(
                Code.RATE_LIMITED,
                f"over {opts.messages_per_second:g} requests/s for this miner; slow down",
            )
        return miner

    async def _miner(self, request: Request) -> MinerRecord | JSON:
        miner = await self._authenticate(request)
        if isinstance(miner, Denied):
            return _with_retry(protocol_error(miner.code, miner.message), miner.retry_after)
        return miner

    async def _json_body(self, request: Request, limit: int) -> dict[str, Any] | JSON:
        body = await _read_limited(request, limit)
        if isinstance(body, JSON):
            self._limits.hit("frame-size")
            return body
        if not body:
            return {}
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return protocol_error(Code.MALFORMED, "body is not valid JSON")
        if not isinstance(value, dict):
            return protocol_error(
                Code.MALFORMED, f"body must be a JSON object, got a JSON {type(value).__name__}"
            )
        return value

    async def register(self, request: Request) -> JSON:
        opts = self._settings
        host = _client(request)
        now = time.monotonic()
        if opts.admin_token is not None:
            backed_off = self._backoff.check(host, now)
            if backed_off is not None:  # before the token is even compared
                self._limits.hit(backed_off.limit)
                denied = _backed_off(backed_off)
                return _with_retry(protocol_error(denied.code, denied.message), denied.retry_after)
        refused = admin_refusal(request.headers.get("authorization", ""), opts.admin_token)
        if refused is not None:  # checked before the body is read
            if refused.status_code == 403:  # a wrong ADMIN_TOKEN (401: none was sent)
                self._backoff.failed(host, now)
            return refused
        body = await self._json_body(request, opts.max_frame)
        if isinstance(body, JSON):
            return body
        name = body.get("name", "")
        stake = body.get("stakePercentage", opts.default_stake_percentage)
        metadata = body.get("metadata")
        problems = []
        if not isinstance(name, str) or len(name) > MAX_WORKER_LEN or not name.isprintable():
            problems.append(f"name must be a printable string of at most {MAX_WORKER_LEN} characters")
        if isinstance(stake, bool) or not isinstance(stake, int | float) or not 0 <= stake <= 1:
            problems.append("stakePercentage must be a number from 0 to 1")
        if metadata is not None and not isinstance(metadata, dict):
            problems.append("metadata must be a JSON object")
        if problems:
            body = error_body("malformed", "; ".join(problems), code=int(Code.MALFORMED))
            return JSON(body, status_code=400)
        if opts.admin_token is None:  # the operator's own registrations are not limited
            limited = self._registrations.admit(host, time.monotonic())
            if limited is not None:
                self._limits.hit(limited.limit)
                return _registration_refused(limited)
        try:
            record, token = await self._miners.register(name, float(stake), metadata)
        except BackendRejected as exc:
            return JSON(error_body("backend-rejected", str(exc)), status_code=400)
        except BackendError as exc:
            why = f"the Backend could not register a farmer: {exc}"
            return JSON(error_body("backend-unavailable", why), 503)
        except StoreError as exc:
            why = f"could not record the miner, try again: {exc}"
            return JSON(error_body("store-unavailable", why), 503)
        return JSON(
            {
                "minerId": record.miner_id,
                "token": token,
                "farmerId": record.farmer_id,
                "farmer": record.farmer,
            },
            status_code=201,
        )

    async def work(self, request: Request) -> JSON:
        miner = await self._miner(request)
        if isinstance(miner, JSON):
            return miner
        worker = request.query_params.get("worker", "rest")
        if not worker or len(worker) > MAX_WORKER_LEN or not worker.isprintable():
            return protocol_error(
                Code.MALFORMED, f"worker must be 1 to {MAX_WORKER_LEN} printable characters"
            )
        msg = await self._requests.request(lambda reply: RestWorkRequested(reply, miner.miner_id, worker))
        if isinstance(msg, Job | Error):
            return _answer(msg)
        return _answer(Error(Code.MALFORMED, "unexpected answer"))

    async def submit(self, request: Request) -> JSON:
        miner = await self._authenticate(request)
        if isinstance(miner, Denied):
            return _with_retry(rejected(miner.code, miner.message), miner.retry_after)
        limit = self._settings.max_frame
        raw = await _read_limited(request, limit)  # a huge body is refused, never buffered
        if isinstance(raw, JSON):
            self._limits.hit("frame-size")
            return rejected(Code.TOO_LARGE, f"body is over {limit} bytes; the limit is {limit}")
        try:
            body = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            return await self._malformed(miner.miner_id, "body is not valid JSON; send {job, nonce, hash?}")
        if not isinstance(body, dict):
            why = f"body must be a JSON object {{job, nonce, hash?}}, got a JSON {type(body).__name__}"
            return await self._malformed(miner.miner_id, why)
        try:
            share = decode_client(orjson.dumps({**body, "type": "share"}), limit)
        except ProtocolError as exc:
            job = body.get("job")
            shown = job if isinstance(job, str) and len(job) <= 64 and job.isprintable() else None
            return await self._malformed(miner.miner_id, exc.message, shown, exc.code)
        assert isinstance(share, Share)
        try:  # the job may be another instance's (no sticky routing needed)
            issued: IssuedJob | None = await self._jobs.issued_job(share.job)
        except StoreError as exc:
            msg = f"the pool cannot look this job up right now ({exc}); keep mining and submit again"
            return rejected(Code.UNAVAILABLE, msg, share.job, share.nonce)
        answer = await self._requests.request(
            lambda reply: RestShareSubmitted(reply, miner.miner_id, share, issued)
        )
        return _answer(answer)

    async def _malformed(
        self, miner_id: str, message: str, job: str | None = None, code: Code = Code.MALFORMED
    ) -> JSON:
        """A submit that did not decode: rejected, and counted as a rejected share of the miner."""
        answer = await self._requests.request(
            lambda reply: MalformedSubmitted(miner_id, reply, code, message, job)
        )
        return _answer(answer)

    async def stats(self, request: Request) -> JSON:
        miner = await self._miner(request)
        if isinstance(miner, JSON):
            return miner
        return _answer(await self._requests.request(lambda reply: StatsRequested(reply, miner.miner_id)))

    async def leave(self, request: Request) -> JSON:
        miner = await self._miner(request)
        if isinstance(miner, JSON):
            return miner
        await self._miners.remove(miner.miner_id)
        self._buckets.pop(miner.miner_id, None)
        return JSON({"minerId": miner.miner_id, "left": True, "timestamp": int(time.time() * 1000)})
