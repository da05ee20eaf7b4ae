"""``pooler devnet``: run the local KALE chain (Soroban RPC) and Phase-1 Backend until stopped.

Prints one ``NAME=value`` line per setting on stdout, ready for the Pooler's environment
(``STELLAR_NETWORK``, ``STELLAR_RPC_URL``, ``BACKEND_API_URL``, ``KALE_CONTRACT_ID``,
``STELLAR_NETWORK_PASSPHRASE``), then runs until SIGINT or SIGTERM and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import sys

from pooler.devnet.contract import BLOCK_INTERVAL
from pooler.errors import DevnetError

HELP = "run a local KALE devnet: Soroban RPC + Phase-1 Backend on loopback"


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--block-interval",
        type=int,
        default=BLOCK_INTERVAL,
        metavar="S",
        help="seconds per block (default 300)",
    )
    parser.add_argument(
        "--ledger-seconds", type=_positive, default=5.0, metavar="S", help="seconds per ledger (default 5)"
    )
    parser.add_argument(
        "--rpc-port", type=_port, default=0, metavar="P", help="Soroban RPC port (0 = any free)"
    )
    parser.add_argument(
        "--backend-port", type=_port, default=0, metavar="P", help="Backend port (0 = any free)"
    )
    parser.add_argument(
        "--start-index", type=int, default=1, metavar="N", help="FarmIndex at genesis (default 1)"
    )
    parser.add_argument(
        "--faucet",
        type=int,
        default=1000,
        metavar="KALE",
        help="KALE given to each new farmer (default 1000)",
    )


async def _serve(args: argparse.Namespace) -> None:
    from pooler.devnet.net import Devnet

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Devnet(
            block_interval=args.block_interval,
            ledger_seconds=args.ledger_seconds,
            start_index=args.start_index,
            rpc_port=args.rpc_port,
            backend_port=args.backend_port,
            faucet=args.faucet * 10_000_000,
        ) as net:
            lines = [
                "STELLAR_NETWORK=devnet",
                f"STELLAR_RPC_URL={net.rpc_url}",
                f"BACKEND_API_URL={net.backend_url}",
                f"KALE_CONTRACT_ID={net.contract_id}",
                f"STELLAR_NETWORK_PASSPHRASE={shlex.quote(net.network_passphrase)}",
            ]
            print("\n".join(lines), flush=True)
            print(
                f"devnet running: block {net.contract.farm_index} open, {args.block_interval} s blocks, "
                f"{args.ledger_seconds:g} s ledgers; Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_serve(args))
    except DevnetError as e:
        print(f"pooler devnet: {e}", file=sys.stderr)
        return 2
    print("devnet stopped", file=sys.stderr, flush=True)
    return 0
