"""``python -m bench --quick`` runs every benchmark end to end and writes its JSON and Markdown.

It proves the harness works (servers, load-generator processes, the baseline, the report); it
asserts nothing about speed: the figures are whatever this machine gives.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent.parent


def quick_run(out: Path, *args: str, timeout: float) -> tuple[dict[str, Any], Path, str]:
    """``python -m bench --quick [args]`` into ``out``: its JSON record, the Markdown report and
    what it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [json_path] = out.glob("*-quick.json")
    [md_path] = out.glob("*-quick.md")
    record: dict[str, Any] = orjson.loads(json_path.read_bytes())
    return record, md_path, result.stdout


def bench_json(module: str, *args: str) -> dict[str, Any]:
    """``python -m <module> <args>`` (a ``--json`` benchmark script printing one JSON document)."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record: dict[str, Any] = orjson.loads(result.stdout)
    return record


def test_quick_run_measures_everything_and_writes_both_reports(tmp_path: Path) -> None:
    record, md_path, stdout = quick_run(tmp_path, timeout=240)
    assert record["mode"] == "quick"
    assert record["machine"]["cores"] >= 1 and record["machine"]["packages"]["websockets"] != "absent"
    results = record["results"]
    assert set(results) == {"verify", "detect", "push", "shares", "rest"}
    [level] = results["push"]["levels"]
    # both MINER_SOCKET paths, each with per-worker jobs and with block-broadcast, and the bare library
    for side in ("pooler", "picows", "pooler-bc", "picows-bc", "baseline", "ws-send", "raw"):
        assert level[side]["missing"] == 0  # every socket got the new block's job
        assert level[side]["n"] == level["n"] * level["rounds"]
    [shares] = results["shares"]["levels"]
    assert shares["max"]["accepted"] > 0 and shares["max"]["rejected"] == 0 and shares["max"]["errors"] == 0
    [shares] = results["shares"]["picows"]["levels"]  # the same load on MINER_SOCKET=picows
    assert shares["max"]["accepted"] > 0 and shares["max"]["rejected"] == 0 and shares["max"]["errors"] == 0
    assert results["rest"]["work"]["ok"] > 0 and results["rest"]["submit"]["ok"] > 0
    assert results["rest"]["work"]["bad"] == 0 and results["rest"]["submit"]["bad"] == 0
    table = md_path.read_text()
    for row in (
        "new-block push",
        "MINER_SOCKET=picows",
        "block-broadcast",
        "ws-send",
        "RSS per idle miner socket",
        "verified shares/s",
        "REST GET",
        "block detection",
    ):
        assert row in table
    assert table in stdout


def test_cluster_section_measures_one_and_two_instances_on_redis(tmp_path: Path) -> None:
    """``--only cluster`` at its quick size: its own redis-server, 1 then 2 Pooler instances."""
    record, md_path, stdout = quick_run(tmp_path, "--only", "cluster", timeout=180)
    cluster = record["results"]["cluster"]
    assert set(record["results"]) == {"cluster"}  # on request only, never with the default sections
    assert cluster["redis"]["version"] and "appendonly no" in cluster["redis"]["persistence"]
    assert set(cluster["configs"]) == {"1", "2"}
    for size, config in ((1, cluster["configs"]["1"]), (2, cluster["configs"]["2"])):
        assert config["instances"] == size
        assert sorted(config["roles"]) == sorted(["leader"] + ["follower"] * (size - 1))
        push, shares = config["push"], config["shares"]
        assert push["missing"] == 0  # every socket of every instance got every new block's job
        assert push["n"] == push["sockets"] * push["rounds"] and push["sockets"] > 0
        assert [x["n"] for x in push["per_instance"]] == [push["n"] // size] * size  # sockets split evenly
        assert len(push["cpu_ms_per_push"]) == size and push["p99_ms"] > 0
        assert shares["accepted"] > 0 and shares["rejected"] == 0 and shares["errors"] == 0
        assert shares["rate"] > 0 and len(shares["server_cpu_s"]) == size
        assert len(shares["per_instance_rate"]) == size and all(r > 0 for r in shares["per_instance_rate"])
        assert sum(shares["commits"]) > 0 and shares["redis_commands"]
    assert cluster["push_p99_ratio"] > 0 and cluster["shares_rate_ratio"] > 0
    table = md_path.read_text()
    assert "| 1 instance on Redis | 2 instances on the same Redis |" in table
    for row in ("new-block broadcast", "verified shares/s, durable in Redis", "CPU a share"):
        assert row in table
    assert table in stdout


def test_the_block_soak_runs_a_few_blocks_with_churn_and_reports_its_figures() -> None:
    """``python -m bench.soak_blocks`` end to end on a few 2 s blocks: it stops by itself, samples
    the Pooler child, and under churn the planted farmers stay those of the live miners."""
    record = bench_json(
        "bench.soak_blocks",
        *["--blocks", "6", "--every", "2", "--farmers", "4", "--window", "2"],
        *["--churn", "1", "--json"],
    )
    assert record["blocks"] >= 6 and record["failures"] == 0
    assert record["registered"] >= 4 + 5  # one new miner a block after the first
    assert 0 < record["planted_max"] <= 4  # never the farmers of miners that left
    assert {"heap_mb_per_100_blocks", "rss_mb_per_100_blocks", "sqlite_kib_per_100_blocks"} <= set(record)
    assert all(s["rss_mb"] > 0 and s["db_kib"] > 0 for s in record["samples"])


def test_socket_memory_attributes_an_idle_sockets_heap_to_lines_and_types() -> None:
    """``python -m bench.socket_memory`` at a small size, on the picows path: every figure is there
    and the per-socket objects include the socket's own (its wire, its core session)."""
    record = bench_json("bench.socket_memory", "--sockets", "200", "--path", "picows", "--json")
    assert record["path"] == "picows" and record["sockets"] == 200
    assert record["traced_kb_per_socket"] > 0 and record["top_lines"]
    assert all(line["bytes_per_socket"] >= 1 and ":" in line["where"] for line in record["top_lines"])
    for kind in ("PicowsWire", "Session", "WorkerHashrate"):
        assert record["objects_per_socket"].get(kind, 0) >= 0.9, (kind, record["objects_per_socket"])
