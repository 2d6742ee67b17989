"""JWS compact serialization (RFC 7515), ES256 only, on `cryptography`: the host twin of guard.jws.

Signing is deterministic (RFC 6979), so the host and the board produce byte-identical tokens
for the same key, payload and (flat) header: the header is compact JSON with sorted keys.

verify(token, keys) checks, in order (each refusal is a JoseError whose `reason` is the
board's reason string):
  1. size at most `max_len` before any decoding                               too_large
  2. three parts (RFC 7515 7.1), header at most MAX_HEADER characters        jws_format/too_large
  3. header strict base64url; its JSON text checked for shape before it is parsed
     (`json_shape`: printable ASCII, an object only at the top, nesting at most 2), then a
     JSON object without duplicate members                                    jws_format
  4. "alg" exactly "ES256" (4.1.1) - "none" and everything else refused      jws_alg
  5. any "crit" (4.1.11) refused: no extension is understood                 jws_crit
  6. "kid" (4.1.4) names one of `keys`                                       unknown_key
  7. signature strict base64url, 64 bytes R || S (RFC 7518 3.4), verifies    bad_sig
  8. payload strict base64url                                                jws_format

At fleet rate (`mpguard attest` over many boards, release checks) the same few headers and
keys come back token after token, so three things are worked out once and remembered: a
header's base64url text -> the header it decodes to (steps 2-5 passed: what the header alone
decides), a key's SEC1 bytes -> the parsed key (mpguard.keys), both by their exact bytes, and
that a caller's key object is a P-256 public key (by the object's identity, the object held
so its id stays its own). None remembers a verdict: for every token the kid is looked up in
the caller's `keys` (a kid no longer there is refused) and the signature is checked against
that key. All three are bounded (the oldest entry goes first). Why and what it measures:
docs/decisions/0019-host-verification-at-fleet-rate.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from . import files, keys
from .errors import JoseError, KeyStoreError

ALG = "ES256"
MAX_TOKEN = 16384  # the board's default limit (guard.jws._MAX_TOKEN)
MAX_HEADER = 1024
_ECDSA = ec.ECDSA(hashes.SHA256())
# header base64url text -> (header, kid): see the module docstring. Bounded: the oldest entry
# goes first when it is full (a fleet has a header per signing key).
_HEADERS: dict[bytes, tuple[dict[str, Any], Any]] = {}
HEADER_CACHE = 4096
# id -> a public key object that passed keys.p256_public (a P-256 public key), holding the
# object so that no other object can get its id while the entry lives. Saves the checks for
# a caller's key objects (the attestation verifier's devices); bounded like _HEADERS.
_CHECKED: dict[int, ec.EllipticCurvePublicKey] = {}
CHECKED_CACHE = 4096


def _fail(reason: str) -> JoseError:
    return JoseError(reason)


b64u_enc = files.b64u_enc


def b64u_dec(text: str | bytes) -> bytes:
    """Strict base64url without padding: alphabet, length and canonical trailing bits."""
    try:
        return files.b64u_dec(text)
    except ValueError:
        raise _fail("jws_format") from None


def _public(key: Any) -> ec.EllipticCurvePublicKey:
    try:
        return keys.p256_public(key)
    except KeyStoreError:
        raise _fail("bad_key") from None


def thumbprint(key: Any) -> str:
    """RFC 7638 thumbprint of a P-256 key (private, public, or 33/65-byte point): the kid."""
    return keys.thumbprint(_public(key))


def header_json(header: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(header), sort_keys=True, separators=(",", ":")).encode()


def sign(payload: bytes, private_key: ec.EllipticCurvePrivateKey, header: Mapping[str, Any] | None = None) -> str:
    """A compact JWS of `payload`, ES256 with an RFC 6979 nonce, kid = thumbprint."""
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP256R1
    ):
        raise _fail("bad_key")
    hdr: dict[str, Any] = {"alg": ALG, "kid": thumbprint(private_key)}
    hdr.update(header or {})
    if hdr["alg"] != ALG:
        raise _fail("jws_alg")
    if "crit" in hdr:
        raise _fail("jws_crit")
    signing_input = b64u_enc(header_json(hdr)) + "." + b64u_enc(bytes(payload))
    der = private_key.sign(
        signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    )
    r, s = decode_dss_signature(der)
    return signing_input + "." + b64u_enc(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def json_shape(text: bytes, depth: int) -> int:
    """The shape of a JSON text, checked before it is parsed (guard.jws.shape's rules; the
    board's also checks the top object's grammar, as its parser takes ':' and ',' for spaces:
    here CPython's strict parser does that after this).

    Printable ASCII (tab, CR, LF also outside strings), no control character inside a string,
    an object only at the top, arrays nested at most `depth` levels in all. Returns the number
    of the top object's members (':' at level 1), or -1 when the text is not acceptable.
    """
    lvl = n = 0
    in_str = esc = False
    for c in bytes(text):
        if c > 126:
            return -1
        if in_str:
            if c < 32:
                return -1
            if esc:
                esc = False
            elif c == 92:
                esc = True
            elif c == 34:
                in_str = False
        elif c == 34:
            in_str = True
        elif c in (123, 91):
            lvl += 1
            if lvl > depth or (c == 123 and lvl > 1):
                return -1
        elif c in (125, 93):
            lvl -= 1
        elif c == 58:
            if lvl == 1:
                n += 1
        elif c < 32 and c not in (9, 10, 13):
            return -1
    return n


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _fail("jws_format")
        out[k] = v
    return out


def signing_input(token: str | bytes) -> bytes:
    """ASCII(header "." payload) of a compact JWS: what its signature covers."""
    raw = token.encode("ascii") if isinstance(token, str) else bytes(token)
    return raw[: raw.rfind(b".")]


def measurement(token: str | bytes) -> str:
    """SHA-256 hex of the signing input: the measurement of a release (what the board records
    and reports). Not of the whole token: ECDSA signatures are malleable ((r, s) and (r, n - s)
    both verify), and two tokens of one signed manifest must measure the same."""
    import hashlib

    return hashlib.sha256(signing_input(token)).hexdigest()


def _header(h64: bytes) -> tuple[dict[str, Any], Any]:
    """Steps 2-5 on a header's base64url text: (header, its kid, unchecked), or JoseError."""
    if len(h64) > MAX_HEADER:
        raise _fail("too_large")
    if not h64:
        raise _fail("jws_format")
    raw_header = b64u_dec(h64)
    members = json_shape(raw_header, 2)  # flat: strings (and "crit", an array, refused below)
    if members < 0:
        raise _fail("jws_format")
    try:
        header = json.loads(raw_header, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError):
        raise _fail("jws_format") from None
    if not isinstance(header, dict) or len(header) != members:
        raise _fail("jws_format")
    if header.get("alg") != ALG:
        raise _fail("jws_alg")
    if "crit" in header:
        raise _fail("jws_crit")
    return header, header.get("kid")


def _der_int(b: bytes) -> bytes:
    b = b.lstrip(b"\0")
    if not b or b[0] & 0x80:  # DER: minimal, and non-negative (a 0 byte before a high bit)
        b = b"\0" + b
    return b"\x02" + bytes((len(b),)) + b


def der_signature(sig: bytes) -> bytes:
    """DER of a 64-byte R || S (RFC 7518 3.4) as OpenSSL wants it: what
    encode_dss_signature(int(R), int(S)) gives, without the two integers (a token's hot path)."""
    body = _der_int(sig[:32]) + _der_int(sig[32:])
    return b"\x30" + bytes((len(body),)) + body  # at most 70 bytes: a one-byte length


def verify(
    token: str | bytes, keys: Mapping[str, Any], max_len: int = MAX_TOKEN
) -> tuple[dict[str, Any], bytes]:
    """Check a compact JWS against `keys` (kid -> public key or 65-byte point)."""
    if isinstance(token, str):
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise _fail("jws_format") from None
    elif isinstance(token, (bytes, bytearray, memoryview)):
        raw = bytes(token)
    else:
        raise _fail("jws_format")
    if len(raw) > max_len:
        raise _fail("too_large")
    # three parts: the two dots found, not split (the signing input is then one slice)
    dot1 = raw.find(b".")
    dot2 = raw.find(b".", dot1 + 1) if dot1 >= 0 else -1
    if dot2 < 0 or raw.find(b".", dot2 + 1) >= 0:
        raise _fail("jws_format")
    h64, p64, s64 = raw[:dot1], raw[dot1 + 1 : dot2], raw[dot2 + 1 :]
    known = _HEADERS.get(h64)
    if known is None:
        known = _header(h64)  # raises for a bad header: nothing is remembered of it
        if all(isinstance(v, str) for v in known[0].values()):  # flat: a copy is a true copy
            files.remember(_HEADERS, h64, known, HEADER_CACHE)
    header, kid = known
    if not isinstance(kid, str):
        raise _fail("unknown_key")
    try:
        key = keys[kid]  # the caller's set, asked for every token
    except KeyError:
        raise _fail("unknown_key") from None
    pub = _CHECKED.get(id(key))
    if pub is not key:  # not this very object (kept alive there, so its id is its own)
        pub = _public(key)
        if pub is key:
            files.remember(_CHECKED, id(key), key, CHECKED_CACHE)
    try:
        sig = b64u_dec(s64)
    except JoseError:
        raise _fail("bad_sig") from None
    if len(sig) != 64:
        raise _fail("bad_sig")
    try:
        pub.verify(der_signature(sig), raw[:dot2], _ECDSA)
    except InvalidSignature:
        raise _fail("bad_sig") from None
    return dict(header), b64u_dec(p64)
