"""Hypothesis-generated traffic against a live Pooler: the WebSocket and the REST routes.

Hypothesis draws the corpus (sequences of frames, REST requests); the test then plays it
against one running Pooler on the devnet over real sockets. The server must never crash,
never answer 500, always answer with frames a client can decode (codes 20-29 for errors),
close only with the protocol's codes, and still serve an honest miner afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from pooler.app.service import Pooler
from protocol.codec import decode_server
from protocol.messages import Accepted, Difficulty, Error, Job, Rejected, ServerMessage, Welcome
from tests.component.reliability_support import Miner, find_shares, ws_url
from tests.support.system import ops_options, register_miner, running_system

pytestmark = pytest.mark.usefixtures("miner_socket")  # each test on both /ws/miner paths

FRAME_BATCHES = 40  # x 20..40 frames drawn by hypothesis: the pool sequences pick from
WS_SEQUENCES = 240  # x 30..70 picks: more than 10,000 frames a run
REST_REQUESTS = 400
WINDOW = 8  # frames in flight per connection
CLOSE_CODES = {1000, 1008, 1009, 1011, 1013}
JOB, IN_RANGE = "\x00JOB", "\x00IN_RANGE"  # replaced by the connection's live job id / a nonce in range

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=5,
)
_nonce = st.one_of(
    st.just(IN_RANGE),
    st.integers(min_value=-(2**66), max_value=2**66),
    st.integers(min_value=0, max_value=2**64 - 1).map(str),
    st.integers(min_value=0, max_value=2**64 - 1).map(hex),
    st.integers(min_value=0, max_value=2**64 - 1).map(lambda n: "0" * 5 + str(n)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    _json,
)
_hash = st.one_of(st.none(), st.binary(min_size=32, max_size=32).map(bytes.hex), st.text(max_size=70), _json)
_job_id = st.one_of(st.just(JOB), st.text(max_size=70), _json)


def _share(job: Any, nonce: Any, hash_: Any, extra: dict[str, Any]) -> dict[str, Any]:
    frame = {**extra, "type": "share", "job": job, "nonce": nonce}
    if hash_ is not None:
        frame["hash"] = hash_
    return frame


_frame = st.one_of(
    st.builds(_share, _job_id, _nonce, _hash, st.dictionaries(st.text(max_size=6), _json, max_size=2)),
    st.builds(_share, st.just(JOB), st.just(IN_RANGE), st.none(), st.just({})),
    st.fixed_dictionaries({"type": st.just("more")}, optional={"job": _job_id}),
    st.just({"type": "stats"}),
    st.fixed_dictionaries(
        {"type": st.just("hello"), "token": st.text(max_size=40), "protocol": st.one_of(st.just(1), _json)},
        optional={"worker": _json, "agent": _json},
    ),
    st.dictionaries(st.text(max_size=8), _json, max_size=5).map(lambda d: {**d, "type": d.get("type", "x")}),
    _json,
    st.text(max_size=200),
    st.binary(max_size=200),
    st.sampled_from(["{", "}", "[]", "null", '{"type":"bye"}', '{"type":"share"', "\ud800"]),
)


def ws_corpus() -> list[list[Any]]:
    """Sequences of frames, drawn by hypothesis in two steps to keep generation cheap: a pool of
    frames (the expensive part: nested JSON, nonces in every spelling), then sequences of
    (pool index, mutation) pairs. A run plays more than 10,000 frames."""
    pool: list[Any] = []
    corpus: list[list[Any]] = []

    @settings(max_examples=FRAME_BATCHES, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(_frame, min_size=20, max_size=40))
    def frames(batch: list[Any]) -> None:
        pool.extend(batch)

    frames()

    # Two bytes per pick: the frame (16 bits, modulo the pool) and a mutation (the high bits of
    # the first). Bytes are the cheapest thing hypothesis draws, and still get its edge cases
    # (runs of zeros, repeats), i.e. the same frame many times in a row.
    @settings(max_examples=WS_SEQUENCES, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.binary(min_size=60, max_size=140))
    def sequences(seq: bytes) -> None:
        picks = [(seq[i] << 8 | seq[i + 1], seq[i] >> 5) for i in range(0, len(seq) - 1, 2)]
        corpus.append([_mutate(pool[n % len(pool)], how % 6) for n, how in picks])

    sequences()
    return corpus


def _mutate(frame: Any, how: int) -> Any:
    """0-2 as drawn; 3: the JSON cut short; 4: sent as a binary frame; 5: doubled inside an array."""
    if how <= 2 or isinstance(frame, bytes):
        return frame
    text = frame if isinstance(frame, str) else _dump(frame).decode("utf-8", "replace")
    if how == 3:
        return text[: len(text) // 2]
    if how == 4:
        return text.encode("utf-8", "replace")
    return f"[{text},{text}]"


def _wire(frame: Any, job: Job) -> str | bytes:
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, str):
        return frame.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(frame, dict) and frame.get("type") == "share":
        if frame.get("job") == JOB:
            frame = {**frame, "job": job.job}
        if frame.get("nonce") == IN_RANGE:
            frame = {**frame, "nonce": str(job.nonce_start + abs(hash(repr(frame))) % 50_000)}
    elif isinstance(frame, dict) and frame.get("job") == JOB:
        frame = {**frame, "job": job.job}
    try:
        return orjson.dumps(frame, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # beyond orjson (ints past 64 bits, NaN is fine): send Python's JSON
        import json

        return json.dumps(frame)


class Tally:
    def __init__(self) -> None:
        self.frames = 0
        self.answers = 0
        self.connections = 0
        self.closes: dict[int, int] = {}
        self.codes: dict[int, int] = {}


def _is_answer(msg: ServerMessage) -> bool:
    """An answer to one client frame (not a push: a difficulty change, a new block's clean job)."""
    return not isinstance(msg, Difficulty) and not (isinstance(msg, Job) and msg.clean)


async def _recv(ws: ClientConnection) -> str | bytes:
    """The next frame; ConnectionClosed once the server has closed.

    When the server closes while frames of ours are still unread, uvicorn reads our close echo
    only after its own close timer (10 s): the closing handshake is then cut short here.
    """
    for _ in range(30):
        try:
            return await asyncio.wait_for(ws.recv(), 0.5)
        except TimeoutError:
            if ws.state is State.CLOSING and ws.protocol.close_rcvd is not None:
                ws.transport.abort()
                raise ConnectionClosed(ws.protocol.close_rcvd, None) from None
    raise AssertionError(f"no answer in 15 s ({ws.state!r})")


async def play(pooler: Pooler, token: str, sequences: list[list[Any]], tally: Tally) -> None:
    """Frames go in windows of WINDOW, each window's answers awaited before the next, so every
    frame counted was handled; frames a close left unanswered go again on a new connection."""
    for frames in sequences:
        pending = list(frames)
        while pending:
            tally.connections += 1
            # close_timeout: once the server has closed, do not wait long for the TCP teardown
            async with connect(
                ws_url(pooler), max_size=None, proxy=None, ping_interval=None, close_timeout=1
            ) as ws:
                hello = {"type": "hello", "token": token, "worker": "fuzz", "protocol": 1}
                await ws.send(orjson.dumps(hello).decode())
                assert isinstance(decode_server(await ws.recv()), Welcome)
                job = decode_server(await ws.recv())
                assert isinstance(job, Job)
                try:
                    while pending:
                        window = pending[:WINDOW]
                        for frame in window:
                            await ws.send(_wire(frame, job))
                        answered = 0
                        while answered < len(window):
                            raw = await _recv(ws)
                            msg = decode_server(raw)  # every frame the server sends decodes
                            if not _is_answer(msg):
                                continue
                            answered += 1
                            pending.pop(0)
                            tally.frames += 1
                            tally.answers += 1
                            if isinstance(msg, Error | Rejected):
                                assert 20 <= msg.code <= 29 and msg.message, msg
                                tally.codes[int(msg.code)] = tally.codes.get(int(msg.code), 0) + 1
                except ConnectionClosed:
                    rcvd = ws.protocol.close_rcvd.code if ws.protocol.close_rcvd is not None else None
                    if rcvd in (1000, 1009) and pending:  # 'bye' or a frame too large: closed for it
                        pending.pop(0)
                        tally.frames += 1
            code = ws.protocol.close_rcvd.code if ws.protocol.close_rcvd is not None else ws.close_code
            assert code in CLOSE_CODES, (code, ws.close_reason)
            tally.closes[code] = tally.closes.get(code, 0) + 1


async def test_fuzzed_websocket_frames_never_break_the_server(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    corpus = ws_corpus()
    async with (
        # rate, share-quality and wrong-token limits off: the frames must reach the decoder and the core
        running_system(
            block_interval=6,
            profile=ops_options,
            messages_per_second=1e6,
            messages_burst=10**6,
            invalid_share_window=10**9,
            auth_failures_allowed=10**6,
        ) as system,
        aiohttp.ClientSession() as http,
    ):
        pooler = system.pooler
        regs = [await register_miner(pooler.url, f"fuzz{i}", http=http) for i in range(6)]
        tally = Tally()
        lanes = [corpus[i :: len(regs)] for i in range(len(regs))]
        await asyncio.gather(
            *(play(pooler, reg.token, lane, tally) for reg, lane in zip(regs, lanes, strict=True))
        )
        codes = dict(sorted(tally.codes.items()))
        print(
            f"\nws fuzz: {tally.frames} frames in {len(corpus)} sequences, {tally.connections} connections;"
            f" {tally.answers} answers; error codes {codes}; closes {tally.closes}"
        )
        assert tally.frames >= 10_000
        await _still_serves(pooler, http)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def _still_serves(pooler: Pooler, http: aiohttp.ClientSession) -> None:
    assert pooler.runner.failures == 0
    reg = await register_miner(pooler.url, "honest", http=http)
    async with Miner(ws_url(pooler), reg.token) as miner:
        job = await miner.next(Job)
        (nonce, _), *_ = find_shares(job, job.share_zeros, 1)
        await miner.send({"type": "share", "job": job.job, "nonce": str(nonce)})
        assert isinstance(await miner.next(Accepted), Accepted)
    async with http.get(f"{pooler.url}/health/live") as resp:
        assert resp.status == 200


# ---------------------------------------------------------------- REST

_ROUTES = [
    ("POST", "/miner/register"),
    ("GET", "/miner/work"),
    ("POST", "/miner/submit"),
    ("GET", "/miner/stats"),
    ("POST", "/miner/leave"),
    ("GET", "/health"),
    ("GET", "/health/ready"),
    ("POST", "/miner/work"),
    ("GET", "/miner/submit"),
    ("PUT", "/miner/register"),
]
_latin1 = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"))
_auth = st.one_of(
    st.just("VALID"),
    st.none(),
    _latin1.map(lambda t: "Bearer " + t[:300]),
    _latin1.map(lambda t: t[:300]),
    st.just("Bearer"),
    st.just("Basic dXNlcjpwYXNz"),
)
_body = st.one_of(
    st.none(),
    _json.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS) if _dumpable(v) else b"{}"),
    st.builds(_share, _job_id, _nonce, _hash, st.just({})).map(lambda d: _dump(d)),
    st.fixed_dictionaries({}, optional={"name": _json, "stakePercentage": _json, "metadata": _json}).map(
        lambda d: _dump(d)
    ),
    st.binary(max_size=300),
    st.just(b"x" * 5000),
)


