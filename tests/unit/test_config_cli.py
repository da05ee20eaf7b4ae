"""``pooler config``: effective values with sources, secrets redacted, exit 2 on a bad value."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pooler.cli import main
from pooler.config import parse_env, variables
from pooler.config_cli import quote


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting in the environment and no stray ./.env: the test sets what it needs."""
    for _, var in variables():
        monkeypatch.delenv(var.env, raising=False)
    monkeypatch.delenv("STELLAR_HORIZON_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lines_by_name(out: str) -> dict[str, str]:
    return {line.split("=", 1)[0]: line for line in out.splitlines()}


def test_prints_every_setting_with_its_source_and_redacts_secrets(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean_env / ".env").write_text("PORT=4000\nPOOLER_NAME='Pool # 1'\nADMIN_TOKEN=file-secret-0123456789\n")
    monkeypatch.setenv("REDIS_URL", "redis://pooler:hunter2@127.0.0.1:6379/0")
    monkeypatch.setenv("STORE", "redis")
    assert main(["config"]) == 0
    captured = capsys.readouterr()
    rows = lines_by_name(captured.out)
    assert list(rows) == [var.env for _, var in variables()]
    assert rows["PORT"].split() == ["PORT=4000", "#", ".env"]
    assert rows["STORE"].split() == ["STORE=redis", "#", "env"]
    assert rows["HOST"].split() == ["HOST=127.0.0.1", "#", "default"]
    assert rows["ADMIN_TOKEN"].split() == ["ADMIN_TOKEN=***", "#", ".env"]
    assert rows["REDIS_URL"].split()[0] == "REDIS_URL=redis://pooler:***@127.0.0.1:6379/0"
    assert "file-secret" not in captured.out + captured.err and "hunter2" not in captured.out + captured.err
    # the output is itself valid .env text that reads back to the same (redacted) values
    assert parse_env(captured.out)["POOLER_NAME"] == "Pool # 1"
    assert "note: BACKEND_API_URL and STELLAR_RPC_URL not set" in captured.err


def test_a_bad_value_exits_2_with_the_one_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORT", "abc")
    assert main(["config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "error: PORT='abc' is not valid: expected an integer 0..65535\n"


def test_a_bad_dotenv_line_exits_2(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (clean_env / "custom.env").write_text("ADMIN_TOKEN='unterminated\n")
    assert main(["config", "--env-file", "custom.env"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "error: custom.env line 1 (ADMIN_TOKEN) is not valid: expected a closing ' on the same line\n"
    )


def test_an_explicit_env_file_must_exist(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--env-file", "nope.env"]) == 2
    assert capsys.readouterr().err == "error: --env-file 'nope.env' is not a file\n"


def test_horizon_warning_goes_to_stderr(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STELLAR_RPC_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("BACKEND_API_URL", "http://127.0.0.1:3000")
    monkeypatch.setenv("STELLAR_HORIZON_URL", "https://horizon-testnet.stellar.org")
    assert main(["config"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: STELLAR_HORIZON_URL=") and "note:" not in captured.err
    assert "STELLAR_HORIZON_URL" not in captured.out


def test_json_output(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "an-admin-token-long-enough")
    monkeypatch.setenv("STELLAR_NETWORK", "devnet")
    assert main(["config", "--json"]) == 0
    captured = capsys.readouterr()
    doc = orjson.loads(captured.out)
    assert doc["ADMIN_TOKEN"] == {"value": "***", "source": "env"}
    assert doc["PORT"] == {"value": "3001", "source": "default"}
    assert captured.err == ""  # devnet needs no URLs


def test_quote_round_trips_through_the_parser() -> None:
    for value in ["plain", "with space", 'q"uote', "back\\slash", "hash # x", "it's", "tab\tnew\nline", ""]:
        assert parse_env(f"X={quote(value)}") == {"X": value}
