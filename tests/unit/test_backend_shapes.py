"""Phase-1 Backend shapes: request normalisation, response validation, Retry-After parsing."""

from __future__ import annotations

import email.utils
from typing import Any

import pytest

from pooler.backend import normalize_submission, parse_retry_after, validate_response
from pooler.errors import BackendError

PLANT_OK: dict[str, Any] = {
    "blockIndex": 12,
    "poolerId": "p1",
    "totalRequested": 3,
    "successfulPlants": 2,
    "failedPlants": 1,
    "totalStaked": "1000000",
    "processingTimeMs": 12.5,
    "timestamp": "2025-08-25T10:00:00.000Z",
}
WORK_OK: dict[str, Any] = {
    "blockIndex": 12,
    "poolerId": "p1",
    "totalSubmissions": 2,
    "validNonces": 2,
    "invalidNonces": 0,
    "submittedWork": 2,
    "totalRewards": "0",
    "processingTimeMs": 3,
    "timestamp": "2025-08-25T10:00:00.000Z",
}
HARVEST_OK: dict[str, Any] = {
    "blockIndex": 12,
    "poolerId": "p1",
    "totalEligible": 2,
    "successfulHarvests": 2,
    "failedHarvests": 0,
    "totalRewards": "25050000000",
    "processingTimeMs": 3,
    "timestamp": "2025-08-25T10:00:00.000Z",
}


@pytest.mark.parametrize(("op", "body"), [("plant", PLANT_OK), ("work", WORK_OK), ("harvest", HARVEST_OK)])
def test_valid_phase1_bodies_pass(op: str, body: dict[str, Any]) -> None:
    validate_response(op, body, {"blockIndex": 12, "poolerId": "p1"})


@pytest.mark.parametrize(
    ("op", "body", "message"),
    [
        (
            "plant",
            {k: v for k, v in PLANT_OK.items() if k != "successfulPlants"},
            "lacks field 'successfulPlants'",
        ),
        ("plant", dict(PLANT_OK, totalStaked=1000000), "'totalStaked' should be str, got int"),
        ("plant", dict(PLANT_OK, totalStaked="1e6"), "'totalStaked' should be a decimal string"),
        ("plant", dict(PLANT_OK, failedPlants=True), "'failedPlants' should be int, got bool"),
        ("work", dict(WORK_OK, validNonces="2"), "'validNonces' should be int, got str"),
        ("work", dict(WORK_OK, totalRewards=None), "'totalRewards' should be str, got NoneType"),
        ("harvest", dict(HARVEST_OK, totalRewards=1.5), "'totalRewards' should be str or int, got float"),
        ("harvest", dict(HARVEST_OK, blockIndex=13), "blockIndex 13 does not match the request's 12"),
        ("work", dict(WORK_OK, poolerId="p2"), "poolerId 'p2' does not match the request's 'p1'"),
    ],
)
def test_bad_bodies_name_the_field(op: str, body: dict[str, Any], message: str) -> None:
    with pytest.raises(BackendError, match=message):
        validate_response(op, body, {"blockIndex": 12, "poolerId": "p1"})


def test_submission_is_normalised_to_the_phase1_shape() -> None:
    out = normalize_submission({"farmerId": "f", "nonce": 2**64 - 1, "timestamp": 1_700_000_000_000}, 0)
    assert out == {"farmerId": "f", "nonce": "18446744073709551615", "timestamp": 1_700_000_000_000}
    out = normalize_submission(
        {"farmerId": "f", "nonce": "42", "timestamp": 1, "hash": bytes(range(32)), "zeros": 7}, 0
    )
    assert out["hash"] == bytes(range(32)).hex() and out["zeros"] == 7 and out["nonce"] == "42"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"farmerId": "", "nonce": "1", "timestamp": 1}, r"submissions\[3\]\.farmerId"),
        ({"farmerId": "f", "nonce": "0x10", "timestamp": 1}, r"submissions\[3\]\.nonce"),
        ({"farmerId": "f", "nonce": 2**64, "timestamp": 1}, r"submissions\[3\]\.nonce"),
        ({"farmerId": "f", "nonce": "-1", "timestamp": 1}, r"submissions\[3\]\.nonce"),
        ({"farmerId": "f", "nonce": "1", "timestamp": 1.5}, r"submissions\[3\]\.timestamp"),
        ({"farmerId": "f", "nonce": "1", "timestamp": 1, "hash": "zz"}, r"submissions\[3\]\.hash"),
        ({"farmerId": "f", "nonce": "1", "timestamp": 1, "zeros": 65}, r"submissions\[3\]\.zeros"),
        ({"farmerId": "f", "nonce": "1", "timestamp": 1, "extra": 1}, r"unknown fields \['extra'\]"),
    ],
)
def test_bad_submissions_are_refused_before_any_request(item: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_submission(item, 3)


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after(None, 0.0) is None
    assert parse_retry_after("3", 0.0) == 3.0
    now = 1_800_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 10, usegmt=True), now) == 10.0
    assert parse_retry_after(email.utils.formatdate(now - 10, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
