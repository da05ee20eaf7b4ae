"""The one way a test waits: on a condition, with a bound.

A test never sleeps and then asserts: it waits until what it is about to check has happened
(:func:`wait_until`), and the bound only keeps a broken run from hanging (it is a failsafe, not
a timing assertion). A sleep that remains in tests/ paces a load or a deliberately slow client,
and says so where it stands.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

FAILSAFE = 30.0  # seconds: only bounds a wait that would otherwise hang a broken run


class WaitTimeout(AssertionError):
    """A :func:`wait_until` gave up: what it waited for did not happen within its bound.

    An ``AssertionError``: the test fails (not errors) and pytest shows the message.
    """


@overload
async def wait_until(
    condition: Callable[[], Awaitable[T | None]],
    what: str | Callable[[], str],
    *,
    within: float = FAILSAFE,
    step: float = 0.02,
    ignoring: tuple[type[Exception], ...] = (),
) -> T: ...


@overload
async def wait_until(
    condition: Callable[[], T | None],
    what: str | Callable[[], str],
    *,
    within: float = FAILSAFE,
    step: float = 0.02,
    ignoring: tuple[type[Exception], ...] = (),
) -> T: ...


async def wait_until(
    condition: Callable[[], object],
    what: str | Callable[[], str],
    *,
    within: float = FAILSAFE,
    step: float = 0.02,
    ignoring: tuple[type[Exception], ...] = (),
) -> object:
    """Ask ``condition`` every ``step`` seconds until it returns a truthy value, and return that value.

    ``condition`` is a plain function or an ``async`` one (its result is awaited). A falsy result
    (``False``, ``None``, ``0``, an empty list) means "not yet": return ``x is not None`` (or the
    value in a tuple) when a falsy value is an answer. An exception of a type in ``ignoring``
    also means "not yet" (a server that is busy or restarting, say); any other exception ends the
    wait at once, an ``AssertionError`` raised inside the condition included.

    After ``within`` seconds :class:`WaitTimeout` names ``what`` (a text, or a function giving the
    text at that moment, to show the state it ended in) and the last ignored error, if any.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last_error: Exception | None = None
    while True:
        try:
            got = condition()
            if inspect.isawaitable(got):
                got = await got
        except ignoring as exc:
            got, last_error = None, exc
        if got:
            return got
        if loop.time() >= deadline:
            text = what() if callable(what) else what
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise WaitTimeout(f"gave up waiting for {text}{detail} (waited {within:g} s)")
        await asyncio.sleep(step)
