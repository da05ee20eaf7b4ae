"""``pooler serve``: run the Pooler alone against the configured chain RPC and Backend.

With no RPC/Backend configured it says so and offers the devnet, instead of failing
obscurely; ``STELLAR_NETWORK=devnet`` with no URLs starts a devnet in-process.

SIGTERM or SIGINT stops it gracefully (see ``Pooler.aclose``: stop accepting, answer what
was received, close miner sockets with 1012, flush the store) and it exits 0; if that takes
longer than the shutdown bound it exits 1. A second signal exits at once (status 1): every
acknowledged share is durable already, so even that loses nothing acknowledged.

``PROCESSES`` > 1 (with ``STORE=redis``): this process becomes the supervisor of that many
group members on the same port (pooler/supervisor.py); each of them is this command again with
``--member <n> --link <fd>``, which reports to the supervisor instead of printing the
``listening on`` line, and stops when the supervisor is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from pooler.app.options import TUNING, Endpoints, cluster_options, core_config, pooler_options
from pooler.app.service import Pooler
from pooler.config import Settings
from pooler.errors import ConfigError, StoreError

HELP = "run the Pooler against the configured chain RPC and Backend"

log = logging.getLogger("pooler")

_NOT_CONFIGURED = """\
pooler serve: {missing} not set, so there is no chain or Backend to talk to.
  - to see the whole system run locally:    pooler demo
  - to run a local chain + Backend:         pooler devnet   (then export the variables it prints)
  - to start a devnet inside this process:  STELLAR_NETWORK=devnet pooler serve
  - against testnet/mainnet: set STELLAR_RPC_URL (a Soroban RPC URL) and BACKEND_API_URL (see .env.example)"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", default=".env", help="read settings from this file too (default .env)")
    # PROCESSES > 1: how the supervisor (pooler/supervisor.py) starts each of its processes; not for people
    parser.add_argument("--member", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--link", type=int, default=None, help=argparse.SUPPRESS)


@dataclass(frozen=True, slots=True)
class Member:
    """This process is process ``index`` of a supervisor's group (PROCESSES > 1)."""

    index: int
    link: socket.socket  # to the supervisor: "ready" once listening; its EOF means the supervisor is gone


def run(args: argparse.Namespace) -> int:
    from pooler.logs import setup_logging

    try:
        settings = Settings.from_env(env_file=args.env_file, allow_missing=True)
    except ConfigError as exc:
        print(f"pooler serve: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings)
    for warning in settings.warnings:
        log.warning(warning)
    missing = settings.missing_for_serve()
    if missing and settings.stellar_network != "devnet":
        print(_NOT_CONFIGURED.format(missing=" and ".join(missing)), file=sys.stderr)
        return 2
    try:  # what is derived from the settings is checked before anything starts
        core_config(settings, TUNING)
        cluster_options(settings, TUNING)
    except ConfigError as exc:
        print(f"pooler serve: {exc}", file=sys.stderr)
        return 2
    own_devnet = Endpoints.configured(settings) is None
    if own_devnet and settings.store == "sqlite" and os.path.isfile(settings.pooler_db):
        log.warning(
            "POOLER_DB=%s exists, but the in-process devnet is a new chain on every start: its blocks "
            "will not match the file's; use a fresh POOLER_DB (or STORE=memory) for the devnet",
            settings.pooler_db,
        )
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # optional: the stock loop works, only slower
        runner = asyncio.run
    member = None if args.member is None else Member(args.member, socket.socket(fileno=args.link))
    try:
        if settings.processes > 1 and member is None:
            from pooler.supervisor import supervise

            return int(runner(supervise(settings, args.env_file)))
        return int(runner(_serve(settings, member)))
    except (StoreError, ConfigError) as exc:
        print(f"pooler serve: {exc}", file=sys.stderr)
        return 1


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_EXIT_SLACK = 5.0  # seconds beyond the Pooler's shutdown_timeout for the devnet and the store


async def _serve(settings: Settings, member: Member | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():  # asked twice: the operator does not want to wait
            print(f"pooler serve: {sig.name} again, exiting now", file=sys.stderr, flush=True)
            os._exit(1)
        log.info("%s received: stopping", sig.name)
        stop.set()

    for sig in _SIGNALS:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await _run_until(stop, settings, member)
    finally:
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


async def _run_until(stop: asyncio.Event, settings: Settings, member: Member | None) -> int:
    stack = contextlib.AsyncExitStack()
    bound = _EXIT_SLACK
    try:
        endpoints = Endpoints.configured(settings)
        if endpoints is None:  # devnet with no URLs: bring our own
            from pooler.devnet import Devnet

            net = await stack.enter_async_context(Devnet(block_interval=settings.block_interval_seconds))
            endpoints = Endpoints(net.rpc_url, net.backend_url, net.contract_id)
            log.info("started an in-process devnet: rpc %s backend %s", net.rpc_url, net.backend_url)
        # one Pooler in this process: start-up objects need no more GC scans (gc_freeze)
        options = pooler_options(settings, endpoints, tuning=TUNING, gc_freeze=True)
        bound += options.shutdown_timeout
        pooler = await stack.enter_async_context(Pooler(options))
        if member is None:
            print(
                f"pooler {settings.pooler_id} listening on {pooler.url} (miners: /ws/miner, dashboard: /)",
                flush=True,
            )
        else:
            _report_to_supervisor(member, stop)
        await stop.wait()
        log.info("stopping: closing miner sockets (1012), flushing the store")
    except BaseException:
        await stack.aclose()
        raise
    try:
        async with asyncio.timeout(bound):  # not wait_for, which may swallow a cancel (runtime/tasks.py)
            await stack.aclose()
    except TimeoutError:
        log.error("shutdown took longer than %.0f s; exiting anyway (acknowledged work is durable)", bound)
        return 1
    log.info("stopped")
    return 0


def _report_to_supervisor(member: Member, stop: asyncio.Event) -> None:
    """Tell the supervisor this process listens; stop when its end of the link closes (it is gone)."""
    link = member.link
    link.setblocking(False)
    link.send(b"ready\n")
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = link.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the supervisor exited (or was killed): no orphan keeps serving
            loop.remove_reader(link)
            if not stop.is_set():
                log.warning("process %d: the supervisor is gone: stopping", member.index)
                stop.set()

    loop.add_reader(link, readable)
