"""`mpguard attest --port P`: a signed posture attestation of one board, judged by a policy."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .. import project, reasons
from ..errors import CommandError
from ..files import atomic_write
from .common import Result, output_path, resolve_port, seconds

if TYPE_CHECKING:
    from ..attest import fleet
    from ..attest import run as attest_run
    from ..attest import store as attest_store

EXIT_BY_VERDICT = {"pass": reasons.EXIT_OK, "warn": reasons.EXIT_WARN, "fail": reasons.EXIT_FAIL}


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    p = sub.add_parser(
        "attest", help=summary,
        description="Send the board a fresh nonce; it answers with a signed Entity Attestation "
        "Token (RFC 9711) of its security facts. mpguard verifies it against the board's key "
        "in the inventory, judges the facts with the policy (ETSI EN 303 645 provisions), "
        "records the result in the inventory and reports it. The exit code is the verdict. "
        "Like mpremote, attesting soft-resets the board (its app stops until the next reset).",
        epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_WARN, reasons.EXIT_FAIL,
                              reasons.EXIT_REFUSED, reasons.EXIT_LINK, reasons.EXIT_USAGE))
    p.add_argument("--port", required=True, help="serial port, or sim:NAME for a virtual board")
    add_outputs(p)
    p.add_argument("--policy", metavar="FILE", help="policy TOML (default: mpguard's, docs/attest.md)")
    p.add_argument("--ear", metavar="OUT", help="also write the result as an EAR (JSON, or a "
                   "signed JWT with --ear-key)")
    p.add_argument("--ear-key", metavar="PEM", help="P-256 key to sign the EAR with "
                   "(passphrase from $MPGUARD_PASSPHRASE if encrypted)")
    p.add_argument("--window", type=seconds, default=60.0, metavar="S",
                   help="freshness window in seconds (default 60)")
    p.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    p.add_argument("--db", "--inventory", dest="inventory", metavar="URL",
                   help="inventory database URL (default: the project's)")
    p.set_defaults(func=run)


def add_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--junit", metavar="OUT", help="write JUnit XML (a testcase per rule)")
    p.add_argument("--html", metavar="OUT", help="write a single-file HTML report")


def open_store(args: argparse.Namespace) -> attest_store.Store:
    from ..attest import store as attest_store

    root = None
    if args.project or not args.inventory:
        root = project.find(args.project).root
    return attest_store.open_store(root, args.inventory)


def write(path: str, data: bytes | str) -> None:
    try:
        atomic_write(Path(path), data.encode() if isinstance(data, str) else data)
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror}") from None


def write_outputs(args: argparse.Namespace, f: fleet.Fleet, title: str) -> None:
    from ..attest import html, report

    if args.junit:
        write(args.junit, report.junit(f))
    if args.html:
        write(args.html, html.render(f, title))


def _ear(args: argparse.Namespace, att: attest_run.Attestation) -> None:
    from .. import keys
    from ..attest import ear

    if args.ear_key and not args.ear:
        raise CommandError("--ear-key needs --ear OUT")
    if not args.ear:
        return
    body = ear.claims(att.appraisal, att.evidence.device.ueid_hex, nonce=att.nonce)
    if args.ear_key:
        enc = keys.is_encrypted(args.ear_key)
        key = keys.load_private(args.ear_key, project.ask_passphrase() if enc else None)
        write(args.ear, ear.sign(body, key) + "\n")
    else:
        write(args.ear, json.dumps(body, indent=2, sort_keys=True) + "\n")


def run(args: argparse.Namespace) -> Result:
    from ..attest import fleet, report
    from ..attest import policy as policy_mod
    from ..attest import run as attest_run
    from ..link import BoardLink

    pol = policy_mod.load(args.policy)
    if args.ear_key and not args.ear:
        raise CommandError("--ear-key needs --ear OUT")
    for out in (args.html, args.junit, args.ear):  # before the attestation is recorded
        output_path(out)
    st = open_store(args)
    with BoardLink(resolve_port(args.port)) as link:
        att = attest_run.attest(link, st, pol, window=args.window)
    data = att.as_dict()
    f = fleet.single(data, dt.datetime.now(dt.UTC))
    write_outputs(args, f, f"mpguard attestation of {att.evidence.device.name or att.evidence.device.ueid_hex}")
    _ear(args, att)
    text = report.table(f, color=sys.stdout.isatty())
    return Result(data, text, EXIT_BY_VERDICT[att.verdict])


