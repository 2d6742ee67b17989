"""`mpguard rotate --port P NAME --from-file F [--test]` and `mpguard rotate --port P identity`:
a secret rotated in two phases (stage, the app's test on the board, commit or revert), or the
board's identity key replaced with a continuity proof (docs/rotate.md)."""

from __future__ import annotations

import argparse

from .. import project, reasons
from ..errors import CommandError, IdentityError
from .common import Result, resolve_port
from .secret import operator_key

_EXIT = (reasons.EXIT_OK, reasons.EXIT_USAGE, reasons.EXIT_LINK, reasons.EXIT_REFUSED,
         reasons.EXIT_INVENTORY)


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    from ..rotate import secrets  # --settle's default

    p = sub.add_parser(
        "rotate", help=summary,
        description="NAME: stage the file's value beside the committed one; with --test the "
        "app's test (guard.on_stage(NAME, fn)) runs on the board with the staged value; commit "
        "when it passes (or without --test), else it is reverted and the board keeps the old "
        "value (exit 4). After a commit the board restarts so the app reads the new value. "
        "`identity`: the board makes a new key, its old key signs the new one (continuity "
        "proof, checked against the inventory's record), the project's device CA certifies "
        "it, the old certificate is revoked and the inventory keeps the history. Run the same "
        "command again after any interruption. See docs/rotate.md.",
        epilog=reasons.epilog(*_EXIT))
    p.add_argument("--port", required=True, help="serial port, or sim:NAME for a virtual board")
    p.add_argument("name", metavar="NAME", help="the secret's name, or `identity`")
    p.add_argument("--from-file", metavar="FILE", help="the new value (1 to 384 bytes)")
    p.add_argument("--test", action="store_true",
                   help="run the app's test on the board with the new value before committing")
    p.add_argument("--settle", type=float, default=secrets.SETTLE, metavar="S",
                   help="with --test: seconds the app gets, after the board's reset, to start "
                   f"and register its test (default {secrets.SETTLE:g})")
    p.add_argument("--no-restart", action="store_true",
                   help="do not reset the board after a commit (the app reads the new value "
                   "at its next start)")
    p.add_argument("--days", type=int, metavar="N",
                   help="identity: validity of the new certificate in days")
    p.add_argument("--db", metavar="URL", help="inventory database (default: the project's)")
    p.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Result:
    from ..identity import records
    from ..link import BoardLink
    from ..rotate import secrets

    if args.name == "identity":
        if args.from_file or args.test:
            raise CommandError("`rotate identity` takes no --from-file or --test")
        return _identity(args)
    secrets.check_name(args.name)
    if not args.from_file:
        raise CommandError("give the new value with --from-file FILE (never on the command line)")
    if args.settle < 0:
        raise CommandError("--settle must not be negative")
    value = secrets.read_value(args.from_file)
    proj = project.find(args.project)
    key = operator_key(proj)
    with records.open_inventory(proj.root, args.db) as inv, \
            BoardLink(resolve_port(args.port)) as link:
        res = secrets.rotate_secret(link, inv, key, args.name, value, test=args.test,
                                    restart=not args.no_restart, settle=args.settle)
    if res.outcome == "committed":
        verb = "rotated" if res.previous_epoch else "set (it had no value before)"
        text = (f"{res.name} {verb} on {res.ueid}: "
                f"{'tested on the board, ' if res.tested else ''}committed, epoch {res.epoch}"
                f"{' (the board restarted)' if res.restarted else ''}")
        return Result(res.as_dict(), text)
    why = (res.test or {}).get("why")
    text = (f"{res.name} NOT rotated on {res.ueid}: reverted, the board keeps epoch {res.epoch}\n"
            f"  {reasons.message(res.reason or 'test_failed', why)}\n"
            f"  hint: {reasons.hint(res.reason or 'test_failed')}")
    return Result(res.as_dict(), text, reasons.EXIT_REFUSED)


def _identity(args: argparse.Namespace) -> Result:
    from ..identity import ca as device_ca
    from ..identity import records
    from ..link import BoardLink
    from ..rotate import identity as rot_identity

    proj = project.find(args.project)
    pw = project.ask_passphrase() if device_ca.is_encrypted(proj.root) else None
    ca = device_ca.DeviceCA(proj.root, pw)
    days = int(args.days if args.days is not None
               else proj.config.get("device_cert_days", device_ca.DEFAULT_DAYS))
    if not 1 <= days <= device_ca.MAX_DAYS:
        raise IdentityError("bad_days", str(days))
    with records.open_inventory(proj.root, args.db) as inv, \
            BoardLink(resolve_port(args.port)) as link:
        res = rot_identity.rotate_identity(link, ca, inv, days=days)
    head = {"rotated": "identity rotated", "resumed": "interrupted identity rotation finished"}
    lines = [f"{head[res.outcome]}: {res.ueid}",
             f"  key          {res.kid} (was {res.old_kid})",
             f"  certificate  serial {res.serial}, valid until {res.not_after}"]
    lines += [f"  revoked      serial {s} (superseded)" for s in res.revoked]
    return Result(res.as_dict(), "\n".join(lines))
