"""`mpguard secret init|set|status`: the project's operator key, and a board's secrets (set
at once; `mpguard rotate NAME` rotates one in two phases). Values come from a file, never
from the command line, and are never printed or logged (docs/rotate.md)."""

from __future__ import annotations

import argparse
from typing import Any

from .. import project, reasons
from .common import Result, resolve_port

_EXIT = (reasons.EXIT_OK, reasons.EXIT_USAGE, reasons.EXIT_LINK, reasons.EXIT_REFUSED,
         reasons.EXIT_INVENTORY)


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    p = sub.add_parser("secret", help=summary,
                       description="Secrets travel encrypted to the board's identity key (JWE "
                       "ECDH-ES + A128CBC-HS256) inside a command signed by the project's "
                       "operator key; the board keeps them encrypted. See docs/rotate.md.",
                       epilog=reasons.epilog(*_EXIT))
    s = p.add_subparsers(dest="secret_command", metavar="ACTION")
    i = s.add_parser("init", help="make the operator key of a project made without one",
                     description="Make keys/operator-N.pem (encrypted with the passphrase from "
                     "$MPGUARD_PASSPHRASE or a prompt, unless --no-passphrase) and add its "
                     "public key to anchors.json \"ops\". Boards learn it with their anchors "
                     "(`mpguard agent install --port P`).",
                     epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE))
    i.add_argument("--no-passphrase", action="store_true",
                   help="store the key unencrypted (not recommended)")
    i.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    i.add_argument("--json", action="store_true", help="print the result as one JSON object")
    i.set_defaults(func=run_init)

    st = s.add_parser("set", help="give a board a secret (committed at once)",
                      description="Encrypt the file's content to the identity key the inventory "
                      "recorded for the board, sign a `set` command with the operator key, and "
                      "send it. The board commits it at once (epoch + 1). To change a secret "
                      "an app depends on, prefer `mpguard rotate NAME --test`.",
                      epilog=reasons.epilog(*_EXIT))
    st.add_argument("--port", required=True, help="serial port, or sim:NAME for a virtual board")
    st.add_argument("name", metavar="NAME", help="[a-z][a-z0-9_]{0,15}, e.g. wifi or mqtt")
    st.add_argument("--from-file", required=True, metavar="FILE",
                    help="the value: the file's bytes (1 to 384), e.g. a JSON object")
    _common(st)
    st.set_defaults(func=run_set)

    ss = s.add_parser("status", help="a board's secrets: names, epochs, staged (never a value)",
                      epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE,
                                            reasons.EXIT_LINK, reasons.EXIT_REFUSED))
    ss.add_argument("--port", required=True, help="serial port, or sim:NAME for a virtual board")
    ss.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ss.set_defaults(func=run_status)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", help="inventory database (default: the project's)")
    p.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def operator_key(proj: project.Project) -> Any:
    from ..rotate import operator

    pw = project.ask_passphrase() if operator.needs_passphrase(proj) else None
    return operator.load(proj, pw)


def run_init(args: argparse.Namespace) -> Result:
    from ..rotate import operator

    proj = project.find(args.project)
    if proj.config.get("operator_keys"):
        e = operator.entry(proj)
        return Result({"kid": e["kid"], "path": str(proj.root / e["path"]), "made": False},
                      f"the project has an operator key: {e['kid']} ({e['path']})")
    pw = None if args.no_passphrase else project.ask_passphrase(confirm=True)
    e = proj.add_operator_key(pw)
    return Result({"kid": e["kid"], "path": str(proj.root / e["path"]), "made": True},
                  f"operator key {e['kid']} made: {e['path']}"
                  f"{'' if pw else ' (NOT encrypted)'}\n"
                  "  boards trust it once they have the project's anchors: "
                  "`mpguard agent install --port P` (or `mpguard anchors push --port P`)")


def run_set(args: argparse.Namespace) -> Result:
    from ..identity import records
    from ..link import BoardLink
    from ..rotate import secrets

    secrets.check_name(args.name)
    value = secrets.read_value(args.from_file)
    proj = project.find(args.project)
    key = operator_key(proj)
    with records.open_inventory(proj.root, args.db) as inv, \
            BoardLink(resolve_port(args.port)) as link:
        res = secrets.set_secret(link, inv, key, args.name, value)
    return Result(res.as_dict(), f"secret {res.name} set on {res.ueid}: epoch {res.epoch} "
                  f"(was {res.previous_epoch})")


def run_status(args: argparse.Namespace) -> Result:
    from ..link import BoardLink
    from ..rotate import secrets

    with BoardLink(resolve_port(args.port)) as link:
        st = secrets.status(link)
    rows = [f"{n:16} epoch {s['epoch']}"
            + (f", staged {s['staged']}" if s.get("staged") is not None else "")
            for n, s in sorted(st["secrets"].items())]
    return Result(st, "\n".join([f"secrets (command counter {st['seq']}):"] + (rows or ["  none"])))
