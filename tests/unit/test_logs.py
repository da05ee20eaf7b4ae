"""Structured logs: JSON and text shape, context fields, redaction, and no work when disabled."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from pooler.config import Settings
from pooler.logs import is_secret_name, log_event, redact_fields, redact_text, setup_logging

SEED = "SBK2VIYYSVG76E7VC3QHYARNFLY2EAQXDHRC7BMXBBGIFG74ARPRMNQM"  # a well-formed S... secret seed
TOKEN = "tok_3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
ADMIN = "admin-0123456789abcdef"
SECRETS = (SEED, TOKEN, ADMIN, "hunter2", "s3cr3t-value")
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    """A fresh stream for the handler setup_logging installs; root logger restored after."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    yield stream, logging.getLogger("pooler.test")
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def emit_everything(log: logging.Logger) -> None:
    """One event of each kind, each carrying secrets in the ways real code might leak them."""
    log_event(
        log,
        logging.INFO,
        "work submitted",
        block=123,
        minerId="m-1",
        worker="rig-a",
        conn=7,
        zeros=9,
        token=TOKEN,
        adminToken=ADMIN,
        headers={"Authorization": f"Bearer {TOKEN}", "accept": "*/*"},
        backend="https://ops:hunter2@backend.example/plant",
        note=f"custodial key {SEED} must never appear",
        nonce=2**70,  # beyond 64 bits: orjson refuses, the formatter copes
        entropy=b"\x00\xab",
    )
    log.warning(
        "miner sent token=%s and secret: %s", TOKEN, "s3cr3t-value", extra={"conn": 8, "ADMIN_TOKEN": ADMIN}
    )
    try:
        raise RuntimeError(f"backend said: bad seed {SEED}")
    except RuntimeError:
        log_event(log, logging.ERROR, "plant failed", exc_info=True, block=124)


def test_json_lines_have_the_shape_and_carry_no_secret(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    setup_logging(Settings(log_format="json", log_level="DEBUG"), stream=stream)
    emit_everything(log)
    text = stream.getvalue()
    lines = text.splitlines()
    assert len(lines) == 3
    docs: list[dict[str, Any]] = [orjson.loads(line) for line in lines]
    for doc in docs:
        assert list(doc)[:4] == ["ts", "level", "logger", "event"]
        assert TS.match(doc["ts"]) and doc["logger"] == "pooler.test"
    first, second, third = docs
    assert first["level"] == "info" and first["event"] == "work submitted"
    assert {k: first[k] for k in ("block", "minerId", "worker", "conn", "zeros")} == {
        "block": 123,
        "minerId": "m-1",
        "worker": "rig-a",
        "conn": 7,
        "zeros": 9,
    }
    assert first["token"] == "***" and first["adminToken"] == "***"
    assert first["headers"] == {"Authorization": "***", "accept": "*/*"}
    assert first["backend"] == "https://ops:***@backend.example/plant"
    assert first["note"] == "custodial key S*** must never appear"
    assert first["nonce"] == str(2**70) and first["entropy"] == "00ab"
    assert second["level"] == "warning" and second["conn"] == 8 and second["ADMIN_TOKEN"] == "***"
    assert second["event"] == "miner sent token=*** and secret: ***"
    assert third["level"] == "error" and third["block"] == 124
    assert "RuntimeError" in third["exc"] and "Traceback" in third["exc"]
    for secret in SECRETS:
        assert secret not in text


def test_text_lines_are_one_per_event_and_carry_no_secret(
    capture: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, log = capture
    setup_logging(Settings(log_format="text", log_level="INFO"), stream=stream)
    emit_everything(log)
    text = stream.getvalue()
    lines = text.splitlines()
    assert len(lines) == 3, "a traceback stays on its event's line"
    ts, level, logger, rest = lines[0].split(" ", 3)
    assert TS.match(ts) and (level, logger) == ("INFO", "pooler.test")
    assert rest.startswith("work submitted block=123 minerId=m-1 worker=rig-a conn=7 zeros=9 token=*** ")
    assert 'note="custodial key S*** must never appear"' in rest
    assert lines[2].split(" ", 3)[1] == "ERROR" and " exc=" in lines[2]
    for secret in SECRETS:
        assert secret not in text


class Counted:
    """A field value that counts how often anything turns it into text."""

    def __init__(self) -> None:
        self.calls = 0

    def __str__(self) -> str:
        self.calls += 1
        return "counted"

    __repr__ = __str__


def test_disabled_levels_build_nothing(
    capture: tuple[io.StringIO, logging.Logger], monkeypatch: pytest.MonkeyPatch
) -> None:
    stream, log = capture
    setup_logging(level="INFO", fmt="json", stream=stream)
    value = Counted()

    def no_record(*args: object, **kwargs: object) -> None:
        pytest.fail("log_event made a record for a disabled level")

    with monkeypatch.context() as patch:
        patch.setattr(log, "log", no_record)
        log_event(log, logging.DEBUG, "share", block=1, value=value)
    assert value.calls == 0 and stream.getvalue() == ""
    log_event(log, logging.INFO, "share", block=1, value=value)  # enabled: formatted once
    assert value.calls == 1 and orjson.loads(stream.getvalue())["value"] == "counted"


def test_setup_logging_replaces_only_its_own_handler(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    first = setup_logging(fmt="text", stream=io.StringIO())
    second = setup_logging(fmt="json", stream=stream)
    root = logging.getLogger()
    assert first not in root.handlers and second in root.handlers
    log.info("plain message", extra={"block": 5})
    assert orjson.loads(stream.getvalue()) | {"ts": None} == {
        "ts": None,
        "level": "info",
        "logger": "pooler.test",
        "event": "plain message",
        "block": 5,
    }
    with pytest.raises(ValueError, match="log format"):
        setup_logging(fmt="xml")


def test_fields_named_like_our_own_keys_do_not_overwrite_them(
    capture: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, log = capture
    setup_logging(fmt="json", stream=stream)
    log_event(log, logging.INFO, "real event", event="shadow", level=3)
    doc = orjson.loads(stream.getvalue())
    assert doc["event"] == "real event" and doc["event_"] == "shadow" and doc["level_"] == 3


@pytest.mark.parametrize(
    "name",
    ["token", "adminToken", "ADMIN_TOKEN", "Authorization", "secret", "client_secret", "password", "apiKey"],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["block", "minerId", "worker", "conn", "tokenHash", "tokens", "zeros"])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_redaction_helpers_leave_ordinary_text_alone() -> None:
    ordinary = (
        "block=5 hash=000000ab12 farmer=GBDVX4VELCDSQ54KQJYTNHXAHFLBCA77ZY2USQBM4CSHTTV7DME7KALE zeros=9"
    )
    assert redact_text(ordinary) == ordinary
    assert redact_text(f"password: {TOKEN}, next") == "password: ***, next"
    fields = {"nested": [{"secret": 1}, "Basic dXNlcjpwYXNz"], "block": 1}
    assert redact_fields(fields) == {"nested": [{"secret": "***"}, "Basic ***"], "block": 1}
    assert fields["nested"][0] == {"secret": 1}  # the caller's data is not modified
