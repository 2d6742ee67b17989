"""The project's device CA: a P-256 key and a self-signed X.509 certificate, made by
`mpguard init` (or `mpguard ca init` in a project made before), that issues one certificate
per board and signs the list of revoked ones (an X.509 CRL, RFC 5280 section 5).

Files in the project folder (names fixed, so no config entry is needed)::

    keys/device-ca.pem     the CA key: PKCS#8 PEM, encrypted with the project passphrase
                           (as the release key), mode 0600
    devices-ca.pem         the CA certificate (PEM): what a TLS server trusts, and
                           `openssl verify -CAfile devices-ca.pem board.pem` checks against
    devices-ca-crl.pem     the CRL (PEM), signed again after every revocation

Device certificate profile (RFC 5280 4.1, 4.2): subject CN = base64url(UEID) (UTF8String),
random 159-bit serial, validity from 5 minutes ago for `days` days, basicConstraints
CA:FALSE (critical), keyUsage digitalSignature + keyAgreement (critical), extendedKeyUsage
clientAuth, subject and authority key identifiers; ecdsa-with-SHA256.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .. import keys
from ..errors import CAError
from ..files import atomic_write

KEY_PATH = "keys/device-ca.pem"
CERT_PATH = "devices-ca.pem"
CRL_PATH = "devices-ca-crl.pem"
CA_DAYS = 20 * 365
DEFAULT_DAYS = 10 * 365  # device certificates; `--days` or mpguard.json "device_cert_days"
MAX_DAYS = 30 * 365
CRL_DAYS = 30  # nextUpdate of a CRL: sign it again (`mpguard ca crl`) before then
BACKDATE = _dt.timedelta(minutes=5)  # clock skew between this host and a TLS server


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Revoked:
    """One revoked certificate, as the CRL lists it."""

    serial: int
    at: _dt.datetime
    reason: str = "unspecified"  # an RFC 5280 5.3.1 CRLReason name (x509.ReasonFlags value)


def exists(root: Path) -> bool:
    return (root / CERT_PATH).exists() or (root / KEY_PATH).exists()


def create(root: Path, passphrase: bytes | None, *, days: int = CA_DAYS) -> x509.Certificate:
    """Make the CA of the project in `root`; refuses if one exists (never overwrites a key)."""
    root = Path(root)
    if exists(root):
        raise CAError("ca_exists", f"{root / CERT_PATH}")
    key = keys.generate()
    kid = keys.thumbprint(key)
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mpguard"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"mpguard device CA {kid[:12]}"),
    ])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    (root / "keys").mkdir(parents=True, exist_ok=True)
    keys.save_private(key, root / KEY_PATH, passphrase, allow_plaintext=passphrase is None)
    _write(root / CRL_PATH, _crl(cert, key, [], 1).public_bytes(serialization.Encoding.PEM))
    _write(root / CERT_PATH, cert.public_bytes(serialization.Encoding.PEM))  # last: CA exists
    return cert


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, data)


def certificate(root: Path) -> x509.Certificate:
    """The CA certificate of the project in `root`."""
    path = Path(root) / CERT_PATH
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise CAError("no_ca", str(path)) from None
    except ValueError:
        raise CAError("no_ca", f"{path} is not a PEM certificate") from None


def is_encrypted(root: Path) -> bool:
    """Whether the CA key needs the passphrase (CAError no_ca when there is no CA)."""
    path = Path(root) / KEY_PATH
    if not path.exists():
        raise CAError("no_ca", str(path))
    return keys.is_encrypted(path)


class DeviceCA:
    """The loaded CA: certificate and private key (the key is never printed or logged)."""

    def __init__(self, root: Path, passphrase: bytes | None):
        self.root = Path(root)
        self.cert = certificate(self.root)
        path = self.root / KEY_PATH
        self._key = keys.load_private(path, passphrase if keys.is_encrypted(path) else None)
        if keys.public_bytes(self._key) != keys.public_bytes(self.cert.public_key()):  # type: ignore[arg-type]
            raise CAError("ca_mismatch", f"{path} is not the key of {self.root / CERT_PATH}")

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def issue(self, public_key: ec.EllipticCurvePublicKey, ueid_b64: str, *,
              days: int = DEFAULT_DAYS) -> x509.Certificate:
        """A device certificate for `public_key`, subject CN = `ueid_b64`."""
        if not 1 <= days <= MAX_DAYS:
            raise CAError("bad_days", str(days))
        now = _now()
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ueid_b64)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + _dt.timedelta(days=days), self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False)
            .sign(self._key, hashes.SHA256())
        )

    def write_crl(self, revoked: Iterable[Revoked]) -> x509.CertificateRevocationList:
        """Sign a new CRL listing `revoked` (CRL number one above the last) and write it."""
        number = 1
        try:
            old = crl(self.root)
            number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
        except (CAError, x509.ExtensionNotFound):
            pass
        new = _crl(self.cert, self._key, list(revoked), number)
        _write(self.root / CRL_PATH, new.public_bytes(serialization.Encoding.PEM))
        return new


def _crl(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, revoked: list[Revoked],
         number: int) -> x509.CertificateRevocationList:
    now = _now()
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(now)
        .next_update(now + _dt.timedelta(days=CRL_DAYS))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
    )
    for r in revoked:
        rc = (x509.RevokedCertificateBuilder().serial_number(r.serial)
              .revocation_date(r.at.astimezone(_dt.UTC)))
        if r.reason and r.reason != "unspecified":
            rc = rc.add_extension(x509.CRLReason(x509.ReasonFlags(r.reason)), critical=False)
        b = b.add_revoked_certificate(rc.build())
    return b.sign(key, hashes.SHA256())


def crl(root: Path) -> x509.CertificateRevocationList:
    """The project's current CRL."""
    path = Path(root) / CRL_PATH
    try:
        return x509.load_pem_x509_crl(path.read_bytes())
    except FileNotFoundError:
        raise CAError("no_ca", str(path)) from None
    except ValueError:
        raise CAError("no_ca", f"{path} is not a PEM CRL") from None
