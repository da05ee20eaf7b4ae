"""The real kale-miner binary for the bridge's tests, built from its public source (MIT).

The source is not part of this project (it must not be copied into it): it sits next to the
repository, in ``../shared/kale-miner`` (CI has it there), or wherever ``KALE_MINER_SOURCE`` points
(a checkout of FredericRezeau/kale-miner; a git worktree of this repository needs it). The first
test that asks builds the CPU binary once per session with ``make`` in a temporary copy (a few
seconds with g++), never in the source folder. A missing source, ``make`` or compiler fails the
test with a message saying what to provide: it is never a silent skip.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "kale-miner"
_built: Path | None = None


def kale_miner_source() -> Path:
    override = os.environ.get("KALE_MINER_SOURCE")
    return Path(override) if override else DEFAULT_SOURCE


def kale_miner_binary() -> Path:
    """The path of a freshly built ``miner`` (CPU build); fails the calling test when it cannot be built."""
    global _built
    if _built is not None:
        return _built
    source = kale_miner_source()
    if not (source / "miner.cpp").is_file() or not (source / "Makefile").is_file():
        pytest.fail(
            f"the kale-miner source is not at {source} (no miner.cpp and Makefile there): these tests"
            " drive the real binary. Put its source (github.com/FredericRezeau/kale-miner, MIT) at"
            f" {DEFAULT_SOURCE}, or set KALE_MINER_SOURCE to a checkout of it",
            pytrace=False,
        )
    make = shutil.which("make")
    if make is None:
        pytest.fail("building kale-miner needs make and g++: apt-get install -y make g++", pytrace=False)
    work = Path(tempfile.mkdtemp(prefix="kale-miner-"))
    atexit.register(shutil.rmtree, work, True)
    tree = work / "src"
    shutil.copytree(source, tree, ignore=shutil.ignore_patterns("*.o", "miner", ".git"))
    result = subprocess.run([make, "-C", str(tree)], capture_output=True, text=True, timeout=600, check=False)
    binary = tree / "miner"
    if result.returncode != 0 or not binary.is_file():
        pytest.fail(
            f"building kale-miner from {source} failed (make exited {result.returncode}; it needs g++"
            f" with C++17):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}",
            pytrace=False,
        )
    _built = binary
    return binary
