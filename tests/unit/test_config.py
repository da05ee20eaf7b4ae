"""Settings: every variable type rejects bad values with one clear line; .env rules; redaction."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import os
import typing
from pathlib import Path
from typing import Literal

import pytest

from pooler.app.options import (
    TUNING,
    AlertOptions,
    Endpoints,
    PoolerOptions,
    Tuning,
    cluster_options,
    core_config,
    pooler_options,
)
from pooler.cluster.options import ClusterOptions
from pooler.config import (
    DEFAULT_CONTRACT_IDS,
    Settings,
    Var,
    format_value,
    parse_env,
    read_env_file,
    redact_url,
    variables,
)
from pooler.core.config import CoreConfig
from pooler.core.events import RestShareSubmitted, RestWorkRequested, TimerFired
from pooler.errors import ConfigError
from protocol import strkey
from protocol.errors import Code
from protocol.messages import Accepted, Job, Rejected, Share
from tests.unit.core_support import T0, Rig, find_nonce, sends

ROOT = Path(__file__).resolve().parents[2]
# Enough for Settings.from_env to load a testnet configuration without allow_missing.
REQUIRED = {"BACKEND_API_URL": "http://127.0.0.1:3000", "STELLAR_RPC_URL": "http://127.0.0.1:8000"}
TESTNET = DEFAULT_CONTRACT_IDS["testnet"]


def load(env: dict[str, str], env_file: str | None = None, **kw: bool) -> Settings:
    return Settings.from_env({**REQUIRED, **env}, env_file, **kw)


def error_line(env: dict[str, str], env_file: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(env, env_file)
    message = str(info.value)
    assert "\n" not in message, "a configuration error is one line"
    return message


# ---------------------------------------------------------------- defaults and types


def test_defaults_load_and_match_the_documented_values() -> None:
    s = load({})
    assert (s.port, s.host, s.stellar_network) == (3001, "127.0.0.1", "testnet")
    assert s.kale_contract_id == TESTNET
    assert s.block_poll_interval_ms == 1000
    assert s.optimal_work_delay_ms == 280_000
    assert s.block_interval_seconds == 300
    assert s.hello_timeout_ms == 10_000
    assert s.max_frame_bytes == 4096
    assert s.pooler_db == "./pooler.db"
    assert (s.store, s.log_format, s.log_level, s.metrics_enabled) == ("sqlite", "text", "INFO", True)
    assert s.cors_origins == ()
    assert s.admin_token is None and s.redis_url is None
    assert s.warnings == ()
    assert s.source("PORT") == "default" and s.source("BACKEND_API_URL") == "env"


def test_values_are_parsed_into_their_types() -> None:
    s = load(
        {
            "PORT": "8080",
            "STAKE_PERCENTAGE": "0.25",
            "METRICS_ENABLED": "No",
            "STELLAR_NETWORK": "MAINNET",
            "LOG_LEVEL": "debug",
            "CORS_ORIGINS": " https://a.example , http://127.0.0.1:3001/ ,",
            "BACKEND_API_URL": "https://backend.example/api/",
            "STORE": "redis",
            "REDIS_URL": "redis://:pw@127.0.0.1:6379/0",
            "MESSAGES_PER_SECOND": "2.5",
            "POOLER_INSTANCE_ID": "pooler-a.eu_1",
            "LEADER_LEASE_MS": "3000",
        }
    )
    cluster = cluster_options(s, TUNING)
    assert cluster is not None and (cluster.instance_id, cluster.lease_ttl) == ("pooler-a.eu_1", 3.0)
    unnamed = cluster_options(dataclasses.replace(s, pooler_instance_id=None), TUNING)
    assert unnamed is not None  # unset: host name + pid, unique per start
    assert unnamed.instance_id.endswith(f"-{os.getpid()}")
    assert s.port == 8080 and s.stake_percentage == 0.25 and s.metrics_enabled is False
    assert s.stellar_network == "mainnet" and s.kale_contract_id == DEFAULT_CONTRACT_IDS["mainnet"]
    assert s.log_level == "DEBUG"
    assert s.cors_origins == ("https://a.example", "http://127.0.0.1:3001")
    assert s.backend_api_url == "https://backend.example/api"  # trailing slash dropped for path joins
    assert s.stellar_rpc_url == REQUIRED["STELLAR_RPC_URL"]  # the RPC URL is used exactly as given
    assert s.messages_per_second == 2.5


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        # int with range
        ("PORT", "abc", "PORT='abc' is not valid: expected an integer 0..65535"),
        ("PORT", "70000", "PORT='70000' is not valid: expected an integer 0..65535"),
        ("RETRY_ATTEMPTS", "2.5", "RETRY_ATTEMPTS='2.5' is not valid: expected an integer 0..20"),
        # milliseconds
        (
            "BACKEND_TIMEOUT",
            "10s",
            "BACKEND_TIMEOUT='10s' is not valid: expected an integer 100..600000 (milli",
        ),
        (
            "HELLO_TIMEOUT_MS",
            "-1",
            "HELLO_TIMEOUT_MS='-1' is not valid: expected an integer 100..600000 (milli",
        ),
        # float
        ("STAKE_PERCENTAGE", "1.5", "STAKE_PERCENTAGE='1.5' is not valid: expected a number 0..1 (fraction)"),
        ("STAKE_PERCENTAGE", "nan", "STAKE_PERCENTAGE='nan' is not valid: expected a number 0..1"),
        ("VARDIFF_TARGET_SECONDS", "fast", "VARDIFF_TARGET_SECONDS='fast' is not valid: expected a number"),
        # bool
        ("METRICS_ENABLED", "maybe", "METRICS_ENABLED='maybe' is not valid: expected true or false"),
        # enum
        ("STELLAR_NETWORK", "futurenet", "expected one of testnet, mainnet, devnet"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT='xml' is not valid: expected one of text, json"),
        ("STORE", "postgres", "STORE='postgres' is not valid: expected one of sqlite, redis, memory"),
        ("LOG_LEVEL", "verbose", "expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        # URL
        (
            "BACKEND_API_URL",
            "ftp://x.example",
            "BACKEND_API_URL='ftp://x.example' is not valid: expected an http",
        ),
        (
            "BACKEND_API_URL",
            "http://",
            "BACKEND_API_URL='http://' is not valid: expected an http:// or https://",
        ),
        (
            "STELLAR_RPC_URL",
            "localhost:8000",
            "STELLAR_RPC_URL='localhost:8000' is not valid: expected an http",
        ),
        ("STELLAR_RPC_URL", "http://h:99999/", "STELLAR_RPC_URL='http://h:99999/' is not valid"),
        ("REDIS_URL", "http://127.0.0.1:6379", "expected a redis://, rediss:// or unix:// URL"),
        ("POOLER_INSTANCE_ID", "pooler a", "POOLER_INSTANCE_ID='pooler a' is not valid: expected 1 to 64 of"),
        ("LEADER_LEASE_MS", "100", "LEADER_LEASE_MS='100' is not valid: expected an integer 200..600000"),
        # Stellar contract id
        (
            "KALE_CONTRACT_ID",
            TESTNET[:-1] + "B",
            "expected a Soroban contract id (a 56-character C... strkey)",
        ),
        (
            "KALE_CONTRACT_ID",
            "GBDVX4VELCDSQ54KQJYTNHXAHFLBCA77ZY2USQBM4CSHTTV7DME7KALE",
            "strkey); this is an account (G...), not a contract",
        ),
        # list of origins
        ("CORS_ORIGINS", "https://a.example/path", "; 'https://a.example/path' is not an origin"),
        ("CORS_ORIGINS", "https://ok.example,pool.example", "; 'pool.example' is not an origin"),
        # text, host, path
        ("POOLER_ID", "has space", "POOLER_ID='has space' is not valid: expected 1-128 letters"),
        ("POOLER_NAME", "bell\x07", "POOLER_NAME='bell\\x07' is not valid: expected printable text"),
        ("HOST", "bad host!", "HOST='bad host!' is not valid: expected an IP address or host name"),
        ("POOLER_DB", "a\x01b", "POOLER_DB='a\\x01b' is not valid: expected a file path"),
    ],
)
def test_a_bad_value_fails_with_one_line_naming_variable_value_and_expectation(
    name: str, value: str, expected: str
) -> None:
    line = error_line({name: value})
    assert line.startswith(f"{name}=")
    assert " is not valid: expected " in line
    assert expected in line


@pytest.mark.parametrize(("attr", "name"), [(attr, var.env) for attr, var in variables()])
def test_every_variable_rejects_garbage_with_its_own_line(attr: str, name: str) -> None:
    line = error_line({name: "\x07nonsense\x07"})
    assert line.startswith(f"{name}=") and " is not valid: expected " in line


def test_a_secret_is_never_echoed_in_the_error() -> None:
    line = error_line({"ADMIN_TOKEN": "short secret"})
    assert (
        line == "ADMIN_TOKEN=<hidden> is not valid: expected at least 16 printable characters without spaces"
    )
    assert "short" not in line
    line = error_line({"ALERT_WEBHOOK_URL": "ftp://hooks.example/T0/hook-token"})
    assert line.startswith("ALERT_WEBHOOK_URL=<hidden> is not valid") and "hook-token" not in line


def test_a_url_password_is_masked_in_the_error() -> None:
    line = error_line({"REDIS_URL": "redis://user:hunter2@h:notaport/0"})
    assert "hunter2" not in line and "user:***@" in line


def test_long_values_are_clipped_in_the_error() -> None:
    line = error_line({"POOLER_NAME": "x" * 500})
    assert len(line) < 250 and "..." in line


def test_the_error_says_when_the_value_came_from_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=abc\n")
    expected = f"PORT='abc' is not valid: expected an integer 0..65535 (from {env_file})"
    assert error_line({}, str(env_file)) == expected


# ---------------------------------------------------------------- settings checked together


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"SHARE_ZEROS_INITIAL": "3"},
            "SHARE_ZEROS_INITIAL=3 is not valid: expected a value between SHARE_ZEROS_MIN=4 and "
            "SHARE_ZEROS_MAX=20",
        ),
        (
            {"SHARE_ZEROS_MIN": "9", "SHARE_ZEROS_MAX": "8"},
            "SHARE_ZEROS_MIN=9 is not valid: expected at most SHARE_ZEROS_MAX=8",
        ),
        (
            {"IDLE_TIMEOUT_MS": "20000"},
            "IDLE_TIMEOUT_MS=20000 is not valid: expected more than WS_PING_INTERVAL_MS=20000",
        ),
        (
            {"BLOCK_INTERVAL_SECONDS": "60"},
            "BLOCK_INTERVAL_SECONDS=60 is not valid: expected 300 on testnet",
        ),
        (
            {"STELLAR_NETWORK": "devnet", "BLOCK_INTERVAL_SECONDS": "10"},
            "WORK_SAFETY_MARGIN_MS=15000 is not valid: expected less than the block interval",
        ),
        ({"STORE": "redis"}, "REDIS_URL is not set: expected a redis:// URL because STORE=redis"),
    ],
)
def test_settings_that_depend_on_each_other_are_checked_together(env: dict[str, str], expected: str) -> None:
    assert expected in error_line(env)


def test_direct_construction_runs_the_same_cross_checks() -> None:
    with pytest.raises(ConfigError, match="SHARE_ZEROS_INITIAL=30"):
        Settings(share_zeros_initial=30)
    s = Settings(stellar_network="devnet", block_interval_seconds=20, work_safety_margin_ms=2000)
    assert s.kale_contract_id == DEFAULT_CONTRACT_IDS["devnet"]
    assert dataclasses.replace(s, port=1).port == 1


def test_devnet_may_shorten_the_block_interval() -> None:
    s = Settings.from_env(
        {"STELLAR_NETWORK": "devnet", "BLOCK_INTERVAL_SECONDS": "20", "WORK_SAFETY_MARGIN_MS": "3000"}, None
    )
    assert s.block_interval_seconds == 20 and s.missing_for_serve() == []


# ---------------------------------------------------------------- required for serve; Horizon


def test_missing_urls_fail_at_load_unless_devnet_or_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({}, None)
    assert str(info.value) == (
        "BACKEND_API_URL and STELLAR_RPC_URL are not set: expected an http(s) URL for each on "
        "STELLAR_NETWORK=testnet (or set STELLAR_NETWORK=devnet to run on the local devnet)"
    )
    with pytest.raises(ConfigError, match=r"^STELLAR_RPC_URL is not set: expected an http\(s\) URL for it"):
        Settings.from_env({"BACKEND_API_URL": "http://127.0.0.1:3000"}, None)
    relaxed = Settings.from_env({}, None, allow_missing=True)
    assert relaxed.missing_for_serve() == ["BACKEND_API_URL", "STELLAR_RPC_URL"]
    assert Settings.from_env({"STELLAR_NETWORK": "devnet"}, None).missing_for_serve() == []


def test_horizon_url_alone_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {"STELLAR_HORIZON_URL": "https://horizon-testnet.stellar.org"}, None, allow_missing=True
        )
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith("STELLAR_HORIZON_URL='https://horizon-testnet.stellar.org' is not used: expected")
    assert "STELLAR_RPC_URL" in line and "Soroban RPC" in line


def test_horizon_url_beside_an_rpc_url_is_ignored_with_a_warning() -> None:
    s = load({"STELLAR_HORIZON_URL": "https://horizon-testnet.stellar.org"})
    assert s.stellar_rpc_url == REQUIRED["STELLAR_RPC_URL"]
    assert (
        len(s.warnings) == 1
        and s.warnings[0].startswith("STELLAR_HORIZON_URL=")
        and "ignored" in s.warnings[0]
    )


def test_devnet_contract_id_is_the_documented_derivation() -> None:
    digest = hashlib.sha256(b"kale-devnet/farm-contract").digest()
    assert DEFAULT_CONTRACT_IDS["devnet"] == strkey.encode("C", digest)
    for contract in DEFAULT_CONTRACT_IDS.values():
        assert strkey.decode(contract)[0] == "C"


# ---------------------------------------------------------------- .env


def test_dotenv_syntax() -> None:
    text = "\n".join(
        [
            "\ufeff# a comment",
            "",
            "   # indented comment",
            "PORT=4000",
            "export HOST=0.0.0.0",
            "POOLER_NAME='My pool # one'   # trailing comment",
            'ADMIN_TOKEN="a\\"quoted\\" \\\\ value\\n"',
            "LOG_LEVEL = debug # spaces around = are fine",
            "SINGLE='literal \\n stays'",
            "HASH=abc#not-a-comment",
            "EMPTY=",
            "PORT=4001",
        ]
    )
    assert parse_env(text.lstrip("\ufeff")) == {
        "PORT": "4001",  # the later line wins
        "HOST": "0.0.0.0",
        "POOLER_NAME": "My pool # one",
        "ADMIN_TOKEN": 'a"quoted" \\ value\n',
        "LOG_LEVEL": "debug",
        "SINGLE": "literal \\n stays",
        "HASH": "abc#not-a-comment",
        "EMPTY": "",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PORT 3001", ".env line 2 is not valid: expected NAME=value, a # comment or a blank line"),
        ("1PORT=3001", ".env line 2 is not valid: expected NAME=value, a # comment or a blank line"),
        ("ADMIN_TOKEN='abc", ".env line 2 (ADMIN_TOKEN) is not valid: expected a closing ' on the same line"),
        ('ADMIN_TOKEN="abc', '.env line 2 (ADMIN_TOKEN) is not valid: expected a closing " on the same line'),
        ("NAME='a' b", ".env line 2 (NAME) is not valid: expected only a # comment after the closing quote"),
    ],
)
def test_bad_dotenv_lines_name_the_line_but_never_echo_it(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_env("# first\n" + text)
    assert str(info.value) == expected
    assert "abc" not in str(info.value)


def test_real_environment_wins_over_dotenv_and_dotenv_over_defaults(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=4000\nHOST=0.0.0.0\nPOOLER_NAME=from file\nLOG_FORMAT=json\n")
    s = load({"PORT": "5000", "POOLER_NAME": "", "LOG_FORMAT": "  "}, str(env_file))
    assert s.port == 5000 and s.source("PORT") == "env"
    assert s.host == "0.0.0.0" and s.source("HOST") == ".env"
    # an empty value in the environment counts as unset: the file's value applies
    assert s.pooler_name == "from file" and s.source("POOLER_NAME") == ".env"
    assert s.log_format == "json"
    assert s.max_frame_bytes == 4096 and s.source("MAX_FRAME_BYTES") == "default"


def test_a_missing_env_file_is_no_error_and_an_unreadable_one_is(tmp_path: Path) -> None:
    assert load({}, str(tmp_path / "absent.env")).port == 3001
    binary = tmp_path / "binary.env"
    binary.write_bytes(b"PORT=\xff\xfe\n")
    with pytest.raises(ConfigError, match="is not valid: expected a UTF-8 text file"):
        read_env_file(str(binary))


# ---------------------------------------------------------------- redaction


def test_redacted_hides_secrets_and_url_passwords() -> None:
    s = load(
        {
            "ADMIN_TOKEN": "super-secret-admin-token-123",
            "STORE": "redis",
            "REDIS_URL": "redis://pooler:hunter2@127.0.0.1:6379/0",
            "BACKEND_API_URL": "https://ops:pa55@backend.example",
            "ALERT_WEBHOOK_URL": "https://hooks.example/services/T0/B0/hook-token-456",
        }
    )
    shown = s.redacted()
    assert shown["ADMIN_TOKEN"] == shown["ALERT_WEBHOOK_URL"] == "***"
    assert shown["REDIS_URL"] == "redis://pooler:***@127.0.0.1:6379/0"
    assert shown["BACKEND_API_URL"] == "https://ops:***@backend.example"
    joined = "\n".join(f"{k}={v}" for k, v in shown.items())
    for secret in ("super-secret-admin-token-123", "hunter2", "pa55", "hook-token-456"):
        assert secret not in joined
    assert set(shown) == {var.env for _, var in variables()}
    assert shown["METRICS_ENABLED"] == "true" and shown["CORS_ORIGINS"] == ""
    assert load({}).redacted()["ADMIN_TOKEN"] == ""  # unset secrets are shown as unset


def test_names_that_look_secret_are_secret() -> None:
    secret = {var.env for _, var in variables() if var.secret}
    # and one declared secret: a webhook URL's path is often its token (Slack, Discord, ...)
    assert secret == {"ADMIN_TOKEN", "ALERT_WEBHOOK_URL"}
    assert redact_url("see rediss://u:p@h:1/0 and http://x") == "see rediss://u:***@h:1/0 and http://x"


def test_redacted_values_read_back_as_the_same_settings() -> None:
    s = load({"POOLER_NAME": 'A "quoted" name # 1', "CORS_ORIGINS": "https://a.example,https://b.example"})
    again = load(
        {name: value for name, value in s.redacted().items() if value and name != "KALE_CONTRACT_ID"}
    )
    assert again == s
    assert format_value(0.5) == "0.5" and format_value(None) == ""


# ---------------------------------------------------------------- documentation stays complete


def test_every_variable_is_in_env_example_and_the_operations_doc() -> None:
    example = (ROOT / ".env.example").read_text()
    doc = (ROOT / "docs" / "operations.md").read_text()
    for _, var in variables():
        assert f"{var.env}=" in example, f"{var.env} missing from .env.example"
        assert f"`{var.env}`" in doc, f"{var.env} missing from docs/operations.md"
    assert "STELLAR_HORIZON_URL" in example and "STELLAR_HORIZON_URL" in doc


def test_env_example_is_what_pooler_config_generates_and_it_loads() -> None:
    from pooler.config_cli import render_example

    example = (ROOT / ".env.example").read_text()
    assert example == render_example(), "regenerate with: pooler config --example > .env.example"
    values = parse_env(example, ".env.example")
    s = Settings.from_env(values, None)
    assert s.missing_for_serve() == []


def test_the_docs_table_is_what_pooler_config_generates() -> None:
    from pooler.config_cli import render_markdown

    doc = (ROOT / "docs" / "operations.md").read_text()
    start = doc.index("<!-- settings:begin")
    body = doc[doc.index("\n", start) + 1 : doc.index("<!-- settings:end -->")]
    assert body == render_markdown(), "regenerate the table with: pooler config --markdown"


def test_devnet_default_contract_is_the_devnets() -> None:
    from pooler.config import DEFAULT_CONTRACT_IDS
    from pooler.devnet.ledger import CONTRACT_ID

    assert DEFAULT_CONTRACT_IDS["devnet"] == CONTRACT_ID


# ---------------------------------------------------------------- the derived options


def test_the_derived_options_take_the_tables_values_converted_once() -> None:
    s = load({})
    endpoints = Endpoints.configured(s)
    assert endpoints == Endpoints(REQUIRED["STELLAR_RPC_URL"], REQUIRED["BACKEND_API_URL"], TESTNET)
    opts = pooler_options(s, endpoints, tuning=TUNING, gc_freeze=False)
    # one value for what used to have two defaults: the Settings table's
    assert opts.pooler_id == opts.core.pooler_id == s.pooler_id == "kale-pooler"
    assert opts.pooler_name == "KALE Pooler"
    assert opts.backend_timeout == 30.0  # BACKEND_TIMEOUT=30000 ms
    assert (opts.messages_per_second, opts.message_burst, opts.outbox_size) == (20.0, 40.0, 64)
    assert (opts.max_connections, opts.max_connections_per_ip) == (10_000, 100)
    assert (opts.core.safety_margin, opts.core.max_farmers_capacity) == (15.0, 1000)
    assert (opts.core.share_zeros_min, opts.core.share_zeros_initial, opts.core.share_zeros_max) == (4, 6, 20)
    # milliseconds became seconds
    assert (opts.poll_interval, opts.hello_timeout, opts.health_interval) == (1.0, 10.0, 5.0)
    assert (opts.ws_ping_interval, opts.ws_ping_timeout) == (20.0, 40.0)  # IDLE_TIMEOUT_MS - interval
    core = opts.core
    assert (core.work_delay, core.late_plant_grace, core.summary_interval) == (280.0, 15.0, 5.0)
    assert opts.core.invalid_share_cooldown == 300.0
    # alerts: no webhook unless ALERT_WEBHOOK_URL is set; the Backend/RPC hold in seconds
    assert (opts.alerts.webhook_url, opts.alerts.down_after) == (None, 60.0)
    # where it is kept follows STORE; a group only with STORE=redis
    assert opts.db_path == "./pooler.db" and opts.cluster is None
    memory = pooler_options(dataclasses.replace(s, store="memory"), endpoints, tuning=TUNING, gc_freeze=False)
    assert memory.db_path is None
    assert Endpoints.configured(Settings(stellar_network="devnet")) is None  # pooler serve starts a devnet


def test_alert_worker_silent_minutes_become_the_cores_seconds() -> None:
    assert core_config(load({"ALERT_WORKER_SILENT_MINUTES": "3"}), TUNING).worker_silent_after == 180.0
    assert core_config(load({}), TUNING).worker_silent_after == 0.0  # off unless set


def test_work_timeout_minutes_is_how_long_a_silent_rest_workers_jobs_are_honoured() -> None:
    assert core_config(load({"WORK_TIMEOUT_MINUTES": "7"}), TUNING).rest_worker_idle == 7 * 60
    minute = Settings(
        stellar_network="devnet", share_zeros_initial=1, share_zeros_min=1, work_timeout_minutes=1
    )
    rig = Rig(core_config(minute, TUNING))
    rig.join("r", 2)
    rig.block(1)
    [job] = sends(rig.do(RestWorkRequested(101, "r", "rig"), at=T0 + 1), Job)
    first = find_nonce(job, 1)
    second = find_nonce(job, 1, start=first[0] + 1)
    # silent for 59 s: still its worker's job; the submit counts as hearing from it
    rig.do(TimerFired("summary"), at=T0 + 60)
    answer = rig.do(RestShareSubmitted(102, "r", Share(job.job, first[0], first[1])), at=T0 + 60)
    assert sends(answer, Accepted)
    # then silent for more than WORK_TIMEOUT_MINUTES: forgotten with its jobs
    rig.do(TimerFired("summary"), at=T0 + 60 + 61)
    assert rig.core.view(rig.now).workers == 0
    answer = rig.do(RestShareSubmitted(103, "r", Share(job.job, second[0], second[1])), at=T0 + 122)
    assert [r.code for r in sends(answer, Rejected)] == [Code.STALE]


# ---------------------------------------------------------------- every setting is read by something
#
# Each setting must do something: changing it (to another valid value, through the environment as an
# operator would) changes what is derived from the settings (PoolerOptions with its CoreConfig and
# ClusterOptions), or it is listed below with the module that reads it directly. And every field of
# those derived objects is read somewhere in pooler/. Together: no setting is read by nothing.

# Settings that reach no derived object, and the one module that reads them as ``settings.<field>``.
NAMED_CONSUMERS: dict[str, str] = {
    "log_level": "pooler/logs.py",  # setup_logging(settings)
    "log_format": "pooler/logs.py",
}
# Values the generic candidates below cannot make (a valid contract id has a checksum).
OTHER_TEXT: dict[str, str] = {"KALE_CONTRACT_ID": DEFAULT_CONTRACT_IDS["mainnet"]}
# Two starting points, so that settings of one store (POOLER_DB; REDIS_URL, LEADER_LEASE_MS...) count.
DEVNET = {"STELLAR_NETWORK": "devnet", **REQUIRED}
BASES = ({**DEVNET, "STORE": "sqlite"}, {**DEVNET, "STORE": "redis", "REDIS_URL": "redis://127.0.0.1:6379/0"})
# Names the derived objects go by where pooler/ reads them (``self.options.port``, ``cfg.range_min``).
RECEIVERS: dict[type, frozenset[str]] = {
    PoolerOptions: frozenset({"options", "_options", "opts"}),
    CoreConfig: frozenset({"config", "_config", "cfg", "core", "core_config", "_core_config"}),
    ClusterOptions: frozenset({"options", "_options", "opts", "cluster"}),
    AlertOptions: frozenset({"alerts", "alerting"}),
}


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    """A derived object as ``{"core.range_min": ..., ...}``; nested dataclasses are flattened."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return {prefix: value}
    out: dict[str, object] = {}
    for f in dataclasses.fields(value):
        out.update(_flat(getattr(value, f.name), f"{prefix}{f.name}."))
    return {key.rstrip("."): item for key, item in out.items()}


