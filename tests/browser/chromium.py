"""Launch Debian's Chromium headless through the ``playwright`` package.

Playwright's own browser download does not work on the build machines, so the tests drive the
distribution's ``chromium`` (``apt-get install chromium``; ``./dev.sh test`` installs it when missing) with
``executable_path``. Set ``CHROMIUM`` to use another binary.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import BrowserContext, async_playwright

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")

# Playwright adds --headless (headless=True) and --user-data-dir (the persistent context's profile).
FLAGS = (
    "--no-sandbox",  # tests run as root in containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no traffic beyond the loopback server under test
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> Path:
    """The Chromium binary to drive, or FileNotFoundError saying how to get one."""
    override = os.environ.get("CHROMIUM")
    candidates = [Path(override)] if override else [DEBIAN_CHROMIUM]
    found = shutil.which("chromium")
    if not override and found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(
        f"no Chromium at {', '.join(map(str, candidates))}: install Debian's package"
        " (apt-get update && apt-get install -y chromium) or set CHROMIUM=/path/to/chromium"
    )


@asynccontextmanager
async def headless_chromium() -> AsyncIterator[BrowserContext]:
    """A fresh headless Chromium with a throw-away profile; closed (and the profile removed) on exit."""
    executable = find_chromium()
    with tempfile.TemporaryDirectory(prefix="kale-chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile, executable_path=str(executable), headless=True, args=list(FLAGS)
            )
            try:
                yield context
            finally:
                await context.close()
