"""The `mpguard` command line: one command table, one error path.

Each subcommand module registers itself with `add_parser(subparsers)` and sets
`func`; wrappers only parse arguments and call one library function.
A `MpguardError` becomes `mpguard: message` on stderr and its exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import MpguardError

# Subcommand modules, each with add_parser(subparsers). Order is the --help order.
COMMANDS = [
    "mpguard.cli.init",
    "mpguard.cli.sim",
    "mpguard.cli.agent",
    "mpguard.cli.release",
    "mpguard.cli.deploy",
    "mpguard.cli.ca",
    "mpguard.cli.provision",
    "mpguard.cli.devices",
    "mpguard.cli.demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpguard",
        description="Secure configuration for MicroPython boards: keys, signed updates, "
        "attestation, virtual boards for testing.",
    )
    parser.add_argument("--version", action="version", version=f"mpguard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except MpguardError as e:
        print(f"mpguard: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mpguard: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
