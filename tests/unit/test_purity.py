"""`protocol/` must stay pure: no event loop, sockets, threads, clocks, or the service package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import protocol

FORBIDDEN = {"asyncio", "socket", "time", "threading", "pooler", "selectors", "datetime"}
ROOT = Path(protocol.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_protocol_modules_import_nothing_impure() -> None:
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) >= 5
    for path in files:
        bad = _imports(path) & FORBIDDEN
        assert not bad, f"{path.relative_to(ROOT.parent)} imports {sorted(bad)}"


def test_importing_protocol_loads_no_event_loop_or_pooler() -> None:
    # A fresh interpreter, so modules the test runner already loaded do not hide anything.
    code = (
        "import sys, protocol, protocol.codec, protocol.messages, protocol.work;"
        "bad = sorted(m for m in ('asyncio', 'pooler', 'socket', 'stellar_sdk') if m in sys.modules);"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
