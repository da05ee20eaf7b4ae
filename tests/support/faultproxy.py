"""A programmable reverse proxy that answers late, old, malformed, truncated or not at all.

Put a :class:`FaultProxy` between the Pooler and one of the systems it depends on (the devnet's
Soroban JSON-RPC or its Phase-1 Backend), point the Pooler at ``proxy.url``, and program faults
while everything runs::

    async with Devnet(block_interval=6, ledger_seconds=1.0) as net, FaultProxy(net.backend_url) as backend:
        ... Pooler(options(..., backend_url=backend.url)) ...
        rule = backend.add(Rule(Respond.json({"ok": True}), path="/work", times=1))
        await rule.wait_spent()                     # the Pooler's next /work got that answer
        assert backend.requests(path="/work")[0].outcome == "responded"

Theory of operation
===================

One aiohttp server on 127.0.0.1 (port 0: a free port) with a single catch-all route. Every
request is read in full and becomes an :class:`Exchange` (the record of what was asked and
what the proxy did), appended to ``proxy.exchanges`` before anything else happens, then:

1. **Route.** A request's route is its HTTP path and, when the body is a JSON-RPC call (a JSON
   object with a string ``method``), that method: ``("/", "getLedgerEntries")`` for the RPC,
   ``("/work", None)`` for the Backend.
2. **Rule.** The active rules are tried newest first (a later rule overrides an earlier one);
   the first whose ``path`` / ``rpc`` / ``http_method`` all fit (``None`` fits anything), and
   whose ``when`` test (if any) accepts the request, takes it. Taking it spends one of its
   ``times`` at once, at arrival, so with concurrent requests exactly the first ``times``
   arrivals get the fault; a rule spent to 0 is removed.
   ``times=None`` lasts until cleared (:meth:`RuleHandle.clear`, :meth:`FaultProxy.clear`).
   No rule: the request is forwarded unchanged.
3. **Act.** ``rule.delay`` seconds are waited first (the request reaches the upstream late, or
   the canned answer comes late), then the rule's action runs:

   - :class:`Forward`: pass through;
   - :class:`Respond`: answer the given status and body without forwarding (the upstream
     never sees the request): malformed JSON, an empty body, truncated JSON, a 200 lacking a
     field, a JSON-RPC error with the caller's ``id``...;
   - :class:`Rewrite`: forward, then answer a changed copy of the upstream's answer (a key
     dropped, ``{}``, an empty body, the body cut short, another status): the request *did*
     happen upstream;
   - :class:`Replay`: answer, without forwarding, an answer the upstream gave earlier on the
     same route (a stale answer: an RPC node lagging behind, a cache), by default the latest
     one recorded (with a JSON-RPC ``id`` set to the caller's);
   - :class:`Drop`: close the connection without an answer, either before forwarding (the
     upstream never saw it) or after (``after_upstream``: the request happened, the answer
     was lost), optionally after sending part of the answer (``partial`` bytes of a body whose
     ``Content-Length`` promised all of it: the client sees a payload error).

   ``Rule(Drop(), delay=3600)`` is a black hole: the connection hangs, unanswered, until the
   client gives up (or the proxy stops).

   For the forwarding actions (Forward, Rewrite, Drop after upstream), ``rule.answer_delay``
   seconds pass between the upstream's answer and the relay (it acted on time, the answer is
   late). A delayed request is still forwarded if the client gave up meanwhile, as a slow
   network still delivers it: an answer nobody hears is the point of some tests.
4. **Record.** The upstream's real answer (status, body) and what the client got (status,
   body, or nothing) land in the Exchange, with ``outcome`` naming what happened: forwarded,
   responded, rewritten, replayed, dropped-before, dropped-after, cut, upstream-failed (the
   upstream could not be reached: the client gets a 502). Every upstream answer of a route
   (not the replays) is kept in a bounded history (``history`` answers per route) for Replay.

Waiting: :meth:`FaultProxy.wait_for` and :meth:`RuleHandle.wait_spent` are bounded condition
waits on the record (the suite's one wait, :func:`tests.support.wait.wait_until`; never a sleep
followed by an assert); their timeout only keeps a broken run from hanging and its message lists
what the proxy saw.

A problem inside the proxy itself (a Rewrite whose ``edit`` raised, a Replay with nothing
recorded) answers 502 and is kept in ``proxy.problems``; leaving the context manager raises
them as an AssertionError unless the test is already failing, so a fault that was not the one
programmed never passes silently.

:meth:`FaultProxy.refuse_connections` / :meth:`FaultProxy.accept_connections` close and reopen
the listening socket on the same port ("not at all" as connection refused, rules and records
kept).

Use it as an async context manager, or through :func:`proxied_devnet` (a devnet with one proxy
in front of its RPC and one in front of its Backend); test modules wrap either in a pytest
fixture.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias

import aiohttp
import orjson
from aiohttp import web

from pooler.devnet import Devnet
from tests.support.wait import FAILSAFE, wait_until

Route: TypeAlias = tuple[str, str | None]  # (HTTP path, JSON-RPC method or None)

# Headers that describe one hop (or that aiohttp sets itself) and are never copied across.
_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
        "date",
        "server",
    }
)


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Forward:
    """Pass the request through and relay the upstream's answer unchanged."""


