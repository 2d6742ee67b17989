"""`mpguard init [DIR]`: a project folder with config, release key and trust anchors."""

from __future__ import annotations

import argparse

from .. import project, reasons
from .common import Result


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    p = sub.add_parser(
        "init",
        help=summary,
        description="Make DIR (default: the current folder) an mpguard project. The release "
        "key is encrypted with a passphrase from $MPGUARD_PASSPHRASE or a prompt, unless "
        "--no-passphrase is given. It also writes a .gitignore that keeps private keys out "
        "of git.",
        epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE),
    )
    p.add_argument("dir", nargs="?", default=".", help="project folder (default: .)")
    p.add_argument("--target", action="append", metavar="KIND",
                   help="board kind the project's releases are for (repeatable; default esp32)")
    p.add_argument("--no-passphrase", action="store_true",
                   help="store the release key unencrypted (not recommended)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Result:
    pw = None if args.no_passphrase else project.ask_passphrase(confirm=True)
    proj = project.init(args.dir, passphrase=pw, targets=args.target)
    entry = proj.key_entry()
    info = {
        "project": str(proj.root),
        "config": str(proj.root / project.CONFIG_NAME),
        "release_key": str(proj.root / entry["path"]),
        "kid": entry["kid"],
        "encrypted": entry["encrypted"],
        "anchors": str(proj.anchors_path),
        "device_ca": str(proj.root / "devices-ca.pem"),
        "targets": proj.targets,
    }
    ops = proj.config.get("operator_keys") or []
    if ops:  # the key that signs secret commands (docs/rotate.md)
        info["operator_key"] = str(proj.root / ops[0]["path"])
        info["operator_kid"] = ops[0]["kid"]
    text = "\n".join([
        f"mpguard project in {info['project']}",
        f"  release key   {info['release_key']} (kid {info['kid']}, "
        f"{'encrypted' if info['encrypted'] else 'NOT encrypted'})",
        *([f"  operator key  {info['operator_key']} (kid {info['operator_kid']}, signs secret "
           "commands)"] if ops else []),
        f"  trust anchors {info['anchors']} (install on boards)",
        f"  device CA     {info['device_ca']} (key "
        f"{'encrypted' if info['encrypted'] else 'NOT encrypted'})",
        f"  targets       {', '.join(info['targets'])}",
        f"  .gitignore    keeps {', '.join(project.GITIGNORE)} out of git",
    ])
    return Result(info, text)
