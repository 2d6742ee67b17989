"""Checking a board's PKCS#10 certificate request (RFC 2986) before anything is issued.

check(der, ueid=, challenge=, public_key=) verifies, in order (each refusal an
IdentityError whose `reason` names it):
  1. at most MAX_CSR bytes, DER that parses as a CertificationRequest        bad_csr
  2. the subject public key is an EC key on P-256 (a point not on the curve   bad_key
     or another curve is refused)
  3. signature algorithm ecdsa-with-SHA256 and the signature verifies with    bad_sig
     that key (proof of possession, RFC 2986 3 / RFC 4211 4)
  4. challengePassword (PKCS#9 5.4.1) is exactly this session's challenge:    stale_csr
     a request made for another session (replayed) is refused
  5. subject is exactly CN = base64url(UEID) the board reported               ueid_mismatch
  6. the key is the one the board reported (if given)                         key_mismatch
Returns the request's public key.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AttributeOID, NameOID, SignatureAlgorithmOID

from ..errors import IdentityError

MAX_CSR = 2048


def check(der: bytes, *, ueid: str, challenge: str,
          public_key: bytes | None = None) -> ec.EllipticCurvePublicKey:
    if not isinstance(der, bytes) or not der or len(der) > MAX_CSR:
        raise IdentityError("bad_csr", "empty or too large")
    try:
        req = x509.load_der_x509_csr(der)
    except ValueError as e:
        raise IdentityError("bad_csr", str(e)) from None
    try:
        pub = req.public_key()
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType):
        raise IdentityError("bad_key", "not a valid public key") from None
    if not isinstance(pub, ec.EllipticCurvePublicKey) or not isinstance(pub.curve, ec.SECP256R1):
        raise IdentityError("bad_key", "not a P-256 key")
    if req.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        raise IdentityError("bad_sig", "not ecdsa-with-SHA256")
    if not req.is_signature_valid:
        raise IdentityError("bad_sig", "the request's signature does not verify")
    try:
        got = req.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        got = b""
    if got != challenge.encode():
        raise IdentityError("stale_csr")
    cn = req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(req.subject) != 1 or len(cn) != 1 or cn[0].value != ueid:
        raise IdentityError("ueid_mismatch", f"request for {req.subject.rfc4514_string()!r}, "
                            f"board says {ueid}")
    if public_key is not None and point(pub) != public_key:
        raise IdentityError("key_mismatch", "the request is not for the key the board reported")
    return pub


def point(pub: ec.EllipticCurvePublicKey) -> bytes:
    """65-byte uncompressed SEC1 point."""
    return pub.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()
