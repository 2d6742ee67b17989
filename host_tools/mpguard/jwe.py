"""JWE compact serialization (RFC 7516) with ECDH-ES and A128CBC-HS256 only, on `cryptography`:
the host twin of the board's `guard.rotate._jwe` (secrets sent to a board's identity key).

encrypt(plaintext, board_key) makes (RFC 7516 5.1, RFC 7518 4.6 and 5.2.2.1):
  1. an ephemeral P-256 key; Z = ECDH(ephemeral, board key)
  2. CEK = Concat KDF (NIST SP 800-56A 5.8.1) over Z with AlgorithmID "A128CBC-HS256",
     empty apu/apv, keydatalen 256 (direct key agreement: the encrypted key part is empty)
  3. protected header {"alg": "ECDH-ES", "enc": "A128CBC-HS256", "epk": ..., "kid": the board
     key's RFC 7638 thumbprint}, compact JSON; AAD = its base64url
  4. AES-128-CBC with a random IV and PKCS#7 padding; tag = HMAC-SHA256(MAC key, AAD || IV ||
     ciphertext || AL)[:16]
decrypt(token, private_key) checks the same steps in the board's order (tests, and a host that
holds a key); each refusal is a JoseError with the board's reason.
"""

from __future__ import annotations

import hmac
import json
import os
from hashlib import sha256
from typing import Any

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives import hmac as chmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import keys
from .errors import JoseError, KeyStoreError
from .files import b64u_dec, b64u_enc

ALG = "ECDH-ES"
ENC = "A128CBC-HS256"
MAX_VALUE = 384  # the board's guard.rotate._MAX_VALUE: bytes of one secret


def _concat_kdf(z: bytes, apu: bytes = b"", apv: bytes = b"") -> bytes:
    # RFC 7518 4.6.2: one SHA-256 round, counter 1, keydatalen 256 bits
    def field(b: bytes) -> bytes:
        return len(b).to_bytes(4, "big") + b

    return sha256(b"\0\0\0\1" + z + field(ENC.encode()) + field(apu) + field(apv)
                  + (256).to_bytes(4, "big")).digest()


def _tag(mac_key: bytes, aad: bytes, iv: bytes, ct: bytes) -> bytes:
    h = chmac.HMAC(mac_key, hashes.SHA256())
    h.update(aad + iv + ct + (len(aad) * 8).to_bytes(8, "big"))
    return h.finalize()[:16]


def encrypt(plaintext: bytes, board_key: Any, *, kid: bool = True) -> str:
    """A compact JWE of `plaintext` to a P-256 public key (key object or 65-byte point)."""
    if len(plaintext) > MAX_VALUE:
        raise JoseError("secret_size")
    try:
        pub = keys.p256_public(board_key)
    except KeyStoreError:
        raise JoseError("bad_key") from None
    eph = ec.generate_private_key(ec.SECP256R1())
    z = eph.exchange(ec.ECDH(), pub)
    n = eph.public_key().public_numbers()
    hdr: dict[str, Any] = {"alg": ALG, "enc": ENC, "epk": {
        "crv": "P-256", "kty": "EC", "x": b64u_enc(n.x.to_bytes(32, "big")),
        "y": b64u_enc(n.y.to_bytes(32, "big"))}}
    if kid:
        hdr["kid"] = keys.thumbprint(pub)
    aad = b64u_enc(json.dumps(hdr, sort_keys=True, separators=(",", ":")).encode()).encode()
    cek = _concat_kdf(z)
    iv = os.urandom(16)
    p = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(cek[16:]), modes.CBC(iv)).encryptor()
    ct = enc.update(p.update(plaintext) + p.finalize()) + enc.finalize()
    return ".".join((aad.decode(), "", b64u_enc(iv), b64u_enc(ct), b64u_enc(_tag(cek[:16], aad, iv, ct))))


def decrypt(token: str, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The plaintext of a compact JWE made for `private_key` (ECDH-ES, A128CBC-HS256 only)."""
    parts = token.split(".")
    if len(parts) != 5 or parts[1]:
        raise JoseError("bad_jwe")
    try:
        hdr = json.loads(b64u_dec(parts[0]))
        iv, ct, tag = (b64u_dec(p) for p in parts[2:])
        epk = hdr["epk"]
        point = b"\x04" + b64u_dec(epk["x"]) + b64u_dec(epk["y"])
    except (ValueError, KeyError, TypeError):
        raise JoseError("bad_jwe") from None
    if (hdr.get("alg") != ALG or hdr.get("enc") != ENC or "zip" in hdr or "crit" in hdr
            or len(iv) != 16 or len(tag) != 16):
        raise JoseError("bad_jwe")
    if hdr.get("kid", keys.thumbprint(private_key)) != keys.thumbprint(private_key):
        raise JoseError("wrong_board")
    try:
        peer = keys.public_from_bytes(point)
    except KeyStoreError:
        raise JoseError("bad_key") from None
    cek = _concat_kdf(private_key.exchange(ec.ECDH(), peer),
                      b64u_dec(hdr.get("apu", "")), b64u_dec(hdr.get("apv", "")))
    aad = parts[0].encode()
    if not ct or len(ct) % 16 or not hmac.compare_digest(_tag(cek[:16], aad, iv, ct), tag):
        raise JoseError("bad_tag")
    dec = Cipher(algorithms.AES(cek[16:]), modes.CBC(iv)).decryptor()
    u = padding.PKCS7(128).unpadder()
    try:
        return u.update(dec.update(ct) + dec.finalize()) + u.finalize()
    except ValueError:
        raise JoseError("bad_tag") from None