@dataclass(frozen=True)
class Respond:
    """Answer ``status`` / ``body`` without forwarding: the upstream never sees the request.

    ``body`` is bytes, or a function of the :class:`Exchange` (to echo a JSON-RPC ``id``).
    """

    status: int = 200
    body: bytes | Callable[[Exchange], bytes] = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Respond:
        """A well-formed JSON answer (``{}``, a body lacking a field...)."""
        return cls(status, orjson.dumps(value))

    @classmethod
    def truncated(cls, value: Any, keep: float = 0.5, status: int = 200) -> Respond:
        """``value`` as JSON cut after ``keep`` of its bytes (a consistent ``Content-Length``)."""
        raw = orjson.dumps(value)
        return cls(status, raw[: int(len(raw) * keep)])

    @classmethod
    def rpc_result(cls, result: Any) -> Respond:
        """A JSON-RPC 2.0 success envelope around ``result``, with the caller's ``id``."""
        return cls(200, lambda ex: orjson.dumps({"jsonrpc": "2.0", "id": ex.rpc_id, "result": result}))

    @classmethod
    def rpc_error(cls, code: int, message: str) -> Respond:
        """A JSON-RPC 2.0 error object with the caller's ``id`` (HTTP 200, as Soroban RPC does)."""
        error = {"code": code, "message": message}
        return cls(200, lambda ex: orjson.dumps({"jsonrpc": "2.0", "id": ex.rpc_id, "error": error}))


@dataclass(frozen=True)
class Rewrite:
    """Forward (the upstream acts), then answer a changed copy of its answer.

    ``edit`` maps the upstream's decoded JSON to the JSON to answer (see :func:`without`);
    ``raw`` then maps the body bytes (see :func:`cut`; ``lambda _: b""`` for an empty body);
    ``status`` replaces the upstream's status. Unset parts are the upstream's.
    """

    edit: Callable[[Any], Any] | None = None
    raw: Callable[[bytes], bytes] | None = None
    status: int | None = None


@dataclass(frozen=True)
class Replay:
    """Answer, without forwarding, an earlier upstream answer of the same route (a stale one).

    ``index`` picks from the route's recorded answers, oldest first (``-1``: the latest, so a
    lasting Replay freezes the route at its last real answer; replays are never recorded).
    ``same_request`` only considers answers to a request with the same JSON body (apart from a
    JSON-RPC ``id``). With ``fix_id`` a JSON-RPC answer carries the caller's ``id``.
    """

    index: int = -1
    same_request: bool = False
    fix_id: bool = True


@dataclass(frozen=True)
class Drop:
    """Close the connection without (a complete) answer.

    Before forwarding by default: the upstream never sees the request. With ``after_upstream``
    the request is forwarded and its answer is lost: the upstream acted, the client cannot
    know. ``partial`` (with ``after_upstream``) first sends the status, headers with the full
    ``Content-Length`` and that many bytes of the body, then drops.
    """

    after_upstream: bool = False
    partial: int | None = None

    def __post_init__(self) -> None:
        if self.partial is not None and not self.after_upstream:
            raise ValueError("Drop(partial=...) needs after_upstream=True (an answer to cut)")


