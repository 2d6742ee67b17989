"""What the inventory hands out (Device, Certificate, Event) and the checks on what it takes in.

Every value is checked here, before a transaction starts, so bad input changes nothing:
- UEID: RFC 9711 4.2.1, 7..33 bytes, type byte 0x01 (RAND), 0x02 (EUI) or 0x03 (IMEI);
  given as bytes or hex, kept as lowercase hex;
- MAC: 6 bytes, kept as `aa:bb:cc:dd:ee:ff`;
- public key: a P-256 point (65-byte uncompressed SEC1), on the curve; its RFC 7638
  thumbprint is computed here (a thumbprint given by the caller must match it);
- certificate: DER X.509 certifying exactly that key; serial and not-after are read from it
  (a serial or not-after given by the caller must match);
- event: a lowercase kind, a JSON object of at most 64 KiB holding no password or private key;
- revocation reason: an RFC 5280 5.3.1 CRLReason name, so a CRL can be built from the rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .. import jose
from ..errors import InventoryError
from . import schema as s

UEID_TYPES = (0x01, 0x02, 0x03)  # RFC 9711 4.2.1: RAND, IEEE EUI, IMEI
MAX_EVENT_DATA = 64 * 1024
REVOKE_REASONS = tuple(r.value for r in x509.ReasonFlags)  # RFC 5280 5.3.1 names
_EVENT_KIND = re.compile(r"[a-z][a-z0-9_.-]*\Z")
_TEXT = re.compile(r"[\w .:@/+()#-]+\Z")
_SECRET_NAME = re.compile(r"pass(word|phrase)|priv(ate)?_?key|secret_?key", re.IGNORECASE)


@dataclass(frozen=True)
class Certificate:
    """One certificate issued to a board (current or past), with its revocation state."""

    serial: int
    ueid: str
    public_key: bytes = field(repr=False)
    thumbprint: str
    der: bytes = field(repr=False)
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    revoked_at: datetime | None = None
    revoke_reason: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class Device:
    """A board and its current identity; `certificate` is the latest one issued to it."""

    ueid: str
    kind: str
    chip: str
    mac: str
    public_key: bytes = field(repr=False)
    thumbprint: str
    agent_version: str
    provisioned_at: datetime
    provisioned_by: str
    updated_at: datetime
    certificate: Certificate
    batch: str | None = None
    station: str | None = None


@dataclass(frozen=True)
class Event:
    """One history row: what happened to a board (or to no board in particular), and when."""

    id: int
    ueid: str | None
    kind: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    station: str | None = None


@dataclass(frozen=True)
class Identity:
    """A checked key + certificate pair, ready to be written."""

    public_key: bytes
    thumbprint: str
    der: bytes
    serial: int
    not_before: datetime
    not_after: datetime


def now() -> datetime:
    return datetime.now(UTC)


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def ueid(value: str | bytes) -> str:
    """A UEID as lowercase hex, or InventoryError('bad_record')."""
    if isinstance(value, str):
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise InventoryError("bad_record", f"UEID is not hex: {value[:80]!r}") from None
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
    else:
        raise InventoryError("bad_record", "UEID must be bytes or hex")
    if not 7 <= len(raw) <= 33 or raw[0] not in UEID_TYPES:
        raise InventoryError("bad_record", "UEID: 7..33 bytes, type byte 01, 02 or 03 (RFC 9711)")
    return raw.hex()


def mac(value: str) -> str:
    digits = re.sub(r"[:\-.]", "", value) if isinstance(value, str) else ""
    if not re.fullmatch(r"[0-9a-fA-F]{12}", digits):
        raise InventoryError("bad_record", f"MAC is not 6 hex bytes: {str(value)[:40]!r}")
    d = digits.lower()
    return ":".join(d[i:i + 2] for i in range(0, 12, 2))


def text(name: str, value: Any, limit: int, *, optional: bool = False) -> str | None:
    """A short printable field (kind, chip, version, operator, batch, station)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > limit or not _TEXT.match(value):
        raise InventoryError("bad_record", f"{name}: 1..{limit} printable characters")
    return value


