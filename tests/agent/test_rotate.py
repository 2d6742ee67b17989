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
