"""The container image, checked without a Docker engine: entry point, user, health check, context."""

from __future__ import annotations

import json
import shlex
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEALTH_ROUTES = ("/health/live", "/health/ready", "/health")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def last(name: str) -> str:
    values = [args for word, args in instructions() if word == name]
    assert values, f"no {name} in the Dockerfile"
    return values[-1]


WEB_STAGE = "node:20-bookworm-slim AS web"  # the one non-Python stage: the dashboard's npm files


def test_multi_stage_on_slim_python_311() -> None:
    froms = [args for word, args in instructions() if word == "FROM"]
    python = [f for f in froms if f != WEB_STAGE]
    assert froms.count(WEB_STAGE) == 1, f"expected exactly one front-end stage {WEB_STAGE!r}; got {froms}"
    assert len(python) >= 2
    assert all(f.startswith("python:3.11-slim") for f in python)
    assert any(word == "COPY" and args.startswith("--from=build ") for word, args in instructions())
    # the runtime image holds nothing of node: only the build stage takes the web stage's files
    web_copies = [args for word, args in instructions() if word == "COPY" and args.startswith("--from=web ")]
    assert web_copies == ["--from=web /src/pooler/web/static/vendor ./pooler/web/static/vendor"]
    assert froms.index(WEB_STAGE) < froms.index("python:3.11-slim-bookworm AS build")


def test_runs_pooler_serve_from_the_declared_console_script() -> None:
    command = json.loads(last("ENTRYPOINT")) + json.loads(last("CMD"))
    assert command == ["pooler", "serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["pooler"] == "pooler.cli:main"
    (installed,) = entry_points(group="console_scripts", name="pooler")
    assert installed.value == "pooler.cli:main"
    from pooler.cli import main

    assert installed.load() is main


def test_runs_as_a_non_root_user() -> None:
    user = last("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert any(word == "RUN" and f"--uid {uid}" in args for word, args in instructions())


def test_listens_on_all_interfaces_and_keeps_data_in_a_volume() -> None:
    env = " ".join(args for word, args in instructions() if word == "ENV")
    settings = dict(item.split("=", 1) for item in shlex.split(env) if "=" in item)
    assert settings["HOST"] == "0.0.0.0" and settings["PORT"] == "3001"
    assert settings["POOLER_DB"].startswith("/data/")
    assert json.loads(last("VOLUME")) == ["/data"]


def test_healthcheck_calls_a_documented_route_with_code_that_compiles() -> None:
    check = last("HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    code = argv[2]
    compile(code, "HEALTHCHECK", "exec")
    assert "http://127.0.0.1:%s/health/live" in code and "os.environ.get('PORT'" in code
    doc = (ROOT / "docs" / "operations.md").read_text()
    for route in HEALTH_ROUTES:
        assert f"`GET {route}`" in doc, f"{route} is not documented"


def test_build_context_holds_what_pyproject_needs_and_no_secrets() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    ignore = [line for line in ignore if line and not line.startswith("#")]
    assert ignore[0] == "*", "the context is an allow-list"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {name.rstrip("*") for name in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert {"pyproject.toml", project["project"]["readme"], *packages} <= allowed
    assert "**/.env" in ignore
    assert {"frontend/package.json", "frontend/package-lock.json", "frontend/build.sh"} <= allowed
    copied = " ".join(args for word, args in instructions() if word == "COPY" and "--from" not in args)
    for needed in ("pyproject.toml", "README.md", *packages):
        assert needed in copied


def test_pooler_serve_exists_and_refuses_a_bad_setting_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The image's command is a real subcommand: it parses and validates before anything starts."""
    from pooler.cli import SUBCOMMANDS, main

    assert SUBCOMMANDS["serve"][0] == "pooler.serve"
    with pytest.raises(SystemExit) as shown:
        main(["serve", "--help"])
    assert shown.value.code == 0
    assert "--env-file" in capsys.readouterr().out
    monkeypatch.setenv("PORT", "not-a-port")
    assert main(["serve", "--env-file", "/nonexistent/.env"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pooler serve: PORT='not-a-port' is not valid: expected an integer 0..65535"]