Action: TypeAlias = Forward | Respond | Rewrite | Replay | Drop


def without(*paths: str) -> Callable[[Any], Any]:
    """An ``edit`` for :class:`Rewrite` that removes keys, dotted for nested ones
    (``"blockIndex"``, ``"result.latestLedger"``); a key that is not there is left alone."""

    def edit(value: Any) -> Any:
        for path in paths:
            *parents, last = path.split(".")
            node = value
            for name in parents:
                node = node.get(name) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(last, None)
        return value

    return edit


def body_has(**fields: Any) -> Callable[[Exchange], bool]:
    """A ``when`` for :class:`Rule`: the request's JSON body has these top-level values
    (``body_has(blockIndex=2)``: only the calls about block 2)."""

    def when(ex: Exchange) -> bool:
        body = ex.json()
        return isinstance(body, dict) and all(body.get(k, _MISSING) == v for k, v in fields.items())

    return when


_MISSING = object()


def cut(keep: float = 0.5) -> Callable[[bytes], bytes]:
    """A ``raw`` for :class:`Rewrite`: the first ``keep`` of the body's bytes (truncated JSON)."""
    return lambda raw: raw[: int(len(raw) * keep)]


# ---------------------------------------------------------------- rules and records


@dataclass(frozen=True)
class Rule:
    """Which requests get which fault, how often, how late.

    ``path`` (exact HTTP path), ``rpc`` (JSON-RPC method) and ``http_method`` select requests;
    ``None`` fits anything; ``when`` is an extra test of the request (see :func:`body_has`; one
    that raises does not fit). ``times``: the next N matching requests, ``None`` until cleared.
    ``delay``: seconds before acting; ``answer_delay``: seconds between the upstream's answer
    and the relay (forwarding actions only).
    """

    action: Action
    path: str | None = None
    rpc: str | None = None
    http_method: str | None = None
    times: int | None = None
    delay: float = 0.0
    answer_delay: float = 0.0
    when: Callable[[Exchange], bool] | None = None

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 1:
            raise ValueError(f"Rule.times must be >= 1 or None, got {self.times}")
        if self.delay < 0 or self.answer_delay < 0:
            raise ValueError("Rule delays must be >= 0 seconds")

    def fits(self, ex: Exchange) -> bool:
        if not (
            (self.path is None or self.path == ex.path)
            and (self.rpc is None or self.rpc == ex.rpc)
            and (self.http_method is None or self.http_method.upper() == ex.http_method)
        ):
            return False
        if self.when is None:
            return True
        try:
            return self.when(ex)
        except Exception:
            return False


@dataclass(eq=False)
class Exchange:
    """One request the proxy saw and what became of it; filled in as it happens."""

    seq: int  # 1, 2, ... in arrival order
    at: float  # unix seconds of arrival (the Pooler's clock is unix seconds too)
    http_method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes  # the request body as received
    rpc: str | None  # the JSON-RPC method, if the body is a call
    rpc_id: Any  # the JSON-RPC id, if any
    rule: Rule | None  # the rule that took it (None: forwarded)
    outcome: str = "pending"  # forwarded | responded | rewritten | replayed | dropped-before | ...
    upstream_status: int | None = None  # the upstream's real answer, when it was asked
    upstream_body: bytes | None = None
    status: int | None = None  # what the client got (None: no answer, the connection dropped)
    answer: bytes | None = None
    finished_at: float | None = None
    problem: str = ""  # set when the proxy itself failed to do what the rule said

    @property
    def route(self) -> Route:
        return (self.path, self.rpc)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def forwarded(self) -> bool:
        """The upstream received this request (it may have acted on it)."""
        return self.upstream_status is not None

    def json(self) -> Any:
        """The request body decoded (raises on a body that is not JSON)."""
        return orjson.loads(self.body)

    def answer_json(self) -> Any:
        """What the client got, decoded (raises if it got nothing or not JSON)."""
        if self.answer is None:
            raise ValueError(f"exchange {self.seq} got no answer ({self.outcome})")
        return orjson.loads(self.answer)

    def __str__(self) -> str:
        route = self.path + (f" {self.rpc}" if self.rpc else "")
        up = "" if self.upstream_status is None else f" upstream {self.upstream_status}"
        got = "nothing" if self.status is None else str(self.status)
        return f"#{self.seq} {self.http_method} {route}: {self.outcome}{up}, client got {got}"


