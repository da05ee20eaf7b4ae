"""``.env`` files for the settings (:mod:`pooler.config`): ``NAME=value`` lines, comments, quotes
and escapes as docker compose reads them; a bad file is one :class:`ConfigError` line."""

from __future__ import annotations

import re

from pooler.config.parsers import _Invalid
from pooler.errors import ConfigError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def read_env_file(path: str) -> dict[str, str]:
    """Parse a ``.env`` file (see :func:`parse_env`). Raises ConfigError if unreadable."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not valid: expected a UTF-8 text file of NAME=value lines") from None
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror}") from None
    return parse_env(text, path)


def parse_env(text: str, path: str = ".env") -> dict[str, str]:
    """Parse ``.env`` text: ``NAME=value`` lines, strict enough to catch typos.

    - blank lines and ``#`` comment lines are skipped; an ``export`` prefix is allowed;
    - ``'single quotes'`` keep their content literally; ``"double quotes"`` understand
      ``\\n \\t \\" \\\\ \\$``; both must close on the same line;
    - unquoted values end at a ``#`` that follows whitespace, and are stripped;
    - no variable expansion; a later line overrides an earlier one.
    Errors name the file and line but never echo the line (it may hold a secret).
    """
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export ") or stripped.startswith("export\t"):
            stripped = stripped[len("export") :].lstrip()
        name, eq, rest = stripped.partition("=")
        name = name.rstrip()
        if not eq or not _ENV_NAME.match(name):
            raise ConfigError(
                f"{path} line {number} is not valid: expected NAME=value, a # comment or a blank line"
            )
        try:
            out[name] = _env_value(rest.lstrip())
        except _Invalid as exc:
            raise ConfigError(f"{path} line {number} ({name}) is not valid: {exc}") from None
    return out


_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "$": "$"}


def _env_value(rest: str) -> str:
    if rest[:1] == "'":
        end = rest.find("'", 1)
        if end < 0:
            raise _Invalid("expected a closing ' on the same line")
        value, tail = rest[1:end], rest[end + 1 :]
    elif rest[:1] == '"':
        chars: list[str] = []
        i = 1
        while True:
            if i >= len(rest):
                raise _Invalid('expected a closing " on the same line')
            c = rest[i]
            if c == '"':
                break
            if c == "\\" and i + 1 < len(rest) and rest[i + 1] in _ESCAPES:
                chars.append(_ESCAPES[rest[i + 1]])
                i += 2
                continue
            chars.append(c)
            i += 1
        value, tail = "".join(chars), rest[i + 1 :]
    else:
        cut = re.search(r"\s#", rest)
        return (rest[: cut.start()] if cut else rest).strip()
    tail = tail.strip()
    if tail and not tail.startswith("#"):
        raise _Invalid("expected only a # comment after the closing quote")
    return value
