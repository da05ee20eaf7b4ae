"""Encode protocol v1 messages with orjson and decode them strictly.

Decoding is the trust boundary: whatever bytes arrive, :func:`decode_client` and
:func:`decode_server` either return a typed message or raise :class:`ProtocolError` with
a code and a sentence saying what was wrong and what is expected. Nothing else escapes.
Unknown fields are ignored so that later protocol versions can add fields; wrongly typed
known fields are errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

import orjson

from protocol.errors import Code, ProtocolError
from protocol.messages import (
    Accepted,
    Block,
    Bye,
    ClientMessage,
    Difficulty,
    Error,
    Hello,
    Job,
    More,
    Rejected,
    Report,
    ServerMessage,
    Share,
    Slot,
    Stats,
    StatsRequest,
    Welcome,
)
from protocol.work import MAX_INDEX, MAX_NONCE

MAX_FRAME: Final = 4096
"""Default largest accepted frame, bytes. Every valid client message fits in a few hundred."""

MAX_WORKER_LEN: Final = 64
_MAX_TOKEN_LEN: Final = 256
_MAX_ID_LEN: Final = 64
_MAX_TEXT_LEN: Final = 512
_MAX_NONCE_TEXT: Final = 64  # bounds int() work on hostile input; 20 digits suffice
_MAX_U32: Final = MAX_INDEX
_MAX_MS: Final = 2**53 - 1  # unix ms must stay exact in a JavaScript number
_MAX_FEATURES: Final = 16  # names in one features list; a client asks for a few
_MAX_FEATURE_LEN: Final = 64
_MAX_SLOT_LEN: Final = _MAX_ID_LEN - 11  # "<slot>.<block>" must fit a job id (a u32 is 10 digits)
MAX_HASHRATE: Final = 1e21
"""Largest reported hashrate accepted, hashes/s (a zetta-hash: far above any rig)."""

_DECIMAL = re.compile(r"[0-9]+", re.ASCII)
_HEX_NONCE = re.compile(r"0[xX][0-9a-fA-F]+", re.ASCII)
_HEX32 = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)

Obj = dict[str, Any]


def _fail(message: str, code: Code = Code.MALFORMED) -> ProtocolError:
    return ProtocolError(code, message)


# ---------------------------------------------------------------- field readers


def parse_nonce(value: object, where: str = "nonce") -> int:
    """A nonce from JSON: an integer, a decimal string, or a ``0x`` hex string; 0..2^64-1.

    All spellings of one number map to one ``int``, which is what duplicate detection
    keys on (``"0x1F"``, ``"31"``, ``"0031"`` and ``31`` are one nonce).
    """
    if isinstance(value, bool):
        raise _fail(f"{where} must be a decimal string or an integer, got a boolean")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        if len(value) > _MAX_NONCE_TEXT:
            raise _fail(f"{where} is {len(value)} characters long; expected at most 20 decimal digits")
        if _DECIMAL.fullmatch(value):
            n = int(value)
        elif _HEX_NONCE.fullmatch(value):
            n = int(value[2:], 16)
        else:
            raise _fail(f"{where} {value!r} is not a decimal integer string (hex needs a 0x prefix)")
    elif isinstance(value, float):
        raise _fail(
            f"{where} arrived as the JSON float {value!r} (fractional, or too large for a JSON integer);"
            " send nonces as decimal strings"
        )
    else:
        raise _fail(f"{where} must be a decimal string or an integer, got {type(value).__name__}")
    if not 0 <= n <= MAX_NONCE:
        raise _fail(f"{where} {n} is outside the u64 range 0..{MAX_NONCE}")
    return n


def parse_hex32(value: object, where: str) -> bytes:
    """64 hex characters (either case) to 32 bytes."""
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        shown = repr(value)[:80]
        raise _fail(f"{where} must be 64 hexadecimal characters, got {shown}")
    return bytes.fromhex(value)


def _get(obj: Obj, key: str, kind: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise _fail(f"'{kind}' message needs the field '{key}'") from None


def _text(
    obj: Obj,
    key: str,
    kind: str,
    limit: int,
    *,
    default: str | None = None,
    required: bool = True,
    min_len: int = 1,
) -> Any:
    if key not in obj or obj[key] is None:
        if required and default is None:
            raise _fail(f"'{kind}' message needs the field '{key}' (a string)")
        return default
    value = obj[key]
    if not isinstance(value, str):
        raise _fail(f"'{kind}'.{key} must be a string, got {type(value).__name__}")
    if not min_len <= len(value) <= limit:
        raise _fail(f"'{kind}'.{key} must be {min_len} to {limit} characters, got {len(value)}")
    if not value.isprintable():
        raise _fail(f"'{kind}'.{key} must not contain control or invisible characters")
    return value


def _int(obj: Obj, key: str, kind: str, lo: int, hi: int) -> int:
    value = _get(obj, key, kind)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"'{kind}'.{key} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise _fail(f"'{kind}'.{key} must be between {lo} and {hi}, got {value}")
    return value


def _opt_int(obj: Obj, key: str, kind: str, lo: int, hi: int) -> int | None:
    return None if obj.get(key) is None else _int(obj, key, kind, lo, hi)


def _bool(obj: Obj, key: str, kind: str) -> bool:
    value = _get(obj, key, kind)
    if not isinstance(value, bool):
        raise _fail(f"'{kind}'.{key} must be true or false, got {type(value).__name__}")
    return value


def _number(obj: Obj, key: str, kind: str) -> float:
    value = _get(obj, key, kind)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        raise _fail(f"'{kind}'.{key} must be a non-negative number")
    return float(value)


def _hashrate(obj: Obj, key: str, kind: str) -> float:
    value = _get(obj, key, kind)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"'{kind}'.{key} must be a number of hashes per second, got {type(value).__name__}")
    if not 0 <= value <= MAX_HASHRATE:  # also false for NaN
        raise _fail(
            f"'{kind}'.{key} must be a finite number from 0 to {MAX_HASHRATE:g} hashes/s, got {value!r}"
        )
    return float(value)


def _features(obj: Obj, kind: str) -> tuple[str, ...]:
    """An optional list of feature names (missing or null: none)."""
    value = obj.get("features")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(f"'{kind}'.features must be a list of strings, got {type(value).__name__}")
    if len(value) > _MAX_FEATURES:
        raise _fail(f"'{kind}'.features lists {len(value)} names; at most {_MAX_FEATURES} are allowed")
    names: list[str] = []
    for name in value:
        if not isinstance(name, str) or not 1 <= len(name) <= _MAX_FEATURE_LEN or not name.isprintable():
            shown = repr(name)[:80]
            raise _fail(
                f"'{kind}'.features must hold names of 1 to {_MAX_FEATURE_LEN} printable characters,"
                f" got {shown}"
            )
        names.append(name)
    return tuple(dict.fromkeys(names))  # each once, in the order asked


def _code(obj: Obj, kind: str) -> Code:
    raw = _get(obj, "code", kind)
    try:
        return Code(raw)
    except ValueError:
        raise _fail(f"'{kind}'.code {raw!r} is not a protocol v1 error code (20-29)") from None


# ---------------------------------------------------------------- framing


def _load_object(data: bytes | str, max_size: int) -> Obj:
    if len(data) > max_size:
        raise _fail(f"frame is {len(data)} bytes; the limit is {max_size}", Code.TOO_LARGE)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _fail(f"frame is not valid JSON ({exc.args[0] if exc.args else 'decode error'})") from None
    if not isinstance(obj, dict):
        raise _fail(f"frame must be a JSON object with a 'type' field, got a JSON {type(obj).__name__}")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise _fail("frame must have a string field 'type'")
    return obj


# ---------------------------------------------------------------- client messages


def _hello(o: Obj) -> Hello:
    protocol = _int(o, "protocol", "hello", 0, 2**31)
    if protocol != 1:
        raise _fail(f"protocol {protocol} is not supported; this server speaks protocol 1")
    return Hello(
        token=_text(o, "token", "hello", _MAX_TOKEN_LEN),
        worker=_text(o, "worker", "hello", MAX_WORKER_LEN, default="default"),
        agent=_text(o, "agent", "hello", _MAX_TEXT_LEN, required=False),
        protocol=protocol,
        hashrate=None if o.get("hashrate") is None else _hashrate(o, "hashrate", "hello"),
        features=_features(o, "hello"),
    )


def _share(o: Obj) -> Share:
    raw_hash = o.get("hash")
    return Share(
        job=_text(o, "job", "share", _MAX_ID_LEN),
        nonce=parse_nonce(_get(o, "nonce", "share")),
        hash=None if raw_hash is None else parse_hex32(raw_hash, "'share'.hash"),
    )


def _more(o: Obj) -> More:
    return More(job=_text(o, "job", "more", _MAX_ID_LEN, required=False))


_CLIENT: Final[dict[str, Callable[[Obj], ClientMessage]]] = {
    "hello": _hello,
    "share": _share,
    "more": _more,
    "stats": lambda o: StatsRequest(),
    "report": lambda o: Report(_hashrate(o, "hashrate", "report")),
    "bye": lambda o: Bye(),
}


def decode_client(data: bytes | str, max_size: int = MAX_FRAME) -> ClientMessage:
    """Parse one client frame or raise :class:`ProtocolError`."""
    obj = _load_object(data, max_size)
    parse = _CLIENT.get(obj["type"])
    if parse is None:
        raise _fail(f"unknown message type {obj['type']!r:.40}; expected one of {', '.join(_CLIENT)}")
    return parse(obj)


def client_to_dict(msg: ClientMessage) -> Obj:
    match msg:
        case Hello():
            d: Obj = {"type": "hello", "token": msg.token, "worker": msg.worker, "protocol": msg.protocol}
            if msg.agent is not None:
                d["agent"] = msg.agent
            if msg.hashrate is not None:
                d["hashrate"] = msg.hashrate
            if msg.features:
                d["features"] = list(msg.features)
            return d
        case Share():
            d = {"type": "share", "job": msg.job, "nonce": str(msg.nonce)}
            if msg.hash is not None:
                d["hash"] = msg.hash.hex()
            return d
        case More():
            return {"type": "more"} if msg.job is None else {"type": "more", "job": msg.job}
        case StatsRequest():
            return {"type": "stats"}
        case Report():
            return {"type": "report", "hashrate": msg.hashrate}
        case Bye():
            return {"type": "bye"}


# ---------------------------------------------------------------- server messages


def server_to_dict(msg: ServerMessage) -> Obj:
    """The wire object of a server message (REST routes return these as bodies)."""
    match msg:
        case Job():
            return {
                "type": "job",
                "job": msg.job,
                "block": msg.block,
                "entropy": msg.entropy.hex(),
                "farmer": msg.farmer,
                "nonceStart": str(msg.nonce_start),
                "nonceEnd": str(msg.nonce_end),
                "shareZeros": msg.share_zeros,
                "clean": msg.clean,
                "workAt": msg.work_at,
                "blockEndsAt": msg.block_ends_at,
            }
        case Accepted():
            return {
                "type": "accepted",
                "job": msg.job,
                "nonce": str(msg.nonce),
                "zeros": msg.zeros,
                "best": msg.best,
            }
        case Rejected():
            return {
                "type": "rejected",
                "job": msg.job,
                "nonce": None if msg.nonce is None else str(msg.nonce),
                "code": int(msg.code),
                "reason": msg.code.reason,
                "message": msg.message,
            }
        case Welcome():
            d = {
                "type": "welcome",
                "minerId": msg.miner_id,
                "worker": msg.worker,
                "farmerId": msg.farmer_id,
                "farmer": msg.farmer,
                "protocol": msg.protocol,
            }
            if msg.features:  # a v1 client that asked for none gets the same bytes as before
                d["features"] = list(msg.features)
            return d
        case Slot():
            return {
                "type": "slot",
                "slot": msg.slot,
                "farmer": msg.farmer,
                "nonceStart": str(msg.nonce_start),
                "nonceEnd": str(msg.nonce_end),
                "shareZeros": msg.share_zeros,
            }
        case Block():
            return {
                "type": "block",
                "block": msg.block,
                "entropy": msg.entropy.hex(),
                "workAt": msg.work_at,
                "blockEndsAt": msg.block_ends_at,
            }
        case Difficulty():
            return {"type": "difficulty", "shareZeros": msg.share_zeros}
        case Stats():
            return {
                "type": "stats",
                "minerId": msg.miner_id,
                "farmerId": msg.farmer_id,
                "block": msg.block,
                "workers": msg.workers,
                "hashrate": msg.hashrate,
                "accepted": msg.accepted,
                "rejected": msg.rejected,
                "stale": msg.stale,
                "bestZeros": msg.best_zeros,
                "shareZeros": msg.share_zeros,
                "rewards": str(msg.rewards),
                "reportedHashrate": msg.reported_hashrate,
            }
        case Error():
            return {"type": "error", "code": int(msg.code), "reason": msg.code.reason, "message": msg.message}


def encode(msg: ServerMessage | ClientMessage) -> bytes:
    """One frame's bytes (UTF-8 JSON) for any protocol v1 message."""
    if isinstance(msg, Hello | Share | More | StatsRequest | Report | Bye):
        return orjson.dumps(client_to_dict(msg))
    return orjson.dumps(server_to_dict(msg))


