"""guard.rotate on MicroPython over a real littlefs flash, with a provisioned identity: secrets
as JWE (made by the host's mpguard.jwe and by jwcrypto; what the host makes, jwcrypto opens
with the board's key), two-phase rotation with epochs, the app's test, reverts by boots and
by time, the named table of bad commands (each refused with its reason, the board's files
byte for byte unchanged), trust-anchor statements (threshold, rollback, removal, the
compromised-key drill) and the identity's continuity proof."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from idboard import HostCA, IdBoard, b64u, compile_board, unb64u
from jwcrypto import jwe as jwc_jwe
from jwcrypto import jwk

from mpguard import jose, jwe, keys
from mpguard.identity import csr as csrcheck
from mpguard.rotate import commands

CHALLENGE = "challenge-0123456789"
MQTT = b'{"user": "board", "password": "first-secret"}'


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    return compile_board(tmp_path_factory.mktemp("rotmpy"))


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return HostCA(tmp_path_factory.mktemp("ca") / "proj")


@pytest.fixture(scope="module")
def release():
    return keys.generate()


@pytest.fixture(scope="module")
def operator():
    return keys.generate()


def _provision(board: IdBoard, ca: HostCA, force: bool = False) -> dict:
    import os

    st, req = board.run("OUT(I.begin(IN['e'], IN['f']))\nOUT(I.csr(IN['c']))",
                        e=b64u(os.urandom(32)), f=force, c=CHALLENGE).outputs
    csrcheck.check(unb64u(req), ueid=st["ueid"], challenge=CHALLENGE,
                   public_key=unb64u(st["pending_pub"]))
    cert = ca.issue(unb64u(st["pending_pub"]), st["ueid"])
    return board.out("OUT(I.install(IN['c'], [IN['ca']]))", c=b64u(cert), ca=b64u(ca.ca.der))


class Rig:
    """A provisioned board, its anchors (release + operator keys) and a command counter."""

    def __init__(self, board: IdBoard, st: dict, release, operator):
        self.b = board
        self.ueid = st["ueid"]
        self.pub = unb64u(st["pub"])
        self.release = release
        self.operator = operator
        self.seq = 0
        self.write_anchors(commands.anchor_doc([keys.public_bytes(release)],
                                               [keys.public_bytes(operator)]))

    def write_anchors(self, doc: dict) -> None:
        self.b.run("f = open('/mpguard/anchors.json', 'w')\nf.write(IN['a'])\nf.close()\nOUT(1)",
                   a=json.dumps(doc))

    def cmd(self, op: str, name: str, epoch: int, value: bytes | None = None, **kw) -> str:
        self.seq += 1
        kw.setdefault("seq", self.seq)
        kw.setdefault("sub", self.ueid)
        kw.setdefault("board_key", self.pub)
        key = kw.pop("key", self.operator)
        return commands.command(key, op=op, name=name, epoch=epoch, value=value, **kw)

    def run(self, code: str, heapsize: str = "96K", **data):
        # the harness loads every module up front (the flash is mounted over the host's
        # files after that): 96K here; bench/rotate.py measures a board's lazy-loading peak
        return self.b.run(code, heapsize=heapsize, rot=True, **data)

    def out(self, code: str, **data):
        return self.run(code, **data).out

    def send(self, token: str):
        return self.out("OUT(attempt(R.command, IN['t']))", t=token)

    def ok(self, token: str) -> dict:
        res, why = self.send(token)
        assert why is None, why
        return res

    def get(self, name: str):
        v = self.out("v = R.get(IN['n'])\nOUT(v.decode() if v is not None else None)", n=name)
        return None if v is None else v.encode()

    def status(self) -> dict:
        return self.out("OUT(R.status())")

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        # test-only: the board's key, read through the unix-port board (never a host command)
        d = self.b.out("OUT(I.key()[0])")
        return ec.derive_private_key(d, ec.SECP256R1())


@pytest.fixture
def rig(mp, agent, tmp_path, ca, release, operator) -> Rig:
    b = IdBoard(mp, agent, tmp_path / "flash.img")
    return Rig(b, _provision(b, ca), release, operator)


# -- JWE interop ------------------------------------------------------------------------------


def test_set_and_read_back(rig):
    st = rig.ok(rig.cmd("set", "mqtt", 1, MQTT, iat=1_700_000_000))
    assert st["secrets"] == {"mqtt": {"epoch": 1, "at": 1_700_000_000, "staged": None}}
    assert rig.get("mqtt") == MQTT
    assert rig.get("wifi") is None
    # at rest the value is not in the flash image in clear
    assert MQTT not in rig.b.path.read_bytes()
    assert b"first-secret" not in rig.b.path.read_bytes()


def test_posture_reports_names_and_epochs_never_a_value(rig):
    # the attestation's credentials fact reads guard.rotate's record without loading it
    rig.ok(rig.cmd("set", "mqtt", 1, MQTT, iat=1_700_000_000))
    rig.ok(rig.cmd("stage", "mqtt", 2, b"second-secret", iat=1_700_000_100))
    got = rig.out("import guard.posture as P\nOUT(P._creds())", pos=True)
    assert got == {"mqtt": {"epoch": 1, "at": 1_700_000_000, "staged": 2}}
    assert got == rig.status()["secrets"]
    assert MQTT.decode() not in json.dumps(got) and "second-secret" not in json.dumps(got)


def test_jwcrypto_made_jwe_is_accepted(rig):
    key = jwk.JWK.from_pyca(keys.public_from_bytes(rig.pub))
    tok = jwc_jwe.JWE(b"from-jwcrypto", json.dumps({"alg": "ECDH-ES", "enc": "A128CBC-HS256"}))
    tok.add_recipient(key)
    compact = tok.serialize(compact=True)
    rig.seq += 1
    body = {"op": "set", "sub": rig.ueid, "seq": rig.seq, "iat": 1, "name": "api", "epoch": 1,
            "jwe": compact}
    rig.ok(jose.sign(json.dumps(body).encode(), rig.operator))
    assert rig.get("api") == b"from-jwcrypto"


def test_host_jwe_opens_with_jwcrypto_and_board_key(rig):
    token = jwe.encrypt(b"host-made", rig.pub)
    priv = jwk.JWK.from_pyca(rig.private_key())
    got = jwc_jwe.JWE()
    got.deserialize(token, key=priv)
    assert got.payload == b"host-made"
    assert jwe.decrypt(token, rig.private_key()) == b"host-made"


# -- two phases: stage, test, commit or revert -------------------------------------------------

NEW = b'{"user": "board", "password": "second-secret"}'


def test_stage_commit_advances_the_epoch(rig):
    rig.ok(rig.cmd("set", "mqtt", 1, MQTT))
    st = rig.ok(rig.cmd("stage", "mqtt", 2, NEW))
    assert st["secrets"]["mqtt"] == {"epoch": 1, "at": st["secrets"]["mqtt"]["at"], "staged": 2}
    assert rig.get("mqtt") == MQTT  # the app still reads the committed value
    st = rig.ok(rig.cmd("commit", "mqtt", 2))
    assert st["secrets"]["mqtt"]["epoch"] == 2 and st["secrets"]["mqtt"]["staged"] is None
    assert rig.get("mqtt") == NEW


def test_revert_keeps_the_old_value(rig):
    rig.ok(rig.cmd("set", "mqtt", 1, MQTT))
    rig.ok(rig.cmd("stage", "mqtt", 2, NEW))
    st = rig.ok(rig.cmd("revert", "mqtt", 2))
    assert st["secrets"]["mqtt"]["staged"] is None and st["secrets"]["mqtt"]["epoch"] == 1
    assert rig.get("mqtt") == MQTT
    # the epoch after a revert is staged again as committed + 1
    rig.ok(rig.cmd("stage", "mqtt", 2, NEW))


APP_TEST = """
import guard
seen = []
def check(v):
    seen.append(len(v))
    if IN['how'] == 'raise':
        raise OSError(111)
    return IN['how'] == 'pass'
