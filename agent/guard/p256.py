# P-256 (secp256r1) for the agent: point decoding, ECDSA verify and sign (RFC 6979), keygen, ECDH.
# ESP32 MicroPython has no public-key crypto; this is built on the interpreter's big integers.
#
# Point arithmetic, the G table and the scalar multiplications live in guard.ec.
#
# verify(pub, digest, sig), SEC 1 v2 section 4.1.4, in order:
#   1. sig is exactly 64 bytes r||s (IEEE P1363); 0 < r < n and 0 < s < n, else False
#   2. e = digest as an integer (SHA-256 is 256 bits, no truncation)
#   3. w = s^-1, u1 = e*w, u2 = r*w (mod n)
#   4. R = u1*G + u2*Q: a signed comb over a precomputed G table, interleaved with a
#      width-4 wNAF of u2 over odd multiples of Q (one shared run of doublings); given Q's
#      own comb table (qtab), a joint comb: 58 doublings, two mixed additions per column
#   5. R is not infinity and x(R) mod n == r (compared in Jacobian form, no inversion)
# sign(d, digest): RFC 6979 section 3.2 nonce k; R = k*G with a blinded scalar k + m*n in a
#   fixed sequence of one doubling and one addition per comb column; s = k^-1 (e + r*d)
#   with k inverted under a random blinding factor.
# ecdh(d, peer): peer point fully validated; d + m*n times it in a regular signed window
#   (every window one addition, no zero digits), so the sequence of operations is fixed.
# Timing: the sequence of point operations in sign, keygen and ecdh does not depend on
# secret bits; big-integer arithmetic of MicroPython itself is not constant time.
#
# Reasons (GuardError args[0]):
#   bad_key     public point not valid (encoding, range, not on curve, infinity) or
#               private scalar outside [1, n-1]
#   bad_digest  digest is not 32 bytes
#   bad_arg     argument of the wrong type
import os

# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import GuardError
from guard.ec import N as _N  # n and p of P-256: kept once, in guard.ec (as variables here,
from guard.ec import P as _P  # expressions of them such as p - 1 are not folded into constants)
from guard.ec import comb_bytes, comb_point, dbl, inv, madd, mul, mul_g, odd_multiples, rand_scalar, to_affine

_B = const(0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B)
_COLS = const(58)  # comb columns of guard.ec
_WMASK = const(15)  # wNAF of u2 in verify: width 4, odd multiples 1Q, 3Q, 5Q, 7Q
_WHALF = const(8)
_WMOD = const(16)
_WNAF_MAX = const(258)

_wnaf = bytearray(_WNAF_MAX)


def _scalar(d):
    if isinstance(d, int):
        v = d
    elif isinstance(d, (bytes, bytearray, memoryview)) and len(d) == 32:
        v = int.from_bytes(d, "big")
    else:
        raise GuardError("bad_key")
    if v < 1 or v >= _N:
        raise GuardError("bad_key")
    return v


def _digest(h):
    if not isinstance(h, (bytes, bytearray, memoryview)) or len(h) != 32:
        raise GuardError("bad_digest")
    return int.from_bytes(h, "big")


def _on_curve(pt):
    if len(pt) != 2:
        return False
    x, y = pt
    return (
        isinstance(x, int) and isinstance(y, int) and 0 <= x < _P and 0 <= y < _P
        and not (y * y - x * x * x + 3 * x - _B) % _P
    )


