"""guard.p256 on the MicroPython unix port: Wycheproof, RFC 6979, point validation, ECDH.

Wycheproof cases are streamed to one MicroPython process, one compact JSON line per case on
stdin, so the 64K heap never holds the whole file; every result is compared on the host.
"""

from __future__ import annotations

import hashlib
import json
import re

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from mpguard import anchortab
from mpguard.agent import package as agentpkg

N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF

# RFC 6979 appendix A.2.5: P-256, SHA-256 (key pair and the two messages of the RFC).
RFC6979_X = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
RFC6979_UX = 0x60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6
RFC6979_UY = 0x7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299
RFC6979_SHA256 = {
    "sample": (
        0xA6E3C57DD01ABE90086538398355DD4C3B17AA873382B0F24D6129493D8AAD60,
        0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
        0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8,
    ),
    "test": (
        0xD16B6AE827F17175E040871A1C7EC3500192C4C92677336EC2537ACAEE0008E0,
        0xF1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367,
        0x019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083,
    ),
}

_ECDSA_DEVICE = """
import sys, hashlib, binascii
from guard import GuardError
from guard import p256
key = None
while True:
    line = sys.stdin.readline()
    if not line:
        break
    c = json.loads(line)
    if 'key' in c:
        key = p256.decode_point(binascii.unhexlify(c['key']))
        continue
    h = hashlib.sha256(binascii.unhexlify(c['msg'])).digest()
    OUT([c['id'], p256.verify(key, h, binascii.unhexlify(c['sig']))])
"""
_ECDSA_DEVICE = "import json\n" + _ECDSA_DEVICE

# the same with the key's comb table built on the host (mpguard.anchortab): the joint comb
_ECDSA_TAB_DEVICE = _ECDSA_DEVICE.replace(
    "continue", "tab = binascii.unhexlify(c['tab'])\n        continue"
).replace("binascii.unhexlify(c['sig'])", "binascii.unhexlify(c['sig']), tab")

_ECDH_DEVICE = """
import sys, json, binascii
from guard import GuardError
from guard import p256
while True:
    line = sys.stdin.readline()
    if not line:
        break
    c = json.loads(line)
    try:
        OUT([c['id'], binascii.hexlify(p256.ecdh(int(c['d'], 16), binascii.unhexlify(c['pub']))).decode()])
    except GuardError as e:
        OUT([c['id'], '!' + e.args[0]])
"""


def _lines(rows):
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()


def test_wycheproof_ecdsa_p1363_every_case(mp, vectors_dir):
    doc = json.loads((vectors_dir / "wycheproof" / "ecdsa_secp256r1_sha256_p1363_test.json").read_text())
    rows, expected = [], {}
    for g in doc["testGroups"]:
        assert g["sha"] == "SHA-256" and g["publicKey"]["curve"] == "secp256r1"
        rows.append({"key": g["publicKey"]["uncompressed"]})
        for t in g["tests"]:
            rows.append({"id": t["tcId"], "msg": t["msg"], "sig": t["sig"]})
            expected[t["tcId"]] = t["result"]
    assert len(expected) == doc["numberOfTests"]
    assert "acceptable" not in expected.values()  # would need a policy decision
    res = mp.run(_ECDSA_DEVICE, stdin=_lines(rows))
    got = dict(res.outputs)
    assert set(got) == set(expected)
    wrong = {i: (expected[i], got[i]) for i in expected if got[i] != (expected[i] == "valid")}
    assert not wrong, f"cases that disagree with Wycheproof: {wrong}"
    assert sum(got.values()) == sum(1 for r in expected.values() if r == "valid") > 50