def _derived(settings: Settings) -> dict[str, object]:
    endpoints = Endpoints.configured(settings)
    assert endpoints is not None
    return _flat(pooler_options(settings, endpoints, tuning=TUNING, gc_freeze=False))


def _other_texts(attr: str, var: Var, current: object) -> list[str]:
    """Texts that may parse to another value of the setting (the first valid one is used)."""
    hint = typing.get_type_hints(Settings)[attr]
    texts = [str(choice) for choice in typing.get_args(hint)] if typing.get_origin(hint) is Literal else []
    if isinstance(current, bool):
        texts.append(format_value(not current))
    elif isinstance(current, int):
        texts += [str(current + 1), str(current - 1)]
    elif isinstance(current, float):
        texts += [f"{current / 2:g}", f"{current * 2:g}"]
    elif isinstance(current, str):
        texts.append(current + "2")
    return [*texts, var.example, OTHER_TEXT.get(var.env, "")]


def _reached(attr: str, var: Var) -> set[str]:
    """The derived fields that change when the setting ``attr`` changes, from either base."""
    reached: set[str] = set()
    tried = False
    for env in BASES:
        base = Settings.from_env(env, None)
        current = getattr(base, attr)
        for text in _other_texts(attr, var, current):
            try:
                changed = Settings.from_env({**env, var.env: text}, None)
            except ConfigError:
                continue
            if getattr(changed, attr) != current:
                tried = True
                before, after = _derived(base), _derived(changed)
                reached |= {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
                break
    assert tried, f"found no other valid value of {var.env} to try: add one to OTHER_TEXT"
    return reached


def _attribute_reads(path: Path, within: str | None = None) -> set[tuple[str, str]]:
    """``(receiver name, attribute)`` of every attribute read in the module (or only in its class
    ``within``), outside ``__post_init__`` (checking a value is not using it):
    ``self.options.port`` gives ``("options", "port")``."""
    reads: set[tuple[str, str]] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and child.name == "__post_init__":
                continue
            if isinstance(child, ast.Attribute) and isinstance(child.ctx, ast.Load):
                receiver = child.value
                if isinstance(receiver, ast.Name):
                    reads.add((receiver.id, child.attr))
                elif isinstance(receiver, ast.Attribute):
                    reads.add((receiver.attr, child.attr))
            visit(child)

    tree: ast.AST = ast.parse(path.read_text(), str(path))
    if within is not None:
        tree = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == within)
    visit(tree)
    return reads


