"""`mpguard provision --port P`: agent (if missing), identity, certificate, inventory record."""

from __future__ import annotations

import argparse

from .. import project, reasons
from .common import Result, resolve_port


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    from ..identity import ca as device_ca  # --days' default

    p = sub.add_parser(
        "provision",
        help=summary,
        description="Install the agent if the board lacks it; the board makes its P-256 "
        "identity key (its own randomness mixed with the host's), proves it holds it with a "
        "PKCS#10 request, and gets a certificate from the project's device CA; the inventory "
        "records it. Resumable: run it again after any interruption. A board already "
        "provisioned with a matching record is left as it is. See docs/provision.md.",
        epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE, reasons.EXIT_LINK,
                              reasons.EXIT_REFUSED, reasons.EXIT_INVENTORY, said={
                                  reasons.EXIT_INVENTORY: "inventory locked or unreachable: the "
                                  "board may hold the agent and a pending key, nothing is "
                                  "recorded; run provision again once it is back (it resumes)"}),
    )
    p.add_argument("--port", required=True, help="serial port, or sim:NAME for a virtual board")
    p.add_argument("--force", action="store_true",
                   help="give a board that has an identity a new one (revokes its certificate, "
                   "keeps its history)")
    def days(text: str) -> int:  # checked here, before the board makes a key
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
        if not 1 <= n <= device_ca.MAX_DAYS:
            raise argparse.ArgumentTypeError(f"1 to {device_ca.MAX_DAYS} days, not {n}")
        return n

    p.add_argument("--days", type=days, metavar="N",
                   help=f"certificate validity in days (default {device_ca.DEFAULT_DAYS}, "
                   "or mpguard.json \"device_cert_days\")")
    p.add_argument("--board", metavar="KIND", help="board kind (default: the board's profile)")
    p.add_argument("--batch", metavar="NAME", help="production batch, recorded")
    p.add_argument("--station", metavar="NAME", help="station name, recorded")
    p.add_argument("--db", metavar="URL", help="inventory database (default: the project's)")
    p.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


_SAID = {
    "provisioned": "provisioned",
    "reprovisioned": "re-provisioned (old certificate revoked)",
    "resumed": "provisioning resumed and finished",
    "already": "already provisioned with a matching record: nothing changed",
}


def run(args: argparse.Namespace) -> Result:
    from ..identity import ca as device_ca
    from ..identity import provision as prov
    from ..link import BoardLink

    proj = project.find(args.project)
    pw = project.ask_passphrase() if device_ca.is_encrypted(proj.root) else None
    with BoardLink(resolve_port(args.port)) as link:
        res = prov.provision(link, proj, passphrase=pw, force=args.force, days=args.days,
                             db=args.db, batch=args.batch, station=args.station, kind=args.board)
    lines = [f"{_SAID[res.outcome]}: {res.ueid} ({res.board_kind})",
             f"  key          {res.kid}",
             f"  certificate  serial {res.serial}, valid until {res.not_after}"]
    if res.agent_installed:
        lines.append("  agent        installed")
    lines += [f"  revoked      serial {s}" for s in res.revoked]
    return Result(res.as_dict(), "\n".join(lines))
