# A tiny DER (X.690) writer and reader: what the identity needs to build a PKCS#10 request
# and read the certificate the host returns. Definite lengths of at most 2 bytes, minimal
# encodings only; anything else is refused, never guessed.
#
# certificate(der) reads the fields of an X.509 certificate (RFC 5280 4.1) the identity checks.
#
# Reasons (GuardError args[0]):
#   bad_der   truncated, indefinite or non-minimal length, wrong tag, trailing bytes
#   bad_cert  a certificate not signed ecdsa-with-SHA256
# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import GuardError

# Tags (guard.identity has its own copies of those it writes: a const is not importable)
_SEQ = const(0x30)
_INT = const(0x02)
_BITS = const(0x03)
# AlgorithmIdentifier ecdsa-with-SHA256 (also in guard.identity)
_ECDSA_SHA256 = const(b"\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02")


def tlv(tag, body):
    n = len(body)
    if n < 0x80:
        h = bytes((tag, n))
    elif n < 0x100:
        h = bytes((tag, 0x81, n))
    else:
        h = bytes((tag, 0x82, n >> 8, n & 0xFF))
    return h + body


def seq(*parts):
    return tlv(_SEQ, b"".join(parts))


def uint(b):
    # a non-negative INTEGER from big-endian bytes: no leading zeros, 0x00 before a high bit
    i = 0
    while i < len(b) - 1 and not b[i]:
        i += 1
    b = b[i:]
    if b[0] & 0x80:
        b = b"\x00" + b
    return tlv(_INT, b)


def read(buf, pos, end, tag=None):
    # (tag, start, stop) of the element at buf[pos:end]: its contents are buf[start:stop]
    if pos + 2 > end:
        raise GuardError("bad_der")
    t = buf[pos]
    if tag is not None and t != tag:
        raise GuardError("bad_der")
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k < 1 or k > 2 or pos + k > end:
            raise GuardError("bad_der")
        n = int.from_bytes(buf[pos : pos + k], "big")
        if n < 0x80 or (k == 2 and n < 0x100):
            raise GuardError("bad_der")
        pos += k
    if pos + n > end:
        raise GuardError("bad_der")
    return t, pos, pos + n


def uint_bytes(buf, start, stop, size):
    # the value of a non-negative INTEGER's contents as `size` big-endian bytes
    b = bytes(buf[start:stop])
    if not b or b[0] & 0x80 or (len(b) > 1 and not b[0] and not b[1] & 0x80):
        raise GuardError("bad_der")
    if b[0] == 0:
        b = b[1:]
    if len(b) > size:
        raise GuardError("bad_der")
    return bytes(size - len(b)) + b


def certificate(der):
    # (tbs, issuer, subject, spki, sig64) of an X.509 certificate (RFC 5280 4.1), parsed strictly
    r = read
    n = len(der)
    _, s, e = r(der, 0, n, _SEQ)
    if e != n:
        raise GuardError("bad_der")
    _, ts, te = r(der, s, e, _SEQ)
    tbs = der[s:te]
    p = ts
    t, _, q = r(der, p, te)
    if t == 0xA0:  # [0] EXPLICIT version
        p = q
    p = r(der, p, te, _INT)[2]  # serialNumber
    p = r(der, p, te, _SEQ)[2]  # signature
    _, _, q = r(der, p, te, _SEQ)
    issuer = der[p:q]
    p = r(der, q, te, _SEQ)[2]  # validity
    _, _, q = r(der, p, te, _SEQ)
    subject = der[p:q]
    _, _, p = r(der, q, te, _SEQ)
    spki = der[q:p]
    _, a, b = r(der, te, e, _SEQ)
    if der[te:b] != _ECDSA_SHA256:
        raise GuardError("bad_cert", "algorithm")
    _, a, b = r(der, b, e, _BITS)
    if b != e or a >= b or der[a] != 0:
        raise GuardError("bad_der")
    _, a, b = r(der, a + 1, b, _SEQ)
    _, x, y = r(der, a, b, _INT)
    sig = uint_bytes(der, x, y, 32)
    _, x, y = r(der, y, b, _INT)
    if y != b:
        raise GuardError("bad_der")
    return tbs, issuer, subject, spki, sig + uint_bytes(der, x, y, 32)
