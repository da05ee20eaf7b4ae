"""Listening sockets shared by several processes on one port (``PROCESSES`` > 1, SO_REUSEPORT).

uvicorn binds its own sockets from a host and port, without SO_REUSEPORT; a process of a group on
one machine (pooler/supervisor.py) makes them here instead and hands them to uvicorn. Every process
binds its own socket to the same address with SO_REUSEPORT: the kernel (Linux) then spreads new
connections over the listening sockets of the address by a hash of each connection's addresses
and ports, so a connection stays on the process that accepted it for its life.

:func:`bind` resolves the host like asyncio's ``create_server`` does (every address it names,
IPv6 sockets IPv6-only), and with port 0 binds the first address to a free port and the others to
that one. The supervisor calls it with ``listen=False`` to hold the port (PORT=0: to pick it) for
as long as it runs: a socket that is bound but not listening gets no connections.
"""

from __future__ import annotations

import contextlib
import socket

from pooler.errors import ConfigError


def bind(host: str, port: int, *, listen: bool, backlog: int = 2048) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` on ``port`` with SO_REUSEPORT (listening if
    ``listen``). Raises :class:`ConfigError` naming the address when one cannot be bound."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("PROCESSES > 1 is not supported here: expected a system with SO_REUSEPORT (Linux)")
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    addresses = list(dict.fromkeys((family, address) for family, _, _, _, address in infos))
    sockets: list[socket.socket] = []
    try:
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:  # as asyncio does: "::" does not also take IPv4
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            where = (address[0], port, *address[2:])
            try:
                sock.bind(where)
            except OSError as exc:
                raise ConfigError(
                    f"HOST={host} PORT={port} cannot be bound ({address[0]}: {exc.strerror}): expected a free"
                    " port, or one held only by this Pooler's processes (SO_REUSEPORT, same user)"
                ) from None
            port = sock.getsockname()[1]  # port 0: the next addresses take the one the first got
            if listen:
                sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        raise
    return sockets
