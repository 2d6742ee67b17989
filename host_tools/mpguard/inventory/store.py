"""The Inventory: every board's identity, certificates and history, on SQLite or PostgreSQL.

Each write method is one transaction: its input is checked first (records.py), then it
writes all its rows and its history event, or nothing. The database's unique constraints are
the last word when two stations race for the same UEID or key: the loser gets the same
DuplicateIdentity as a sequential caller would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..errors import InventoryError
from . import db, migrate, records, rows
from . import schema as s
from .records import Certificate, Device, Event

_d, _c, _e = s.devices, s.certificates, s.events


class Inventory:
    """An open inventory. Make one with `Inventory.open(...)`; close it (or use `with`)."""

    def __init__(self, engine: sa.Engine, url: sa.URL):
        self._engine = engine
        self._url = url

    @classmethod
    def open(cls, url: str | None = None, *, project_root: Path | None = None,
             busy_timeout: float = 5.0, connect_timeout: float = 10.0) -> Inventory:
        """Open (creating and migrating to the current schema) the inventory.

        `url`: `--db` (sqlite:///PATH or postgresql://USER@HOST:PORT/DB); else the project's
        config key `inventory`; else `<project_root>/inventory.db`. `busy_timeout`: how long a
        write waits for another writer's lock before InventoryUnavailable.
        """
        u = db.resolve_url(url, project_root)
        engine = db.create_engine(u, busy_timeout=busy_timeout, connect_timeout=connect_timeout)
        try:
            with db.translated(u):
                migrate.upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, u)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL with its password masked."""
        return db.mask(self._url)

    @property
    def backend(self) -> str:
        return self._url.get_backend_name()

    def __repr__(self) -> str:
        return f"<Inventory {self.url}>"

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Inventory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with db.translated(self._url), self._engine.connect() as conn:
            conn.execution_options(mpguard_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with db.translated(self._url), self._engine.connect() as conn:
            yield conn

    @property
    def schema_version(self) -> str | None:
        with self._read() as conn:
            return migrate.current(conn)

    # -- boards -----------------------------------------------------------------------------

    def add_device(self, ueid: str | bytes, *, kind: str, chip: str, mac: str,
                   public_key: bytes, cert_der: bytes, provisioned_by: str, agent_version: str,
                   thumbprint: str | None = None, cert_serial: int | None = None,
                   not_after: datetime | None = None, batch: str | None = None,
                   station: str | None = None) -> Device:
        """Record a newly provisioned board and its first certificate (+ a `provision` event).

        DuplicateIdentity if the UEID is already recorded (reason duplicate_ueid: re-provision
        with replace_identity) or the key belongs or belonged to another board (duplicate_key:
        a cloned board).
        """
        u = records.ueid(ueid)
        fields = {
            "kind": records.text("kind", kind, s.NAME),
            "chip": records.text("chip", chip, s.CHIP),
            "mac": records.mac(mac),
            "agent_version": records.text("agent_version", agent_version, s.VERSION),
            "provisioned_by": records.who(provisioned_by),
            "batch": records.text("batch", batch, s.NAME, optional=True),
            "station": records.text("station", station, s.NAME, optional=True),
        }
        ident = records.identity(public_key, cert_der, thumbprint=thumbprint,
                                 cert_serial=cert_serial, not_after=not_after)
        at = records.now()
        with self._write() as conn:
            rows.refuse_taken(conn, ident, ueid=u)
            device_id = conn.execute(rows.INSERT_DEVICE, {
                "ueid": u, "public_key": ident.public_key, "thumbprint": ident.thumbprint,
                "cert_serial": records.serial_hex(ident.serial), "provisioned_at": at,
                "updated_at": at, **fields}).scalar_one()
            rows.insert_cert(conn, device_id, ident, at)
            rows.insert_event(conn, device_id, "provision", {
                "serial": records.serial_hex(ident.serial), "thumbprint": ident.thumbprint,
                "kind": fields["kind"], "mac": fields["mac"], "by": fields["provisioned_by"],
                "agent_version": fields["agent_version"], "batch": fields["batch"]},
                at, fields["station"])
            return rows.device(conn, "id", device_id)

    def replace_identity(self, ueid: str | bytes, *, public_key: bytes, cert_der: bytes,
                         provisioned_by: str, thumbprint: str | None = None,
                         cert_serial: int | None = None, not_after: datetime | None = None,
                         agent_version: str | None = None, station: str | None = None,
                         reason: str = "superseded", event: str = "reprovision",
                         note: str | None = None, revoke: bool = True,
                         data: dict[str, Any] | None = None) -> Device:
        """Give a recorded board a new key and/or certificate (re-provision, identity rotation).

        Its unrevoked certificates are revoked (`reason`, RFC 5280 name; with `revoke=False`
        they stay valid until the caller revokes them: an identity rotation does once the
        board holds the new one), the new one recorded, and an event of kind `event` appended
        (with `data` added to it); the old certificates and history stay.
        """
        u = records.ueid(ueid)
        by = records.who(provisioned_by)
        version = records.text("agent_version", agent_version, s.VERSION, optional=True)
        station = records.text("station", station, s.NAME, optional=True)
        note = records.note(note)
        reason = records.revoke_reason(reason)
        kind, extra = records.event(event, data or {})
        ident = records.identity(public_key, cert_der, thumbprint=thumbprint,
                                 cert_serial=cert_serial, not_after=not_after)
        at = records.now()
        with self._write() as conn:
            old = conn.execute(sa.select(_d.c.id, _d.c.thumbprint).where(_d.c.ueid == u)
                               .with_for_update()).first()
            if old is None:
                raise InventoryError("unknown_device", u)
            rows.refuse_taken(conn, ident, own=old.id)
            revoked = conn.execute(
                sa.update(_c).where(_c.c.device_id == old.id, _c.c.revoked_at.is_(None))
                .values(revoked_at=at, revoke_reason=reason).returning(_c.c.serial)
            ).scalars().all() if revoke else []
            rows.insert_cert(conn, old.id, ident, at)
            changes: dict[str, Any] = {
                "public_key": ident.public_key, "thumbprint": ident.thumbprint,
                "cert_serial": records.serial_hex(ident.serial), "provisioned_at": at,
                "provisioned_by": by, "updated_at": at}
            if version is not None:
                changes["agent_version"] = version
            if station is not None:
                changes["station"] = station
            conn.execute(sa.update(_d).where(_d.c.id == old.id).values(**changes))
            rows.insert_event(conn, old.id, kind, {
                "serial": records.serial_hex(ident.serial), "thumbprint": ident.thumbprint,
                "old_thumbprint": old.thumbprint, "revoked": sorted(revoked), "reason": reason,
                "by": by, "note": note, **extra}, at, station)
            return rows.device(conn, "id", old.id)

    def device(self, ueid: str | bytes) -> Device | None:
        u = records.ueid(ueid)
        with self._read() as conn:
            return rows.find_device(conn, "ueid", u)

    def device_by_thumbprint(self, kid: str) -> Device | None:
        """The board whose *current* key has this RFC 7638 thumbprint (a JWS `kid`)."""
        with self._read() as conn:
            return rows.find_device(conn, "thumbprint", kid)

    def devices(self, *, batch: str | None = None, station: str | None = None) -> list[Device]:
        """Every board (of a batch / last handled by a station), in provisioning order."""
        q = rows.DEVICES
        if batch is not None:
            q = q.where(_d.c.batch == batch)
        if station is not None:
            q = q.where(_d.c.station == station)
        with self._read() as conn:
            return [rows.device_of(r) for r in conn.execute(q.order_by(_d.c.id))]

    # -- certificates -----------------------------------------------------------------------

    def certificates(self, ueid: str | bytes) -> list[Certificate]:
        """Every certificate issued to a board, oldest first (revoked ones included)."""
        u = records.ueid(ueid)
        with self._read() as conn:
            if conn.execute(sa.select(_d.c.id).where(_d.c.ueid == u)).first() is None:
                raise InventoryError("unknown_device", u)
            found = conn.execute(rows.CERTS.where(_d.c.ueid == u).order_by(_c.c.id))
            return [rows.certificate_of(r) for r in found]

    def revoke(self, serial: int, reason: str = "unspecified", *,
               note: str | None = None) -> Certificate:
        """Revoke one certificate (RFC 5280 reason name) and append a `revoke` event."""
        reason = records.revoke_reason(reason)
        note = records.note(note)
        if not isinstance(serial, int) or serial <= 0:
            raise InventoryError("unknown_certificate", serial)
        sx = records.serial_hex(serial)
        at = records.now()
        with self._write() as conn:
            row = conn.execute(sa.select(_c.c.device_id, _c.c.revoked_at)
                               .where(_c.c.serial == sx)).first()
            if row is None:
                raise InventoryError("unknown_certificate", sx)
            done = conn.execute(sa.update(_c).where(_c.c.serial == sx, _c.c.revoked_at.is_(None))
                                .values(revoked_at=at, revoke_reason=reason))
            if done.rowcount != 1:
                raise InventoryError("already_revoked", sx)
            rows.insert_event(conn, row.device_id, "revoke",
                               {"serial": sx, "reason": reason, "note": note}, at, None)
            q = rows.CERTS.where(_c.c.serial == sx)
            return rows.certificate_of(conn.execute(q).one())

    def revoked(self) -> list[Certificate]:
        """Every revoked certificate, in order of revocation: the entries of a CRL."""
        q = (rows.CERTS.where(_c.c.revoked_at.is_not(None))
             .order_by(_c.c.revoked_at, _c.c.id))
        with self._read() as conn:
            return [rows.certificate_of(r) for r in conn.execute(q)]

    # -- history ----------------------------------------------------------------------------

    def add_event(self, ueid: str | bytes | None, kind: str, data: dict[str, Any], *,
                  at: datetime | None = None, station: str | None = None) -> Event:
        """Append one history row (deploy, rotate, attest, ...); `ueid` None: no one board."""
        u = None if ueid is None else records.ueid(ueid)
        kind, data = records.event(kind, data)
        when = records.now() if at is None else records.when("at", at)
        station = records.text("station", station, s.NAME, optional=True)
        with self._write() as conn:
            device_id = None
            if u is not None:
                device_id = conn.execute(sa.select(_d.c.id).where(_d.c.ueid == u)).scalar()
                if device_id is None:
                    raise InventoryError("unknown_device", u)
            event_id = rows.insert_event(conn, device_id, kind, data, when, station)
        return Event(event_id, u, kind, when, data, station)

    def events(self, ueid: str | bytes | None = None, kind: str | None = None,
               since: datetime | None = None, *, limit: int | None = None) -> list[Event]:
        """History rows, oldest first, filtered by board, kind and time (`at >= since`)."""
        q = sa.select(_e, _d.c.ueid).select_from(_e.outerjoin(_d, _e.c.device_id == _d.c.id))
        if ueid is not None:
            q = q.where(_d.c.ueid == records.ueid(ueid))
        if kind is not None:
            q = q.where(_e.c.kind == kind)
        if since is not None:
            q = q.where(_e.c.at >= records.when("since", since))
        q = q.order_by(_e.c.id)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as conn:
            return [rows.event_of(r) for r in conn.execute(q)]
