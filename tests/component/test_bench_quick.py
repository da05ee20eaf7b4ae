"""``python -m bench --quick`` runs every benchmark end to end and writes its JSON and Markdown.

It proves the harness works (servers, load-generator processes, the baseline, the report); it
asserts nothing about speed: the figures are whatever this machine gives.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent.parent


def test_quick_run_measures_everything_and_writes_both_reports(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [json_path] = tmp_path.glob("*-quick.json")
    [md_path] = tmp_path.glob("*-quick.md")
    record = orjson.loads(json_path.read_bytes())
    assert record["mode"] == "quick"
    assert record["machine"]["cores"] >= 1 and record["machine"]["packages"]["websockets"] != "absent"
    results = record["results"]
    assert set(results) == {"verify", "detect", "push", "shares", "rest"}
    [level] = results["push"]["levels"]
    for side in ("pooler", "baseline"):
        assert level[side]["missing"] == 0  # every socket got the new block's job
        assert level[side]["n"] == level["n"] * level["rounds"]
    [shares] = results["shares"]["levels"]
    assert shares["max"]["accepted"] > 0 and shares["max"]["rejected"] == 0 and shares["max"]["errors"] == 0
    assert results["rest"]["work"]["ok"] > 0 and results["rest"]["submit"]["ok"] > 0
    assert results["rest"]["work"]["bad"] == 0 and results["rest"]["submit"]["bad"] == 0
    table = md_path.read_text()
    for row in (
        "new-block push",
        "RSS per idle miner socket",
        "verified shares/s",
        "REST GET",
        "block detection",
    ):
        assert row in table
    assert table in result.stdout
