"""End-to-end tier: the whole system on the devnet (``pytest -m e2e`` runs only these).

``shared_system`` is one devnet + Pooler for all tests of a module (short blocks, pinned share
difficulty) for tests that only need a live Pooler; the block-cycle test starts its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.support.system import System, running_system

E2E_BLOCK_INTERVAL = 5  # seconds: the shortest that leaves room for plant, work at workAt and harvest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_system() -> AsyncIterator[System]:
    async with running_system(block_interval=E2E_BLOCK_INTERVAL, share_zeros=2) as system:
        yield system
