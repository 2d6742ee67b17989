"""`mpguard report`: the fleet view from the inventory's attestations."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys

from .. import reasons
from ..errors import AttestError, CommandError
from .attest import EXIT_BY_VERDICT, add_outputs, open_store, write_outputs
from .common import Result


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    p = sub.add_parser(
        "report", help=summary,
        description="Build the fleet view from the inventory: each board's latest attestation, "
        "the counts per policy rule, and problems no single board shows (two boards with the "
        "same key or UEID, an update sequence that went backwards, certificates near expiry). "
        "The exit code is the fleet's verdict; 2 when there is no attestation to judge "
        "(no_attestations: make one with `mpguard attest --port P`).",
        epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_WARN, reasons.EXIT_FAIL,
                              reasons.EXIT_USAGE))
    p.add_argument("--since", metavar="WHEN", help="only attestations since WHEN: an ISO date "
                   "(2025-06-01) or an age (7d, 12h, 30m)")
    p.add_argument("--cert-days", type=int, default=30, metavar="N",
                   help="flag certificates expiring within N days (default 30)")
    add_outputs(p)
    p.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    p.add_argument("--db", "--inventory", dest="inventory", metavar="URL",
                   help="inventory database URL (default: the project's)")
    p.set_defaults(func=run)


def parse_since(text: str | None, now: dt.datetime) -> dt.datetime | None:
    if not text:
        return None
    m = re.fullmatch(r"(\d+)([dhm])", text.strip())
    if m:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[m.group(2)]
        try:
            return now - dt.timedelta(**{unit: int(m.group(1))})
        except (OverflowError, ValueError):  # an age before the calendar starts
            return dt.datetime.min.replace(tzinfo=dt.UTC)
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--since {text!r}: give an ISO date or an age like 7d") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def run(args: argparse.Namespace) -> Result:
    from ..attest import fleet, report

    now = dt.datetime.now(dt.UTC)
    since = parse_since(args.since, now)
    f = fleet.build(open_store(args), since=since, cert_days=args.cert_days, now=now)
    if f.verdict() == "pass" and not any(b.attestations or b.refused for b in f.boards):
        # nothing judged: an empty report must not read as a passing fleet (nor write one)
        if not f.boards:
            raise AttestError("no_attestations", "the inventory has no board yet: provision "
                              "one (`mpguard provision --port P`), then attest it")
        when = f"no attestation since {args.since}" if since else "none attested yet"
        raise AttestError("no_attestations", f"{len(f.boards)} board(s) in the inventory, {when}")
    write_outputs(args, f, "mpguard fleet report")
    return Result(f.as_dict(), report.table(f, color=sys.stdout.isatty()),
                  EXIT_BY_VERDICT[f.verdict()])
