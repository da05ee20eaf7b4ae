"""KALE work math against the 20 published vectors (copied from shared/kale/vectors.json)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from Crypto.Hash import keccak as pycryptodome_keccak
from stellar_sdk import Address, StrKey

from protocol import ProtocolError, address_bytes, count_zeros, keccak256, preimage, strkey, work_hash
from protocol.work import KECCAK_BACKEND, WorkTemplate

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "data" / "kale_vectors.json").read_text()
)["vectors"]


def test_there_are_twenty_vectors() -> None:
    assert len(VECTORS) == 20


@pytest.mark.parametrize("v", VECTORS, ids=[f"{v['index']}-{v['nonce']}" for v in VECTORS])
def test_vector(v: dict[str, Any]) -> None:
    farmer = address_bytes(v["farmer"])
    entropy = bytes.fromhex(v["entropy"])
    nonce = int(v["nonce"])
    pre = preimage(v["index"], nonce, entropy, farmer)
    assert len(pre) == 76
    assert pre.hex() == v["preimage"]
    digest = work_hash(v["index"], nonce, entropy, farmer)
    assert digest.hex() == v["hash"]
    assert count_zeros(digest) == v["zeros"]
    assert WorkTemplate(v["index"], entropy, farmer).verify(nonce) == (digest, v["zeros"])


@pytest.mark.parametrize("v", VECTORS[:6], ids=lambda v: v["farmer"][:6])
def test_address_tail_is_the_last_32_bytes_of_the_scval_xdr(v: dict[str, Any]) -> None:
    xdr = Address(v["farmer"]).to_xdr_sc_val().to_xdr_bytes()
    assert address_bytes(v["farmer"]) == xdr[-32:]


def test_keccak_is_not_sha3() -> None:
    assert keccak256(b"") != hashlib.sha3_256(b"").digest()
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


def test_fast_backend_agrees_with_pycryptodome() -> None:
    data = bytes(range(76))
    assert keccak256(data) == pycryptodome_keccak.new(data=data, digest_bits=256).digest()
    assert KECCAK_BACKEND in {"safe-pysha3", "pycryptodome"}


@pytest.mark.parametrize(
    ("digest", "zeros"),
    [
        (bytes(32), 64),
        (b"\x00\x00\x0f" + bytes(29), 5),
        (b"\x00\x00\x10" + bytes(29), 4),
        (b"\x01" + bytes(31), 1),
        (b"\xff" * 32, 0),
        (b"\x00" * 31 + b"\x01", 63),
    ],
)
def test_count_zeros(digest: bytes, zeros: int) -> None:
    assert count_zeros(digest) == zeros


def test_strkey_agrees_with_stellar_sdk() -> None:
    for v in VECTORS:
        kind, raw = strkey.decode(v["farmer"])
        if kind == "G":
            assert raw == StrKey.decode_ed25519_public_key(v["farmer"])
        else:
            assert raw == StrKey.decode_contract(v["farmer"])
        assert strkey.encode(kind, raw) == v["farmer"]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "GBQHTQ7NTSKHVTSVM6EHUO3TU4P4BK2TAAII25V2TT2Q6OWXUJWEKALF",  # checksum
        "SBQHTQ7NTSKHVTSVM6EHUO3TU4P4BK2TAAII25V2TT2Q6OWXUJWEKALE",  # not G/C, bad base32 tail
        "G" * 56,
        "ｇ" * 56,
    ],
)
def test_bad_address(bad: str) -> None:
    with pytest.raises(ProtocolError):
        address_bytes(bad)


def test_preimage_bounds() -> None:
    with pytest.raises(ProtocolError):
        preimage(0, 2**64, bytes(32), bytes(32))
    with pytest.raises(ProtocolError):
        preimage(2**32, 0, bytes(32), bytes(32))
    with pytest.raises(ProtocolError):
        preimage(0, 0, bytes(31), bytes(32))
