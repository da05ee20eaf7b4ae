"""The picows hand-off's client address (pooler/web/httpproto.py): uvicorn's proxy-headers rule.

The ASGI app sees the client as uvicorn's ProxyHeadersMiddleware rewrote it; a socket handed to
picows must get the same address from the same request, whatever FORWARDED_ALLOW_IPS says.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from pooler.web.httpproto import forwarded_client, proxy_middleware

Headers = list[tuple[bytes, bytes]]


def _asgi_client(trusted: str, client: tuple[str, int], headers: Headers) -> Any:
    """What the ASGI app's scope says: the middleware run as uvicorn runs it."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["client"] = scope["client"]

    scope: Any = {"type": "websocket", "client": client, "headers": headers}
    asyncio.run(ProxyHeadersMiddleware(app, trusted)(scope, None, None))  # type: ignore[arg-type]
    return seen["client"]


CASES: list[tuple[str, tuple[str, int], Headers]] = [
    ("127.0.0.1", ("127.0.0.1", 5000), [(b"x-forwarded-for", b"203.0.113.7")]),
    ("127.0.0.1", ("127.0.0.2", 5000), [(b"x-forwarded-for", b"203.0.113.7")]),  # untrusted peer
    ("127.0.0.1", ("127.0.0.1", 5000), []),  # no header
    ("127.0.0.1", ("127.0.0.1", 5000), [(b"x-forwarded-for", b"")]),  # an empty one
    ("127.0.0.1,10.0.0.0/8", ("127.0.0.1", 1), [(b"x-forwarded-for", b"198.51.100.1, 10.1.2.3")]),
    (
        "127.0.0.1",
        ("127.0.0.1", 1),
        [(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-for", b"10.1.2.3")],
    ),
    ("*", ("192.0.2.9", 1), [(b"x-forwarded-for", b"[2001:db8::1]:4711, 192.0.2.1")]),
]


@pytest.mark.parametrize(("trusted", "client", "headers"), CASES)
def test_the_hand_off_gets_the_client_the_asgi_app_would(
    trusted: str, client: tuple[str, int], headers: Headers
) -> None:
    config = Config(app=None, forwarded_allow_ips=trusted)
    assert forwarded_client(proxy_middleware(config), client, headers) == _asgi_client(
        trusted, client, headers
    )


def test_the_forwarded_address_is_taken_from_a_trusted_peer_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    config = Config(app=None)  # FORWARDED_ALLOW_IPS unset: 127.0.0.1 and ::1
    proxy = proxy_middleware(config)
    assert proxy is proxy_middleware(config)  # built once per server
    header = [(b"x-forwarded-for", b"203.0.113.7")]
    assert forwarded_client(proxy, ("127.0.0.1", 5000), header) == ("203.0.113.7", 0)
    assert forwarded_client(proxy, ("127.0.0.2", 5000), header) == ("127.0.0.2", 5000)


def test_without_proxy_headers_the_peer_is_the_client() -> None:
    config = Config(app=None, proxy_headers=False)
    header = [(b"x-forwarded-for", b"203.0.113.7")]
    assert forwarded_client(proxy_middleware(config), ("127.0.0.1", 5000), header) == ("127.0.0.1", 5000)
