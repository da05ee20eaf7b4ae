"""KALE work math: the 76-byte preimage, Keccak-256 and the leading-zero count.

Exactly what the farm contract's ``work`` recomputes (shared facts: KALE.md):
``keccak256(index u32 BE || nonce u64 BE || entropy 32 B || farmer tail 32 B)``, where the
farmer tail is the last 32 bytes of the farmer's ``ScVal::Address`` XDR: the ed25519 key of
a G... account or the hash of a C... contract. Zeros are leading zero hex nibbles.

Verification sits on the share hot path, so this module avoids per-call allocations it
does not need and picks the fastest Keccak available (safe-pysha3, ~1 us a hash, over
pycryptodome, ~5.5 us). Note ``hashlib.sha3_256`` is NOT Keccak-256: the padding differs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache

from protocol.errors import Code, ProtocolError
from protocol.strkey import decode as decode_strkey

MAX_NONCE = 2**64 - 1
MAX_INDEX = 2**32 - 1

_HEAD = struct.Struct(">IQ")


def _pick_keccak() -> tuple[str, Callable[[bytes], bytes]]:
    try:
        import sha3  # safe-pysha3

        k = sha3.keccak_256

        def pysha3_keccak(data: bytes) -> bytes:
            return k(data).digest()  # type: ignore[no-any-return]

        return "safe-pysha3", pysha3_keccak
    except ImportError:  # no wheel for this Python: fall back to the portable one
        from Crypto.Hash import keccak

        new = keccak.new

        def pycryptodome_keccak(data: bytes) -> bytes:
            return new(data=data, digest_bits=256).digest()

        return "pycryptodome", pycryptodome_keccak


KECCAK_BACKEND, keccak256 = _pick_keccak()

# zeros contributed by a first non-zero byte: 4 - bit_length // 4 nibbles -> 1 if < 0x10 else 0
_NIBBLES_OF_FIRST_NONZERO = bytes(1 if b < 0x10 else 0 for b in range(256))


def count_zeros(digest: bytes) -> int:
    """Leading zero hex nibbles of ``digest``."""
    stripped = digest.lstrip(b"\x00")
    if not stripped:
        return 2 * len(digest)
    return 2 * (len(digest) - len(stripped)) + _NIBBLES_OF_FIRST_NONZERO[stripped[0]]


@lru_cache(maxsize=4096)
def address_bytes(address: str) -> bytes:
    """The 32 bytes of a G... or C... address that enter the preimage. Cached: farmers are few."""
    return decode_strkey(address)[1]


def preimage(index: int, nonce: int, entropy: bytes, farmer: bytes) -> bytes:
    """The 76-byte preimage; ``farmer`` is the 32-byte tail from :func:`address_bytes`."""
    if not 0 <= index <= MAX_INDEX:
        raise ProtocolError(Code.MALFORMED, f"block index {index} is outside 0..{MAX_INDEX}")
    if not 0 <= nonce <= MAX_NONCE:
        raise ProtocolError(Code.OUT_OF_RANGE, f"nonce {nonce} is outside 0..{MAX_NONCE}")
    if len(entropy) != 32 or len(farmer) != 32:
        raise ProtocolError(Code.MALFORMED, "entropy and farmer must be 32 bytes each")
    return _HEAD.pack(index, nonce) + entropy + farmer


def work_hash(index: int, nonce: int, entropy: bytes, farmer: bytes) -> bytes:
    """Keccak-256 of the preimage: the hash the contract's ``work`` checks."""
    return keccak256(preimage(index, nonce, entropy, farmer))


class WorkTemplate:
    """A precomputed (index, entropy, farmer) so one share costs one pack and one hash.

    The coordinator builds one per (block, farmer) and calls :meth:`verify` per share.
    """

    __slots__ = ("_prefix", "_suffix")

    def __init__(self, index: int, entropy: bytes, farmer: bytes) -> None:
        if not 0 <= index <= MAX_INDEX:
            raise ProtocolError(Code.MALFORMED, f"block index {index} is outside 0..{MAX_INDEX}")
        if len(entropy) != 32 or len(farmer) != 32:
            raise ProtocolError(Code.MALFORMED, "entropy and farmer must be 32 bytes each")
        self._prefix = index.to_bytes(4, "big")  # fixed per block: packed once
        self._suffix = entropy + farmer  # fixed per (block, farmer): concatenated once

    def hash(self, nonce: int) -> bytes:
        """Keccak-256 for ``nonce`` (0 <= nonce <= MAX_NONCE; the caller has validated it)."""
        return keccak256(self._prefix + nonce.to_bytes(8, "big") + self._suffix)

    def verify(self, nonce: int) -> tuple[bytes, int]:
        """(hash, zeros) for ``nonce``."""
        digest = keccak256(self._prefix + nonce.to_bytes(8, "big") + self._suffix)
        return digest, count_zeros(digest)
