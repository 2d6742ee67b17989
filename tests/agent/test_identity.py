"""guard.identity on MicroPython over a real littlefs flash: key generation that mixes the
board's and the host's entropy (HKDF), the stored key format, UEIDs (EUI and RAND), the
PKCS#10 request checked by `cryptography` and openssl, the certificate install, and a table
of bad certificates, each refused with its reason and the board's records unchanged."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID
from idboard import AGENT_SRC, HostCA, IdBoard, b64u, compile_board, unb64u

from mpguard.identity import csr as csrcheck

CHALLENGE = "challenge-0123456789"


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    return compile_board(tmp_path_factory.mktemp("idmpy"))


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return HostCA(tmp_path_factory.mktemp("ca") / "proj")


@pytest.fixture
def board(mp, agent, tmp_path):
    return IdBoard(mp, agent, tmp_path / "flash.img")


def entropy() -> str:
    return b64u(os.urandom(32))


def provision(board: IdBoard, ca: HostCA, force: bool = False) -> dict:
    """begin + csr on the board, checks and issue on the host, install on the board."""
    st, req = board.run("OUT(I.begin(IN['e'], IN['f']))\nOUT(I.csr(IN['c']))",
                        e=entropy(), f=force, c=CHALLENGE).outputs
    csrcheck.check(unb64u(req), ueid=st["ueid"], challenge=CHALLENGE,
                   public_key=unb64u(st["pending_pub"]))
    cert = ca.issue(unb64u(st["pending_pub"]), st["ueid"])
    return board.out("OUT(I.install(IN['c'], [IN['ca']]))", c=b64u(cert), ca=b64u(ca.ca.der))


# -- key generation ---------------------------------------------------------------------------

# A weak board RNG: os.urandom returns a constant. Installed before the agent is imported.
WEAK_RNG = """
import sys, os as _os
class _Os:
    def urandom(self, n):
        return bytes(range(n))
    def __getattr__(self, a):
        return getattr(_os, a)
sys.modules['os'] = _Os()
from guard import p256
from binascii import unhexlify
out = []
for h in IN:
    d, pub = p256.keygen(unhexlify(h))
    out.append([hex(d), pub.hex()])
