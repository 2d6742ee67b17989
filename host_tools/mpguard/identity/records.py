"""Where identity meets the inventory (mpguard.inventory): opening it for a project, and the
CRL entries its revoked certificates make. The inventory's own API is used directly by
provision.py and cli/devices.py; this module only holds what both need."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CAError, CommandError, InventoryError
from ..files import b64u_dec, b64u_enc
from . import ca as device_ca

if TYPE_CHECKING:
    from ..inventory import Inventory


def open_inventory(root: Path, url: str | None = None) -> Inventory:
    """The project's inventory (`url`: --db; default the project's SQLite file)."""
    from ..inventory import Inventory

    return Inventory.open(url=url, project_root=root)


def crl_entries(inv: Any) -> list[device_ca.Revoked]:
    """Every revoked certificate of the inventory, as the CRL lists it."""
    return [device_ca.Revoked(c.serial, c.revoked_at, c.revoke_reason or "unspecified")
            for c in inv.revoked()]


def write_crl(ca: device_ca.DeviceCA, inv: Any) -> None:
    """Sign the project's CRL again from the inventory's revoked certificates. Refused
    (InventoryError crl_would_drop, the CRL file untouched) when the current CRL lists a
    serial the inventory does not hold as revoked: another (or an empty, or a mistyped)
    inventory would take revocations back."""
    entries = crl_entries(inv)
    try:
        listed = {r.serial_number for r in device_ca.crl(ca.root)}
    except CAError:  # no CRL yet (or not one): nothing to keep
        listed = set()
    dropped = sorted(listed - {e.serial for e in entries})
    if dropped:
        raise InventoryError("crl_would_drop", ", ".join(format(x, "x") for x in dropped[:5])
                             + (" ..." if len(dropped) > 5 else ""))
    ca.write_crl(entries)


def ueid_b64(ueid_hex: str) -> str:
    """The inventory's UEID (hex) as mpguard shows it: base64url."""
    return b64u_enc(bytes.fromhex(ueid_hex))


def find_device(inv: Any, ident: str) -> Any:
    """The device named by `ident`: its UEID (base64url or hex) or its key's thumbprint."""
    cands: list[bytes] = []
    if re.fullmatch(r"(?:[0-9a-fA-F]{2}){7,33}", ident):
        cands.append(bytes.fromhex(ident))
    if re.fullmatch(r"[A-Za-z0-9_-]{10,45}", ident):
        try:  # strict and canonical: one board, one spelling (unused low bits zero)
            cands.append(b64u_dec(ident))
        except ValueError:
            pass
    for raw in cands:
        if 7 <= len(raw) <= 33 and raw[0] in (1, 2, 3):
            dev = inv.device(raw)
            if dev is not None:
                return dev
    dev = inv.device_by_thumbprint(ident)
    if dev is None:
        raise CommandError(f"no board {ident!r} in the inventory (give its UEID or key id)")
    return dev


def board_identity(link: Any) -> tuple[str, str] | None:
    """(UEID base64url, key id) of the board on `link`, or None without a complete identity.
    Read before a command that leaves the board running its app (a deploy): asking the board
    afterwards would interrupt the app it was left running."""
    from . import board

    # a fresh heap (what ran before, e.g. a refused install, may have left too little); in
    # raw REPL a soft reset runs boot.py only, so no app starts and no trial boot is counted
    board.reset_heap(link)
    if not board.has_identity_agent(link):  # an agent without guard.identity
        return None
    st = board.status(link)
    if st.get("state") != "complete" or not st.get("ueid"):
        return None
    return str(st["ueid"]), str(st.get("kid"))


def record_event(ident: tuple[str, str] | None, root: Path, kind: str, data: dict[str, Any],
                 db: str | None = None) -> str | None:
    """Append a history row (deploy, ...) for the board `ident` (board_identity's), if this
    inventory knows it with that key; returns its UEID (base64url), or None when there is
    nothing to record it against. Inventory failures propagate (InventoryError)."""
    from . import board

    if ident is None:
        return None
    ueid = board.unb64u(ident[0])
    with open_inventory(root, db) as inv:
        dev = inv.device(ueid)
        if dev is None or dev.thumbprint != ident[1]:
            return None
        inv.add_event(ueid, kind, data)
    return ident[0]

