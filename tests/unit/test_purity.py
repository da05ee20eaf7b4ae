"""`protocol/` and `pooler/core/` must stay pure: no event loop, sockets, threads, clocks,
processes, or any layer above them (the layer order: tests/unit/test_architecture.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pooler.core
import protocol

FORBIDDEN = {"asyncio", "socket", "time", "threading", "pooler", "selectors", "datetime"}
ROOT = Path(protocol.__file__).parent
CORE = Path(pooler.core.__file__).parent
# What the core may not use: I/O, clocks, concurrency (time is passed in: handle(event, now)).
CORE_FORBIDDEN = {
    "asyncio",
    "socket",
    "time",
    "threading",
    "select",
    "selectors",
    "subprocess",
    "multiprocessing",
    "concurrent",
    "datetime",
    "random",
    "secrets",
    "os",
    "sqlite3",
}
CORE_MAY_USE = ("pooler.core", "pooler.errors", "protocol")  # of our own packages


def _imports(path: Path, depth: int = 1) -> set[str]:
    """The modules ``path`` imports, cut to their first ``depth`` components (every statement,
    those under ``if TYPE_CHECKING:`` too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(".".join(alias.name.split(".")[:depth]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(".".join(node.module.split(".")[:depth]))
        elif isinstance(node, ast.ImportFrom):
            names.add("pooler.core")  # relative: inside its own package
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


def test_core_modules_import_nothing_impure() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 5
    for path in files:
        where = path.relative_to(CORE.parent.parent)
        bad = {name.split(".")[0] for name in _imports(path)} & CORE_FORBIDDEN
        assert not bad, f"{where} imports {sorted(bad)}"
        ours = {name for name in _imports(path, depth=3) if name.split(".")[0] in ("pooler", "protocol")}
        outer = sorted(n for n in ours if not any(n == ok or n.startswith(ok + ".") for ok in CORE_MAY_USE))
        assert not outer, f"{where} imports {outer}: the core may use only {CORE_MAY_USE}"


def test_importing_the_core_loads_no_event_loop_or_outer_layer() -> None:
    code = (
        "import sys, pathlib, pkgutil, importlib, pooler.core;"
        "[importlib.import_module('pooler.core.' + m.name)"
        " for m in pkgutil.iter_modules(pooler.core.__path__)];"
        "outer = ('pooler.app', 'pooler.web', 'pooler.cluster', 'pooler.runtime', 'pooler.store',"
        " 'pooler.chain', 'pooler.backend', 'pooler.devnet');"
        "bad = sorted(m for m in sys.modules if m in ('asyncio', 'socket', 'stellar_sdk', 'aiohttp')"
        " or m.startswith(outer));"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