guard.on_stage('mqtt', check)
OUT(attempt(R.test, 'mqtt'))
OUT(seen)
OUT(R.status()['secrets']['mqtt']['staged'])
"""


@pytest.mark.parametrize("how, ok, why", [("pass", True, None), ("fail", False, "failed"),
                                          ("raise", False, "OSError")])
def test_app_test_on_the_staged_value(rig, how, ok, why):
    rig.ok(rig.cmd("set", "mqtt", 1, MQTT))
    rig.ok(rig.cmd("stage", "mqtt", 2, NEW))
    res, seen, staged = rig.run(APP_TEST, how=how).outputs
    assert res == [{"ok": ok, "why": why}, None]
    assert seen == [len(NEW)]  # the test got the staged value, not the committed one
    assert staged == (2 if ok else None)  # a failed test reverts at once
    assert rig.get("mqtt") == MQTT


def test_test_without_a_hook_or_stage(rig):
    rig.ok(rig.cmd("set", "mqtt", 1, MQTT))
    assert rig.out("OUT(attempt(R.test, 'mqtt'))") == [None, "no_staged"]
    rig.ok(rig.cmd("stage", "mqtt", 2, NEW))
    assert rig.out("OUT(attempt(R.test, 'mqtt'))") == [None, "no_test"]


def test_staged_value_reverts_at_the_last_boot(rig):
    rig.ok(rig.cmd("set", "mqtt", 1, MQTT))
    rig.ok(rig.cmd("stage", "mqtt", 2, NEW))
    for boot in range(1, commands.MAX_BOOTS + 1):
        r = rig.run("R.boot()\nOUT(R.status()['secrets']['mqtt']['staged'])")
        assert r.out == (2 if boot < commands.MAX_BOOTS else None), boot
    assert "guard: reverted mqtt 2" in r.stdout
    assert rig.get("mqtt") == MQTT
    assert rig.send(rig.cmd("commit", "mqtt", 2))[1] == "no_staged"


def test_staged_value_reverts_after_its_time(rig):
    rig.ok(rig.cmd("set", "mqtt", 1, MQTT))
    # stage and, in the same boot, let the clock pass the TTL (the stage time moved back)
    code = """
