"""Error kinds are told apart by type (pooler/errors.py), never by the text of a message."""

from __future__ import annotations

import pytest

from pooler.app.observe import rpc_error_kind
from pooler.errors import (
    BackendDeadline,
    BackendFenced,
    BackendRejected,
    BackendUnavailable,
    ChainDataError,
    FencedOff,
    RpcErrorReply,
    RpcTimeout,
    RpcUnavailable,
)


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        # the messages say the opposite of the type on purpose: only the type may count
        (RpcTimeout("JSON-RPC error -1: HTTP 500"), "timeout"),
        (RpcErrorReply("timed out"), "rpc-error"),
        (RpcUnavailable("JSON-RPC error, timed out"), "unavailable"),
        (ChainDataError("HTTP 500 timed out"), "bad-data"),
        (RuntimeError("connection failed"), "bad-data"),
        (None, "bad-data"),
    ],
)
def test_a_chain_poll_failure_is_labelled_by_its_type(failure: Exception | None, kind: str) -> None:
    assert rpc_error_kind(failure) == kind


def test_the_backend_kinds_sit_where_their_handlers_catch_them() -> None:
    assert issubclass(BackendDeadline, BackendUnavailable)  # retryable, and a missed phase
    assert issubclass(BackendFenced, BackendRejected)  # not retried: we were deposed
    assert issubclass(FencedOff, BackendRejected)
    assert not issubclass(BackendFenced, FencedOff)  # refused there, not here
    assert BackendDeadline("no deadline in this text", status=503).status == 503
