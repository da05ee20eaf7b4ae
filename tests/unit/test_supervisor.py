"""PROCESSES: refused without STORE=redis (one line, nothing started); the supervisor's backoff and
exit texts. The processes themselves run in tests/e2e/test_serve_processes.py."""

from __future__ import annotations

import os
import signal

import pytest

from pooler.cli import main
from pooler.config import Settings
from pooler.errors import ConfigError
from pooler.supervisor import BACKOFF_MAX_S, backoff, exit_text

REQUIRED = {"BACKEND_API_URL": "http://127.0.0.1:3000", "STELLAR_RPC_URL": "http://127.0.0.1:8000"}
REDIS = {"STORE": "redis", "REDIS_URL": "redis://127.0.0.1:6379/0"}


def refusal(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**REQUIRED, **env}, None)
    return str(info.value)


def test_processes_above_one_need_a_group_store() -> None:
    for store in ("sqlite", "memory"):
        assert refusal({"PROCESSES": "2", "STORE": store}) == (
            f"PROCESSES=2 is not valid with STORE={store}: expected PROCESSES=1, or STORE=redis with"
            " REDIS_URL (the processes are a group that shares its state through Redis)"
        )
    assert refusal({"PROCESSES": "0"}) == "PROCESSES='0' is not valid: expected an integer 1..64"
    assert refusal({"PROCESSES": "65", **REDIS}) == "PROCESSES='65' is not valid: expected an integer 1..64"
    assert refusal({"PROCESSES": "12", **REDIS, "POOLER_INSTANCE_ID": "x" * 62}) == (
        f"POOLER_INSTANCE_ID='{'x' * 62}' is not valid with PROCESSES=12: expected at most 61 characters"
        " (each process is named <id>-<n>)"
    )
    assert Settings.from_env({**REQUIRED, **REDIS, "PROCESSES": "2"}, None).processes == 2
    assert Settings.from_env(REQUIRED, None).processes == 1


def test_pooler_serve_refuses_processes_without_redis_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith(("POOLER_", "STELLAR_", "BACKEND_", "STORE", "REDIS_", "PROCESSES")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STELLAR_NETWORK", "devnet")  # would start a devnet: it must not get that far
    monkeypatch.setenv("PROCESSES", "3")
    assert main(["serve", "--env-file", os.devnull]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "pooler serve: PROCESSES=3 is not valid with STORE=sqlite: expected PROCESSES=1, or STORE=redis"
        " with REDIS_URL (the processes are a group that shares its state through Redis)"
    ]


def test_restart_backoff_doubles_up_to_its_cap_and_exits_are_named() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff(40) == BACKOFF_MAX_S == 30.0
    assert exit_text(3) == "status 3"
    assert exit_text(-signal.SIGKILL) == "signal SIGKILL"
