"""The root of the project's exception tree and the wire protocol's error codes.

Every exception the project raises on purpose derives from :class:`KaleError`. The
pooler's own branches are drawn in ``pooler/errors.py``; this module holds the root
and the one error the pure protocol layer raises, so miners can import it alone.
"""

from __future__ import annotations

import enum


class Code(enum.IntEnum):
    """Protocol v1 error codes; Stratum's numbers where Stratum has one (20-25)."""

    MALFORMED = 20
    STALE = 21
    DUPLICATE = 22
    LOW_ZEROS = 23
    UNAUTHORIZED = 24
    NO_HELLO = 25
    INVALID_HASH = 26
    OUT_OF_RANGE = 27
    RATE_LIMITED = 28
    TOO_LARGE = 29
    # Not the miner's fault and not a verdict on the share: the pool could not record or check it
    # right now (its store is down). Retrying the same share later is right; mining on is right.
    UNAVAILABLE = 30

    @property
    def reason(self) -> str:
        """The short reason string sent beside the code (``low-zeros`` for LOW_ZEROS)."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_reason(cls, reason: str) -> Code:
        return cls[reason.upper().replace("-", "_")]


class KaleError(Exception):
    """Root of every exception kale-pooler raises on purpose."""


class ProtocolError(KaleError):
    """A message broke protocol v1. Carries the code to send back and a message a person can act on."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def reason(self) -> str:
        return self.code.reason

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.reason}: {self.message})"