import guard, time
OUT(attempt(R.command, IN['s']))
OUT(R.status()['secrets']['mqtt']['staged'])
guard._rt['@mqtt'] = time.ticks_add(time.ticks_ms(), -IN['ttl'] * 1000 - 1000)
OUT(R.status()['secrets']['mqtt']['staged'])
OUT(attempt(R.command, IN['c']))
"""
    staged, before, after, commit = rig.run(code, s=rig.cmd("stage", "mqtt", 2, NEW),
                                            c=rig.cmd("commit", "mqtt", 2), ttl=commands.TTL).outputs
    assert staged[1] is None and before == 2 and after is None
    assert commit == [None, "no_staged"]
    assert rig.get("mqtt") == MQTT


# -- named bad inputs: exact reason, the board's files byte for byte unchanged ----------------


def _other_board_key() -> bytes:
    return keys.public_bytes(keys.generate())


def _tamper(token: str, part: int) -> str:
    """A command whose JWE has one byte of part `part` (3 ciphertext, 4 tag) flipped."""
    body = json.loads(jose.b64u_dec(token.split(".")[1]))
    p = body["jwe"].split(".")
    raw = bytearray(jose.b64u_dec(p[part]))
    raw[0] ^= 1
    p[part] = jose.b64u_enc(bytes(raw))
    body["jwe"] = ".".join(p)
    return body


BAD = {
    # name: (how to make the command from the rig, reason)
    "wrong operator key": (lambda r: r.cmd("stage", "mqtt", 2, NEW, key=keys.generate()),
                           "unknown_key"),
    "signed by a release key": (lambda r: r.cmd("stage", "mqtt", 2, NEW, key=r.release),
                                "unknown_key"),
    "command for another board": (lambda r: r.cmd("stage", "mqtt", 2, NEW, sub="AiQKxAEAAA"),
                                  "wrong_board"),
    "JWE for another board": (lambda r: r.cmd("stage", "mqtt", 2, NEW,
                                              board_key=_other_board_key()), "wrong_board"),
    "tampered ciphertext": (lambda r: r.sign(_tamper(r.cmd("stage", "mqtt", 2, NEW), 3)),
                            "bad_tag"),
    "tampered tag": (lambda r: r.sign(_tamper(r.cmd("stage", "mqtt", 2, NEW), 4)), "bad_tag"),
    "replayed command": (lambda r: r.replayed, "cmd_replay"),
    "old epoch": (lambda r: r.cmd("stage", "mqtt", 1, NEW), "old_epoch"),
    "epoch skipped": (lambda r: r.cmd("stage", "mqtt", 3, NEW), "bad_epoch"),
    "secret too large": (lambda r: r.sign({"op": "stage", "sub": r.ueid, "seq": r.next(),
                                           "iat": 1, "name": "mqtt", "epoch": 2,
                                           "jwe": jwe_big(r.pub)}), "secret_size"),
    "name not allowed": (lambda r: r.cmd("stage", "MQTT/../x", 1, NEW), "bad_name"),
    "name too long": (lambda r: r.cmd("stage", "a" * 17, 1, NEW), "bad_name"),
    "commit with nothing staged": (lambda r: r.cmd("commit", "mqtt", 2), "no_staged"),
    "unknown op": (lambda r: r.sign({"op": "delete", "sub": r.ueid, "seq": r.next(),
                                     "name": "mqtt", "epoch": 2}), "bad_cmd"),
    "no epoch": (lambda r: r.sign({"op": "stage", "sub": r.ueid, "seq": r.next(),
                                   "name": "mqtt"}), "bad_cmd"),
    "not a JWE": (lambda r: r.sign({"op": "stage", "sub": r.ueid, "seq": r.next(), "iat": 1,
                                    "name": "mqtt", "epoch": 2, "jwe": "a.b.c"}), "bad_jwe"),
    "JWE with another enc": (lambda r: r.sign({"op": "stage", "sub": r.ueid, "seq": r.next(),
                                               "iat": 1, "name": "mqtt", "epoch": 2,
                                               "jwe": jwc_other_enc(r.pub)}), "bad_jwe"),
    # PartyUInfo/PartyVInfo that are not base64url text: the board's TypeError before
    "JWE with a number for apu": (lambda r: r.sign({"op": "stage", "sub": r.ueid, "seq": r.next(),
                                                    "iat": 1, "name": "mqtt", "epoch": 2,
                                                    "jwe": jwe_header(r.pub, apu=5)}), "bad_jwe"),
    "JWE with a list for apv": (lambda r: r.sign({"op": "stage", "sub": r.ueid, "seq": r.next(),
                                                  "iat": 1, "name": "mqtt", "epoch": 2,
                                                  "jwe": jwe_header(r.pub, apv=["QQ"])}), "bad_jwe"),
}


def jwe_header(pub: bytes, **extra) -> str:
    """A JWE of the host's encrypt whose protected header has `extra` members added (its tag,
    which covers the header, no longer matches: the board must refuse before that check)."""
    p = jwe.encrypt(NEW, pub).split(".")
    h = json.loads(jose.b64u_dec(p[0]))
    h.update(extra)
    p[0] = jose.b64u_enc(json.dumps(h).encode())
    return ".".join(p)


def jwe_big(pub: bytes) -> str:
    # a JWE of a value one byte over the board's limit (the host's encrypt refuses to make one)
    old = jwe.MAX_VALUE
    jwe.MAX_VALUE = 10_000
    try:
        return jwe.encrypt(b"x" * (old + 1), pub)
    finally:
        jwe.MAX_VALUE = old


def jwc_other_enc(pub: bytes) -> str:
    tok = jwc_jwe.JWE(b"v", json.dumps({"alg": "ECDH-ES", "enc": "A256CBC-HS512"}))
    tok.add_recipient(jwk.JWK.from_pyca(keys.public_from_bytes(pub)))
    return tok.serialize(compact=True)


@pytest.fixture
def bad_rig(rig):
    rig.ok(rig.cmd("set", "mqtt", 1, MQTT))
    rig.replayed = rig.cmd("set", "wifi", 1, b"net")
    rig.ok(rig.replayed)

    def sign(body: dict) -> str:
        return jose.sign(json.dumps(body).encode(), rig.operator)

    def nxt() -> int:
        rig.seq += 1
        return rig.seq

    rig.sign, rig.next = sign, nxt
    return rig


def test_bad_commands_are_refused_and_change_nothing(bad_rig):
    r = bad_rig
    before = r.b.files()
    image = r.b.path.read_bytes()
    got = {}
    for name, (make, _) in BAD.items():
        got[name] = r.send(make(r))[1]
        assert r.b.files() == before, name
    assert got == {name: reason for name, (_, reason) in BAD.items()}
    assert r.get("mqtt") == MQTT
    # byte for byte: no block of the flash image was written by any refusal
    assert r.b.path.read_bytes() == image


# -- trust-anchor statements -------------------------------------------------------------------


def _doc(release_keys, ops, ver, k=1):
    return commands.anchor_doc([keys.public_bytes(x) for x in release_keys],
                               [keys.public_bytes(x) for x in ops], ver=ver, k=k)


def _install(rig, bundle_bytes: bytes):
    code = """
