"""Structured logging on the stdlib ``logging`` module: one line per event, text or JSON.

Use :func:`log_event` for events with context::

    log = logging.getLogger("pooler.coordinator")
    log_event(log, logging.INFO, "work submitted", block=123, farmerId=fid, zeros=9)

It returns at once when the level is disabled, before any record, dict or string is made;
on the hottest paths (one call per share) also guard the call itself, so that even the
keyword arguments are not built::

    if log.isEnabledFor(logging.DEBUG):
        log_event(log, logging.DEBUG, "share", block=b, minerId=m, worker=w, nonce=n)

Plain ``log.info("...", extra={"block": 5})`` works too: extra attributes become fields.

``LOG_FORMAT=text``::

    2025-08-01T12:00:00.123Z INFO pooler.coordinator work submitted block=123 farmerId=f1 zeros=9

``LOG_FORMAT=json`` (one object a line, orjson)::

    {"ts":"2025-08-01T12:00:00.123Z","level":"info","logger":"pooler.coordinator",
     "event":"work submitted","block":123,"farmerId":"f1","zeros":9}

No token or key is ever written: :class:`RedactingFilter` replaces the value of any field
whose name says it is secret (token, secret, adminToken, authorization, password ...), and
the formatters scrub the finished line of Stellar secret seeds (``S...``, 56 characters),
``Bearer`` credentials, ``key=value`` pairs with such names and passwords inside URLs.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from pooler.config import Settings

REDACTED: Final = "***"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "ctx",
}
# Field names the formatters write themselves; a context field with one of these names is
# written with a trailing underscore instead of overwriting it.
_OWN_KEYS: Final = frozenset({"ts", "level", "logger", "event", "exc"})

# Compared after lower-casing and dropping "_" and "-": adminToken, ADMIN_TOKEN, admin-token.
_SECRET_SUFFIXES: Final = (
    "token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "authorization",
    "apikey",
    "privatekey",
    "secretkey",
    "seed",
    "cookie",
)

_TEXT_RULES: Final = (
    # Stellar secret seeds: S + 55 base32 characters.
    (re.compile(r"(?<![A-Za-z0-9])S[A-Z2-7]{55}(?![A-Za-z0-9])"), "S" + REDACTED),
    # HTTP credentials.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@\"']*):[^\s@/\"']+@"), r"\1:" + REDACTED + "@"),
    # token=..., "adminToken": "...", password: ... (the name decides, whatever the value)
    (
        re.compile(
            r"""(?ix)
            ( (?<![a-z0-9]) ["']? [a-z0-9_-]*? (?:token|secret|password|passwd|authorization|api_?key) ["']?
              \s* [=:] \s* ["']? )
            (?! \*\*\* | [{\[] ) [^\s"'&,;}]+
            """
        ),
        r"\1" + REDACTED,
    ),
)


def is_secret_name(name: str) -> bool:
    """True if a field called ``name`` must never be logged (token, adminToken, AUTHORIZATION ...)."""
    key = name.lower().replace("_", "").replace("-", "")
    return key.endswith(_SECRET_SUFFIXES)


def redact_text(text: str) -> str:
    """Scrub secret-looking parts of free text (seeds, credentials, key=value secrets, URL passwords)."""
    for pattern, replacement in _TEXT_RULES:
        text = pattern.sub(replacement, text)
    return text


def redact_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``fields`` with secret-named values replaced, recursively, and strings scrubbed."""
    return {key: REDACTED if is_secret_name(key) else _redact_value(value) for key, value in fields.items()}


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return redact_fields(value)
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def log_event(
    logger: logging.Logger,
    level: int,
    event: str,
    /,
    *,
    exc_info: BaseException | bool | None = None,
    **fields: Any,
) -> None:
    """Log ``event`` with context ``fields`` (block=, minerId=, worker=, conn= ...).

    Checks ``isEnabledFor`` first: a disabled level costs one method call and builds
    nothing. ``event`` is a constant text; put variable parts in fields, not in it.
    """
    if not logger.isEnabledFor(level):
        return
    logger.log(level, event, exc_info=exc_info, extra={"ctx": fields}, stacklevel=2)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The context fields of a record: ``extra=`` attributes, then :func:`log_event`'s fields."""
    fields = {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS}
    ctx = record.__dict__.get("ctx")
    if isinstance(ctx, Mapping):
        fields.update(ctx)
    return fields


class RedactingFilter(logging.Filter):
    """Replaces secret-named fields and scrubs the message before any handler formats it.

    Installed on the handler by :func:`setup_logging`, so it covers every logger that
    propagates to the root, third-party ones included.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for key in [k for k in record.__dict__ if k not in _RECORD_ATTRS]:
            value = record.__dict__[key]
            record.__dict__[key] = REDACTED if is_secret_name(key) else _redact_value(value)
        ctx = record.__dict__.get("ctx")
        if isinstance(ctx, Mapping):
            record.ctx = redact_fields(ctx)  # a copy: the caller's dict stays as it was
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format: let the handler report it as logging does
            return True
        record.msg, record.args = redact_text(message), None
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _jsonable(value: Any) -> Any:
    """Fallback for what orjson refuses outright (ints beyond 64 bits, non-str keys)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


def _fields_for_output(record: logging.LogRecord) -> dict[str, Any]:
    return {(f"{k}_" if k in _OWN_KEYS else k): v for k, v in record_fields(record).items()}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, the context fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        doc.update(_fields_for_output(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        try:
            line = orjson.dumps(doc, default=_json_default)
        except TypeError:  # orjson.JSONEncodeError: e.g. an int beyond 64 bits
            line = orjson.dumps(_jsonable(doc), default=_json_default)
        return redact_text(line.decode())


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger event key=value ...`` on one line; values with spaces are JSON-quoted."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name, _one_line(record.getMessage())]
        for key, value in _fields_for_output(record).items():
            parts.append(f"{key}={_text_value(value)}")
        line = " ".join(parts)
        if record.exc_info:
            # The traceback stays on one line too: log shippers split on newlines.
            line += " exc=" + orjson.dumps(self.formatException(record.exc_info)).decode()
        return redact_text(line)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _text_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    text = value if isinstance(value, str) else _json_text(value)
    if text and not any(c.isspace() or c in '"=\\' for c in text):
        return text
    return orjson.dumps(text).decode()


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value, default=_json_default).decode()
    except TypeError:
        return orjson.dumps(_jsonable(value), default=_json_default).decode()


_HANDLER_MARK: Final = "_kale_pooler_handler"


def setup_logging(
    settings: Settings | None = None,
    *,
    level: str | int | None = None,
    fmt: str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every log record to ``stream`` (default stderr) as text or JSON lines.

    ``level``/``fmt`` default to ``settings.log_level``/``settings.log_format`` (INFO/text
    without settings). Calling it again replaces the handler it installed before (and
    only that one). Returns the handler, so a caller can remove it. For uvicorn, pass
    ``log_config=None`` so its loggers propagate here instead of installing their own.
    """
    level = level if level is not None else (settings.log_level if settings else "INFO")
    fmt = fmt if fmt is not None else (settings.log_format if settings else "text")
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


__all__ = [
    "REDACTED",
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "is_secret_name",
    "log_event",
    "record_fields",
    "redact_fields",
    "redact_text",
    "setup_logging",
]