@pytest.mark.parametrize(("attr", "var"), variables(), ids=[var.env for _, var in variables()])
def test_every_setting_reaches_the_derived_options_or_a_named_consumer(attr: str, var: Var) -> None:
    reached = _reached(attr, var)
    if attr not in NAMED_CONSUMERS:
        assert reached, (
            f"{var.env} changes nothing in PoolerOptions, CoreConfig or ClusterOptions: derive something"
            " from it in pooler/app/options.py, list its reader in NAMED_CONSUMERS, or remove the setting"
        )
        return
    assert not reached, f"{var.env} reaches {sorted(reached)}: drop it from NAMED_CONSUMERS"
    module = NAMED_CONSUMERS[attr]
    assert ("settings", attr) in _attribute_reads(ROOT / module), f"{module} does not read settings.{attr}"


def test_every_tuning_value_reaches_the_derived_options() -> None:
    settings = load({"STORE": "redis", "REDIS_URL": "redis://127.0.0.1:6379/0"})  # a group: all three
    endpoints = Endpoints.configured(settings)
    assert endpoints is not None
    base = _flat(pooler_options(settings, endpoints, tuning=TUNING, gc_freeze=False))
    for f in dataclasses.fields(Tuning):
        current = getattr(TUNING, f.name)
        others = [current + "x"] if isinstance(current, str) else [current + 1, current * 1.5, current / 2]
        for other in others:
            try:
                tuning = dataclasses.replace(TUNING, **{f.name: type(current)(other)})
                derived = _flat(pooler_options(settings, endpoints, tuning=tuning, gc_freeze=False))
            except ConfigError:
                continue
            assert derived != base, (
                f"Tuning.{f.name} reaches nothing: use it in pooler/app/options.py or drop it"
            )
            break
        else:
            raise AssertionError(f"found no other valid value of Tuning.{f.name} to try")


def test_every_field_of_the_derived_options_is_read_in_pooler() -> None:
    derivation = {ROOT / "pooler" / "app" / "options.py", ROOT / "pooler" / "config.py"}
    reads: set[tuple[str, str]] = set()
    for path in sorted((ROOT / "pooler").rglob("*.py")):
        if path not in derivation:
            reads |= _attribute_reads(path)
    for cls, receivers in RECEIVERS.items():
        # its properties (read elsewhere, like its fields) may read its fields as self.<field>
        own = {
            name for who, name in _attribute_reads(Path(inspect.getfile(cls)), cls.__name__) if who == "self"
        }
        names = [f.name for f in dataclasses.fields(cls)]
        names += [name for name, member in vars(cls).items() if isinstance(member, property)]
        unread = [n for n in names if n not in own and not any((who, n) in reads for who in receivers)]
        assert not unread, (
            f"{cls.__name__} fields read nowhere in pooler/ (as <{'|'.join(sorted(receivers))}>.<field>):"
            f" {unread}; use them or remove them (and the settings they come from)"
        )
