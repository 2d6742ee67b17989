"""`mpguard devices list|show|export|revoke`: the provisioned boards of the inventory."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import project, reasons
from ..errors import CommandError
from .common import Result


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", help="inventory database (default: the project's)")
    p.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    from ..identity import devices  # its docstring is `devices export --help`

    codes = reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE, reasons.EXIT_REFUSED,
                           reasons.EXIT_INVENTORY)
    p = sub.add_parser("devices", help=summary, epilog=codes)
    ds = p.add_subparsers(dest="devices_command", metavar="ACTION")

    s = ds.add_parser("list", help="every board of the inventory", epilog=codes)
    s.add_argument("--batch", metavar="NAME", help="only this production batch")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="print the result as one JSON object")
    g.add_argument("--csv", action="store_true", help="print the rows as CSV")
    _common(s)
    s.set_defaults(func=run_list)

    s = ds.add_parser("show", help="one board: identity, certificates, history", epilog=codes)
    s.add_argument("id", metavar="ID", help="UEID (base64url or hex) or key id")
    s.add_argument("--json", action="store_true")
    _common(s)
    s.set_defaults(func=run_show)

    s = ds.add_parser("export", help="write the CA, its CRL and boards' certificates to a folder",
                      description=devices.__doc__, epilog=codes,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("ids", nargs="*", metavar="ID", help="boards to export (default: all)")
    s.add_argument("-o", "--output", required=True, metavar="DIR")
    s.add_argument("--csv", action="store_true", help="index as devices.csv (default: "
                   "devices.json)")
    s.add_argument("--json", action="store_true", help="print the result (every file written) "
                   "as one JSON object")
    _common(s)
    s.set_defaults(func=run_export)

    s = ds.add_parser("revoke", help="revoke a board's certificate and sign the CRL again",
                      epilog=codes)
    s.add_argument("id", metavar="ID", help="UEID (base64url or hex) or key id")
    s.add_argument("--reason", default="unspecified",
                   help="RFC 5280 reason: unspecified, keyCompromise, superseded, "
                   "cessationOfOperation, ...")
    s.add_argument("--json", action="store_true")
    _common(s)
    s.set_defaults(func=run_revoke)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def _open(args: argparse.Namespace):
    from ..identity import records

    proj = project.find(args.project)
    return proj, records.open_inventory(proj.root, args.db)


def run_list(args: argparse.Namespace) -> Result:
    from ..identity import devices

    _, inv = _open(args)
    with inv:
        rows = [devices.row(d) for d in inv.devices(batch=args.batch)]
    if args.csv:
        return Result({"devices": rows}, devices.to_csv(rows).rstrip("\n"))
    if not rows:
        return Result({"devices": rows}, "no boards in the inventory")
    cols = ("ueid", "kind", "mac", "kid", "serial", "state", "not_after")
    table = [tuple(c.upper() for c in cols)]
    table += [(r["ueid"], r["kind"], r["mac"], r["kid"][:12], r["serial"][:12], r["state"],
               r["not_after"][:10]) for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(cols))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(t, widths, strict=True)).rstrip()
                     for t in table)
    return Result({"devices": rows}, text)


def run_show(args: argparse.Namespace) -> Result:
    from ..identity import devices, records

    _, inv = _open(args)
    with inv:
        info = devices.detail(inv, records.find_device(inv, args.id))
    lines = [f"{k:15} {info[k] if info[k] is not None else '-'}" for k in (
        "ueid", "ueid_hex", "kind", "chip", "mac", "kid", "public_key", "agent_version",
        "provisioned_at", "provisioned_by", "batch", "station")]
    lines.append("certificates")
    for c in info["certificates"]:
        why = f" ({c['revoke_reason']}, {c['revoked_at']})" if c["revoked_at"] else ""
        lines.append(f"  {c['serial']}  {c['state']:8} until {c['not_after'][:10]}{why}")
    lines.append("history")
    lines += [f"  {e['at'][:19]}  {e['kind']:12} {e['data']}" for e in info["events"]]
    return Result(info, "\n".join(lines))


def run_export(args: argparse.Namespace) -> Result:
    from ..identity import devices, records

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CommandError(f"{out} is a file: -o names the folder to write into")
    proj, inv = _open(args)
    with inv:
        devs = ([records.find_device(inv, i) for i in args.ids] if args.ids else inv.devices())
        paths = devices.export(inv, proj.root, Path(args.output), devs,
                               "csv" if args.csv else "json")
    return Result({"files": [str(p) for p in paths]}, "\n".join(str(p) for p in paths))


def run_revoke(args: argparse.Namespace) -> Result:
    from ..identity import ca as device_ca
    from ..identity import devices, records

    proj, inv = _open(args)
    pw = project.ask_passphrase() if device_ca.is_encrypted(proj.root) else None
    ca = device_ca.DeviceCA(proj.root, pw)
    with inv:
        dev = records.find_device(inv, args.id)
        cert = devices.revoke(inv, ca, dev, args.reason)
    out = {"ueid": records.ueid_b64(dev.ueid), "serial": format(cert.serial, "x"),
           "reason": cert.revoke_reason, "crl": str(proj.root / device_ca.CRL_PATH)}
    return Result(out, f"revoked certificate {out['serial']} of {out['ueid']} ({out['reason']}); "
                       f"CRL signed again: {out['crl']}")