import io, binascii
from guard import install
b = binascii.unhexlify(IN['b'])
r = install.install(io.BytesIO(b), len(b))
OUT([r['status'], r.get('reason')])
"""
    return rig.out(code, b=bundle_bytes.hex())


def _bundle(key, seq: int) -> bytes:
    from mpguard.updates import bundle

    return bundle.build([("main.py", b"print('app')\n")], key, seq=seq, app="demo",
                        version=f"1.0.{seq}", targets=["sim"])


def test_anchor_statement_adds_and_removes_release_keys(rig):
    old, new = rig.release, keys.generate()
    doc = _doc([new], [rig.operator], ver=1)
    kids = rig.out("OUT(attempt(A.rotate, IN['s']))", s=commands.statement(doc, [old]))
    assert kids == [sorted(doc["keys"]), None]
    on_board = rig.out("OUT(open('/mpguard/anchors.json').read())")
    assert json.loads(on_board)["keys"] == doc["keys"] and json.loads(on_board)["ver"] == 1
    # the new key's bundle is accepted; the compromised-key drill: the removed key signs a
    # bundle after its removal, and the board refuses it
    assert _install(rig, _bundle(new, 1)) == ["installed", None]
    assert _install(rig, _bundle(old, 2)) == ["refused", "unknown_key"]
    # the operator key kept working through the statement
    rig.ok(rig.cmd("set", "mqtt", 1, MQTT))


def _put_table(rig, pub: bytes, tab: bytes) -> None:
    rig.out("import os, binascii\ntry:\n    os.mkdir('/mpguard/tab')\nexcept OSError:\n    pass\n"
            "f = open('/mpguard/tab/' + IN['k'], 'wb')\nf.write(binascii.unhexlify(IN['t']))\n"
            "f.close()\nOUT(1)", k=keys.thumbprint(pub), t=tab.hex())


def test_a_statement_keeps_the_comb_table_it_names_when_the_board_has_it(rig):
    """The statement names the new key's table (decisions/0020); the host wrote it first:
    the board keeps it in anchors.json and verifies with it (a changed table is refused)."""
    from mpguard import anchortab

    old, new = rig.release, keys.generate()
    pub = keys.public_bytes(new)
    tab = anchortab.table(pub)
    _put_table(rig, pub, tab)
    s = commands.statement(_doc([new], [rig.operator], ver=1), [old])
    assert rig.out("OUT(attempt(A.rotate, IN['s']))", s=s)[1] is None
    on_board = json.loads(rig.out("OUT(open('/mpguard/anchors.json').read())"))
    assert on_board["tabs"] == {keys.thumbprint(pub): anchortab.digest(tab)}
    assert _install(rig, _bundle(new, 1)) == ["installed", None]
    _put_table(rig, pub, bytes(len(tab)))
    assert _install(rig, _bundle(new, 2)) == ["refused", "bad_table"]


@pytest.mark.parametrize("table", ["missing", "another key's"])
def test_a_statement_naming_a_table_the_board_lacks_keeps_the_key_without_one(rig, table):
    """A table named but not there (not written, or not the one named) is left out: named, it
    would refuse every update (bad_table); without it the key verifies the generic way."""
    from mpguard import anchortab

    old, new = rig.release, keys.generate()
    pub = keys.public_bytes(new)
    if table != "missing":
        _put_table(rig, pub, anchortab.table(keys.public_bytes(old)))
    s = commands.statement(_doc([new], [rig.operator], ver=1), [old])
    assert rig.out("OUT(attempt(A.rotate, IN['s']))", s=s)[1] is None
    on_board = json.loads(rig.out("OUT(open('/mpguard/anchors.json').read())"))
    assert sorted(on_board["keys"]) == [keys.thumbprint(pub)] and not on_board.get("tabs")
    assert _install(rig, _bundle(new, 1)) == ["installed", None]


def test_compromised_key_drill_before_and_after(rig):
    old, new = rig.release, keys.generate()
    assert _install(rig, _bundle(old, 1)) == ["installed", None]  # trusted before
    rig.out("OUT(attempt(A.rotate, IN['s']))", s=commands.statement(_doc([new], [rig.operator], 1), [old]))
    assert _install(rig, _bundle(old, 2)) == ["refused", "unknown_key"]


def test_threshold_k_of_n(rig):
    a, b, c = keys.generate(), keys.generate(), keys.generate()
    rig.write_anchors(_doc([a, b, c], [rig.operator], ver=3, k=2))
    doc = _doc([a, b], [rig.operator], ver=4, k=2)
    assert rig.out("OUT(attempt(A.rotate, IN['s']))", s=commands.statement(doc, [a])) == [None, "threshold"]
    assert rig.out("OUT(attempt(A.rotate, IN['s']))", s=commands.statement(doc, [a, a])) == [None, "bad_statement"]
    assert rig.out("OUT(attempt(A.rotate, IN['s']))", s=commands.statement(doc, [c, b]))[1] is None


ANCHOR_BAD = {
    # name: (statement from (rig, current release key), reason)
    "under threshold": (lambda r, a: commands.statement(_doc([a], [r.operator], 8, k=1), [a]),
                        "threshold"),
    "would remove every key": (lambda r, a: _empty(r, a), "no_keys"),
    "older anchor set": (lambda r, a: commands.statement(_doc([a], [r.operator], 6, k=1), [a, r.b2]),
                         "anchors_rollback"),
    "same version again": (lambda r, a: commands.statement(_doc([a], [r.operator], 7, k=1), [a, r.b2]),
                           "anchors_rollback"),
    "signed by an unknown key": (lambda r, a: commands.statement(_doc([a], [r.operator], 8),
                                                                 [keys.generate(), a]), "unknown_key"),
    "signed by the operator key": (lambda r, a: commands.statement(_doc([a], [r.operator], 8),
                                                                   [r.operator, a]), "unknown_key"),
    "threshold above the key count": (lambda r, a: commands.statement(_doc([a], [r.operator], 8, k=2),
                                                                      [a, r.b2]), "bad_statement"),
    "not a list": (lambda r, a: "x.y.z", "bad_statement"),
}


def _empty(r, a):
    doc = _doc([a], [r.operator], 8)
    doc["keys"] = {}
    return commands.statement(doc, [a, r.b2])


def test_bad_anchor_statements_change_nothing(rig):
    a, b2 = rig.release, keys.generate()
    rig.b2 = b2
    rig.write_anchors(_doc([a, b2], [rig.operator], ver=7, k=2))
    image = rig.b.path.read_bytes()
    got = {name: rig.out("OUT(attempt(A.rotate, IN['s']))", s=make(rig, a))[1]
           for name, (make, _) in ANCHOR_BAD.items()}
    assert got == {name: reason for name, (_, reason) in ANCHOR_BAD.items()}
    assert rig.b.path.read_bytes() == image


# -- identity rotation on the board: continuity proof, secrets readable under the new key ----


def test_identity_rotation_keeps_secrets_and_proves_continuity(rig, ca):
    import os

    rig.ok(rig.cmd("set", "mqtt", 1, MQTT))
    old_pub = rig.pub
    st = rig.out("OUT(I.begin(IN['e'], True))", e=b64u(os.urandom(32)))
    new_pub = unb64u(st["pending_pub"])
    proof = rig.out("OUT(I.proof(IN['c']))", c=CHALLENGE)
    _, payload = jose.verify(proof, {jose.thumbprint(old_pub): old_pub})
    assert json.loads(payload) == {"new": b64u(new_pub), "nonce": CHALLENGE}
    cert = ca.issue(new_pub, st["ueid"])
    st = rig.out("OUT(I.install(IN['c'], [IN['ca']]))", c=b64u(cert), ca=b64u(ca.ca.der))
    assert unb64u(st["pub"]) == new_pub
    assert rig.get("mqtt") == MQTT  # sealed under a data key wrapped for the new key too
    rig.pub = new_pub
    rig.ok(rig.cmd("stage", "mqtt", 2, NEW))  # a JWE to the new key
    rig.ok(rig.cmd("commit", "mqtt", 2))
    assert rig.get("mqtt") == NEW
    # after that write only the new key's wrapping is kept
    rec = json.loads(bytes.fromhex(rig.out("OUT(raw('sec'))")))
    assert len(rec["w"]) == 1


def test_proof_needs_a_pending_key(rig):
    assert rig.out("OUT(attempt(I.proof, IN['c']))", c=CHALLENGE) == [None, "no_pending"]
    assert rig.out("OUT(attempt(I.proof, 'short'))") == [None, "bad_arg"]


PINNED_CHIP = """
import guard.hw as hw
W = {int(k): v for k, v in IN['w'].items()}
hw.chip = lambda: 'ESP32'
hw.mem32 = lambda a: W.get(a, 0)
"""


def test_anchors_pinned_in_efuse_are_kept(rig):
    # a chip whose anchors' digest is burned (guard.pin) refuses a statement: every later
    # bundle would be refused (anchors_pin) with other anchors; the file stays as it was
    from test_pin import words_for

    cur = bytes.fromhex(rig.out("OUT(open('/mpguard/anchors.json', 'rb').read().hex())"))
    doc = _doc([keys.generate()], [rig.operator], ver=1)
    code = """
