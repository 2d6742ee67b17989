"""The device CA (mpguard.identity.ca) and the host's checks of a board's PKCS#10 request
(mpguard.identity.csr): the certificate profile read back with `cryptography` and checked by
openssl, the CRL, the CA key encrypted like the release key, and a named table of bad
requests, each refused with its reason."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AttributeOID, ExtendedKeyUsageOID, NameOID

from mpguard import keys, project
from mpguard.errors import CAError, IdentityError, PassphraseError
from mpguard.identity import ca as device_ca
from mpguard.identity import csr as csrcheck

UEID = "AiQKxAECAw"  # RFC 9711 EUI-48 UEID 02 24 0a c4 01 02 03, base64url
CHALLENGE = "session-challenge-0001"
PW = b"ca passphrase"


def point(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint)


def request(key, cn=UEID, challenge=CHALLENGE, alg=None) -> bytes:
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if challenge is not None:
        b = b.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    return b.sign(key, alg or hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.fixture
def proj(tmp_path) -> project.Project:
    return project.init(tmp_path / "proj", passphrase=PW, targets=["sim"])


def test_init_makes_the_ca_with_its_key_encrypted_like_the_release_key(proj):
    root = proj.root
    for name in (device_ca.KEY_PATH, device_ca.CERT_PATH, device_ca.CRL_PATH):
        assert (root / name).exists(), name
    assert keys.is_encrypted(root / device_ca.KEY_PATH)
    assert (root / device_ca.KEY_PATH).stat().st_mode & 0o777 == 0o600
    with pytest.raises(PassphraseError):
        device_ca.DeviceCA(root, b"wrong")
    with pytest.raises(PassphraseError):
        device_ca.DeviceCA(root, None)
    ca = device_ca.DeviceCA(root, PW).cert
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    ca.verify_directly_issued_by(ca)  # self-signed


def test_ca_is_never_replaced(proj):
    before = (proj.root / device_ca.KEY_PATH).read_bytes()
    with pytest.raises(CAError) as e:
        device_ca.create(proj.root, PW)
    assert e.value.reason == "ca_exists"
    assert (proj.root / device_ca.KEY_PATH).read_bytes() == before


def test_a_project_made_before_gets_a_ca_later(tmp_path):
    proj = project.init(tmp_path / "old", passphrase=None, device_ca=False)
    assert not device_ca.exists(proj.root)
    with pytest.raises(CAError) as e:
        device_ca.DeviceCA(proj.root, None)
    assert e.value.reason == "no_ca"
    device_ca.create(proj.root, None)
    assert device_ca.DeviceCA(proj.root, None).cert is not None


def test_device_certificate_profile(proj):
    ca = device_ca.DeviceCA(proj.root, PW)
    key = ec.generate_private_key(ec.SECP256R1())
    c = ca.issue(key.public_key(), UEID, days=30)
    assert c.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, UEID)])
    assert c.issuer == ca.cert.subject
    assert c.serial_number > 2**64  # random (RFC 5280: at most 20 octets, positive)
    assert dt.timedelta(days=29) < c.not_valid_after_utc - c.not_valid_before_utc < dt.timedelta(days=31)
    ext = c.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_agreement
    assert not ku.value.key_cert_sign and not ku.value.key_encipherment
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value == \
        x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == \
        ca_ski.digest
    c.verify_directly_issued_by(ca.cert)
    assert c.signature_hash_algorithm.name == "sha256"
    two = ca.issue(key.public_key(), UEID, days=30)
    assert two.serial_number != c.serial_number
    for bad in (0, -1, device_ca.MAX_DAYS + 1):
        with pytest.raises(CAError):
            ca.issue(key.public_key(), UEID, days=bad)


def _openssl(*args: str) -> subprocess.CompletedProcess:
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not installed (cryptography checked the same)")
    return subprocess.run(["openssl", *args], capture_output=True, text=True)


def test_openssl_verifies_the_certificate_and_honours_the_crl(proj, tmp_path):
    ca = device_ca.DeviceCA(proj.root, PW)
    certs = []
    for _ in range(2):
        c = ca.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), UEID)
        p = tmp_path / f"board{len(certs)}.pem"
        p.write_bytes(c.public_bytes(serialization.Encoding.PEM))
        certs.append((c, p))
    cafile = str(proj.root / device_ca.CERT_PATH)
    crlfile = str(proj.root / device_ca.CRL_PATH)
    for _, p in certs:
        r = _openssl("verify", "-purpose", "sslclient", "-CAfile", cafile, str(p))
        assert r.returncode == 0 and ": OK" in r.stdout, r.stdout + r.stderr
    first = device_ca.crl(proj.root)
    ca.write_crl([device_ca.Revoked(certs[0][0].serial_number, dt.datetime.now(dt.UTC),
                                    "keyCompromise")])
    crl = device_ca.crl(proj.root)
    assert crl.is_signature_valid(ca.cert.public_key())  # type: ignore[arg-type]
    num = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert num == first.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    entry = crl.get_revoked_certificate_by_serial_number(certs[0][0].serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.key_compromise
    r = _openssl("verify", "-crl_check", "-CAfile", cafile, "-CRLfile", crlfile, str(certs[0][1]))
    assert r.returncode != 0 and "revoked" in (r.stdout + r.stderr).lower()
    r = _openssl("verify", "-crl_check", "-CAfile", cafile, "-CRLfile", crlfile, str(certs[1][1]))
    assert r.returncode == 0, r.stdout + r.stderr


def test_another_projects_ca_does_not_verify(proj, tmp_path):
    other = project.init(tmp_path / "other", passphrase=None)
    c = device_ca.DeviceCA(other.root, None).issue(
        ec.generate_private_key(ec.SECP256R1()).public_key(), UEID)
    (tmp_path / "b.pem").write_bytes(c.public_bytes(serialization.Encoding.PEM))
    r = _openssl("verify", "-CAfile", str(proj.root / device_ca.CERT_PATH), str(tmp_path / "b.pem"))
    assert r.returncode != 0


# -- the board's request: named bad inputs --------------------------------------------------

def _flip_signature(der: bytes) -> bytes:
    b = bytearray(der)
    b[-3] ^= 0x01
    return bytes(b)


def _off_curve(key) -> bytes:
    der = bytearray(request(key))
    i = der.find(point(key))
    der[i + 64] ^= 0x01  # last byte of Y: the point leaves the curve
    return bytes(der)


def bad_requests() -> dict[str, tuple[bytes, dict, str]]:
    """name -> (request DER, check() overrides, reason)."""
    k = ec.generate_private_key(ec.SECP256R1())
    return {
        "wrong signature": (_flip_signature(request(k)), {}, "bad_sig"),
        "key not on the curve": (_off_curve(k), {}, "bad_key"),
        "P-384 key": (request(ec.generate_private_key(ec.SECP384R1()), alg=hashes.SHA384()), {},
                      "bad_key"),
        "RSA key": (request(rsa.generate_private_key(public_exponent=65537, key_size=2048)), {},
                    "bad_key"),
        "ecdsa-with-SHA384": (request(k, alg=hashes.SHA384()), {}, "bad_sig"),
        "UEID mismatch with what the board reports": (request(k, cn="AgAAAAAAAA"), {},
                                                      "ueid_mismatch"),
        "challenge of another session (replayed)": (request(k, challenge="old-session-challenge"),
                                                    {}, "stale_csr"),
        "no challenge": (request(k, challenge=None), {}, "stale_csr"),
        "another key than the board reported": (request(k), {"public_key": point(
            ec.generate_private_key(ec.SECP256R1()))}, "key_mismatch"),
        "not DER": (b"\x30\x82\xff\xff" + bytes(16), {}, "bad_csr"),
        "empty": (b"", {}, "bad_csr"),
        "too large": (request(k) + bytes(csrcheck.MAX_CSR), {}, "bad_csr"),
    }


@pytest.mark.parametrize("name", list(bad_requests()))
def test_bad_request_is_refused(name):
    der, over, reason = bad_requests()[name]
    kw = {"ueid": UEID, "challenge": CHALLENGE, **over}
    with pytest.raises(IdentityError) as e:
        csrcheck.check(der, **kw)
    assert e.value.reason == reason, e.value


def test_good_request_passes():
    k = ec.generate_private_key(ec.SECP256R1())
    pub = csrcheck.check(request(k), ueid=UEID, challenge=CHALLENGE, public_key=point(k))
    assert csrcheck.point(pub) == point(k)


def test_init_passes_the_passphrase_to_the_ca(tmp_path):
    root = Path(tmp_path / "p")
    project.init(root, passphrase=None)
    assert not keys.is_encrypted(root / device_ca.KEY_PATH)
    assert not device_ca.is_encrypted(root)


def test_a_ca_key_of_another_certificate_is_ca_mismatch_not_no_ca(tmp_path):
    # its hint said `ca init`, which refuses a project that has a CA: the user went in circles
    from mpguard import reasons

    a = project.init(tmp_path / "a", passphrase=None)
    b = project.init(tmp_path / "b", passphrase=None)
    (a.root / device_ca.KEY_PATH).write_bytes((b.root / device_ca.KEY_PATH).read_bytes())
    with pytest.raises(CAError) as e:
        device_ca.DeviceCA(a.root, None)
    assert e.value.reason == "ca_mismatch"
    assert "mpguard ca init" not in reasons.REASONS["ca_mismatch"][1]