OUT(out)
"""


def test_keygen_is_hkdf_of_board_and_host_entropy(mp):
    h1, h2 = os.urandom(32), os.urandom(32)
    keys = mp.out(WEAK_RNG, [h1.hex(), h1.hex(), h2.hex()], path=[AGENT_SRC])
    # RFC 5869 HKDF with `cryptography`: salt = the host's entropy, IKM = os.urandom(32)
    for h, (d, pub) in zip((h1, h1, h2), keys, strict=True):
        okm = HKDF(hashes.SHA256(), 32, salt=h, info=b"mpguard p256 keygen\x01").derive(bytes(range(32)))
        assert int(d, 16) == int.from_bytes(okm, "big")
        key = ec.derive_private_key(int(d, 16), ec.SECP256R1())
        assert key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint).hex() == pub
    # a weak board RNG alone does not decide the key: the host's entropy changes it ...
    assert keys[0] == keys[1] and keys[0] != keys[2]


def test_keygen_with_the_same_host_entropy_differs_by_the_board_rng(mp):
    code = "from guard import p256\nOUT([hex(p256.keygen(b'\\x00' * 32)[0]) for _ in range(2)])"
    a, b = mp.out(code, path=[AGENT_SRC])
    assert a != b  # ... nor does a constant (or hostile) host entropy


def test_begin_stores_a_sec1_key_that_cryptography_reads(board):
    st = board.out("OUT(I.begin(IN['e']))", e=entropy())
    assert st["state"] == "pending" and st["pub"] is None and st["cert_sha256"] is None
    der = bytes.fromhex(board.out("OUT(raw('id.new'))"))
    key = serialization.load_der_private_key(der, None)  # RFC 5915 ECPrivateKey
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    pub = key.public_key().public_bytes(serialization.Encoding.X962,
                                        serialization.PublicFormat.UncompressedPoint)
    assert unb64u(st["pending_pub"]) == pub
    assert set(st) == {"state", "ueid", "uid", "pub", "cert_sha256", "pending_pub", "store"}
    # the status (what the host gets) never holds the private scalar, in any encoding
    priv = key.private_numbers().private_value.to_bytes(32, "big")
    text = repr(st)
    found = [i for i, enc in enumerate((priv.hex(), b64u(priv), b64u(der), der.hex()))
             if enc in text]
    assert found == []  # (indices only: a failure never prints the key)


@pytest.mark.parametrize("bad", ["", "AAAA", b64u(bytes(31)), b64u(bytes(33)), "not base64!", 7])
def test_begin_refuses_bad_entropy_and_writes_nothing(board, bad):
    assert board.out("OUT(attempt(I.begin, IN['e']))", e=bad) == [None, "bad_arg"]
    assert board.files() == {}


def test_begin_resumes_a_pending_key_and_force_replaces_it(board):
    a = board.out("OUT(I.begin(IN['e']))", e=entropy())
    b = board.out("OUT(I.begin(IN['e']))", e=entropy())
    assert a["pending_pub"] == b["pending_pub"]  # a provisioning cut short resumes
    c = board.out("OUT(I.begin(IN['e'], True))", e=entropy())
    assert c["pending_pub"] != a["pending_pub"]


# -- UEID -------------------------------------------------------------------------------------

def test_ueid_eui_from_the_unique_id(mp, agent, tmp_path):
    b = IdBoard(mp, agent, tmp_path / "f.img", uid="a0b1c2d3e4f5")
    assert unb64u(b.status()["ueid"]) == bytes.fromhex("02a0b1c2d3e4f5")  # RFC 9711: EUI type 2


def test_ueid_rand_is_made_once_and_kept(mp, agent, tmp_path, ca):
    b = IdBoard(mp, agent, tmp_path / "f.img", profile={"kind": "sim", "ueid": "rand"})
    assert b.status()["ueid"] is None  # status never writes flash
    u1 = b.out("OUT(I.begin(IN['e']))", e=entropy())["ueid"]
    raw = unb64u(u1)
    assert len(raw) == 17 and raw[0] == 0x01  # RFC 9711: RAND type 1, 16 random bytes
    provision(b, ca)
    u2 = b.out("OUT(I.begin(IN['e'], True))", e=entropy())["ueid"]
    assert u1 == u2 == b.status()["ueid"]  # a new key keeps the board's UEID
    other = IdBoard(mp, agent, tmp_path / "g.img", profile={"kind": "sim", "ueid": "rand"})
    assert other.out("OUT(I.begin(IN['e']))", e=entropy())["ueid"] != u1


def test_bad_ueid_profile_and_unique_id(mp, agent, tmp_path):
    b = IdBoard(mp, agent, tmp_path / "f.img", profile={"kind": "sim", "ueid": "imei"})
    assert b.out("OUT(attempt(I.status))") == [None, "bad_profile"]
    b = IdBoard(mp, agent, tmp_path / "g.img", uid="0102")
    assert b.out("OUT(attempt(I.begin, IN['e']))", e=entropy()) == [None, "bad_ueid"]
    assert b.files() == {}


# -- the certificate request ------------------------------------------------------------------

def test_csr_is_pkcs10_that_cryptography_and_openssl_verify(board, tmp_path):
    st, req = board.run("OUT(I.begin(IN['e']))\nOUT(I.csr(IN['c']))",
                        e=entropy(), c=CHALLENGE).outputs
    der = unb64u(req)
    r = x509.load_der_x509_csr(der)
    assert r.is_signature_valid
    assert r.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == st["ueid"]
    pub = csrcheck.check(der, ueid=st["ueid"], challenge=CHALLENGE,
                         public_key=unb64u(st["pending_pub"]))
    assert csrcheck.point(pub) == unb64u(st["pending_pub"])
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not installed: cryptography checked the request")
    (tmp_path / "r.der").write_bytes(der)
    res = subprocess.run(["openssl", "req", "-inform", "DER", "-in", str(tmp_path / "r.der"),
                          "-verify", "-noout"], capture_output=True, text=True)
    assert res.returncode == 0 and "verif" in (res.stdout + res.stderr).lower(), res.stderr


def test_csr_refuses_bad_challenges_and_missing_keys(board):
    assert board.out("OUT(attempt(I.csr, IN['c']))", c=CHALLENGE) == [None, "no_pending"]
    assert board.out("OUT(attempt(I.csr, IN['c'], False))", c=CHALLENGE) == [None, "no_identity"]
    board.out("OUT(I.begin(IN['e']))", e=entropy())
    for bad in ("short", "x" * 129, 12):
        assert board.out("OUT(attempt(I.csr, IN['c']))", c=bad) == [None, "bad_arg"]


# -- install ----------------------------------------------------------------------------------

def test_install_makes_a_complete_identity_that_chains_to_the_ca(board, ca):
    st = provision(board, ca)
    assert st["state"] == "complete" and st["pending_pub"] is None
    assert set(board.files()) == {"id"}
    got = board.out("OUT(I.certificate())")
    cert = x509.load_der_x509_certificate(unb64u(got["cert"]))
    assert unb64u(got["ca"]) == ca.ca.der
    cert.verify_directly_issued_by(ca.ca.cert)  # cryptography checks the chain
    assert hashlib.sha256(unb64u(got["cert"])).digest() == unb64u(st["cert_sha256"])
    assert csrcheck.point(cert.public_key()) == unb64u(st["pub"])  # type: ignore[arg-type]
    # the board's key signs for the current identity
    req = board.out("OUT(I.csr(IN['c'], False))", c=CHALLENGE)
    csrcheck.check(unb64u(req), ueid=st["ueid"], challenge=CHALLENGE, public_key=unb64u(st["pub"]))


def test_identity_exists_needs_force_and_the_old_one_stays_until_install(board, ca):
    first = provision(board, ca)
    assert board.out("OUT(attempt(I.begin, IN['e']))", e=entropy()) == [None, "identity_exists"]
    st = board.out("OUT(I.begin(IN['e'], True))", e=entropy())
    assert st["state"] == "complete" and st["pub"] == first["pub"] and st["pending_pub"]
    second = provision(board, ca)  # resumes the pending key
    assert second["pub"] == st["pending_pub"] and second["cert_sha256"] != first["cert_sha256"]


def _cert(ca_key, ca_name, pub, cn, *, alg=None, issuer_key=None):
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(ca_name).public_key(pub).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    return b.sign(issuer_key or ca_key, alg or hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def bad_certificates(st: dict, ca: HostCA, other: HostCA) -> dict[str, tuple[bytes, bytes, str]]:
    """name -> (certificate, CA certificate, the board's reason)."""
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64u(st["pending_pub"]))
    good = ca.issue(unb64u(st["pending_pub"]), st["ueid"])
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    ca_key = ca.ca._key
    forged_sig = bytearray(good)
    forged_sig[-5] ^= 0x01
    return {
        "certificate for another key": (ca.issue(csrcheck.point(stranger), st["ueid"]), ca.ca.der,
                                        "cert_mismatch"),
        "certificate for another UEID": (ca.issue(unb64u(st["pending_pub"]), "AgAAAAAAAA"),
                                         ca.ca.der, "ueid_mismatch"),
        "issued by another CA": (other.issue(unb64u(st["pending_pub"]), st["ueid"]), ca.ca.der,
                                 "bad_cert"),
        "signed by a stranger under our CA's name": (
            _cert(ca_key, ca.ca.cert.subject, pub, st["ueid"],
                  issuer_key=ec.generate_private_key(ec.SECP256R1())), ca.ca.der, "bad_sig"),
        "signature byte flipped": (bytes(forged_sig), ca.ca.der, "bad_sig"),
        "ecdsa-with-SHA384": (_cert(ca_key, ca.ca.cert.subject, pub, st["ueid"],
                                    alg=hashes.SHA384()), ca.ca.der, "bad_cert"),
        "truncated": (good[:-10], ca.ca.der, "bad_der"),
        "trailing bytes": (good + b"\x00", ca.ca.der, "bad_der"),
        "too large": (good + bytes(2048), ca.ca.der, "bad_cert"),
        "chain is not a certificate": (good, b"\x30\x03\x02\x01\x00", "bad_der"),
        "empty": (b"", ca.ca.der, "bad_cert"),
    }


