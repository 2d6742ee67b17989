"""Per-anchor comb tables: the agent verifies a release signature about twice as fast with one.

guard.p256.verify computes u1*G + u2*Q. G has a precomputed signed comb table in the agent
(guard.ec._GTAB); with the same table for an anchor's public key Q, both scalars go by one
joint comb (58 doublings instead of about 257). docs/decisions/0020-anchor-tables.md.

Table of a point Q (1024 bytes, the layout of guard.ec._GTAB): 16 affine entries of 64 bytes,
x || y big endian; entry c is (2^232 + sum_{i<4} s_i 2^(58 i)) * Q with s_i = +1 if bit i of c
is set, else -1.

On the board the table of anchor `kid` is /mpguard/tab/<kid>, and anchors.json carries
"tabs": {kid: base64url(SHA-256(table))}: the eFuse pin over anchors.json covers the tables
too. guard.jws uses a table only when its digest matches, and refuses the signature
(`bad_table`) when it does not. Agents that do not know "tabs" ignore it (generic path).

Tables are built here in Python integers and every entry is cross-checked against
`cryptography` (ECDH gives x(m*Q) and x((m+1)*Q), which also fixes the sign of y).
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from .files import b64u_dec, b64u_enc

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
TEETH, COLS = 5, 58
TAB_LEN = 64 << (TEETH - 1)
TAB_DIR = "/mpguard/tab"

Point = tuple[int, int] | None  # affine; None is infinity


def _add(a: Point, b: Point) -> Point:
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0]:
        if (a[1] + b[1]) % P == 0:
            return None
        lam = 3 * (a[0] * a[0] - 1) * pow(2 * a[1], -1, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return x, (lam * (a[0] - x) - a[1]) % P


def _neg(a: Point) -> Point:
    return None if a is None else (a[0], (P - a[1]) % P)


def _entries(q: Point) -> list[Point]:
    """The table's points: from the teeth's points T_i = 2^(58 i) Q, entry c is
    T_4 + sum_{i<4} (T_i if bit i of c is set else -T_i)."""
    teeth = [q]
    for k in range(1, COLS * (TEETH - 1) + 1):
        q = _add(q, q)
        if k % COLS == 0:
            teeth.append(q)
    out = []
    for c in range(1 << (TEETH - 1)):
        e = teeth[TEETH - 1]
        for i in range(TEETH - 1):
            e = _add(e, teeth[i] if c >> i & 1 else _neg(teeth[i]))
        out.append(e)
    return out


def multipliers() -> list[int]:
    """The scalar of each table entry, in table order (mod n)."""
    out = []
    for c in range(1 << (TEETH - 1)):
        m = 1 << (COLS * (TEETH - 1))
        for i in range(TEETH - 1):
            m += (1 if c >> i & 1 else -1) << (COLS * i)
        out.append(m % N)
    return out


def _x_of(m: int, pub: ec.EllipticCurvePublicKey) -> int:
    return int.from_bytes(ec.derive_private_key(m, ec.SECP256R1()).exchange(ec.ECDH(), pub), "big")


def table(pub65: bytes) -> bytes:
    """The comb table of the uncompressed P-256 public key `pub65` (ValueError if invalid)."""
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(pub65))
    nums = pub.public_numbers()
    q = (nums.x, nums.y)
    out = bytearray()
    for m, e in zip(multipliers(), _entries(q), strict=True):
        if e is None or (e[1] * e[1] - e[0] ** 3 + 3 * e[0] - B) % P:
            raise ValueError("comb table: entry not on the curve")
        # cross-check with cryptography's own arithmetic: x(mQ) and x((m+1)Q) (the second
        # tells mQ from -mQ, which share x)
        e1 = _add(e, q)
        if _x_of(m, pub) != e[0] or e1 is None or _x_of((m + 1) % N, pub) != e1[0]:
            raise ValueError("comb table: entry disagrees with cryptography")
        out += e[0].to_bytes(32, "big") + e[1].to_bytes(32, "big")
    return bytes(out)


def g_table() -> bytes:
    """The table of the generator, as guard.ec._GTAB holds it."""
    return table(b"\x04" + GX.to_bytes(32, "big") + GY.to_bytes(32, "big"))


def digest(tab: bytes) -> str:
    """What anchors.json "tabs" holds for a table: base64url(SHA-256)."""
    return b64u_enc(hashlib.sha256(tab).digest())


def path(kid: str) -> str:
    return f"{TAB_DIR}/{kid}"


def with_tables(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The anchors document a board holds, with "tabs" for its release keys ("keys"), and
    the table files (board path -> bytes). A key that is not a valid point gets no table
    (the agent refuses it anyway); a document without keys is returned as it is."""
    out = {k: v for k, v in doc.items() if k != "tabs"}
    files: dict[str, bytes] = {}
    tabs = {}
    for kid, v in sorted(dict(doc.get("keys") or {}).items()):
        if not all(ch.isalnum() or ch in "-_" for ch in kid):
            continue  # only a plain file name (kids are base64url thumbprints)
        try:
            t = table(b64u_dec(v))
        except (ValueError, TypeError):
            continue
        files[path(kid)] = t
        tabs[kid] = digest(t)
    if tabs:
        out["tabs"] = tabs
    return out, files
