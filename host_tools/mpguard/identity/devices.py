"""What `mpguard devices` shows and writes: public facts of provisioned boards only (UEID,
key, certificates, history), never a private key (the inventory holds none).

export(): a folder a TLS server or an auditor can use as it is::

    OUT/devices-ca.pem        the project's device CA
    OUT/devices-ca-crl.pem    its current CRL
    OUT/<UEID>.pem            each board's current certificate
    OUT/<UEID>.<batch>.traveller.jws   its production-line travellers (signed by the station)
    OUT/devices.json|.csv     one row per board

so that `openssl verify -CAfile OUT/devices-ca.pem OUT/<UEID>.pem` checks a board, and
`openssl verify -crl_check -CRLfile OUT/devices-ca-crl.pem ...` also its revocation.

The CRL is the project's file, signed where the CA key is. An inventory shared by several
stations can record revocations this copy's CRL does not list (made at another station):
export then refuses (CAError `crl_stale`, nothing written) and names them, rather than
publish a CRL that lets a revoked certificate verify. Sign the CRL again from the inventory
where the CA key is (`mpguard ca crl --db URL`), bring that CRL here, and export again.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import ca as device_ca
from . import records
from .board import b64u

COLUMNS = ("ueid", "kind", "chip", "mac", "kid", "serial", "not_after", "state",
           "provisioned_at", "provisioned_by", "batch", "station", "agent_version")


def state(cert: Any, now: datetime | None = None) -> str:
    """valid | revoked | expired, of an inventory certificate row."""
    if cert.revoked:
        return "revoked"
    if cert.not_after < (now or datetime.now(UTC)):
        return "expired"
    return "valid"


def row(dev: Any) -> dict[str, Any]:
    """One board as a flat row (the columns of `devices list` and the CSV)."""
    c = dev.certificate
    return {
        "ueid": records.ueid_b64(dev.ueid), "kind": dev.kind, "chip": dev.chip, "mac": dev.mac,
        "kid": dev.thumbprint, "serial": format(c.serial, "x"),
        "not_after": c.not_after.isoformat(), "state": state(c),
        "provisioned_at": dev.provisioned_at.isoformat(), "provisioned_by": dev.provisioned_by,
        "batch": dev.batch, "station": dev.station, "agent_version": dev.agent_version,
    }


def pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()


def detail(inv: Any, dev: Any) -> dict[str, Any]:
    """`devices show`: the row, the public key, every certificate and the history."""
    out = row(dev)
    out["ueid_hex"] = dev.ueid
    out["public_key"] = b64u(dev.public_key)  # the 65-byte point, base64url
    out["certificate"] = pem(dev.certificate.der)
    out["certificates"] = [{
        "serial": format(c.serial, "x"), "kid": c.thumbprint, "issued_at": c.issued_at.isoformat(),
        "not_after": c.not_after.isoformat(), "state": state(c),
        "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
        "revoke_reason": c.revoke_reason} for c in inv.certificates(dev.ueid)]
    out["events"] = [{"at": e.at.isoformat(), "kind": e.kind, "data": e.data,
                      "station": e.station} for e in inv.events(ueid=dev.ueid)]
    return out


def check_crl(inv: Any, root: Path) -> None:
    """The project's CRL lists every certificate the inventory records as revoked, else
    CAError `crl_stale` (exit 4) naming the serials it misses."""
    from ..errors import CAError
    from ..reasons import EXIT_REFUSED

    if not (root / device_ca.CRL_PATH).exists():
        raise CAError("no_ca", str(root / device_ca.CRL_PATH))
    listed = {r.serial_number for r in device_ca.crl(root)}
    missing = sorted({c.serial for c in inv.revoked()} - listed)
    if missing:
        shown = ", ".join(format(x, "x") for x in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        e = CAError("crl_stale", f"{device_ca.CRL_PATH} does not list {len(missing)} "
                    f"certificate(s) the inventory records as revoked (serial {shown}{more}): "
                    "it was last signed before them, or elsewhere")
        e.exit_code = EXIT_REFUSED
        raise e


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})
    return buf.getvalue()


def export(inv: Any, root: Path, out: Path, devs: list[Any], fmt: str = "json") -> list[Path]:
    """Write the CA, its CRL, each board's certificate and the index; return the paths.
    CAError `crl_stale` (nothing written) if the CRL misses a revocation of the inventory."""
    check_crl(inv, root)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file on the way, a folder that cannot be made
        from ..errors import CommandError

        raise CommandError(f"cannot make the folder {out}: {e.strerror}") from None
    seen: set[str] = set()
    devs = [d for d in devs if not (d.ueid in seen or seen.add(d.ueid))]  # each board once
    written = []
    for name in (device_ca.CERT_PATH, device_ca.CRL_PATH):
        src = root / name
        if not src.exists():
            from ..errors import CAError

            raise CAError("no_ca", str(src))
        shutil.copyfile(src, out / name)
        written.append(out / name)
    rows = []
    for dev in devs:
        r = row(dev)
        path = out / f"{r['ueid']}.pem"
        path.write_text(pem(dev.certificate.der))
        written.append(path)
        r["certificate"] = path.name
        trav = _travellers(inv, dev.ueid, r["ueid"], out)  # hook: the line's records
        written += trav
        r["travellers"] = [p.name for p in trav]
        rows.append(r)
    index = out / f"devices.{fmt}"
    if fmt == "csv":
        index.write_text(to_csv(rows))
    else:
        index.write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    written.append(index)
    return written


def _travellers(inv: Any, ueid: Any, name: str, out: Path) -> list[Path]:
    """Write the board's production-line travellers (signed JWS, mpguard.line), one file
    each; their paths."""
    from ..inventory.line import Line

    paths = []
    for b in Line(inv).boards(ueid=ueid):
        if b.traveller:
            path = out / f"{name}.{b.batch}.traveller.jws"
            path.write_text(b.traveller + "\n")
            paths.append(path)
    return paths


def revoke(inv: Any, ca: device_ca.DeviceCA, dev: Any, reason: str) -> Any:
    """Revoke a board's current certificate and sign the CRL again."""
    cert = inv.revoke(dev.certificate.serial, reason)
    records.write_crl(ca, inv)
    return cert
