"""BlockMonitor refuses bad settings when built, not once per poll."""

from __future__ import annotations

import pytest

from pooler.chain.monitor import BlockMonitor

CONTRACT = "CDL74RF5BLYR2YBLCCI7F5FB6TPSCLKEJUBSD2RSVWZ4YHF3VMFAIGWA"


def test_a_bad_contract_id_fails_at_construction() -> None:
    with pytest.raises(ValueError, match=r"'GNOTACONTRACT' is not a valid C\.\.\. address"):
        BlockMonitor("http://127.0.0.1:1", "GNOTACONTRACT", lambda _e: None)


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"poll_interval": 0.0}, "poll_interval"), ({"request_timeout": 0.0}, "request_timeout")],
)
def test_bad_intervals_are_refused(kw: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BlockMonitor("http://127.0.0.1:1", CONTRACT, lambda _e: None, **kw)


def test_a_new_monitor_reports_no_state() -> None:
    m = BlockMonitor("http://127.0.0.1:1", CONTRACT, lambda _e: None)
    assert (m.last_state, m.last_ok_at, m.consecutive_failures, m.healthy) == (None, None, 0, False)