@dataclass(eq=False)
class _Active:
    rule: Rule
    remaining: int | None
    taken: list[Exchange] = field(default_factory=list)  # the exchanges it took, in order

    @property
    def hits(self) -> int:
        return len(self.taken)


class RuleHandle:
    """A programmed rule: how often it fired, and a way to take it back."""

    def __init__(self, proxy: FaultProxy, active: _Active) -> None:
        self._proxy = proxy
        self._active = active

    @property
    def rule(self) -> Rule:
        return self._active.rule

    @property
    def hits(self) -> int:
        """Requests it took so far."""
        return self._active.hits

    @property
    def active(self) -> bool:
        return self._active in self._proxy._rules

    def clear(self) -> None:
        """Stop applying it (requests already taken finish as programmed)."""
        self._proxy._remove(self._active)

    async def wait_hits(self, count: int = 1, *, within: float = FAILSAFE) -> None:
        """Until it has taken ``count`` requests."""
        await self._proxy.wait_until(
            lambda: self._active.hits >= count, f"{count} hit(s) of {self.rule}", within
        )

    @property
    def exchanges(self) -> list[Exchange]:
        """The requests it took, in arrival order."""
        return list(self._active.taken)

    async def wait_spent(self, *, within: float = FAILSAFE) -> list[Exchange]:
        """Until it took all its ``times`` (an until-cleared rule: at least one request) and
        each of those is finished; returns them."""

        def done() -> bool:
            taken = self._active.taken
            spent = self._active.remaining == 0 if self.rule.times is not None else bool(taken)
            return spent and all(e.finished for e in taken)

        await self._proxy.wait_until(done, f"{self.rule} to be spent", within)
        return self.exchanges


# ---------------------------------------------------------------- the proxy