def encode_text(msg: ServerMessage) -> str:
    """A server message's frame as text (what a socket's outbox queues): :func:`encode`'s JSON,
    with the frame sent once per share, ``accepted``, formatted without a dict (the share path)."""
    if type(msg) is Accepted:
        job = orjson.dumps(msg.job).decode()  # a client's string: escaped as JSON
        best = "true" if msg.best else "false"
        return f'{{"type":"accepted","job":{job},"nonce":"{msg.nonce}","zeros":{msg.zeros},"best":{best}}}'
    return orjson.dumps(server_to_dict(msg)).decode()


def _job(o: Obj) -> Job:
    start = parse_nonce(_get(o, "nonceStart", "job"), "'job'.nonceStart")
    end = parse_nonce(_get(o, "nonceEnd", "job"), "'job'.nonceEnd")
    if end <= start:
        raise _fail(f"'job' range is empty: nonceEnd {end} <= nonceStart {start}")
    return Job(
        job=_text(o, "job", "job", _MAX_ID_LEN),
        block=_int(o, "block", "job", 0, _MAX_U32),
        entropy=parse_hex32(_get(o, "entropy", "job"), "'job'.entropy"),
        farmer=_text(o, "farmer", "job", 56),
        nonce_start=start,
        nonce_end=end,
        share_zeros=_int(o, "shareZeros", "job", 0, 64),
        clean=_bool(o, "clean", "job"),
        work_at=_int(o, "workAt", "job", 0, _MAX_MS),
        block_ends_at=_int(o, "blockEndsAt", "job", 0, _MAX_MS),
    )


