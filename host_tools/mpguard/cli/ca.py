"""`mpguard ca init|show|crl`: the project's device CA (made by `mpguard init`; `ca init`
adds one to a project made before device identities existed)."""

from __future__ import annotations

import argparse

from .. import project, reasons
from ..errors import CAError
from .common import Result


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    codes = reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE, reasons.EXIT_REFUSED,
                           reasons.EXIT_INVENTORY)
    p = sub.add_parser("ca", help=summary,
                       epilog=codes)
    cs = p.add_subparsers(dest="ca_command", metavar="ACTION")
    s = cs.add_parser("init", help="make the device CA of a project that has none",
                      description="Make keys/device-ca.pem (encrypted with the passphrase from "
                      "$MPGUARD_PASSPHRASE or a prompt, unless --no-passphrase), devices-ca.pem "
                      "and an empty CRL. Never replaces an existing CA.", epilog=codes)
    s.add_argument("--no-passphrase", action="store_true",
                   help="store the CA key unencrypted (not recommended)")
    s.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_init)

    s = cs.add_parser("show", help="the CA certificate and CRL", epilog=codes)
    s.add_argument("--project", metavar="DIR")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_show)

    s = cs.add_parser("crl", help="sign the CRL again from the inventory (before it expires)",
                      epilog=codes)
    s.add_argument("--db", metavar="URL", help="inventory database (default: the project's)")
    s.add_argument("--project", metavar="DIR")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_crl)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def _info(root) -> dict:
    from cryptography.hazmat.primitives import hashes

    from ..identity import ca as device_ca

    cert = device_ca.certificate(root)
    crl = device_ca.crl(root)
    return {
        "certificate": str(root / device_ca.CERT_PATH),
        "subject": cert.subject.rfc4514_string(),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "key": str(root / device_ca.KEY_PATH),
        "encrypted": device_ca.is_encrypted(root),
        "crl": str(root / device_ca.CRL_PATH),
        "crl_revoked": len(list(crl)),
        "crl_next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
    }


def _result(info: dict) -> Result:
    return Result(info, "\n".join([
        f"device CA    {info['certificate']}",
        f"  subject    {info['subject']}",
        f"  sha256     {info['sha256']}",
        f"  valid to   {info['not_after']}",
        f"  key        {info['key']} ({'encrypted' if info['encrypted'] else 'NOT encrypted'})",
        f"  CRL        {info['crl']}: {info['crl_revoked']} revoked, "
        f"next update {info['crl_next_update']}"]))


def run_init(args: argparse.Namespace) -> Result:
    from ..identity import ca as device_ca

    proj = project.find(args.project)
    if device_ca.exists(proj.root):  # before asking for a passphrase
        raise CAError("ca_exists", str(proj.root / device_ca.CERT_PATH))
    pw = None if args.no_passphrase else project.ask_passphrase(confirm=True)
    device_ca.create(proj.root, pw)
    return _result(_info(proj.root))


def run_show(args: argparse.Namespace) -> Result:
    return _result(_info(project.find(args.project).root))


def run_crl(args: argparse.Namespace) -> Result:
    from ..identity import ca as device_ca
    from ..identity import records

    proj = project.find(args.project)
    pw = project.ask_passphrase() if device_ca.is_encrypted(proj.root) else None
    ca = device_ca.DeviceCA(proj.root, pw)
    with records.open_inventory(proj.root, args.db) as inv:
        records.write_crl(ca, inv)
    return _result(_info(proj.root))
