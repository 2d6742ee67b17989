"""`mpguard release build|verify`: sign an app as an update bundle; explain a bundle."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .. import project, reasons
from ..errors import CommandError, MpguardError
from ..updates import bundle, release


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("release", help="build (sign) and verify update bundles")
    rs = p.add_subparsers(dest="release_command", metavar="ACTION")

    b = rs.add_parser("build", help="sign an app folder as an update bundle",
                      description="Sign APPDIR (its main.py is the app's entry point) as one "
                      "bundle. The sequence number is the project's next one.")
    b.add_argument("appdir")
    b.add_argument("--version", required=True, help="the app's version, e.g. 1.2.0")
    b.add_argument("-o", "--output", required=True, metavar="BUNDLE")
    b.add_argument("--app", help="app name (default: the folder's name)")
    b.add_argument("--target", action="append", metavar="KIND",
                   help="board kind (repeatable; default: the project's targets)")
    b.add_argument("--seq", type=int, help="sequence number (default: next of the project)")
    b.add_argument("--expires-days", type=float, metavar="DAYS",
                   help="boards refuse the bundle after this many days")
    b.add_argument("--confirm-after", type=int, default=0, metavar="SECONDS",
                   help="board confirms the update itself after this healthy time "
                   "(default 0: the app calls guard.confirm())")
    b.add_argument("--remove", action="append", metavar="PATH", default=[],
                   help="file of the installed app not to carry over (repeatable)")
    b.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=run_build)

    v = rs.add_parser("verify", help="explain a bundle and check its signature and files")
    v.add_argument("bundle")
    v.add_argument("--anchors", metavar="FILE", help="trust-anchor set (default: the project's)")
    v.add_argument("--project", metavar="DIR")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=run_verify)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run_build(args: argparse.Namespace) -> int:
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
        confirm_after=args.confirm_after, remove=args.remove,
    )
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{res['out']}: {res['app']} {res['version']}, sequence {res['seq']}, "
              f"{len(res['files'])} files, {res['size']} B, signed by {res['kid']}")
    return 0


def _anchors(args: argparse.Namespace) -> dict[str, bytes] | None:
    if args.anchors:
        return project.load_anchor_file(Path(args.anchors))
    try:
        return project.find(args.project).anchors()
    except MpguardError:
        if args.project:
            raise
        return None


def run_verify(args: argparse.Namespace) -> int:
    try:
        data = Path(args.bundle).read_bytes()
    except OSError as e:
        raise CommandError(f"cannot read {args.bundle}: {e.strerror}") from None
    rep = bundle.inspect(data, _anchors(args))
    if args.json:
        print(json.dumps(rep))
        return 0 if rep["ok"] else 1
    m = rep.get("manifest") or {}
    print(f"{args.bundle}: {rep['size']} B")
    if m:
        print(f"  app        {m.get('app')} {m.get('ver')}  sequence {m.get('seq')}")
        print(f"  targets    {', '.join(map(str, m.get('targets') or []))}")
        print(f"  min agent  {m.get('agent')}")
        iat = m.get("iat")
        if isinstance(iat, int):
            print(f"  issued     {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(iat))}")
        exp = m.get("exp")
        print("  expires    " + (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(exp))
                                 if isinstance(exp, int) else "never"))
        how = f"after {m['confirm']}s healthy" if m.get("confirm") else "by the app (guard.confirm())"
        print(f"  confirm    {how}")
        print(f"  signed by  {rep.get('kid')}: {rep.get('signature')}")
        for f in rep.get("files", []):
            print(f"  {'ok ' if f['ok'] else 'BAD'} {f['size']:8d}  {f['path']}")
        for p in m.get("remove") or []:
            print(f"  remove              {p}")
    for reason, detail in rep["problems"]:
        print(f"  problem: {reasons.message(reason, detail)}")
    print("  VERIFIED" if rep["ok"] else "  NOT VERIFIED")
    return 0 if rep["ok"] else 1
