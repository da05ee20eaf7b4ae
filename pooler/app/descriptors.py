"""File descriptors: the process's open-files limit, raised at start, and the connections' share.

A systemd service gets a soft ``RLIMIT_NOFILE`` of 1,024 by default while its hard limit is far
higher; at the soft limit, ``accept`` and every ``open`` fail with EMFILE, the Pooler's own ones
included (its store, the local search worker's pipes, Backend and RPC calls). So the Pooler raises
its soft limit to the hard one at start (:func:`raise_open_files_limit`), and lets connections use
only what is left after ``FD_RESERVE`` descriptors and those already open
(:func:`connection_budget`, the gate's ``max_open``: pooler/web/gate.py).
"""

from __future__ import annotations

import logging
import os
import resource

log = logging.getLogger("pooler")


def raise_open_files_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (where it is finite); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20  # Linux's nr_open default: a limit setrlimit accepts
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft if soft != resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-files limit from %d to %d: %s", soft, hard, exc)
        return soft
    log.info("open-files limit raised from %d to %d", soft, hard)
    return hard


def open_descriptors() -> int:
    """Descriptors this process has open now (0 where /proc/self/fd cannot be read)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def connection_budget(limit: int, reserve: int) -> int:
    """Connections the server may hold: the limit, less the reserve and what is open already
    (at least 1: a Pooler with no room at all still answers one connection at a time)."""
    return max(1, limit - reserve - open_descriptors())
