# P-256 point arithmetic for guard.p256 (kept apart so that each module compiles in a small
# heap). Not an API of its own: guard.p256 is.
#
# Points are Jacobian (X, Y, Z) with x = X/Z^2, y = Y/Z^3; Z == 0 is the point at infinity.
# Every coordinate handed between functions is reduced into [0, p).
import os

# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)


_P = const(0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF)
_N = const(0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)
# p and n for guard.p256 (a 256-bit constant costs 80 bytes of .mpy in each module using it)
P = _P
N = _N

# Signed comb for G (docs/decisions/0002-crypto.md): _TEETH teeth, _COLS columns,
# covering _COMB_BITS = _TEETH * _COLS bits (a blinded 289-bit scalar fits).
_TEETH = const(5)
_COLS = const(58)
_COMB_BYTES = const(37)  # comb covers _TEETH * _COLS = 290 bits
_LOWMASK = const(15)  # 2**(_TEETH - 1) - 1
_BLIND_BYTES = const(4)

# Regular signed window in ecdh: width 4, digits odd in [-15, 15], 73 windows of a 290-bit scalar.
_RW = const(4)
_RWIN = const(73)

# _GTAB[64*c : 64*c+64] = x || y of (2^232 + sum_{i<4} s_i 2^(58 i)) * G, s_i = +1 if bit i
# of c is set, else -1. Regenerated with `cryptography` and compared by tests/agent/test_p256.py.
_GTAB = (
    b'\xdf\x61\xfc\xf2\x8a\x91\xfe\xe0\xef\x11\xbe\x50\x47\xc9\x25\x7e\x9e\x8b\x0e\x79\x5d\xe8\x7e\x45\xfa\x2d\x39\xb3\x46\x35\xdd\x40'
    b'\xfc\x53\x7f\x9f\x88\x1d\xaf\xc9\xb0\x78\xf5\xb6\xda\xd6\xc8\x91\x1e\x0d\xc7\x8e\xab\xe3\x87\xc4\x83\x42\xe6\x87\xd3\x74\x32\x98'
    b'\x14\x69\x88\x89\x4b\x77\xe3\x3a\x75\x81\xc8\xbf\xc2\x6d\x70\xe2\x96\xc9\x09\x3c\x72\x8f\x91\x76\x3a\xb5\x6f\xef\xc9\xf9\x5e\x32'
    b'\xe1\x86\xe9\x21\x67\x86\xb7\x51\xd4\x58\x7d\x4c\x31\x28\xec\xb8\xbb\x3d\xe2\xc2\x52\xb4\x94\xf9\x66\x18\x05\xbb\xe5\x42\x53\x86'
    b'\x39\xb9\x0d\x45\x7b\x8d\x1b\xf8\xc2\x24\xd9\xc4\xb7\x75\x8a\x39\x59\x33\x5f\xa9\x10\x09\xce\x65\x2a\xff\x9e\xaf\xea\x79\xd6\x7b'
    b'\xec\xde\x63\x34\x72\x21\x6a\x61\x19\x4f\xb2\x6b\x97\x43\xa9\x02\x79\x89\x1f\x81\x73\xc7\x67\xb6\xa2\xc6\xe6\xfe\x1e\x2c\x49\x13'
    b'\xa1\x81\xb5\xbb\xf0\x85\xa6\xd5\x4f\xc2\xd0\x97\x14\xef\x7a\xc6\x99\x86\xa4\x80\x6f\x42\x6f\xc3\x2b\x40\x50\xe1\xf4\x55\x90\x54'
    b'\xcf\x3c\xad\x73\xe5\x90\xd0\x04\x16\xbc\xdf\x48\xa0\x41\x48\xcc\x01\x06\x21\xc6\x68\xfb\xd8\xfb\x8b\x1f\x21\x1f\x75\x74\x14\xeb'
    b'\x3a\xf4\x89\x1b\x93\xec\x20\xc5\x05\xc1\x6f\x87\xd7\x06\x9c\x2d\x5d\x35\x28\x1f\xc0\x0b\x3b\x46\x26\x2e\xcc\x79\x78\x31\xc1\x0b'
    b'\x23\x1d\xfb\x5b\xb0\x52\xce\xd2\xb7\x01\xb4\x02\x64\x3c\xd0\x76\x8d\xb2\x3f\x56\x7c\xae\xc1\xfe\xe5\x57\x00\x13\xbc\xd0\x29\xdf'
    b'\x72\x8b\x5e\x86\xe5\x04\xf3\xf2\xd7\xcc\x95\x13\x88\x78\xce\x0f\x82\xab\x6c\x75\x15\x29\x0c\xd4\xc1\x36\xe5\xb9\x06\x0f\x2b\x9d'
    b'\xfa\xa9\x95\x58\x14\x49\xf3\x26\xbf\xeb\xd5\x4a\x15\xf8\xd1\xf9\x5e\xfc\x11\x03\x66\xf7\xf7\x36\x5a\x19\x9a\xe3\xc2\xf6\x17\xeb'
    b'\x89\x1d\xe2\x92\x05\x07\x97\x97\x34\x22\x9c\x3d\xc6\x09\x5f\x7d\x79\x0f\xf3\xd0\x34\xf3\x61\xde\x0c\xf1\x33\xb4\x41\x6b\x21\x02'
    b'\x99\xe4\x37\x01\x25\x0b\x95\x31\xf1\xec\xa0\x5a\x44\xd8\xdb\xe4\x1f\x6f\x6c\x2e\xa8\xbc\xfd\x30\xe0\x9b\xdf\x33\xc5\x81\x6c\x42'
    b'\xea\xd4\x6a\xfd\x67\xca\xc6\x96\x5e\x05\xdd\x4b\xc0\x93\xfd\x52\xd6\x8f\x8a\xb4\x78\xa5\xb8\x89\x5d\xee\x0d\x0d\xac\x33\x5b\xe6'
    b'\x85\x26\x57\xdc\x66\x4b\x2c\x23\xd9\x14\xfd\x0f\x3f\xb8\xb0\x8b\x95\x61\xa5\x35\x57\xed\xe5\x6a\x2b\xbc\xc1\xe7\x27\x6c\x42\x11'
    b'\x3e\x09\x32\x6c\xe9\x80\x9a\x07\x96\xd4\x42\xee\xf8\x3b\x95\xd7\x14\x0a\x34\xad\x98\x0b\xdc\x90\x74\x1c\x42\x23\x81\x04\xb0\xc5'
    b'\xb3\xc1\x49\x27\x5f\x3b\x00\x01\x0c\x2a\x1c\x06\x8c\x21\x83\x4c\x75\x85\x8f\x65\x61\x29\x3e\x5a\xda\x7e\x12\x02\x34\x35\xbd\x60'
    b'\x28\x1c\x9c\x0a\xd3\xd2\x31\x38\xd5\xce\x07\xd5\x88\x93\x77\x3f\x86\xf3\xe6\xbe\x30\xd1\x75\x68\xa3\xd0\x2c\x7d\x3f\x8b\x64\x7e'
    b'\x8a\x44\xc4\x73\x73\x30\x21\xc3\x79\x37\x8b\x21\xca\xc6\x22\x68\xdc\x02\xd3\x8b\x55\x22\x9e\x78\xcf\x13\x2b\x5b\x34\x49\x9b\x23'
    b'\xd3\xdd\x55\x24\x13\x1c\xde\x9a\x79\xf1\x4b\x50\x17\xaf\xed\xba\x3b\x92\x07\xbd\x56\x9f\x7c\x7b\x86\x97\x37\xe4\xd7\x37\xef\x0f'
    b'\xfd\x25\x3e\x5e\x78\x42\xa7\xd8\xbc\xf3\xaf\x0e\x0e\xeb\x16\x62\x8b\xed\xa9\xe4\xf4\xf6\x90\x00\x63\x66\x44\xfb\xba\xe6\x18\x99'
    b'\xb5\x8e\x2a\xef\x81\x26\xea\x66\x97\x05\xfc\x94\x5d\xd0\x39\xa9\xc9\x22\x92\x32\xbb\x37\x31\xed\x63\x1a\xd3\x87\xb8\x25\xd8\xd9'
    b'\x41\x65\x12\x27\x49\xd9\x52\x58\xc9\x27\x27\x23\x6b\xa2\x2f\x85\xe4\xe8\xcf\x27\x7f\xd0\x9d\x9f\x1b\x1d\xee\x3e\xaf\xad\x86\x7a'
    b'\x64\xa2\xcf\x9b\x29\xf2\x15\xf0\x87\x53\x26\xe6\xbe\x9d\x8c\xe6\xe3\xdf\xa8\xe3\xd7\x6d\xc9\x16\xf2\xd8\x6b\x06\x3f\x2b\xf9\x93'
    b'\x52\x84\x5e\xb4\xad\xa2\xd9\xaf\xe5\x3c\xd6\xb5\x4e\xf9\x40\x65\xe4\xc8\x7b\x58\xc6\x08\x2a\xb6\x59\x03\xc4\x84\x0f\xfe\xf6\xf1'
    b'\xf8\x61\x69\xf1\x02\x76\x05\x07\x0f\x5f\x96\xf4\x98\x82\xf4\x74\x35\x1f\x89\x75\xce\x73\xc0\x71\xef\xe2\xd0\xd0\x88\x4a\x7e\xc8'
    b'\x26\xf8\xf5\xeb\x2d\xee\xd4\x63\xd6\x29\x68\xb1\x89\x5d\x7b\xab\x2c\x0a\x26\x09\xd6\x08\xf9\x5c\xa9\x0f\x66\x39\x7e\x16\xef\x69'
    b'\xb3\xf4\xab\xf1\x64\xa7\x9a\x0c\x2e\xcd\x64\x9b\x9d\xa1\x4e\xe0\xa1\xc1\xd2\x8b\x62\x0b\xbb\xa7\x5c\x06\x7f\xde\x81\xbf\xef\x11'
    b'\xc1\x3e\x0d\x28\x0b\x08\x46\x87\x1d\xcd\xb1\x89\xdb\x30\x09\x92\x3c\xf7\x5e\x9c\x0a\x03\xaf\xf3\x72\x65\xa7\x39\x4a\x73\x1f\x36'
    b'\x49\xaf\x5d\x5f\x6d\xe1\xa5\x04\x04\x41\xa7\x1b\x20\x9e\xd6\xb8\x2f\xc7\x3d\x20\xc9\x1c\x9d\x6c\x41\x00\xf6\x14\x6f\x55\x59\xf7'
    b'\x40\x10\xc6\x0b\x55\xdd\x81\xf2\x36\xc9\xf4\x52\xba\xde\xec\xd8\xf6\xec\x0e\xc0\x0a\xf6\x04\x64\xc6\x12\xbd\x84\x5f\x61\x82\x58'
)


