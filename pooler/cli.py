"""The ``pooler`` command.

Each subcommand lives in its own module beside the code it runs and exposes
``HELP: str``, ``configure(parser)`` and ``run(args) -> int``. Modules are imported
only when their subcommand runs, so ``pooler --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "version": ("pooler.cli", "print the version"),
    "devnet": ("pooler.devnet.cli", "run a local KALE devnet: Soroban RPC + Phase-1 Backend on loopback"),
    "config": ("pooler.config_cli", "print the effective configuration (secrets redacted)"),
    "demo": ("pooler.demo", "run the devnet, the Pooler and example miners for a few blocks, then report"),
    "serve": ("pooler.serve", "run the Pooler against the configured chain RPC and Backend"),
}

HELP = "print the version"


def configure(parser: argparse.ArgumentParser) -> None:
    """``pooler version`` takes no options."""


def run(args: argparse.Namespace) -> int:
    from pooler import __version__

    print(f"kale-pooler {__version__}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pooler", description="The Pooler of the KALE Pool Mining System")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    words = list(sys.argv[1:] if argv is None else argv)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if words and words[0] == name:  # configure only the chosen one: no heavy imports for --help
            importlib.import_module(module_name).configure(p)
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return int(module.run(args))


if __name__ == "__main__":
    sys.exit(main())