class FaultProxy:
    """A reverse proxy on 127.0.0.1 in front of ``upstream`` (module docstring)."""

    def __init__(
        self, upstream: str, *, name: str = "proxy", history: int = 256, upstream_timeout: float = FAILSAFE
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.name = name
        self.exchanges: list[Exchange] = []
        self.problems: list[str] = []
        self._history: dict[Route, collections.deque[tuple[Exchange, int, bytes, dict[str, str]]]] = {}
        self._history_size = history
        self._upstream_timeout = upstream_timeout
        self._rules: list[_Active] = []
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.port = 0

    # ------------------------------------------------------------ life cycle

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError(f"{self.name}: not started")
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        try:
            await self.accept_connections()
        except BaseException:
            await self._session.close()
            raise
        return self.url

    async def stop(self) -> None:
        for task in list(self._handlers):
            task.cancel()  # a long delay must not hold the shutdown
        await self.refuse_connections()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
        if exc is None:
            self.check()

    async def refuse_connections(self) -> None:
        """Close the listening socket and every open connection: clients get connection refused."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def accept_connections(self) -> None:
        """Listen (again, on the same port once one was bound)."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    def check(self) -> None:
        """Raise the proxy's own problems (module docstring) as an AssertionError."""
        if self.problems:
            raise AssertionError(
                f"{self.name}: the fault proxy could not do what it was told: {self.problems}"
            )

    # ------------------------------------------------------------ programming

    def add(self, rule: Rule) -> RuleHandle:
        """Apply ``rule`` from now on (newest rules are tried first)."""
        active = _Active(rule, rule.times)
        self._rules.append(active)
        return RuleHandle(self, active)

    def clear(self) -> None:
        """Drop every rule: everything passes through again."""
        self._rules.clear()

    def _remove(self, active: _Active) -> None:
        if active in self._rules:
            self._rules.remove(active)

    def _take(self, ex: Exchange) -> _Active | None:
        for active in reversed(self._rules):
            if active.rule.fits(ex):
                if active.remaining is not None:
                    active.remaining -= 1
                    if active.remaining == 0:
                        self._rules.remove(active)
                return active
        return None

    # ------------------------------------------------------------ reading the record

    def requests(
        self, path: str | None = None, rpc: str | None = None, *, outcome: str | None = None
    ) -> list[Exchange]:
        """The exchanges on a route (``None`` fits anything), in arrival order."""
        return [
            e
            for e in self.exchanges
            if (path is None or e.path == path)
            and (rpc is None or e.rpc == rpc)
            and (outcome is None or e.outcome == outcome)
        ]

    def history(self, path: str, rpc: str | None = None) -> list[tuple[int, bytes]]:
        """The upstream answers recorded on a route, oldest first: (status, body)."""
        return [(status, body) for _, status, body, _ in self._history.get((path, rpc), ())]

    async def wait_until(self, condition: Callable[[], bool], what: str, within: float = FAILSAFE) -> None:
        """Until ``condition()`` holds (:func:`tests.support.wait.wait_until`); a failure shows the
        last exchanges the proxy saw."""

        def failed() -> str:
            seen = "\n  ".join(str(e) for e in self.exchanges[-20:]) or "nothing"
            return f"{what} at {self.name}; last seen:\n  {seen}"

        await wait_until(condition, failed, within=within)

    async def wait_for(
        self,
        match: Callable[[Exchange], bool],
        *,
        count: int = 1,
        what: str = "matching requests",
        within: float = FAILSAFE,
    ) -> list[Exchange]:
        """Until ``count`` exchanges satisfy ``match``; returns all that do."""
        await self.wait_until(lambda: sum(1 for e in self.exchanges if match(e)) >= count, what, within)
        return [e for e in self.exchanges if match(e)]

    # ------------------------------------------------------------ serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            return await self._serve(request)
        finally:
            self._handlers.discard(task)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rpc, rpc_id = _rpc_call(body)
        ex = Exchange(
            seq=len(self.exchanges) + 1,
            at=time.time(),
            http_method=request.method,
            path=request.path,
            query=request.query_string,
            headers=dict(request.headers),
            body=body,
            rpc=rpc,
            rpc_id=rpc_id,
            rule=None,
        )
        active = self._take(ex)
        rule = ex.rule = None if active is None else active.rule
        self.exchanges.append(ex)
        if active is not None:
            active.taken.append(ex)
        try:
            return await self._act(request, ex, rule)
        finally:
            ex.finished_at = time.time()

    async def _act(self, request: web.Request, ex: Exchange, rule: Rule | None) -> web.StreamResponse:
        action: Action = Forward() if rule is None else rule.action
        if rule is not None and rule.delay:
            await asyncio.sleep(rule.delay)  # the fault itself: a late request
        match action:
            case Respond(status=status, body=make, content_type=ctype, headers=headers):
                raw = make(ex) if callable(make) else make
                ex.outcome = "responded"
                return self._answer(ex, status, raw, {"Content-Type": ctype, **headers})
            case Drop(after_upstream=False):
                ex.outcome = "dropped-before"
                return self._drop(request)
            case Replay():
                return self._replay(ex, action)
        # Forward, Rewrite, Drop(after_upstream): the upstream gets the request
        got = await self._forward(request, ex)
        if got is None:
            ex.outcome = "upstream-failed"
            return self._answer(ex, 502, b"faultproxy: upstream unreachable", {"Content-Type": "text/plain"})
        status, raw, headers = got
        if rule is not None and rule.answer_delay:
            await asyncio.sleep(rule.answer_delay)  # the fault itself: a late answer
        match action:
            case Drop(partial=None):
                ex.outcome = "dropped-after"
                return self._drop(request)
            case Drop(partial=int(n)):
                ex.outcome = "cut"
                return await self._cut(request, ex, status, raw, headers, n)
            case Rewrite():
                try:
                    status, raw = _rewrite(action, status, raw)
                except Exception as exc:
                    return self._problem(
                        ex, f"{ex}: Rewrite failed on the upstream answer {raw[:80]!r}: {exc!r}"
                    )
                ex.outcome = "rewritten"
                return self._answer(ex, status, raw, headers)
        ex.outcome = "forwarded"
        return self._answer(ex, status, raw, headers)

    async def _forward(self, request: web.Request, ex: Exchange) -> tuple[int, bytes, dict[str, str]] | None:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        url = self.upstream + request.path_qs
        try:
            async with self._session.request(
                request.method,
                url,
                data=ex.body if ex.body else None,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._upstream_timeout),
            ) as resp:
                raw = await resp.read()
                status = resp.status
                out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_HEADERS}
        except (aiohttp.ClientError, TimeoutError) as exc:
            ex.problem = f"upstream: {type(exc).__name__}: {exc}"
            return None
        ex.upstream_status, ex.upstream_body = status, raw
        kept = self._history.setdefault(ex.route, collections.deque(maxlen=self._history_size))
        kept.append((ex, status, raw, out))
        return status, raw, out

    def _replay(self, ex: Exchange, replay: Replay) -> web.StreamResponse:
        kept = list(self._history.get(ex.route, ()))
        if replay.same_request:
            want = _call_key(ex.body)
            kept = [k for k in kept if _call_key(k[0].body) == want]
        try:
            old, status, raw, headers = kept[replay.index]
        except IndexError:
            return self._problem(ex, f"{ex}: Replay({replay.index}) but {len(kept)} answer(s) recorded")
        if replay.fix_id and ex.rpc_id is not None:
            raw = _with_rpc_id(raw, ex.rpc_id)
        ex.outcome = f"replayed #{old.seq}"
        return self._answer(ex, status, raw, headers)

    @staticmethod
    def _answer(ex: Exchange, status: int, raw: bytes, headers: Mapping[str, str]) -> web.Response:
        ex.status, ex.answer = status, raw
        return web.Response(status=status, body=raw, headers=dict(headers))

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()  # no answer at all: the client sees the connection end
        return web.Response(status=204)  # never written: the transport is gone

    @staticmethod
    async def _cut(
        request: web.Request, ex: Exchange, status: int, raw: bytes, headers: Mapping[str, str], n: int
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=status, headers=dict(headers))
        resp.content_length = len(raw)
        await resp.prepare(request)
        await resp.write(raw[:n])
        ex.status, ex.answer = status, raw[:n]
        if request.transport is not None:
            request.transport.abort()
        return resp

    def _problem(self, ex: Exchange, problem: str) -> web.Response:
        ex.outcome, ex.problem = "proxy-problem", problem
        self.problems.append(problem)
        return self._answer(ex, 502, f"faultproxy: {problem}".encode(), {"Content-Type": "text/plain"})