def _slot(o: Obj) -> Slot:
    start = parse_nonce(_get(o, "nonceStart", "slot"), "'slot'.nonceStart")
    end = parse_nonce(_get(o, "nonceEnd", "slot"), "'slot'.nonceEnd")
    if end <= start:
        raise _fail(f"'slot' range is empty: nonceEnd {end} <= nonceStart {start}")
    return Slot(
        slot=_text(o, "slot", "slot", _MAX_SLOT_LEN),
        farmer=_text(o, "farmer", "slot", 56),
        nonce_start=start,
        nonce_end=end,
        share_zeros=_int(o, "shareZeros", "slot", 0, 64),
    )


def _block(o: Obj) -> Block:
    return Block(
        block=_int(o, "block", "block", 0, _MAX_U32),
        entropy=parse_hex32(_get(o, "entropy", "block"), "'block'.entropy"),
        work_at=_int(o, "workAt", "block", 0, _MAX_MS),
        block_ends_at=_int(o, "blockEndsAt", "block", 0, _MAX_MS),
    )


def _welcome(o: Obj) -> Welcome:
    return Welcome(
        miner_id=_text(o, "minerId", "welcome", _MAX_ID_LEN),
        worker=_text(o, "worker", "welcome", MAX_WORKER_LEN),
        farmer_id=_text(o, "farmerId", "welcome", _MAX_ID_LEN),
        farmer=_text(o, "farmer", "welcome", 56),
        protocol=_int(o, "protocol", "welcome", 1, 1),
        features=_features(o, "welcome"),
    )