def _dumpable(value: Any) -> bool:
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return False
    return True


def _dump(value: Any) -> bytes:
    import json

    return json.dumps(value).encode("utf-8", "surrogatepass")


def rest_corpus() -> list[tuple[str, str, Any, Any, Any]]:
    corpus: list[tuple[str, str, Any, Any, Any]] = []

    @settings(
        max_examples=REST_REQUESTS,
        database=None,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.sampled_from(_ROUTES), _auth, _body, st.one_of(st.none(), _latin1.map(lambda t: t[:100])))
    def collect(route: tuple[str, str], auth: Any, body: Any, worker: Any) -> None:
        corpus.append((route[0], route[1], auth, body, worker))

    collect()
    return corpus


async def test_fuzzed_rest_requests_never_get_a_500(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    corpus = rest_corpus()
    async with (
        # the wrong-token back-off off: the fuzzed tokens must reach the routes (back-off: lock-out tests)
        running_system(block_interval=6, profile=ops_options, auth_failures_allowed=10**6) as system,
        aiohttp.ClientSession() as http,
    ):
        pooler = system.pooler
        token = (await register_miner(pooler.url, "rest-fuzz", http=http)).token
        statuses: dict[int, int] = {}
        for method, path, auth, body, worker in corpus:
            headers = {}
            if auth == "VALID":  # never the valid token on /miner/leave: the miner is kept for the run
                auth = "Bearer not-the-token" if path == "/miner/leave" else f"Bearer {token}"
            if auth is not None:
                headers["Authorization"] = auth
            params = {"worker": worker} if worker is not None else None
            async with http.request(
                method, pooler.url + path, data=body, headers=headers, params=params
            ) as resp:
                raw = await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                assert resp.status < 500 or resp.status == 503, (method, path, resp.status, raw[:200])
                if resp.status >= 400 and resp.status not in (
                    404,
                    405,
                ):  # Starlette's plain-text router answers
                    answer = orjson.loads(raw) if raw[:1] == b"{" else None
                    assert isinstance(answer, dict) and answer.get("message"), (
                        method,
                        path,
                        resp.status,
                        raw[:200],
                    )
        print(f"\nrest fuzz: {len(corpus)} requests; statuses {dict(sorted(statuses.items()))}")
        assert statuses.get(503, 0) == 0  # a block is open, the Backend is up: no reason to refuse
        await _still_serves(pooler, http)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
