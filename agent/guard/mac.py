# HMAC-SHA256 (RFC 2104), HKDF-SHA256 (RFC 5869) and constant-time comparison.
#
# Reasons (GuardError args[0]):
#   bad_length  HKDF output length outside [0, 255 * 32]
#   bad_arg     argument of the wrong type
from hashlib import sha256

# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import GuardError

_BLOCK = const(64)
_HLEN = const(32)
_HKDF_MAX = const(8160)  # 255 * _HLEN


def _bytes(b):
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise GuardError("bad_arg")
    return b


def hmac_sha256(key, msg):
    key = _bytes(key)
    msg = _bytes(msg)
    if len(key) > _BLOCK:
        key = sha256(key).digest()
    pad = bytearray(_BLOCK)
    pad[: len(key)] = key
    for i in range(_BLOCK):
        pad[i] ^= 0x36
    h = sha256(pad)
    h.update(msg)
    inner = h.digest()
    for i in range(_BLOCK):
        pad[i] ^= 0x6A  # 0x36 ^ 0x5C: inner pad -> outer pad
    h = sha256(pad)
    h.update(inner)
    return h.digest()


def hkdf(salt, ikm, info, length):
    # RFC 5869 2.2 extract (salt None or empty -> HashLen zeros), 2.3 expand
    if not isinstance(length, int) or length < 0 or length > _HKDF_MAX:
        raise GuardError("bad_length")
    if not salt:
        salt = bytes(_HLEN)
    prk = hmac_sha256(salt, ikm)
    info = _bytes(info)
    out = bytearray()
    t = b""
    i = 0
    while len(out) < length:
        i += 1
        t = hmac_sha256(prk, t + info + bytes((i,)))
        out += t
    return bytes(out[:length])


def ct_eq(a, b):
    # equal contents, in time that depends only on the lengths
    a = _bytes(a)
    b = _bytes(b)
    if len(a) != len(b):
        return False
    acc = 0
    for i in range(len(a)):
        acc |= a[i] ^ b[i]
    return acc == 0