def _stats(o: Obj) -> Stats:
    rewards = _get(o, "rewards", "stats")
    if not isinstance(rewards, str) or not _DECIMAL.fullmatch(rewards) or len(rewards) > 40:
        raise _fail("'stats'.rewards must be a decimal string")
    return Stats(
        miner_id=_text(o, "minerId", "stats", _MAX_ID_LEN),
        farmer_id=_text(o, "farmerId", "stats", _MAX_ID_LEN),
        block=_opt_int(o, "block", "stats", 0, _MAX_U32),
        workers=_int(o, "workers", "stats", 0, 2**31),
        hashrate=_number(o, "hashrate", "stats"),
        accepted=_int(o, "accepted", "stats", 0, 2**63),
        rejected=_int(o, "rejected", "stats", 0, 2**63),
        stale=_int(o, "stale", "stats", 0, 2**63),
        best_zeros=_opt_int(o, "bestZeros", "stats", 0, 64),
        share_zeros=_opt_int(o, "shareZeros", "stats", 0, 64),
        rewards=int(rewards),
        reported_hashrate=None
        if o.get("reportedHashrate") is None
        else _hashrate(o, "reportedHashrate", "stats"),
    )


def _rejected(o: Obj) -> Rejected:
    nonce = o.get("nonce")
    return Rejected(
        job=_text(o, "job", "rejected", _MAX_ID_LEN, required=False),
        nonce=None if nonce is None else parse_nonce(nonce),
        code=_code(o, "rejected"),
        message=_text(o, "message", "rejected", _MAX_TEXT_LEN, required=False, min_len=0) or "",
    )