def test_bad_certificates_are_refused_and_change_nothing(board, ca, tmp_path):
    other = HostCA(tmp_path / "other")
    st = board.out("OUT(I.begin(IN['e']))", e=entropy())
    before = board.files()
    table = bad_certificates(st, ca, other)
    for name, (cert, chain, reason) in table.items():
        got = board.out("OUT(attempt(I.install, IN['c'], [IN['ca']]))", c=b64u(cert), ca=b64u(chain))
        assert got == [None, reason], name
        assert board.files() == before, f"{name}: the board's records changed"
    assert board.status()["state"] == "pending"
    # The board checks that the chain it is given signs its certificate; which CA to trust is
    # the host's choice, and a TLS server refuses another CA's board (tests/e2e/test_identity_tls.py)
    cert = other.issue(unb64u(st["pending_pub"]), st["ueid"])
    got = board.out("OUT(I.install(IN['c'], [IN['ca']]))", c=b64u(cert), ca=b64u(other.ca.der))
    assert got["state"] == "complete"


def test_install_refuses_without_a_pending_key_and_bad_arguments(board, ca):
    st = board.status()
    cert = ca.issue(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint), st["ueid"])
    assert board.out("OUT(attempt(I.install, IN['c'], [IN['ca']]))",
                     c=b64u(cert), ca=b64u(ca.ca.der)) == [None, "no_pending"]
    board.out("OUT(I.begin(IN['e']))", e=entropy())
    before = board.files()
    for args in ("[IN['c'], []]", "[IN['c'], [IN['ca'], IN['ca']]]", "[7, [IN['ca']]]",
                 "[IN['c'], IN['ca']]"):
        got = board.out(f"OUT(attempt(I.install, *{args}))", c=b64u(cert), ca=b64u(ca.ca.der))
        assert got == [None, "bad_cert"], args
    assert board.files() == before