def inv(a, m):
    # a^-1 mod m for 0 < a < m, m prime (extended Euclid; callers blind secret inputs)
    x0, x1, r0, r1 = 0, 1, m, a
    while r1:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        x0, x1 = x1, x0 - q * x1
    return x0 % m


def dbl(X, Y, Z):
    # dbl-2001-b (a = -3): 3M + 5S; infinity (Z == 0) stays infinity
    d = Z * Z % _P
    g = Y * Y % _P
    b = X * g % _P
    a = 3 * (X - d) * (X + d) % _P
    X3 = (a * a - 8 * b) % _P
    return X3, (a * (4 * b - X3) - 8 * g * g) % _P, 2 * Y * Z % _P


def madd(X1, Y1, Z1, x2, y2):
    # (X1, Y1, Z1) + affine (x2, y2); handles infinity, P == Q and P == -Q
    if not Z1:
        return x2, y2, 1
    zz = Z1 * Z1 % _P
    h = x2 * zz % _P - X1
    r = y2 * Z1 * zz % _P - Y1
    if not h:
        if r:
            return 0, 1, 0
        return dbl(X1, Y1, Z1)
    hh = h * h % _P
    hhh = h * hh % _P
    v = X1 * hh % _P
    X3 = (r * r - hhh - 2 * v) % _P
    return X3, (r * (v - X3) - Y1 * hhh) % _P, Z1 * h % _P