import guard.hw as hw
W = {int(k): v for k, v in IN['w'].items()}
hw.chip = lambda: 'ESP32'
hw.mem32 = lambda a: W.get(a, 0)
OUT(attempt(A.rotate, IN['s']))
OUT(open('/mpguard/anchors.json', 'rb').read().hex())
"""
    s = commands.statement(doc, [rig.release])
    got, after = rig.run(code, s=s, w=words_for("esp32", cur)).outputs
    assert got == [None, "anchors_pin"] and bytes.fromhex(after) == cur
    got, after = rig.run(code, s=s, w=words_for("esp32", None)).outputs  # unpinned: taken
    assert got == [sorted(doc["keys"]), None] and json.loads(bytes.fromhex(after))["ver"] == 1


def test_a_pinned_board_refuses_commands_under_other_anchors(rig):
    # The chip's eFuse pin holds the digest of this project's anchors; a swapped
    # /mpguard/anchors.json (another project's: `agent install --force` from it, or a REPL)
    # names another operator key. Its commands are refused (anchors_pin) and change nothing;
    # the same command on an unpinned chip is taken (the check is the pin's, not the key's).
    from test_pin import words_for

    cur = bytes.fromhex(rig.out("OUT(open('/mpguard/anchors.json', 'rb').read().hex())"))
    other_ops = keys.generate()
    rig.write_anchors(_doc([keys.generate()], [other_ops], ver=0))
    tok = rig.cmd("set", "mqtt", 1, b"from-the-other-project", key=other_ops)
    code = PINNED_CHIP + """
import guard.pin as pin
OUT(pin.state(open('/mpguard/anchors.json', 'rb').read()))
OUT(attempt(R.command, IN['t']))
OUT(R.status()["secrets"])
"""
    state, got, after = rig.run(code, t=tok, w=words_for("esp32", cur)).outputs
    assert state == "mismatch" and got == [None, "anchors_pin"] and after == {}
    state, got, after = rig.run(code, t=tok, w=words_for("esp32", None)).outputs
    assert state == "unpinned" and got[1] is None and list(after) == ["mqtt"]