def test_wycheproof_ecdsa_every_case_with_a_table(mp, vectors_dir):
    # every case again by the joint comb over the key's own table (mpguard.anchortab)
    doc = json.loads((vectors_dir / "wycheproof" / "ecdsa_secp256r1_sha256_p1363_test.json").read_text())
    rows, expected = [], {}
    for g in doc["testGroups"]:
        key = bytes.fromhex(g["publicKey"]["uncompressed"])
        rows.append({"key": key.hex(), "tab": anchortab.table(key).hex()})
        for t in g["tests"]:
            rows.append({"id": t["tcId"], "msg": t["msg"], "sig": t["sig"]})
            expected[t["tcId"]] = t["result"] == "valid"
    assert "_ECDSA_DEVICE" not in _ECDSA_TAB_DEVICE and ", tab)" in _ECDSA_TAB_DEVICE
    got = dict(mp.run(_ECDSA_TAB_DEVICE, stdin=_lines(rows)).outputs)
    assert set(got) == set(expected)
    wrong = {i: (expected[i], got[i]) for i in expected if got[i] != expected[i]}
    assert not wrong, f"cases that disagree with Wycheproof (table path): {wrong}"
    assert sum(got.values()) > 50


def test_table_of_another_key_verifies_nothing(mp):
    # a valid signature by key A, checked against A with B's table: the table decides the
    # point, so it fails; with A's own table (and with none) it verifies
    a = ec.generate_private_key(ec.SECP256R1())
    b = ec.generate_private_key(ec.SECP256R1())
    pa = a.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    pb = b.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    rows = []
    for i in range(8):
        msg = b"message %d" % i
        r, s = decode_dss_signature(a.sign(msg, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        rows.append([hashlib.sha256(msg).hexdigest(), sig.hex()])
    code = f"""
import binascii
from guard import p256
q = p256.decode_point(binascii.unhexlify('{pa.hex()}'))
ta = binascii.unhexlify('{anchortab.table(pa).hex()}')
tb = binascii.unhexlify('{anchortab.table(pb).hex()}')
for h, s in {rows!r}:
    h = binascii.unhexlify(h)
    s = binascii.unhexlify(s)
    OUT([p256.verify(q, h, s), p256.verify(q, h, s, ta), p256.verify(q, h, s, tb)])
"""
    assert mp.run(code).outputs == [[True, True, False]] * 8


def test_host_table_of_g_is_the_agents(mp):
    # mpguard.anchortab (host, cross-checked with cryptography) builds guard.ec's own table
    assert bytes.fromhex(mp.out("from guard import ec\nOUT(ec._GTAB.hex())")) == anchortab.g_table()
    assert anchortab.g_table() == _comb_table()  # and cryptography's, entry by entry
    assert len(anchortab.g_table()) == anchortab.TAB_LEN == 1024


def test_wycheproof_ecdh_every_case(mp, vectors_dir):
    doc = json.loads((vectors_dir / "wycheproof" / "ecdh_secp256r1_ecpoint_test.json").read_text())
    rows, cases = [], {}
    for g in doc["testGroups"]:
        assert g["curve"] == "secp256r1" and g["encoding"] == "ecpoint"
        for t in g["tests"]:
            rows.append({"id": t["tcId"], "d": t["private"], "pub": t["public"]})
            cases[t["tcId"]] = t
    assert len(cases) == doc["numberOfTests"]
    res = mp.run(_ECDH_DEVICE, stdin=_lines(rows))
    got = dict(res.outputs)
    assert set(got) == set(cases)
    wrong = {}
    for i, t in cases.items():
        if t["result"] == "invalid":
            ok = got[i] == "!bad_key"
        else:  # valid, or "acceptable" (a compressed point, which we support)
            ok = got[i] == t["shared"]
        if not ok:
            wrong[i] = (t["result"], t["comment"], got[i])
    assert not wrong, f"cases that disagree with Wycheproof: {wrong}"


def test_rfc6979_a25_nonces_and_signatures(mp):
    code = """
import hashlib
from guard import p256
d = IN['d']
out = {}
for m in IN['msgs']:
    h = hashlib.sha256(m.encode()).digest()
    k = next(p256._rfc6979(d.to_bytes(32, 'big'), h))
    out[m] = [k, p256.sign(d, h).hex()]
OUT([p256.public_key(d).hex(), out])
"""
    pub, out = mp.out(code, {"d": RFC6979_X, "msgs": list(RFC6979_SHA256)})
    assert pub == "04" + f"{RFC6979_UX:064x}{RFC6979_UY:064x}"
    for m, (k, r, s) in RFC6979_SHA256.items():
        assert out[m][0] == k, m
        assert out[m][1] == f"{r:064x}{s:064x}", m
    # cryptography's deterministic signing is an independent cross-check of the same values
    key = ec.derive_private_key(RFC6979_X, ec.SECP256R1())
    for m, (_, r, s) in RFC6979_SHA256.items():
        der = key.sign(m.encode(), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        assert decode_dss_signature(der) == (r, s)


def test_signatures_match_cryptography_byte_for_byte(mp):
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
    msgs = [b"", b"a", b"mpguard" * 10, bytes(range(100))]
    code = """
import hashlib, binascii
from guard import p256
res = []
for d, m in IN:
    res.append(p256.sign(int(d, 16), hashlib.sha256(binascii.unhexlify(m)).digest()).hex())
OUT(res)
"""
    cases = [(f"{k.private_numbers().private_value:x}", m.hex()) for k in keys for m in msgs]
    sigs = mp.out(code, cases)
    i = 0
    for k in keys:
        for m in msgs:
            der = k.sign(m, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
            r, s = decode_dss_signature(der)
            assert sigs[i] == f"{r:064x}{s:064x}"
            i += 1


def test_host_signatures_verify_on_device_and_tampering_is_rejected(mp):
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    msg = b"firmware manifest"
    r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    code = """
import hashlib, binascii
from guard import p256
q = p256.decode_point(binascii.unhexlify(IN['pub']))
sig = binascii.unhexlify(IN['sig'])
h = hashlib.sha256(IN['msg'].encode()).digest()
res = [p256.verify(q, h, sig), p256.verify(binascii.unhexlify(IN['pub']), h, sig)]
for i in range(64):
    bad = bytearray(sig)
    bad[i] ^= 1 << (i % 8)
    res.append(p256.verify(q, h, bad))
res.append(p256.verify(q, hashlib.sha256(b'other').digest(), sig))
res.append(p256.verify(q, h, sig[:63]))
res.append(p256.verify(q, h, sig + b'\\x00'))
OUT(res)
"""
    res = mp.out(code, {"pub": pub.hex(), "sig": sig.hex(), "msg": msg.decode()})
    assert res[:2] == [True, True]
    assert res[2:] == [False] * (len(res) - 2)


def _pub(key):
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def test_keygen_produces_a_key_that_cryptography_agrees_with(mp):
    code = """
import hashlib
from guard import p256
d, pub = p256.keygen(b'host entropy')
d2, pub2 = p256.keygen(b'host entropy')
sig = p256.sign(d, hashlib.sha256(b'hello').digest())
OUT([hex(d), pub.hex(), sig.hex(), d != d2, pub != pub2])
"""
    d, pub, sig, distinct_d, distinct_pub = mp.out(code)
    assert distinct_d and distinct_pub
    key = ec.derive_private_key(int(d, 16), ec.SECP256R1())
    assert _pub(key).hex() == pub
    sig = bytes.fromhex(sig)
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    key.public_key().verify(der, b"hello", ec.ECDSA(hashes.SHA256()))


def test_ecdh_agrees_with_cryptography_both_encodings(mp):
    mine = ec.generate_private_key(ec.SECP256R1())
    peer = ec.generate_private_key(ec.SECP256R1())
    peer_pub = peer.public_key()
    unc = peer_pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    comp = peer_pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    code = """
import binascii
from guard import p256
d = int(IN['d'], 16)
OUT([p256.ecdh(d, binascii.unhexlify(IN['u'])).hex(), p256.ecdh(d, binascii.unhexlify(IN['c'])).hex()])
"""
    got = mp.out(code, {"d": f"{mine.private_numbers().private_value:x}", "u": unc.hex(), "c": comp.hex()})
    shared = mine.exchange(ec.ECDH(), peer_pub).hex()
    assert got == [shared, shared]


B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


def _x_without_point() -> int:
    x = 1
    while pow((x**3 - 3 * x + B) % P, (P - 1) // 2, P) != P - 1:  # Euler: not a square
        x += 1
    return x


def _cubic_roots(c0: int) -> list[int]:
    """Roots in [0, p) of x^3 - 3x + c0 (mod p): gcd with x^p - x, split with random shifts."""
    import random

    def mulmod(a, b, f):  # polynomials as coefficient lists, low degree first, mod monic f
        out = [0] * (len(a) + len(b) - 1)
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                out[i + j] = (out[i + j] + x * y) % P
        while len(out) >= len(f):
            c = out[-1]
            if c:
                for k in range(len(f)):
                    out[len(out) - len(f) + k] = (out[len(out) - len(f) + k] - c * f[k]) % P
            out.pop()
        return out

    def powmod(base, e, f):
        r, b = [1], base
        while e:
            if e & 1:
                r = mulmod(r, b, f)
            b = mulmod(b, b, f)
            e >>= 1
        return r

    def trim(a):
        while a and not a[-1]:
            a = a[:-1]
        return a

    def gcd(a, b):
        a, b = trim(a), trim(b)
        while b:
            inv = pow(b[-1], -1, P)
            while len(a) >= len(b):
                c = a[-1] * inv % P
                off = len(a) - len(b)
                a = trim([(a[i] - c * b[i - off]) % P if i >= off else a[i] for i in range(len(a))])
                if not a:
                    break
            a, b = b, a
        inv = pow(a[-1], -1, P)
        return [x * inv % P for x in a]

    f = [c0 % P, P - 3, 0, 1]
    xp = powmod([0, 1], P, f)
    g = gcd(f, trim([(xp[i] if i < len(xp) else 0) - (1 if i == 1 else 0) for i in range(max(len(xp), 2))]))
    rnd = random.Random(1)
    out, todo = [], [g]
    while todo:
        h = todo.pop()
        if len(h) == 2:
            out.append(-h[0] % P)
        elif len(h) > 2:
            a = rnd.randrange(P)
            t = powmod([a, 1], (P - 1) // 2, h)
            d = gcd(h, trim([(t[0] - 1) % P] + t[1:]) if t else [P - 1])
            if 1 < len(d) < len(h):
                q = h
                todo += [d, _polydiv(q, d)]
            else:
                todo.append(h)
    return sorted(out)


def _polydiv(a: list[int], b: list[int]) -> list[int]:
    a, q = list(a), [0] * (len(a) - len(b) + 1)
    inv = pow(b[-1], -1, P)
    for i in range(len(q) - 1, -1, -1):
        c = a[i + len(b) - 1] * inv % P
        q[i] = c
        for j in range(len(b)):
            a[i + j] = (a[i + j] - c * b[j]) % P
    return q


def _point_with_small_x() -> tuple[int, int]:
    x = 1
    while pow((x**3 - 3 * x + B) % P, (P - 1) // 2, P) != 1:
        x += 1
    y = pow((x**3 - 3 * x + B) % P, (P + 1) // 4, P)
    return x, y


def _point_with_small_y() -> tuple[int, int]:
    for y in range(1, 100):
        roots = _cubic_roots(B - y * y)
        if roots:
            return roots[0], y
    raise AssertionError("no point with a small y")


SMALL_X = _point_with_small_x()
SMALL_Y = _point_with_small_y()


def _unc(x: int, y: int) -> str:
    return "04" + f"{x:064x}{y:064x}"


G_UNC = (
    "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
)

BAD_POINTS = {
    "empty": "",
    "infinity encoding": "00",
    "uncompressed, one byte short": G_UNC[:-2],
    "uncompressed, one byte long": G_UNC + "00",
    "hybrid prefix 06": "06" + G_UNC[2:],
    "prefix 05": "05" + G_UNC[2:],
    "y changed: not on the curve": G_UNC[:-2] + "f4",
    "x = p (out of range)": "04" + f"{P:064x}" + G_UNC[66:],
    "x + p (out of range, same residue)": _unc(SMALL_X[0] + P, SMALL_X[1]),
    "y + p (out of range, same residue)": _unc(SMALL_Y[0], SMALL_Y[1] + P),
    "all zero": "04" + "00" * 64,
    "compressed x with no curve point": "02" + f"{_x_without_point():064x}",
    "compressed x = p": "02" + f"{P:064x}",
    "compressed, short": "02" + G_UNC[2:64],
}


def test_decode_point_rejects_bad_keys_with_bad_key(mp):
    # the out-of-range vectors: a real point whose coordinate plus p still fits 32 bytes
    for x, y in (SMALL_X, SMALL_Y):
        assert (y * y - x**3 + 3 * x - B) % P == 0  # on the curve, reduced
        ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()  # cryptography agrees
    for name in ("x + p (out of range, same residue)", "y + p (out of range, same residue)"):
        x, y = int(BAD_POINTS[name][2:66], 16), int(BAD_POINTS[name][66:], 16)
        assert max(x, y) >= P and x < 2**256 and y < 2**256, name
        assert (y * y - x**3 + 3 * x - B) % P == 0, name  # the same residue is on the curve
    code = """
import binascii
from guard import GuardError
from guard import p256
res = {}
for name, h in IN.items():
    try:
        p256.decode_point(binascii.unhexlify(h))
        res[name] = 'accepted'
    except GuardError as e:
        res[name] = e.args[0]
res['not bytes'] = 'accepted'
try:
    p256.decode_point('04ab')
except GuardError as e:
    res['not bytes'] = e.args[0]
OUT(res)
"""
    res = mp.out(code, BAD_POINTS)
    assert res == {name: "bad_key" for name in [*BAD_POINTS, "not bytes"]}


def test_decode_point_accepts_both_encodings_of_the_generator(mp):
    code = """
import binascii
from guard import p256
u = p256.decode_point(binascii.unhexlify(IN))
c = p256.decode_point(b'\\x03' + binascii.unhexlify(IN)[1:33])
neg = p256.decode_point(b'\\x02' + binascii.unhexlify(IN)[1:33])
OUT([u == c, p256.encode_point(*u).hex(), p256.encode_point(*neg).hex()])
"""
    same, enc, neg = mp.out(code, G_UNC)
    # G's y is odd: prefix 03; prefix 02 with G's x is -G, whose y (p - y) is even
    assert int(G_UNC[66:], 16) & 1 and same and enc == G_UNC
    assert neg == G_UNC[:66] + f"{P - int(G_UNC[66:], 16):064x}"


BAD_SCALARS = {"zero": 0, "n": N, "n + 1": N + 1, "negative": -1}


def test_private_scalar_out_of_range_is_bad_key(mp):
    code = """
from guard import GuardError
from guard import p256
res = {}
pub = p256.encode_point(*p256.decode_point(p256.public_key(1)))
for name, d in IN.items():
    out = []
    for f in (lambda: p256.sign(d, bytes(32)), lambda: p256.ecdh(d, pub), lambda: p256.public_key(d)):
        try:
            f()
            out.append('accepted')
        except GuardError as e:
            out.append(e.args[0])
    res[name] = out
try:
    p256.sign(1, bytes(31))
except GuardError as e:
    res['short digest'] = e.args[0]
try:
    p256.sign(b'\\x01' * 31, bytes(32))
except GuardError as e:
    res['31-byte key'] = e.args[0]
OUT(res)
"""
    res = mp.out(code, BAD_SCALARS)
    assert res.pop("short digest") == "bad_digest"
    assert res.pop("31-byte key") == "bad_key"
    assert res == {name: ["bad_key"] * 3 for name in BAD_SCALARS}


def _comb_table() -> bytes:
    """The G table of guard/ec.py, recomputed with `cryptography` from its definition."""
    src = (agentpkg.agent_dir() / "guard" / "ec.py").read_text()
    teeth = int(re.search(r"_TEETH = const\((\d+)\)", src).group(1))
    cols = int(re.search(r"_COLS = const\((\d+)\)", src).group(1))
    out = b""
    for c in range(1 << (teeth - 1)):
        s = 1 << ((teeth - 1) * cols)
        for i in range(teeth - 1):
            s += (1 if (c >> i) & 1 else -1) << (i * cols)
        pn = ec.derive_private_key(s, ec.SECP256R1()).public_key().public_numbers()
        out += pn.x.to_bytes(32, "big") + pn.y.to_bytes(32, "big")
    return out


def test_precomputed_g_table_regenerates_identically(mp):
    table = mp.out("from guard import ec\nOUT(ec._GTAB.hex())")
    assert bytes.fromhex(table) == _comb_table()


def test_scalar_multiples_at_edges(mp):
    # small and near-n scalars exercise the comb's and the window's exceptional additions
    scalars = [1, 2, 3, 15, 16, 17, 2**232, 2**232 + 1, 2**256 % N, N - 1, N - 2, N // 2, N // 2 + 1]
    code = """
from guard import p256
OUT([p256.public_key(d).hex() for d in IN['s']] + [p256.ecdh(d, p256.public_key(3)).hex() for d in IN['s']])
"""
    got = mp.out(code, {"s": scalars})
    for i, d in enumerate(scalars):
        assert got[i] == _pub(ec.derive_private_key(d, ec.SECP256R1())).hex(), d
        three = ec.derive_private_key(3, ec.SECP256R1()).public_key()
        shared = ec.derive_private_key(d, ec.SECP256R1()).exchange(ec.ECDH(), three)
        assert got[len(scalars) + i] == shared.hex(), d


def test_digest_is_not_hashed_again(mp):
    # verify takes the digest: a signature over sha256(m) verifies against sha256(m) only
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(b"m").digest()
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    r, s = decode_dss_signature(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
    code = """
import binascii
from guard import p256
OUT(p256.verify(binascii.unhexlify(IN['q']), binascii.unhexlify(IN['h']), binascii.unhexlify(IN['s'])))
"""
    sig = (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex()
    assert mp.out(code, {"q": _pub(key).hex(), "h": digest.hex(), "s": sig}) is True


def test_sign_and_ecdh_run_a_fixed_sequence_of_point_operations(mp):
    # The ladder's own sequence of doublings and additions must not depend on the secret
    # scalar (nor on the random blinding). Counted at the ladder's level: an addition that
    # meets its exceptional case (P == Q) doubles inside madd, which is madd's business and
    # happens with probability ~2^-256 for a random secret - but not for tiny test scalars
    # like 2, where it once made this test flaky (290 doublings instead of 289, when the
    # blinding's low digit came out 1). The blinding values are fixed here, including one
    # that forces that case for d = 2, so the test is the same on every run.
    scalars = [1, 2, N - 1, 2**255 + 1, 0x5555 << 200, (1 << 128) - 1, RFC6979_X]
    code = """
from guard import ec, p256
cnt = [0, 0, 0]  # doublings, additions, nested calls not counted
depth = [0]
dbl0, madd0 = ec.dbl, ec.madd
def dbl(*a):
    if depth[0]:
        cnt[2] += 1
    else:
        cnt[0] += 1
    depth[0] += 1
    try:
        return dbl0(*a)
    finally:
        depth[0] -= 1
def madd(*a):
    if depth[0]:
        cnt[2] += 1
    else:
        cnt[1] += 1
    depth[0] += 1
    try:
        return madd0(*a)
    finally:
        depth[0] -= 1
ec.dbl, ec.madd = dbl, madd
peer = p256.public_key(7)
res = []
for blind in IN['blinds']:
    ec.rand_scalar = lambda n, b=blind: b  # the blinding factor (and the affine masks)
    for d in IN['scalars']:
        cnt[:] = [0, 0, 0]
        p256.public_key(d)
        g = cnt[:2]
        cnt[:] = [0, 0, 0]
        x = p256.ecdh(d, peer)
        res.append([g, cnt[:2], cnt[2], x.hex()])
OUT(res)
"""
    # blinding m: k + m*n (made odd); 0x1F gives k' = 2 + 31n, whose lowest window digit is
    # 1, so the last addition of ecdh(2, .) meets the accumulator equal to the point
    blinds = [0x10, 0x1F, 0xDEADBEEF]
    res = mp.out(code, {"scalars": scalars, "blinds": blinds})
    ops = {(tuple(g), tuple(e)) for g, e, _, _ in res}
    # comb: 57 doublings + 57 additions; window: 72 * 4 doublings + 72 additions (+ 1
    # doubling for 2P and 7 mixed additions for the odd multiples 3P, ..., 15P)
    assert ops == {((57, 57), (72 * 4 + 1, 72 + 7))}, ops
    assert any(nested for _, _, nested, _ in res)  # the exceptional case was met, and handled
    peer = ec.derive_private_key(7, ec.SECP256R1()).public_key()
    for i, (_, _, _, x) in enumerate(res):
        d = scalars[i % len(scalars)]
        assert x == ec.derive_private_key(d, ec.SECP256R1()).exchange(ec.ECDH(), peer).hex(), d


def test_point_additions_exceptional_cases(mp):
    # P + (-P) is infinity and P + P is 2P in the mixed addition (the only one: odd multiples
    # go by it from an affine 2P); infinity + P is P; the odd multiples are P, 3P, 5P, 7P
    code = """
from guard import ec, p256
x, y = p256.decode_point(p256.public_key(5))
P_ = IN
def aff(X, Y, Z):
    return list(ec.to_affine(X, Y, Z, 1)) if Z else 'inf'
X, Y, Z = ec.dbl(x, y, 1)  # 2P, Jacobian with Z != 1
x2, y2 = ec.to_affine(X, Y, Z, 1)
OUT({
    'madd P + -P': aff(*ec.madd(x, y, 1, x, P_ - y)),
    'madd 2P + -2P (Z != 1)': aff(*ec.madd(X, Y, Z, x2, P_ - y2)),
    'madd P + P': aff(*ec.madd(x, y, 1, x, y)),
    'madd 2P + 2P (Z != 1)': aff(*ec.madd(X, Y, Z, x2, y2)),
    'madd inf + P': aff(*ec.madd(0, 1, 0, x, y)),
    'odd': ec.odd_multiples(x, y, 4),
    'dbl': aff(*ec.dbl(x, y, 1)),
})
"""
    got = mp.out(code, P)

    def pt(d):
        n = ec.derive_private_key(d, ec.SECP256R1()).public_key().public_numbers()
        return [n.x, n.y]

    assert got == {
        "madd P + -P": "inf", "madd 2P + -2P (Z != 1)": "inf", "madd P + P": pt(10),
        "madd 2P + 2P (Z != 1)": pt(20), "madd inf + P": pt(5),
        "odd": pt(5) + pt(15) + pt(25) + pt(35), "dbl": pt(10),
    }


def test_verify_refuses_a_signature_that_is_not_exactly_64_bytes(mp):
    # r || 00 || s reads as (r, s) if only the first 32 bytes are taken as r and the rest
    # as s: a 65-byte signature must be refused, not decoded generously
    key = ec.derive_private_key(RFC6979_X, ec.SECP256R1())
    r, s_ = RFC6979_SHA256["sample"][1:]
    sig = r.to_bytes(32, "big") + s_.to_bytes(32, "big")
    code = """
import hashlib, binascii
from guard import p256
q = binascii.unhexlify(IN['q'])
h = hashlib.sha256(b'sample').digest()
sig = binascii.unhexlify(IN['sig'])
OUT([p256.verify(q, h, sig), p256.verify(q, h, sig[:32] + b'\\x00' + sig[32:]),
     p256.verify(q, h, b'\\x00' + sig), p256.verify(q, h, sig[:32] + sig[33:])])
"""
    assert mp.out(code, {"q": _pub(key).hex(), "sig": sig.hex()}) == [True, False, False, False]


def test_verify_rejects_a_point_tuple_not_on_the_curve(mp):
    code = """
from guard import GuardError
from guard import p256
x, y = p256.decode_point(p256.public_key(5))
try:
    p256.verify((x, y + 1), bytes(32), bytes(64))
    OUT('accepted')
except GuardError as e:
    OUT(e.args[0])
"""
    assert mp.out(code) == "bad_key"