def to_affine(X, Y, Z, blind):
    # affine (x, y); `blind` in [1, p-1] masks Z in the inversion
    zi = inv(Z * blind % _P, _P) * blind % _P
    z2 = zi * zi % _P
    return X * z2 % _P, Y * z2 * zi % _P


def odd_multiples(x, y, count):
    # [x1, y1, x3, y3, ...] affine: P, 3P, ..., (2*count-1)P with one batch inversion
    # 2P made affine (one inversion more) so that each next one is a mixed addition (a
    # full Jacobian addition would cost 176 bytes of .mpy; P is public where this is used;
    # mypy does not see that dbl gives 3 values)
    x2, y2 = to_affine(*dbl(x, y, 1), 1)  # type: ignore[call-arg]
    pts = [(x, y, 1)]
    for _ in range(count - 1):
        X, Y, Z = pts[-1]
        pts.append(madd(X, Y, Z, x2, y2))
    acc = [1] * count  # acc[i] = Z_0 * ... * Z_(i-1)
    t = 1
    for i in range(count):
        acc[i] = t
        t = t * pts[i][2] % _P
    t = inv(t, _P)
    out = [0] * (2 * count)
    for i in range(count - 1, -1, -1):
        X, Y, Z = pts[i]
        zi = t * acc[i] % _P
        t = t * Z % _P
        z2 = zi * zi % _P
        out[2 * i] = X * z2 % _P
        out[2 * i + 1] = Y * z2 * zi % _P
    return out


