"""The production line's records in the inventory: stations, travellers, completed steps.

One `line_boards` row per board (MAC) and batch: its status (running, pass, fail, parked),
the station holding it (a claim, so two stations never work on one board at once), and its
signed traveller once finished. One `line_steps` row per step the board completed: unique per
board and step, so a step that succeeded is recorded once, whichever station did it, and a
station that resumes the board skips it. Every method is one transaction (docs/line.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..errors import InventoryError, LineError
from . import records
from . import schema as s
from .store import Inventory

_b, _st, _sn = s.line_boards, s.line_steps, s.line_stations
STATUSES = ("running", "pass", "fail", "parked")
LEASE = timedelta(minutes=10)  # a claim older than this is a crashed station's: taken over


@dataclass(frozen=True)
class StepRecord:
    step: str
    station: str
    started_at: datetime
    ended_at: datetime
    seconds: float
    detail: dict[str, Any]


@dataclass(frozen=True)
class BoardRecord:
    id: int
    batch: str
    mac: str
    ueid: str | None
    status: str
    reason: str | None
    station: str | None
    claimed_by: str | None
    started_at: datetime
    updated_at: datetime
    traveller: str | None
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def done(self) -> set[str]:
        return {x.step for x in self.steps}


@dataclass(frozen=True)
class StationRecord:
    name: str
    kid: str  # RFC 7638 thumbprint of its key: the `kid` of the travellers it signs
    public_key: bytes  # the 65-byte P-256 point
    created_at: datetime


@dataclass(frozen=True)
class Claim:
    board: BoardRecord
    held_by: str | None = None  # another station holds it (its claim is fresh)

    @property
    def ok(self) -> bool:
        return self.held_by is None


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    ins = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return ins(table)


def db_now(conn: sa.Connection) -> datetime:
    """The database's clock (UTC, aware): the one time every station sharing it agrees on."""
    if conn.dialect.name == "sqlite":
        text = conn.execute(sa.select(sa.func.strftime("%Y-%m-%d %H:%M:%f", "now"))).scalar_one()
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    value = conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one()
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class Line:
    """The line's view of an inventory (same engine, same transactions, same errors)."""

    def __init__(self, inv: Inventory):
        self.inv = inv

    # -- stations ---------------------------------------------------------------------------

    def register_station(self, name: str, public_key: bytes, kid: str) -> None:
        """Record the station's key; a name already recorded with another key is refused."""
        name = records.text("station", name, s.NAME)
        with self.inv._write() as conn:
            conn.execute(_insert(conn, _sn).values(
                name=name, kid=kid, public_key=public_key, created_at=records.now())
                .on_conflict_do_nothing())
            row = conn.execute(sa.select(_sn.c.kid).where(_sn.c.name == name)).first()
            if row is None or row.kid != kid:
                raise InventoryError("station_key", name)

    def station_key(self, kid: str) -> tuple[str, bytes] | None:
        """(station name, 65-byte public key) of a traveller signer's `kid`, or None."""
        with self.inv._read() as conn:
            row = conn.execute(sa.select(_sn.c.name, _sn.c.public_key)
                               .where(_sn.c.kid == kid)).first()
        return (row.name, bytes(row.public_key)) if row else None

    def stations(self, name: str | None = None) -> list[StationRecord]:
        """Every station the inventory records (or the one of this name), by name."""
        q = sa.select(_sn).order_by(_sn.c.name)
        if name is not None:
            q = q.where(_sn.c.name == name)
        with self.inv._read() as conn:
            return [StationRecord(r.name, r.kid, bytes(r.public_key), r.created_at)
                    for r in conn.execute(q).all()]

    # -- boards -------------------------------------------------------------------------------

    def claim(self, batch: str, mac: str, station: str, *, lease: timedelta = LEASE) -> Claim:
        """Take the board for `station` (its traveller made if new): refused (held_by) while
        another station's claim is fresh; a finished board is returned as it is."""
        batch = records.text("batch", batch, s.NAME)
        mac = records.mac(mac)
        station = records.text("station", station, s.NAME)
        with self.inv._write() as conn:
            now = db_now(conn)
            conn.execute(_insert(conn, _b).values(
                batch=batch, mac=mac, status="running", started_at=now, updated_at=now)
                .on_conflict_do_nothing())
            q = sa.select(_b).where(_b.c.batch == batch, _b.c.mac == mac)
            row = conn.execute(q.with_for_update()).one()
            held = row.claimed_by not in (None, station) and row.claimed_at is not None \
                and row.claimed_at > now - lease
            if held:
                return Claim(self._board(conn, row), held_by=row.claimed_by)
            if row.status != "pass":
                conn.execute(sa.update(_b).where(_b.c.id == row.id).values(
                    claimed_by=station, claimed_at=now, station=station, status="running",
                    reason=None, updated_at=now))
            return Claim(self._board(conn, conn.execute(q).one()))

    def renew(self, board_id: int, station: str) -> str | None:
        """Renew `station`'s claim on the board (the database's time); None if it holds it,
        else who does now (another station's name, or "" if no one: the board was let go)."""
        station = records.text("station", station, s.NAME)
        with self.inv._write() as conn:
            res = conn.execute(sa.update(_b).where(_b.c.id == board_id,
                                                   _b.c.claimed_by == station)
                               .values(claimed_at=db_now(conn)))
            if res.rowcount:
                return None
            row = conn.execute(sa.select(_b.c.claimed_by).where(_b.c.id == board_id)).first()
            return (row.claimed_by or "") if row else ""

    def step_done(self, board_id: int, step: str, station: str, started: datetime,
                  ended: datetime, detail: dict[str, Any]) -> bool:
        """Record a completed step; False if it was recorded already (by any station). The
        step is recorded whoever holds the board (it was done to it); the claim of `station`
        is renewed if it holds it."""
        _, detail = records.event("line.step", detail)
        with self.inv._write() as conn:
            conn.execute(sa.update(_b).where(_b.c.id == board_id,
                                             _b.c.claimed_by == station)
                         .values(claimed_at=db_now(conn)))
            res = conn.execute(_insert(conn, _st).values(
                board_id=board_id, step=records.text("step", step, s.STEP),
                station=records.text("station", station, s.NAME), started_at=started,
                ended_at=ended, seconds=round((ended - started).total_seconds(), 3),
                detail=detail).on_conflict_do_nothing())
            conn.execute(sa.update(_b).where(_b.c.id == board_id).values(updated_at=ended))
            return bool(res.rowcount)

    def set_ueid(self, board_id: int, ueid: str | bytes) -> None:
        u = records.ueid(ueid)
        with self.inv._write() as conn:
            conn.execute(sa.update(_b).where(_b.c.id == board_id).values(ueid=u))

    def release(self, board_id: int, station: str, status: str, reason: str | None = None,
                traveller: str | None = None) -> None:
        """Let go of the board with its status (pass, fail, parked) and, once finished, its
        signed traveller. LineError `claim_lost` if `station` does not hold the board (its
        claim lapsed and another station took it over, or it was let go): nothing written."""
        if status not in STATUSES:
            raise InventoryError("bad_record", f"status {status!r}")
        values: dict[str, Any] = {"status": status, "reason": (reason or None) and reason[:256],
                                  "claimed_by": None, "claimed_at": None,
                                  "updated_at": records.now()}
        if traveller is not None:
            values["traveller"] = traveller
        with self.inv._write() as conn:
            res = conn.execute(sa.update(_b).where(_b.c.id == board_id,
                                                   _b.c.claimed_by == station)
                               .values(**values))
            if not res.rowcount:
                row = conn.execute(sa.select(_b.c.claimed_by).where(_b.c.id == board_id)).first()
                raise LineError("claim_lost", f"station {station} no longer holds the board "
                                f"(held by {(row and row.claimed_by) or 'no station'})")

    def board(self, batch: str, mac: str) -> BoardRecord | None:
        with self.inv._read() as conn:
            row = conn.execute(sa.select(_b).where(_b.c.batch == batch,
                                                   _b.c.mac == records.mac(mac))).first()
            return self._board(conn, row) if row else None

    def boards(self, *, batch: str | None = None, station: str | None = None,
               ueid: str | bytes | None = None) -> list[BoardRecord]:
        q = sa.select(_b)
        if batch is not None:
            q = q.where(_b.c.batch == batch)
        if station is not None:
            q = q.where(_b.c.station == station)
        if ueid is not None:
            q = q.where(_b.c.ueid == records.ueid(ueid))
        with self.inv._read() as conn:
            return [self._board(conn, r) for r in conn.execute(q.order_by(_b.c.id)).all()]

    def _board(self, conn: sa.Connection, row: Any) -> BoardRecord:
        steps = [StepRecord(r.step, r.station, r.started_at, r.ended_at, r.seconds, r.detail)
                 for r in conn.execute(sa.select(_st).where(_st.c.board_id == row.id)
                                       .order_by(_st.c.id))]
        return BoardRecord(row.id, row.batch, row.mac, row.ueid, row.status, row.reason,
                           row.station, row.claimed_by, row.started_at, row.updated_at,
                           row.traveller, steps)
