"""Decoding of Stellar strkeys (G... accounts, C... contracts) to their 32 raw bytes.

stellar-sdk does this too, but importing it pulls in HTTP clients and an event-loop
stack; miners and dashboards import ``protocol`` alone, so the 30 lines live here and
the tests check them against stellar-sdk.
"""

from __future__ import annotations

import base64

from protocol.errors import Code, ProtocolError

_VERSION_ACCOUNT = 6 << 3  # 'G'
_VERSION_CONTRACT = 2 << 3  # 'C'
_STRKEY_LEN = 56


def _crc16_xmodem(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def decode(address: str) -> tuple[str, bytes]:
    """Return ``("G" | "C", 32 raw bytes)`` for a valid account or contract strkey."""
    if not isinstance(address, str) or len(address) != _STRKEY_LEN or not address.isascii():
        raise ProtocolError(
            Code.MALFORMED, f"address must be a 56-character G... or C... strkey, got {address!r:.80}"
        )
    try:
        raw = base64.b32decode(address, casefold=False)
    except ValueError:
        raise ProtocolError(Code.MALFORMED, f"address {address!r} is not valid base32") from None
    version, payload, checksum = raw[0], raw[1:-2], raw[-2:]
    if int.from_bytes(checksum, "little") != _crc16_xmodem(raw[:-2]):
        raise ProtocolError(Code.MALFORMED, f"address {address!r} has a bad checksum")
    if version == _VERSION_ACCOUNT:
        return "G", payload
    if version == _VERSION_CONTRACT:
        return "C", payload
    raise ProtocolError(
        Code.MALFORMED, f"address {address!r} is neither an account (G...) nor a contract (C...)"
    )


def encode(kind: str, payload: bytes) -> str:
    """Inverse of :func:`decode`, used by the devnet and tests to make addresses."""
    version = {"G": _VERSION_ACCOUNT, "C": _VERSION_CONTRACT}[kind]
    if len(payload) != 32:
        raise ValueError("strkey payload must be 32 bytes")
    body = bytes([version]) + payload
    return base64.b32encode(body + _crc16_xmodem(body).to_bytes(2, "little")).decode("ascii")
