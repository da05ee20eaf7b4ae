"""How a setting is described: :class:`Var` (its variable, parser and help) and the group names.

Shared by the modules that declare settings (``pooler/config/__init__.py`` and
``pooler/config/limits.py``); :data:`GROUPS` is the order of the groups in ``.env.example``,
``pooler config`` and the tables of ``docs/operations.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pooler.config.parsers import Parser

_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSPHRASE|PRIVATE|KEY")


@dataclass(frozen=True, slots=True)
class Var:
    """How one setting is read: its environment variable, parser and documentation."""

    env: str
    parse: Parser
    help: str
    group: str
    secret: bool = False
    example: str = ""  # shown in .env.example for settings without a useful default


def setting(
    default: object,
    env: str,
    parse: Parser,
    group: str,
    help: str,
    *,
    secret: bool = False,
    example: str = "",
) -> Any:
    """A dataclass field whose metadata says how to read and document it."""
    secret = secret or bool(_SECRET_NAME.search(env))
    return field(default=default, metadata={"var": Var(env, parse, help, group, secret, example)})


ID = "Identity and server"
BACKEND = "Backend (Phase-1 API)"
CHAIN = "Chain"
CYCLE = "Block cycle"
SHARES = "Miners, shares and difficulty"
LIMITS = "Connection limits"
STORE = "Storage"
OPS = "Logs, metrics and access"
ALERTS = "Alerts"
MS = "milliseconds"

GROUPS = (ID, BACKEND, CHAIN, CYCLE, SHARES, LIMITS, STORE, OPS, ALERTS)
"""The groups in the order they are shown."""