_SERVER: Final[dict[str, Callable[[Obj], ServerMessage]]] = {
    "welcome": _welcome,
    "job": _job,
    "slot": _slot,
    "block": _block,
    "difficulty": lambda o: Difficulty(share_zeros=_int(o, "shareZeros", "difficulty", 0, 64)),
    "accepted": lambda o: Accepted(
        job=_text(o, "job", "accepted", _MAX_ID_LEN),
        nonce=parse_nonce(_get(o, "nonce", "accepted")),
        zeros=_int(o, "zeros", "accepted", 0, 64),
        best=_bool(o, "best", "accepted"),
    ),
    "rejected": _rejected,
    "stats": _stats,
    "error": lambda o: Error(
        code=_code(o, "error"),
        message=_text(o, "message", "error", _MAX_TEXT_LEN, required=False, min_len=0) or "",
    ),
}


def decode_server(data: bytes | str, max_size: int = 64 * 1024) -> ServerMessage:
    """Parse one server frame (for miners, dashboards and tests) or raise :class:`ProtocolError`."""
    obj = _load_object(data, max_size)
    parse = _SERVER.get(obj["type"])
    if parse is None:
        raise _fail(f"unknown message type {obj['type']!r:.40}; expected one of {', '.join(_SERVER)}")
    return parse(obj)
