"""Fixtures of the component tests: ``miner_socket`` runs a test on both ``/ws/miner`` paths.

A test (or a module, with ``pytestmark = pytest.mark.usefixtures("miner_socket")``) that uses
it runs twice: with ``MINER_SOCKET=asgi`` (uvicorn's websockets-sansio) and ``MINER_SOCKET=picows``
(pooler/web/picows_ws.py); every ``running_system`` it starts serves that path.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import system


@pytest.fixture(params=["asgi", "picows"])
def miner_socket(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(system, "miner_socket", request.param)
    yield request.param
