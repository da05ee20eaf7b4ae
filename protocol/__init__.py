"""The KALE pool wire contract: work math and protocol v1 messages.

Pure by design: no asyncio, sockets, threads or clocks. The Pooler, miners and dashboards
all import this package, so it must stay cheap to import and free of I/O.
"""

from protocol.errors import Code, KaleError, ProtocolError
from protocol.work import (
    MAX_NONCE,
    address_bytes,
    count_zeros,
    keccak256,
    preimage,
    work_hash,
)

PROTOCOL_VERSION = 1

__all__ = [
    "MAX_NONCE",
    "PROTOCOL_VERSION",
    "Code",
    "KaleError",
    "ProtocolError",
    "address_bytes",
    "count_zeros",
    "keccak256",
    "preimage",
    "work_hash",
]