def decode_point(b):
    # SEC 1 v2 2.3.4: 0x04 || X || Y or 0x02/0x03 || X; coordinates < p, on the curve
    # (cofactor 1: every point on the curve but infinity has order n)
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise GuardError("bad_key")
    n = len(b)
    if n == 65 and b[0] == 4:
        x = int.from_bytes(b[1:33], "big")
        y = int.from_bytes(b[33:65], "big")
        if not _on_curve((x, y)):
            raise GuardError("bad_key")
        return x, y
    if n == 33 and (b[0] == 2 or b[0] == 3):
        x = int.from_bytes(b[1:33], "big")
        if x >= _P:
            raise GuardError("bad_key")
        a = (x * x * x - 3 * x + _B) % _P
        y = pow(a, (_P + 1) // 4, _P)  # a square root: p = 3 mod 4
        if y * y % _P != a:
            raise GuardError("bad_key")
        if (y & 1) != (b[0] & 1):
            y = _P - y
        return x, y
    raise GuardError("bad_key")


def encode_point(x, y):
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def public_key(d):
    # 65-byte uncompressed public key of private scalar d
    X, Y, Z = mul_g(_scalar(d))
    x, y = to_affine(X, Y, Z, rand_scalar(32) % (_P - 1) + 1)
    return encode_point(x, y)


def verify(pub, digest, sig, qtab=None):
    # pub: (x, y) as decode_point returns it (checked again: on the curve), or 33/65 bytes;
    # qtab: None, or the comb table of pub (1024 bytes, the layout of guard.ec's G table,
    # built by the host and checked by the caller against its digest in the anchors)
    if not isinstance(pub, tuple):
        pub = decode_point(pub)
    elif not _on_curve(pub):
        raise GuardError("bad_key")
    e = _digest(digest)
    if not isinstance(sig, (bytes, bytearray, memoryview)) or len(sig) != 64:
        return False
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if not (0 < r < _N and 0 < s < _N):
        return False
    w = inv(s, _N)
    u1 = e * w % _N
    u2 = r * w % _N
    bb = comb_bytes(u1)
    buf = _wnaf
    i = 0
    if qtab:
        # joint comb: u2 as u1, its column of pub's table added after G's in each column
        qb = comb_bytes(u2)
    else:
        tab = odd_multiples(pub[0], pub[1], 4)
        # wNAF digits of u2 (public), stored + _WHALF
        while u2:
            d = 0
            if u2 & 1:
                d = u2 & _WMASK
                if d >= _WHALF:
                    d -= _WMOD
                u2 -= d
            buf[i] = d + _WHALF
            u2 >>= 1
            i += 1
    X, Y, Z = 0, 1, 0
    for j in range(max(i, _COLS) - 1, -1, -1):
        X, Y, Z = dbl(X, Y, Z)  # infinity (Z == 0) stays infinity; madd knows it
        if j < i:
            d = buf[j] - _WHALF
            if d:
                if d > 0:
                    X, Y, Z = madd(X, Y, Z, tab[d - 1], tab[d])
                else:
                    X, Y, Z = madd(X, Y, Z, tab[-d - 1], _P - tab[-d])
        if j < _COLS:
            X, Y, Z = madd(X, Y, Z, *comb_point(bb, j))
            if qtab:
                X, Y, Z = madd(X, Y, Z, *comb_point(qb, j, qtab))
    if not Z:
        return False
    z2 = Z * Z % _P
    # x(R) mod n == r, with x(R) = X / Z^2 in [0, p): x(R) is r or, when r + n < p, r + n
    if (X - r * z2) % _P == 0:
        return True
    return r + _N < _P and (X - (r + _N) * z2) % _P == 0


def _rfc6979(x, h1):
    # RFC 6979 3.2 steps b-h; yields candidate k in [1, n-1]
    from guard.mac import hmac_sha256  # signing only: verify does not load guard.mac

    v = b"\x01" * 32
    k = hmac_sha256(b"\x00" * 32, v + b"\x00" + x + h1)
    v = hmac_sha256(k, v)
    k = hmac_sha256(k, v + b"\x01" + x + h1)
    v = hmac_sha256(k, v)
    while True:
        v = hmac_sha256(k, v)
        c = int.from_bytes(v, "big")
        if 0 < c < _N:
            yield c
        k = hmac_sha256(k, v + b"\x00")
        v = hmac_sha256(k, v)


def sign(d, digest):
    # ECDSA with an RFC 6979 nonce -> 64 bytes r || s
    d = _scalar(d)
    e = _digest(digest)
    for k in _rfc6979(d.to_bytes(32, "big"), (e % _N).to_bytes(32, "big")):
        X, Y, Z = mul_g(k)
        zb = rand_scalar(32) % (_P - 1) + 1
        r = inv(Z * zb % _P, _P) * zb % _P
        r = X * r * r % _P % _N
        if not r:
            continue
        kb = rand_scalar(32) % (_N - 1) + 1
        s = inv(k * kb % _N, _N) * kb % _N * (e + r * d) % _N
        if s:
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def keygen(extra_entropy=b""):
    # (d, pub65): HKDF-SHA256 (RFC 5869) with os.urandom(32) as input keying material and
    # the host's entropy as salt, so neither source alone decides d; candidates (info =
    # label || counter) are rejection-sampled into [1, n-1] (no modulo bias)
    if not isinstance(extra_entropy, (bytes, bytearray, memoryview)):
        raise GuardError("bad_arg")
    from guard.mac import hkdf  # key generation only: verify does not load guard.mac

    ikm = os.urandom(32)
    ctr = 0
    while True:
        ctr += 1
        d = int.from_bytes(hkdf(extra_entropy, ikm, b"mpguard p256 keygen" + bytes((ctr,)), 32), "big")
        if 0 < d < _N:
            return d, public_key(d)


def ecdh(d, peer):
    # shared secret: x coordinate of d * peer (32 bytes); peer is validated first
    d = _scalar(d)
    x, y = decode_point(peer)
    X, Y, Z = mul(d, x, y)
    if not Z:
        raise GuardError("bad_key")
    x, _ = to_affine(X, Y, Z, rand_scalar(32) % (_P - 1) + 1)
    return x.to_bytes(32, "big")
