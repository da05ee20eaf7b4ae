"""The value parsers of the settings table (:mod:`pooler.config`): each turns a variable's text
into its typed value or raises :class:`Invalid`; ``expected`` is what the one-line error says."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from protocol import strkey
from protocol.errors import ProtocolError


class _Invalid(Exception):
    """Raised by a parse function; an optional detail is added after what is expected."""


@dataclass(frozen=True, slots=True)
class Parser:
    """Turns a variable's text into its typed value; ``expected`` is what the error line says."""

    expected: str
    parse: Callable[[str], object]

    def __call__(self, text: str) -> object:
        return self.parse(text)


def _int(lo: int, hi: int, unit: str = "") -> Parser:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise _Invalid from None
        if not lo <= value <= hi:
            raise _Invalid
        return value

    return Parser(f"an integer {lo}..{hi}" + (f" ({unit})" if unit else ""), parse)


def _float(lo: float, hi: float, unit: str = "") -> Parser:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _Invalid from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise _Invalid
        return value

    return Parser(f"a number {lo:g}..{hi:g}" + (f" ({unit})" if unit else ""), parse)


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _parse_bool(text: str) -> bool:
    word = text.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise _Invalid


_bool = Parser("true or false (also 1/0, yes/no, on/off)", _parse_bool)


def _enum(*choices: str, upper: bool = False) -> Parser:
    def parse(text: str) -> str:
        word = text.upper() if upper else text.lower()
        if word not in choices:
            raise _Invalid
        return word

    return Parser("one of " + ", ".join(choices), parse)


def _http_url(*, strip_slash: bool) -> Parser:
    def parse(text: str) -> str:
        _check_url(text, ("http", "https"))
        return text.rstrip("/") if strip_slash else text

    return Parser("an http:// or https:// URL with a host, e.g. http://127.0.0.1:3000", parse)


def _check_url(text: str, schemes: tuple[str, ...]) -> None:
    if any(c.isspace() for c in text):
        raise _Invalid
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise _Invalid from None
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise _Invalid


def _parse_redis_url(text: str) -> str:
    if text.lower().startswith("unix://"):
        if len(text) <= len("unix://") or any(c.isspace() for c in text):
            raise _Invalid
        return text
    _check_url(text, ("redis", "rediss"))
    return text


_redis_url = Parser("a redis://, rediss:// or unix:// URL, e.g. redis://127.0.0.1:6379/0", _parse_redis_url)

_INSTANCE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _parse_instance_id(text: str) -> str:
    if not _INSTANCE_ID.fullmatch(text):
        raise _Invalid
    return text


_instance_id = Parser("1 to 64 of A-Z a-z 0-9 _ . -, unique in the group, e.g. pooler-a", _parse_instance_id)


def _parse_contract_id(text: str) -> str:
    try:
        kind, _ = strkey.decode(text)
    except ProtocolError:
        raise _Invalid from None
    if kind != "C":
        raise _Invalid("this is an account (G...), not a contract")
    return text


_contract_id = Parser("a Soroban contract id (a 56-character C... strkey)", _parse_contract_id)


def _parse_origins(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if items == ("*",):
        return items
    for item in items:
        try:
            parts = urlsplit(item)
            parts.port  # noqa: B018 -- raises ValueError on a bad port
        except ValueError:
            raise _Invalid(f"{item!r} is not an origin") from None
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
        ):
            raise _Invalid(f"{item!r} is not an origin")
    return tuple(item.rstrip("/") for item in items)


_origins = Parser(
    "comma-separated origins (scheme://host[:port]) such as https://pool.example.com, or *", _parse_origins
)

_POOLER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")


def _parse_pooler_id(text: str) -> str:
    if not _POOLER_ID.match(text):
        raise _Invalid
    return text


_pooler_id = Parser("1-128 letters, digits and . _ : - (such as a UUID)", _parse_pooler_id)


def _parse_display_text(text: str) -> str:
    if len(text) > 100 or not text.isprintable():
        raise _Invalid
    return text


_display_text = Parser("printable text of at most 100 characters", _parse_display_text)

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\Z")


def _parse_host(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _HOST_NAME.match(text):
            raise _Invalid from None
    return text


_host = Parser("an IP address or host name to listen on, e.g. 127.0.0.1 or 0.0.0.0", _parse_host)


def _parse_path(text: str) -> str:
    if not text.isprintable():
        raise _Invalid
    return text


_path = Parser("a file path (or :memory:)", _parse_path)


def _secret(min_len: int) -> Parser:
    def parse(text: str) -> str:
        if len(text) < min_len or any(c.isspace() for c in text) or not text.isprintable():
            raise _Invalid
        return text

    return Parser(f"at least {min_len} printable characters without spaces", parse)
