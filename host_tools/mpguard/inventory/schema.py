"""The inventory's tables (SQLAlchemy Core): the one definition the code and the migrations share.

A change here needs a new migration in migrations/versions/ (tests/host/test_inventory_db.py
compares the two with Alembic's autogenerate and fails on any difference). Constraint and index
names come from the naming convention below, so they are the same on SQLite and PostgreSQL and
an IntegrityError can be mapped back to what it means.

- devices: one row per board, its *current* identity (key, thumbprint, certificate serial);
  UEID, key and thumbprint are each unique: a second board with one of them is a clone.
- certificates: every certificate ever issued to a board, with the key it certifies;
  revocation time and RFC 5280 reason (the rows a CRL is built from). Never deleted.
- events: the history, appended by the commands that act on a board (provision, reprovision,
  revoke, deploy, rotate, attest, ...), JSON data; device_id is empty for events not tied to one
  board (a batch started, a CRL issued).

Later migrations add tables beside these (attestations, travellers) referring to devices.id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Field sizes (a value longer than these is refused before any write: mpguard.inventory.records)
UEID_HEX = 66  # RFC 9711 4.2.1: a UEID is 7..33 bytes
SERIAL_HEX = 40  # RFC 5280 4.1.2.2: at most 20 octets
THUMBPRINT = 43  # RFC 7638 SHA-256, base64url without padding
NAME = 64  # board kind, batch, station
CHIP = 32
VERSION = 32
WHO = 128  # provisioned_by: operator and/or host
KIND = 32  # event kind
REASON = 32  # RFC 5280 CRLReason name


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both backends (SQLite keeps no zone: stored as UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = sa.MetaData(naming_convention=NAMING)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ueid", sa.String(UEID_HEX), nullable=False, unique=True),
    sa.Column("kind", sa.String(NAME), nullable=False),
    sa.Column("chip", sa.String(CHIP), nullable=False),
    sa.Column("mac", sa.String(17), nullable=False, index=True),
    sa.Column("public_key", sa.LargeBinary, nullable=False, unique=True),
    sa.Column("thumbprint", sa.String(THUMBPRINT), nullable=False, unique=True),
    sa.Column("cert_serial", sa.String(SERIAL_HEX), nullable=False),
    sa.Column("agent_version", sa.String(VERSION), nullable=False),
    sa.Column("provisioned_at", UTCDateTime, nullable=False),
    sa.Column("provisioned_by", sa.String(WHO), nullable=False),
    sa.Column("batch", sa.String(NAME), nullable=True, index=True),
    sa.Column("station", sa.String(NAME), nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("serial", sa.String(SERIAL_HEX), nullable=False, unique=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False, index=True),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("thumbprint", sa.String(THUMBPRINT), nullable=False, index=True),
    sa.Column("der", sa.LargeBinary, nullable=False),
    sa.Column("not_before", UTCDateTime, nullable=False),
    sa.Column("not_after", UTCDateTime, nullable=False),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("revoke_reason", sa.String(REASON), nullable=True),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=True, index=True),
    sa.Column("kind", sa.String(KIND), nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    sa.Column("station", sa.String(NAME), nullable=True),
    sa.Column("data", sa.JSON, nullable=False),
)

# --- production line (issue #12, migration 0002; mpguard.inventory.line) -----------------------
# line_boards: one traveller per board (MAC) and batch: where it is, who holds it, its signed
#   traveller record once finished. line_steps: one row per step a board completed (unique:
#   a step completes once, whichever station did it). line_stations: each station's name and
#   public key (the travellers' signer).
STEP = 32
STATUS = 16
REASON_TEXT = 256

line_stations = sa.Table(
    "line_stations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(NAME), nullable=False, unique=True),
    sa.Column("kid", sa.String(THUMBPRINT), nullable=False, unique=True),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

line_boards = sa.Table(
    "line_boards",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("batch", sa.String(NAME), nullable=False),
    sa.Column("mac", sa.String(17), nullable=False, index=True),
    sa.Column("ueid", sa.String(UEID_HEX), nullable=True, index=True),
    sa.Column("status", sa.String(STATUS), nullable=False),
    sa.Column("reason", sa.String(REASON_TEXT), nullable=True),
    sa.Column("station", sa.String(NAME), nullable=True),
    sa.Column("claimed_by", sa.String(NAME), nullable=True),
    sa.Column("claimed_at", UTCDateTime, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("traveller", sa.Text, nullable=True),
    sa.UniqueConstraint("batch", "mac", name="uq_line_boards_batch_mac"),
)

line_steps = sa.Table(
    "line_steps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("board_id", sa.Integer, sa.ForeignKey("line_boards.id"), nullable=False,
              index=True),
    sa.Column("step", sa.String(STEP), nullable=False),
    sa.Column("station", sa.String(NAME), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.UniqueConstraint("board_id", "step", name="uq_line_steps_board_id_step"),
)
