"""The dashboard tail's pure parts: the SSE parser and the one-line event formats."""

from __future__ import annotations

import pytest

from examples.dashboard_tail import SseParser, StreamClosed, format_event, format_kale

AT = 1_760_000_000_123  # 2025-10-09 08:53:20.123 UTC


def test_sse_parser_joins_data_lines_and_splits_events_across_chunks() -> None:
    parser = SseParser()
    assert list(parser.feed(': comment\nevent: x\ndata: {"a"')) == []
    assert list(parser.feed(":1}\n\ndata:two\r\ndata: lines\r\n\r\nid: 5\n\n")) == ['{"a":1}', "two\nlines"]
    assert list(parser.feed("data: tail")) == []
    assert list(parser.feed("\n\n")) == ["tail"]


def test_sse_parser_ignores_fields_that_only_start_with_data() -> None:
    assert list(SseParser().feed("dataset: no\ndata: yes\n\n")) == ["yes"]


@pytest.mark.parametrize(
    ("stroops", "kale"), [("25050000000", "2505.0000000"), ("1", "0.0000001"), ("0", "0.0000000"), ("x", "x")]
)
def test_format_kale(stroops: str, kale: str) -> None:
    assert format_kale(stroops) == kale


@pytest.mark.parametrize(
    ("kind", "data", "text"),
    [
        ("block", {"block": 7, "entropy": "ab" * 32, "workAt": AT, "blockEndsAt": AT + 20_000},
         "block 7 opened, entropy abababababab..., work at 08:53:20, ends 08:53:40"),
        ("phase", {"block": 7, "phase": "mining", "workAt": AT, "blockEndsAt": AT},
         "block 7 -> mining (work at 08:53:20, ends 08:53:20)"),
        ("plant",
         {"block": 7, "ok": True, "successfulPlants": 3, "failedPlants": 1, "totalStaked": "30000000"},
         "block 7 plant ok: 3 planted, 1 failed, staked 3.0000000 KALE"),
        ("work",
         {"block": 7, "ok": False, "error": "backend 503", "validNonces": 0, "invalidNonces": 1,
          "submissions": [{"farmerId": "f", "zeros": 8, "nonce": "1"}]},
         "block 7 work FAILED (backend 503): 1 submitted (zeros 8), valid 0, invalid 1"),
        ("harvest",
         {"block": 7, "ok": True, "successfulHarvests": 2, "failedHarvests": 0,
          "totalRewards": "25050000000"},
         "block 7 harvest ok: 2 harvested, 0 failed, rewards 2505.0000000 KALE"),
        ("miner", {"minerId": "m1", "farmerId": "f1", "event": "connected", "worker": "rig"},
         "miner m1 (farmer f1) connected worker rig"),
        ("summary",
         {"block": 7, "phase": "mining", "miners": 2, "workers": 3, "hashrate": 1500.0, "accepted": 9,
          "rejected": 1, "bestZeros": {"f1": 6}},
         "block 7 mining: 2 miners, 3 workers, 1.5 kH/s, accepted 9, rejected 1, best zeros f1=6"),
        ("chain", {"ok": False, "detail": "rpc down"}, "chain DOWN: rpc down"),
        ("alert", {"kind": "backend-down", "status": "firing", "severity": "critical",
                   "summary": "Backend down since 08:53:20 UTC: status 503"},
         "CRITICAL: Backend down since 08:53:20 UTC: status 503"),
        ("alert", {"kind": "resolved", "status": "resolved", "severity": "info",
                   "summary": "Backend answers again after 42 s down"},
         "resolved: Backend answers again after 42 s down"),
        ("snapshot", {"summary": {"block": 7, "phase": "idle"}, "recent": [{}, {}], "blocks": []},
         "block 7 idle: 0 miners, 0 workers, 0.0 H/s, accepted 0, rejected 0, best zeros -; 2 recent events,"
         " 0 blocks of history"),
        ("future", {"x": 1}, '{"x":1}'),
    ],
)  # fmt: skip
def test_format_event(kind: str, data: dict[str, object], text: str) -> None:
    line = format_event({"type": "event", "kind": kind, "at": AT, "data": data})
    assert line == f"08:53:20.123 {kind:<8} {text}"


def test_format_event_survives_junk() -> None:
    assert format_event([1]).startswith("??? not an event object")
    assert format_event({"kind": "block", "data": None}).startswith("--:--:--.--- block")


def test_format_event_escapes_control_characters() -> None:
    line = format_event({"kind": "chain", "at": AT, "data": {"ok": True, "detail": "\x1b[2Jcleared\nnext"}})
    assert line == "08:53:20.123 chain    chain ok: \\x1b[2Jcleared\\nnext"


@pytest.mark.parametrize(
    ("code", "retry"),
    [(1012, True), (1001, True), (1006, True), (1011, True), (1013, True), (1000, False), (1008, False),
     (1003, False), (4000, False)],
)  # fmt: skip
def test_which_closes_are_worth_a_reconnect(code: int, retry: bool) -> None:
    closed = StreamClosed(code, "server restart" if code == 1012 else "")
    assert closed.retry is retry
    assert str(closed).startswith(f"closed with code {code}")
