"""The inventory as attestation sees it: devices by key or UEID, and attestation records.

The one module that touches the inventory (mpguard.inventory.Inventory: SQLAlchemy Core +
Alembic, SQLite or PostgreSQL). `Store` wraps an object with the inventory's API:

    inv.device(ueid)                 -> record or None
    inv.device_by_thumbprint(kid)    -> record or None
    inv.devices()                    -> records
    inv.add_event(ueid, kind, data, at=None)
    inv.events(ueid=None, kind=None, since=None) -> events (ueid, kind, data, at)

and `device_from(record)` reads a record into a `Device`: for mpguard.inventory's Device, the
UEID (hex), the 65-byte public key, its thumbprint, and not-after from its current
Certificate (the inventory keeps no board names: reports name a board by its UEID). Events
written here: kind "attestation" (data: nonce, kid, token, verdict, results, facts) and
"attestation_refused" (data: nonce, kid, reason).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import keys
from ..errors import AttestError, KeyStoreError

ATTESTATION = "attestation"
REFUSED = "attestation_refused"


@dataclass(frozen=True)
class Device:
    ueid: bytes
    kid: str
    public_key: Any  # cryptography EllipticCurvePublicKey, parsed once
    name: str = ""
    cert_not_after: dt.datetime | None = None
    revoked: str | None = None  # the current certificate's revocation reason, if revoked

    @property
    def ueid_hex(self) -> str:
        return self.ueid.hex()


@dataclass(frozen=True)
class Event:
    ueid: str  # hex
    kind: str
    data: dict[str, Any]
    at: dt.datetime


def _get(rec: Any, *names: str) -> Any:
    for n in names:
        v = rec.get(n) if isinstance(rec, Mapping) else getattr(rec, n, None)
        if v is not None:
            return v
    return None


def _ueid(v: Any) -> bytes:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    return bytes.fromhex(str(v))


def _public(v: Any) -> Any:
    if isinstance(v, str) and v.lstrip().startswith("-----BEGIN"):
        v = v.encode()
    if isinstance(v, bytes) and v.lstrip().startswith(b"-----BEGIN"):
        from cryptography.hazmat.primitives import serialization

        v = serialization.load_pem_public_key(v)
    return keys.p256_public(v)


def _not_after(rec: Any) -> dt.datetime | None:
    na = _get(rec, "cert_not_after", "not_after")
    if na is None:
        cert = _get(rec, "cert", "certificate", "cert_pem")
        if cert is None:
            return None
        na = getattr(cert, "not_after", None)  # mpguard.inventory's Certificate row
        if na is None:
            from cryptography import x509

            c = x509.load_pem_x509_certificate(cert.encode() if isinstance(cert, str) else cert)
            na = c.not_valid_after_utc
    if isinstance(na, (int, float)):
        return dt.datetime.fromtimestamp(na, dt.UTC)
    if isinstance(na, str):
        na = dt.datetime.fromisoformat(na)
    return na if na.tzinfo else na.replace(tzinfo=dt.UTC)


def device_from(rec: Any) -> Device:
    """A Device from an inventory record (mapping or object): ueid (bytes or hex), the
    public key (65-byte point, PEM, or key object), kid, name, certificate or not_after."""
    try:
        pub = _public(_get(rec, "public_key", "pubkey", "key"))
        kid = _get(rec, "kid", "thumbprint") or keys.thumbprint(pub)
        cert = _get(rec, "cert", "certificate", "cert_pem")
        revoked = None
        if getattr(cert, "revoked_at", None) is not None:  # mpguard.inventory's Certificate row
            revoked = str(getattr(cert, "revoke_reason", None) or "unspecified")
        return Device(_ueid(_get(rec, "ueid")), str(kid), pub, str(_get(rec, "name") or ""),
                      _not_after(rec), revoked)
    except (KeyStoreError, ValueError, TypeError) as e:
        raise AttestError("no_inventory", f"unreadable device record: {e}") from None


def _event(e: Any) -> Event:
    at = _get(e, "at", "time", "created")
    if isinstance(at, (int, float)):
        at = dt.datetime.fromtimestamp(at, dt.UTC)
    elif isinstance(at, str):
        at = dt.datetime.fromisoformat(at)
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    u = _get(e, "ueid")
    return Event(u.hex() if isinstance(u, bytes) else str(u), str(_get(e, "kind")),
                 dict(_get(e, "data") or {}), at or dt.datetime.now(dt.UTC))


class Store:
    """Attestation's view of an inventory; device lookups are cached (public keys parsed once).

    The cache (kid -> Device, or None for a kid no board has) lives as long as the Store and
    is never refreshed: a Store is made for one attestation (`mpguard attest`, a line
    station's step), so a device added, replaced or revoked later is seen by the next one.
    A caller that keeps a Store across attestations keeps what it first read."""

    def __init__(self, inv: Any):
        self.inv = inv
        self._by_kid: dict[str, Device | None] = {}

    def device_by_kid(self, kid: str) -> Device | None:
        if kid not in self._by_kid:
            rec = self.inv.device_by_thumbprint(kid)
            self._by_kid[kid] = device_from(rec) if rec is not None else None
        return self._by_kid[kid]

    def device(self, ueid: bytes) -> Device | None:
        rec = self.inv.device(ueid)
        return device_from(rec) if rec is not None else None

    def devices(self) -> list[Device]:
        return [device_from(r) for r in self.inv.devices()]

    def superseded_keys(self, ueid: bytes) -> dict[str, Any]:
        """kid -> public key of the board's earlier certificates revoked as `superseded` (an
        identity rotation or a re-provisioning replaced them, no compromise): what its
        earlier tokens were signed with."""
        certs = getattr(self.inv, "certificates", None)
        if certs is None:
            return {}
        out = {}
        for c in certs(ueid):
            if c.revoked and c.revoke_reason == "superseded":
                out[c.thumbprint] = _public(c.public_key)
        return out

    def events(self, ueid: bytes | None = None, kind: str | None = None,
               since: dt.datetime | None = None) -> list[Event]:
        got: Iterable[Any] = self.inv.events(ueid=ueid, kind=kind, since=since)
        return sorted((_event(e) for e in got), key=lambda e: e.at)

    def nonce_seen(self, ueid: bytes, nonce: str) -> bool:
        return any(e.data.get("nonce") == nonce for k in (ATTESTATION, REFUSED)
                   for e in self.events(ueid, k))

    def record(self, ueid: bytes, kind: str, data: dict[str, Any]) -> None:
        self.inv.add_event(ueid, kind, data)


def open_store(project_root: str | Path | None = None, url: str | None = None) -> Store:
    """The project's inventory (mpguard.inventory), or AttestError("no_inventory")."""
    try:
        from .. import inventory  # type: ignore[attr-defined]
    except ImportError:
        raise AttestError("no_inventory", "this build has no inventory module") from None
    return Store(inventory.Inventory.open(url=url, project_root=project_root))