def note(value: Any, name: str = "note", limit: int = 200) -> str | None:
    """Free text for people (a note, who provisioned): one printable line."""
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit or not value.isprintable():
        raise InventoryError("bad_record", f"{name}: 1..{limit} printable characters, one line")
    return value


def who(value: Any) -> str:
    """Who provisioned a board: an operator and/or host, e.g. `Alice <alice@line-1>`."""
    if value is None:
        raise InventoryError("bad_record", "provisioned_by is required")
    return note(value, "provisioned_by", s.WHO) or ""


def when(name: str, value: Any) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InventoryError("bad_record", f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def identity(public_key: bytes, cert_der: bytes, *, thumbprint: str | None = None,
             cert_serial: int | None = None, not_after: datetime | None = None) -> Identity:
    """Check a board's key and certificate against each other (and the caller's copies)."""
    if not isinstance(public_key, bytes | bytearray) or len(public_key) != 65:
        raise InventoryError("bad_key", "a 65-byte uncompressed P-256 point")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(public_key))
    except ValueError:
        raise InventoryError("bad_key", "not on the curve") from None
    kid = jose.thumbprint(key)
    if thumbprint is not None and thumbprint != kid:
        raise InventoryError("bad_record", "thumbprint is not the key's RFC 7638 thumbprint")
    try:
        cert = x509.load_der_x509_certificate(bytes(cert_der))
        cert_key = cert.public_key()
    except (ValueError, TypeError):
        raise InventoryError("bad_certificate", "not DER X.509") from None
    point = (cert_key.public_bytes(serialization.Encoding.X962,
                                   serialization.PublicFormat.UncompressedPoint)
             if isinstance(cert_key, ec.EllipticCurvePublicKey) else b"")
    if point != bytes(public_key):
        raise InventoryError("bad_certificate", "it certifies another key")
    if cert_serial is not None and cert_serial != cert.serial_number:
        raise InventoryError("bad_certificate", "serial differs from the certificate's")
    if not_after is not None and when("not_after", not_after) != cert.not_valid_after_utc:
        raise InventoryError("bad_certificate", "not_after differs from the certificate's")
    if len(serial_hex(cert.serial_number)) > s.SERIAL_HEX or cert.serial_number <= 0:
        raise InventoryError("bad_certificate", "serial is not 1..20 positive octets")
    return Identity(bytes(public_key), kid, bytes(cert_der), cert.serial_number,
                    cert.not_valid_before_utc, cert.not_valid_after_utc)


def revoke_reason(reason: str) -> str:
    if reason not in REVOKE_REASONS:
        raise InventoryError("bad_revoke_reason", reason)
    return reason


def event(kind: str, data: Any) -> tuple[str, dict[str, Any]]:
    """Check an event's kind and data; the data is returned as JSON would give it back."""
    if not isinstance(kind, str) or len(kind) > s.KIND or not _EVENT_KIND.match(kind):
        raise InventoryError("bad_event", f"kind {str(kind)[:40]!r}")
    if not isinstance(data, dict):
        raise InventoryError("bad_event", "data must be a JSON object (a dict)")
    try:
        encoded = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InventoryError("bad_event", f"data is not JSON: {e}") from None
    if len(encoded) > MAX_EVENT_DATA:
        raise InventoryError("bad_event", f"data over {MAX_EVENT_DATA} bytes as JSON")
    _refuse_secrets(data)
    return kind, json.loads(encoded)


def _refuse_secrets(value: Any) -> None:
    """Never store a password or a private key: refuse such names and PEM private keys."""
    if isinstance(value, dict):
        for k, v in value.items():
            if _SECRET_NAME.search(k):
                raise InventoryError("private_data", k)
            _refuse_secrets(v)
    elif isinstance(value, list):
        for v in value:
            _refuse_secrets(v)
    elif isinstance(value, str) and "PRIVATE KEY" in value:
        raise InventoryError("private_data", "a PEM private key")