def comb_bytes(k):
    # 0 <= k < 2^289; k even is made odd as k + n (the same multiple of a point of order n)
    if not k & 1:
        k += _N
    # k odd, 0 < k < 2^290 -> recoded bits b with k = sum (2 b_i - 1) 2^i: the bits of
    # (k + 2^290 - 1) / 2 = (k >> 1) + 2^289, i.e. k >> 1 with bit 289 (byte 36, bit 1) set
    # (a 290-bit constant would cost 90 bytes of .mpy)
    b = bytearray((k >> 1).to_bytes(_COMB_BYTES, "little"))
    b[36] |= 2
    return b


def comb_point(bb, j, t=_GTAB):
    # affine point of comb column j of recoded scalar bytes `bb` (little endian): the entry
    # of table t (_GTAB, or one of the same layout for another point) the low teeth index;
    # with the top tooth -1, the negation of the entry with every sign flipped
    c = 0
    for i in range(_TEETH):
        c |= ((bb[j >> 3] >> (j & 7)) & 1) << i
        j += _COLS
    top = c >> (_TEETH - 1)
    c = ((c ^ (_LOWMASK * (1 - top))) & _LOWMASK) << 6
    x = int.from_bytes(t[c : c + 32], "big")
    y = int.from_bytes(t[c + 32 : c + 64], "big")
    if not top:
        y = _P - y
    return x, y


def rand_scalar(nbytes):
    return int.from_bytes(os.urandom(nbytes), "big")


def blind(k):
    # k + m*n, made odd by adding n once more when even (n is odd); same point
    k = k + (rand_scalar(_BLIND_BYTES) | 1) * _N
    return k + _N * (1 - (k & 1))


def mul_g(k):
    # k*G, fixed sequence: one doubling and one addition per column
    bb = comb_bytes(blind(k))
    X, Y = comb_point(bb, _COLS - 1)
    Z = 1
    for j in range(_COLS - 2, -1, -1):
        X, Y, Z = madd(*dbl(X, Y, Z), *comb_point(bb, j))
    return X, Y, Z


def mul(k, x, y):
    # k*(x, y), regular signed window of width 4 on a blinded odd scalar
    tab = odd_multiples(x, y, 8)
    k = blind(k)
    digs = bytearray(_RWIN)
    for i in range(_RWIN - 1):
        d = (k & 31) - 16  # odd, in [-15, 15]
        k = (k - d) >> _RW
        digs[i] = d + 16
    digs[_RWIN - 1] = k + 16  # remaining k is odd, in [1, 15]
    d = k >> 1
    X, Y, Z = tab[2 * d], tab[2 * d + 1], 1
    for i in range(_RWIN - 2, -1, -1):
        for _ in range(_RW):
            X, Y, Z = dbl(X, Y, Z)
        d = digs[i] - 16
        neg = d < 0
        d = (-d if neg else d) >> 1
        y = tab[2 * d + 1]
        if neg:
            y = _P - y
        X, Y, Z = madd(X, Y, Z, tab[2 * d], y)
    return X, Y, Z
