"""The project's exception tree, drawn in one place.

    KaleError                       (protocol.errors; the root)
    +-- ProtocolError               a peer broke protocol v1 (carries a Code)
    +-- PoolerError                 raised by the Pooler's own code
        +-- ConfigError             a setting is missing or invalid (names the variable)
        +-- ChainError              the chain could not be read
        |   +-- RpcUnavailable      transport fault, HTTP 429/5xx: retry with backoff
        |   |   +-- RpcTimeout      no answer within the request timeout
        |   |   +-- RpcErrorReply   the server answered with a JSON-RPC error
        |   +-- ChainDataError      the answer was read but makes no sense (bad XDR, missing keys)
        +-- BackendError            the Backend call failed
        |   +-- BackendUnavailable  network error, 5xx, 429, timeout: retryable until the deadline
        |   |   +-- BackendDeadline the phase's deadline ran out before another attempt could start
        |   +-- BackendUnknownOutcome  sent, but the answer cannot be read (a 2xx lacking a field or
        |   |                       not JSON, a timeout or a cut connection after sending): reconcile
        |   +-- BackendRejected     a 4xx: our request was wrong; retrying cannot help
        |       +-- FencedOff       refused here: this instance does not hold the leader lease
        |       +-- BackendFenced   refused there: the Backend has served a newer leader (409 "fenced")
        +-- StoreError              durable storage failed
        |   +-- StoreUnavailable    could not write now (locked, I/O error, disk full): retry later
        +-- DevnetError             the local devnet was misused
            +-- ContractError       the contract model refused a call (with the contract's number)

Local vs remote (as in h11): ProtocolError is the remote peer's fault and becomes an
``error``/``rejected`` message; PoolerError subclasses are ours or a dependency's and are
logged, counted and retried where the table above says so.

Kinds are told apart by type where the error is born (the chain reader, the Backend client),
never by the text of a message: metrics labels, "missed the deadline" and "deposed" are
``isinstance`` checks on this tree.
"""

from __future__ import annotations

from protocol.errors import KaleError, ProtocolError


class PoolerError(KaleError):
    """Base of every error raised by the Pooler's own code."""


class ConfigError(PoolerError):
    """A configuration value is missing or invalid; the message names the variable."""


class ChainError(PoolerError):
    """Reading the farm contract's state failed."""


class RpcUnavailable(ChainError):
    """Soroban RPC did not answer usefully (connection, HTTP 429/5xx, JSON-RPC error)."""


class RpcTimeout(RpcUnavailable):
    """The RPC did not answer within the request timeout."""


class RpcErrorReply(RpcUnavailable):
    """The RPC answered with a JSON-RPC error object (overloaded, internal error, ...)."""


class ChainDataError(ChainError):
    """The RPC answered but the data is not what the farm contract stores."""


class BackendError(PoolerError):
    """A Phase-1 Backend call failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BackendUnavailable(BackendError):
    """Network error, timeout, 5xx or 429: worth retrying while the phase's deadline allows."""


class BackendDeadline(BackendUnavailable):
    """The phase's deadline ran out (or would, before the next retry): the call was given up
    for lack of time, not for lack of attempts. The block cycle reads this as a missed phase."""


class BackendUnknownOutcome(BackendError):
    """The request was sent and may have acted, but its answer cannot be read: a 2xx whose body
    lacks a field or is not JSON, a POST that timed out or whose connection was cut after it was
    sent. Neither a success nor a failure: the block cycle reconciles it with the chain (the
    farmers' pails) before retrying or declaring anything failed. A request that never reached
    the Backend (connection refused) is a :class:`BackendUnavailable`."""


class BackendRejected(BackendError):
    """A 4xx other than 429: the request itself was refused; retrying cannot help."""


class FencedOff(BackendRejected):
    """This instance no longer (or never) held the cluster's leader lease: the call was not made."""


class BackendFenced(BackendRejected):
    """The Backend refused our fencing token (409 with ``error: "fenced"``): it has served a
    newer leader of this pool, so whatever this instance believes, it leads no more."""


class StoreError(PoolerError):
    """Durable storage failed."""


class StoreUnavailable(StoreError):
    """The store could not write now (database locked, I/O error, disk full); the same records may
    succeed later. Other StoreErrors mean the records themselves cannot be written."""


class DevnetError(PoolerError):
    """The local devnet was used wrongly."""


class ContractError(DevnetError):
    """The farm contract model refused a call, with the real contract's error number."""

    def __init__(self, number: int, name: str) -> None:
        super().__init__(f"Error(Contract, #{number}) {name}")
        self.number = number
        self.name = name


__all__ = [
    "BackendDeadline",
    "BackendError",
    "BackendFenced",
    "BackendRejected",
    "BackendUnavailable",
    "BackendUnknownOutcome",
    "ChainDataError",
    "ChainError",
    "ConfigError",
    "ContractError",
    "DevnetError",
    "FencedOff",
    "KaleError",
    "PoolerError",
    "ProtocolError",
    "RpcErrorReply",
    "RpcTimeout",
    "RpcUnavailable",
    "StoreError",
    "StoreUnavailable",
]
