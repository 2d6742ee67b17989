"""guard.mac on MicroPython, against CPython's hmac and `cryptography`'s HKDF."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CASES = [
    (b"", b""),
    (b"key", b"The quick brown fox jumps over the lazy dog"),
    (b"k" * 64, b"exactly one block of key"),
    (b"K" * 65, b"key longer than a block is hashed first"),
    (bytes(range(200)), bytes(range(256)) * 3),
]


def test_hmac_sha256_matches_cpython(mp):
    code = """
import binascii
from guard.mac import hmac_sha256
OUT([hmac_sha256(binascii.unhexlify(k), binascii.unhexlify(m)).hex() for k, m in IN])
"""
    got = mp.out(code, [(k.hex(), m.hex()) for k, m in CASES])
    assert got == [hmac.new(k, m, hashlib.sha256).hexdigest() for k, m in CASES]


def test_hkdf_matches_cryptography(mp):
    cases = [
        (b"salt", b"input key material", b"info", 42),
        (b"", b"ikm", b"", 32),  # empty salt: HashLen zero bytes (RFC 5869 2.2)
        (b"s" * 80, bytes(range(80)), b"ctx" * 10, 255 * 32),
        (b"x", b"y", b"z", 0),
    ]
    code = """
import binascii, hashlib
from guard.mac import hkdf
res = []
for s, k, i, n in IN:
    out = hkdf(binascii.unhexlify(s), binascii.unhexlify(k), binascii.unhexlify(i), n)
    res.append([len(out), hashlib.sha256(out).digest().hex()])
OUT(res)
"""
    got = mp.out(code, [(s.hex(), k.hex(), i.hex(), n) for s, k, i, n in cases])
    for (s, k, i, n), g in zip(cases, got, strict=True):
        ref = HKDF(algorithm=hashes.SHA256(), length=n, salt=s or None, info=i).derive(k) if n else b""
        assert g == [n, hashlib.sha256(ref).hexdigest()]


def test_hkdf_bad_length_and_ct_eq(mp):
    code = """
from guard import GuardError
from guard.mac import hkdf, ct_eq
res = []
for n in (-1, 255 * 32 + 1, 'x'):
    try:
        hkdf(b's', b'k', b'i', n)
        res.append('accepted')
    except GuardError as e:
        res.append(e.args[0])
res.append([ct_eq(b'abc', b'abc'), ct_eq(b'abc', b'abd'), ct_eq(b'abc', b'ab'), ct_eq(b'', b''),
            ct_eq(bytearray(b'\\x00\\x80'), memoryview(b'\\x00\\x80')), ct_eq(b'\\x80', b'\\x00')])
try:
    ct_eq('abc', b'abc')
    res.append('accepted')
except GuardError as e:
    res.append(e.args[0])
OUT(res)
"""
    assert mp.out(code) == [
        "bad_length",
        "bad_length",
        "bad_length",
        [True, False, False, True, True, False],
        "bad_arg",
    ]