def _rpc_call(body: bytes) -> tuple[str | None, Any]:
    """(method, id) of a JSON-RPC call body, else (None, None)."""
    try:
        value = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None, None
    if isinstance(value, dict) and isinstance(value.get("method"), str):
        return value["method"], value.get("id")
    return None, None


def _call_key(body: bytes) -> bytes:
    """A request body without its JSON-RPC id, for Replay(same_request=True)."""
    try:
        value = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return body
    if isinstance(value, dict):
        value.pop("id", None)
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return body


def _with_rpc_id(raw: bytes, rpc_id: Any) -> bytes:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if isinstance(value, dict) and "jsonrpc" in value:
        value["id"] = rpc_id
        return orjson.dumps(value)
    return raw


def _rewrite(rewrite: Rewrite, status: int, raw: bytes) -> tuple[int, bytes]:
    if rewrite.edit is not None:
        raw = orjson.dumps(rewrite.edit(orjson.loads(raw)))
    if rewrite.raw is not None:
        raw = rewrite.raw(raw)
    return (status if rewrite.status is None else rewrite.status), raw


# ---------------------------------------------------------------- a devnet behind two proxies


@dataclass
class ProxiedDevnet:
    """A running devnet and a proxy in front of each of its servers: point the Pooler at
    ``rpc.url`` and ``backend.url``; the devnet's own URLs stay reachable directly."""

    net: Devnet
    rpc: FaultProxy
    backend: FaultProxy

    @property
    def proxies(self) -> Iterable[FaultProxy]:
        return (self.rpc, self.backend)


@asynccontextmanager
async def proxied_devnet(**devnet: Any) -> AsyncIterator[ProxiedDevnet]:
    """``Devnet(**devnet)`` with a :class:`FaultProxy` in front of its RPC and its Backend."""
    async with (
        Devnet(**devnet) as net,
        FaultProxy(net.rpc_url, name="rpc proxy") as rpc,
        FaultProxy(net.backend_url, name="backend proxy") as backend,
    ):
        yield ProxiedDevnet(net, rpc, backend)