def test_corrupt_records_are_bad_store_never_a_guess(board, ca):
    provision(board, ca)
    board.run("I.store.write('id', (b'\\x30\\x03\\x02\\x01\\x00' * 3,))\nOUT(1)")
    st = board.status()
    assert st["state"] == "damaged" and st["pub"] is None and st["cert_sha256"] is None
    assert board.out("OUT(attempt(I.key))") == [None, "bad_store"]
    assert board.out("OUT(attempt(I.certificate))") == [None, "bad_store"]
    assert board.out("OUT(attempt(I.csr, IN['c'], False))", c=CHALLENGE) == [None, "bad_store"]
    assert board.out("OUT(attempt(I.begin, IN['e']))", e=entropy()) == [None, "identity_exists"]
    assert provision(board, ca, force=True)["state"] == "complete"  # --force recovers it
    board.run("I.store.remove('id')\nI.store.write('id.new', (b'\\x00' * 121,))\nOUT(1)")
    assert board.status()["state"] == "none"  # a damaged pending key is no pending key
    assert board.out("OUT(attempt(I.csr, IN['c']))", c=CHALLENGE) == [None, "bad_store"]
    assert board.out("OUT(I.begin(IN['e']))", e=entropy())["state"] == "pending"  # replaced
    # a pending key whose public half does not match its scalar
    st = board.out("I.store.remove('id.new')\nOUT(I.begin(IN['e']))", e=entropy())
    raw = bytearray(bytes.fromhex(board.out("OUT(raw('id.new'))")))
    raw[10] ^= 1  # the scalar changes; the stored public key does not
    cert = ca.issue(unb64u(st["pending_pub"]), st["ueid"])
    got = board.out("I.store.write('id.new', (unhexlify(IN['k']),))\n"
                    "OUT(attempt(I.install, IN['c'], [IN['ca']]))",
                    k=raw.hex(), c=b64u(cert), ca=b64u(ca.ca.der))
    assert got == [None, "bad_store"]
