"""`mpguard release build|verify`: sign an app as an update bundle; explain a bundle."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import project, reasons
from ..errors import CommandError, MpguardError
from .common import Result


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    p = sub.add_parser("release", help=summary,
                       epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE,
                                             reasons.EXIT_REFUSED))
    rs = p.add_subparsers(dest="release_command", metavar="ACTION")

    b = rs.add_parser("build", help="sign an app folder as an update bundle",
                      description="Sign APPDIR (its main.py is the app's entry point) as one "
                      "bundle. The sequence number is the project's next one.",
                      epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE))
    b.add_argument("appdir")
    b.add_argument("--version", required=True, help="the app's version, e.g. 1.2.0")
    b.add_argument("-o", "--output", required=True, metavar="BUNDLE")
    b.add_argument("--app", help="app name (default: the folder's name)")
    b.add_argument("--target", action="append", metavar="KIND",
                   help="board kind (repeatable; default: the project's targets)")
    b.add_argument("--seq", type=int, help="sequence number (default: next of the project)")
    b.add_argument("--seq-jump", action="store_true",
                   help="allow --seq more than 2**20 above the last issued (boards refuse such "
                   "a jump otherwise: a typo could freeze a fleet at a huge sequence)")
    b.add_argument("--expires-days", type=float, metavar="DAYS",
                   help="boards refuse the bundle after this many days")
    b.add_argument("--confirm-after", type=int, default=None, metavar="SECONDS",
                   help="board confirms the update itself after this healthy time, at most "
                   "86400 (default: the project's confirm_after, else 0: the app calls "
                   "guard.confirm())")
    b.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    b.add_argument("--json", action="store_true", help="print the result as one JSON object")
    b.set_defaults(func=run_build)

    v = rs.add_parser("verify", help="explain a bundle and check its signature and files",
                      epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE,
                                            reasons.EXIT_REFUSED))
    v.add_argument("bundle")
    v.add_argument("--anchors", metavar="FILE", help="trust-anchor set (default: the project's)")
    v.add_argument("--project", metavar="DIR")
    v.add_argument("--json", action="store_true", help="print the report as one JSON object")
    v.set_defaults(func=run_verify)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run_build(args: argparse.Namespace) -> Result:
    from ..updates import release

    proj = project.find(args.project)
    enc = proj.key_entry().get("encrypted")
    pw = project.ask_passphrase() if enc else None
    expires = None
    if args.expires_days is not None:
        if args.expires_days <= 0:
            raise CommandError("--expires-days must be positive")
        expires = int(time.time() + args.expires_days * 86400)
    res = release.build_release(
        proj, args.appdir, args.version, args.output, passphrase=pw, app=args.app,
        targets=args.target, seq=args.seq, expires=expires,
        confirm_after=args.confirm_after, seq_jump=args.seq_jump,
    )
    for w in res["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    text = (f"{res['out']}: {res['app']} {res['version']}, sequence {res['seq']}, "
            f"{len(res['files'])} files, {res['size']} B, signed by {res['kid']}")
    return Result(res, text)


def _anchors(args: argparse.Namespace) -> dict[str, bytes] | None:
    if args.anchors:
        return project.load_anchor_file(Path(args.anchors))
    try:
        return project.find(args.project).anchors()
    except MpguardError:
        if args.project:
            raise
        return None


def _when(t: object) -> str:
    from ..updates import bundle

    if t is None:
        return "never"
    if type(t) is not int:
        return bundle.printable(t)
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
    except (OverflowError, ValueError, OSError):
        return bundle.printable(t)


def _targets(t: object) -> str:
    from ..updates import bundle

    return ", ".join(bundle.printable(k) for k in t) if isinstance(t, list) else bundle.printable(t)


def run_verify(args: argparse.Namespace) -> Result:
    from ..updates import bundle

    try:
        data = Path(args.bundle).read_bytes()
    except OSError as e:
        raise CommandError(f"cannot read {args.bundle}: {e.strerror}") from None
    rep = bundle.inspect(data, _anchors(args))
    rc = reasons.EXIT_OK if rep["ok"] else reasons.EXIT_REFUSED
    # Everything a bundle says is printed through printable(): an unverified manifest may
    # hold control characters or escapes meant to paint over the verdict.
    m = rep.get("manifest") or {}
    pr = bundle.printable
    signed = rep.get("signature") == "valid"
    lines = [f"{pr(args.bundle)}: {rep['size']} B"]
    if m:
        if not signed:
            lines.append("  (the manifest below is NOT verified: what the bundle claims)")
        lines += [
            f"  app        {pr(m.get('app'))} {pr(m.get('ver'))}  sequence {pr(m.get('seq'))}",
            f"  targets    {_targets(m.get('targets'))}",
            f"  min agent  {pr(m.get('agent'))}",
            f"  issued     {_when(m.get('iat'))}",
            f"  expires    {_when(m.get('exp'))}",
            "  confirm    " + (f"after {pr(m.get('confirm'))}s healthy" if m.get("confirm")
                              else "by the app (guard.confirm())"),
            f"  signed by  {pr(rep.get('kid'))}: {pr(rep.get('signature'))}",
        ]
        if signed:
            lines.append(f"  measures   {pr(rep.get('measurement'))}")
        for f in rep.get("files", []):
            lines.append(f"  {'ok ' if f['ok'] else 'BAD'} {f['size']:8d}  {f['path']}")
        remove = m.get("remove")
        for p in remove if isinstance(remove, list) else []:
            lines.append(f"  remove              {pr(p)}")
    for reason, detail in rep["problems"]:
        lines.append(f"  problem: {reasons.message(reason, pr(detail) if detail else None)}")
    lines.append("  VERIFIED" if rep["ok"] else "  NOT VERIFIED")
    return Result(rep, "\n".join(lines), rc)
