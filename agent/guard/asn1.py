# A tiny DER (X.690) writer and reader: what the identity needs to build a PKCS#10 request
# and read the certificate the host returns. Definite lengths of at most 2 bytes, minimal
# encodings only; anything else is refused, never guessed.
#
# Reasons (GuardError args[0]):
#   bad_der  truncated, indefinite or non-minimal length, wrong tag, trailing bytes
from micropython import const

from guard import GuardError

SEQ = const(0x30)
SET = const(0x31)
INT = const(0x02)
BITS = const(0x03)
OCTETS = const(0x04)
OID = const(0x06)
UTF8 = const(0x0C)


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
    return tlv(SEQ, b"".join(parts))


def uint(b):
    # a non-negative INTEGER from big-endian bytes: no leading zeros, 0x00 before a high bit
    i = 0
    while i < len(b) - 1 and not b[i]:
        i += 1
    b = b[i:]
    if b[0] & 0x80:
        b = b"\x00" + b
    return tlv(INT, b)


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
