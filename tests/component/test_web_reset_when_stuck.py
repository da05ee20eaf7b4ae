"""``reset_when_stuck``: at a keepalive timeout, a peer that left bytes unread in our kernel buffer
gets a reset when the connection closes; a peer that took everything keeps the graceful close.

Real TCP sockets on 127.0.0.1; the "transport" is the smallest object offering what the function
reads (``get_extra_info("socket")``), as uvloop's and asyncio's transports do.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from pooler.web.wsproto import reset_when_stuck, unsent_bytes


class _Transport:
    def __init__(self, sock: socket.socket | None) -> None:
        self._sock = sock

    def get_extra_info(self, name: str) -> Any:
        return self._sock if name == "socket" else None


def _pair(rcvbuf: int | None = None) -> tuple[socket.socket, socket.socket, socket.socket]:
    """A listening socket, our accepted end and the peer's end."""
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # a window of a few KB
    peer.connect(listener.getsockname())
    ours, _ = listener.accept()
    return listener, ours, peer


def test_a_peer_that_left_bytes_unread_gets_a_reset_at_close() -> None:
    listener, ours, peer = _pair(rcvbuf=1024)
    try:
        ours.setblocking(False)
        sent = 0
        with pytest.raises(BlockingIOError):  # fill its window and our send buffer
            while sent < 64 * 1024 * 1024:
                sent += ours.send(b"x" * 65536)
        assert reset_when_stuck(_Transport(ours)) is True
        ours.close()  # with SO_LINGER 0: an RST now, the unsent bytes dropped
        peer.settimeout(15)
        with pytest.raises(ConnectionResetError):
            while peer.recv(65536):
                pass
    finally:
        peer.close()
        listener.close()


def test_a_peer_that_took_everything_keeps_the_graceful_close() -> None:
    listener, ours, peer = _pair()
    try:
        ours.sendall(b"bye")
        peer.settimeout(15)
        assert peer.recv(16) == b"bye"
        deadline = time.monotonic() + 5  # its ACK may be a delayed one: until our queue is empty
        while unsent_bytes(ours) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert unsent_bytes(ours) == 0
        assert reset_when_stuck(_Transport(ours)) is False  # nothing unsent: no reset
        ours.close()
        assert peer.recv(16) == b""  # a FIN, not a reset
    finally:
        peer.close()
        listener.close()


def test_no_socket_means_nothing_to_reset() -> None:
    assert reset_when_stuck(_Transport(None)) is False
