"""The SQL the Inventory runs inside its transactions, and rows -> records.

A device row is read joined with its current certificate; certificate columns carry a `c_`
label so the two tables' `public_key` and `thumbprint` do not collide.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..errors import DuplicateIdentity, InventoryError
from . import records
from . import schema as s
from .records import Certificate, Device, Event

_d, _c, _e = s.devices, s.certificates, s.events

DEVICE_COLUMNS = tuple(c for c in _d.c if c.name != "id")
CERT_COLUMNS = tuple(
    _c.c[name].label(f"c_{name}")
    for name in ("serial", "public_key", "thumbprint", "der", "not_before", "not_after",
                 "issued_at", "revoked_at", "revoke_reason")
)


def certificate_of(row: Any) -> Certificate:
    m = row._mapping
    return Certificate(
        serial=int(m["c_serial"], 16),
        ueid=m["ueid"],
        public_key=bytes(m["c_public_key"]),
        thumbprint=m["c_thumbprint"],
        der=bytes(m["c_der"]),
        not_before=m["c_not_before"],
        not_after=m["c_not_after"],
        issued_at=m["c_issued_at"],
        revoked_at=m["c_revoked_at"],
        revoke_reason=m["c_revoke_reason"],
    )


def device_of(row: Any) -> Device:
    m = row._mapping
    return Device(
        ueid=m["ueid"],
        kind=m["kind"],
        chip=m["chip"],
        mac=m["mac"],
        public_key=bytes(m["public_key"]),
        thumbprint=m["thumbprint"],
        agent_version=m["agent_version"],
        provisioned_at=m["provisioned_at"],
        provisioned_by=m["provisioned_by"],
        updated_at=m["updated_at"],
        certificate=certificate_of(row),
        batch=m["batch"],
        station=m["station"],
    )


def event_of(row: Any) -> Event:
    m = row._mapping
    return Event(id=m["id"], ueid=m["ueid"], kind=m["kind"], at=m["at"], data=dict(m["data"]),
                 station=m["station"])


# Statements are built once, with bound parameters: building one costs more than running it.
_owned = _c.join(_d, _c.c.device_id == _d.c.id)
DEVICES = sa.select(*DEVICE_COLUMNS, *CERT_COLUMNS).select_from(
    _d.join(_c, _c.c.serial == _d.c.cert_serial))
CERTS = sa.select(_d.c.ueid, *CERT_COLUMNS).select_from(_owned)
_DEVICE_BY = {col: DEVICES.where(_d.c[col] == sa.bindparam("v"))
              for col in ("id", "ueid", "thumbprint")}
_UEID_TAKEN = sa.select(_d.c.provisioned_at, _d.c.provisioned_by).where(
    _d.c.ueid == sa.bindparam("ueid"))
_KEY_NOW = sa.select(_d.c.ueid).where(_d.c.thumbprint == sa.bindparam("kid"),
                                      _d.c.id != sa.bindparam("own"))
_KEY_EVER = sa.select(_d.c.ueid).select_from(_owned).where(
    _c.c.thumbprint == sa.bindparam("kid"), _d.c.id != sa.bindparam("own")).limit(1)
_SERIAL_TAKEN = sa.select(_c.c.id).where(_c.c.serial == sa.bindparam("serial"))
INSERT_DEVICE = sa.insert(_d).returning(_d.c.id)
_INSERT_CERT = sa.insert(_c)
_INSERT_EVENT = sa.insert(_e).returning(_e.c.id)


def find_device(conn: sa.Connection, column: str, value: Any) -> Device | None:
    """The board whose `column` (id, ueid or thumbprint) is `value`, or None."""
    row = conn.execute(_DEVICE_BY[column], {"v": value}).first()
    return None if row is None else device_of(row)


def device(conn: sa.Connection, column: str, value: Any) -> Device:
    found = find_device(conn, column, value)
    if found is None:
        raise InventoryError("unknown_device")
    return found


def refuse_taken(conn: sa.Connection, ident: records.Identity, *, ueid: str | None = None,
                 own: int = 0) -> None:
    """DuplicateIdentity if the UEID, or the key (now or ever), is a board's other than `own`.

    Also refuses a certificate serial already recorded. The unique constraints catch what a
    concurrent writer slips in between this check and the insert (db.translated maps them).
    """
    if ueid is not None:
        row = conn.execute(_UEID_TAKEN, {"ueid": ueid}).first()
        if row is not None:
            raise DuplicateIdentity("duplicate_ueid", f"{ueid}, provisioned "
                                    f"{row.provisioned_at:%Y-%m-%d %H:%M} UTC by "
                                    f"{row.provisioned_by}")
    who = {"kid": ident.thumbprint, "own": own}  # ids start at 1: own=0 excludes no board
    owner = conn.execute(_KEY_NOW, who).scalar() or conn.execute(_KEY_EVER, who).scalar()
    if owner is not None:
        raise DuplicateIdentity("duplicate_key", f"key {ident.thumbprint} is or was board {owner}'s")
    sx = records.serial_hex(ident.serial)
    if conn.execute(_SERIAL_TAKEN, {"serial": sx}).first() is not None:
        raise InventoryError("duplicate_serial", sx)


def insert_cert(conn: sa.Connection, device_id: int, ident: records.Identity,
                at: datetime) -> None:
    conn.execute(_INSERT_CERT, {
        "serial": records.serial_hex(ident.serial), "device_id": device_id,
        "public_key": ident.public_key, "thumbprint": ident.thumbprint, "der": ident.der,
        "not_before": ident.not_before, "not_after": ident.not_after, "issued_at": at,
        "revoked_at": None, "revoke_reason": None})


def insert_event(conn: sa.Connection, device_id: int | None, kind: str, data: dict[str, Any],
                 at: datetime, station: str | None) -> int:
    return int(conn.execute(_INSERT_EVENT, {
        "device_id": device_id, "kind": kind, "at": at, "station": station, "data": data,
    }).scalar_one())
