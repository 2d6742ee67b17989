"""Power cut at every flash block write of provisioning, on MicroPython over littlefs.

For a cut point N, one MicroPython process runs a step of provisioning (begin: the pending
key; install: the certificate) on a fresh copy of the flash with power failing at the N-th
block write (program or erase): nothing more reaches the flash. A second process boots the
image and must find either no identity or a complete one (key, certificate and CA that
belong together), and provisioning run again must finish. A board that had an identity
(re-provisioning with force) must still have a complete one, old or new, never none. The cut
points run on a few boards at once (cuts.py), each on a fresh copy of the image.
"""

from __future__ import annotations

import os
import shutil

import cuts
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from idboard import HostCA, IdBoard, b64u, compile_board, unb64u

from mpguard.identity import csr as csrcheck

CHALLENGE = "powercut-challenge-0001"

STEP = """
FL.cut = IN['cut']
r = None
try:
    if IN['step'] == 'begin':
        r = I.begin(IN['e'], IN['force'])
    else:
        r = I.install(IN['c'], [IN['ca_b64']])
except Cut:
    pass
OUT([FL.hit, FL.writes])
"""

# After power returns: the state and whether the stored identity is whole.
CHECK = """
st = I.status()
whole = None
if st['state'] == 'complete':
    c = I.certificate()
    d, pub = I.key()
    whole = [c['cert'], c['ca'], guard.p256.public_key(d) == pub]
OUT([st, whole])
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    return compile_board(tmp_path_factory.mktemp("idmpy"))


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return HostCA(tmp_path_factory.mktemp("ca") / "proj")


def _issue(board, ca, st):
    req = board.out("OUT(I.csr(IN['c']))", c=CHALLENGE)
    csrcheck.check(unb64u(req), ueid=st["ueid"], challenge=CHALLENGE,
                   public_key=unb64u(st["pending_pub"]))
    return ca.issue(unb64u(st["pending_pub"]), st["ueid"])


def _step(board, step, cut, **kw):
    kw.setdefault("force", False)
    return board.out(STEP, step=step, cut=cut, e=b64u(os.urandom(32)), **kw)


def _finish(board, ca) -> dict:
    """Provisioning run again: resume a pending key (or start over), until complete."""
    st = board.status()
    if not st["pending_pub"]:
        if st["state"] == "complete":
            return st
        st = board.out("OUT(I.begin(IN['e']))", e=b64u(os.urandom(32)))
    cert = _issue(board, ca, st)
    return board.out("OUT(I.install(IN['c'], [IN['ca']]))", c=b64u(cert), ca=b64u(ca.ca.der))


def _check_whole(board, ca, expect_certs):
    st, whole = board.out(CHECK)
    assert st["pending_pub"] is None or st["pending_pub"] != st["pub"]
    if st["state"] == "complete":
        cert_b64, ca_b64, key_ok = whole
        cert = x509.load_der_x509_certificate(unb64u(cert_b64))
        cert.verify_directly_issued_by(ca.ca.cert)
        assert key_ok and unb64u(ca_b64) == ca.ca.der
        assert cert.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        ) == unb64u(st["pub"])
        assert expect_certs is None or cert_b64 in expect_certs
    return st


def _sweep(board, ca, pristine, step, writes, expect, **kw):
    """[(n, the board's state after the cut at write n)] for every write of `step`; after
    each cut, provisioning run again must finish. The points run on a few boards at once."""

    def point(b, n):
        shutil.copyfile(pristine, b.path)
        hit, done = _step(b, step, n, **kw)
        assert hit and done == n - 1, (step, n)
        st = _check_whole(b, ca, expect)
        final = _finish(b, ca)
        assert final["state"] == "complete" and not final["pending_pub"], (step, n, final)
        _check_whole(b, ca, None)
        return n, st

    boards = [board] + [board.twin(board.path.with_name(f"cut{i}.img"))
                        for i in range(1, cuts.workers())]
    return cuts.each(range(1, writes + 1), boards, point)


def test_power_cut_at_every_write_of_a_first_provisioning(mp, agent, ca, tmp_path):
    board = IdBoard(mp, agent, tmp_path / "flash.img")
    board.status()  # formats the flash: a blank board with the agent
    blank = tmp_path / "blank.img"
    shutil.copyfile(board.path, blank)
    w_begin = _step(board, "begin", None)[1]
    st = board.status()
    pending = tmp_path / "pending.img"
    shutil.copyfile(board.path, pending)
    cert = _issue(board, ca, st)
    w_install = _step(board, "install", None, c=b64u(cert), ca_b64=b64u(ca.ca.der))[1]
    assert board.status()["state"] == "complete" and w_begin >= 2 and w_install >= 2

    states = []
    for _n, s in _sweep(board, ca, blank, "begin", w_begin, []):
        assert s["state"] in ("none", "pending")  # never an identity without a certificate
        states.append(s["state"])
    for _n, s in _sweep(board, ca, pending, "install", w_install, [b64u(cert)],
                        c=b64u(cert), ca_b64=b64u(ca.ca.der)):
        assert s["state"] in ("pending", "complete")
        if s["state"] == "pending":
            assert s["pending_pub"] == st["pending_pub"]  # the same key resumes
        states.append(s["state"])
    print(f"\nfirst provisioning: power cut at each of {w_begin} + {w_install} block writes: "
          f"{states.count('none')} none, {states.count('pending')} pending, "
          f"{states.count('complete')} complete")
    assert {"none", "pending", "complete"} <= set(states)


def test_power_cut_at_every_write_of_a_forced_reprovisioning(mp, agent, ca, tmp_path):
    board = IdBoard(mp, agent, tmp_path / "flash.img")
    first = _finish(board, ca)
    old_cert = board.out("OUT(I.certificate())")["cert"]
    provisioned = tmp_path / "provisioned.img"
    shutil.copyfile(board.path, provisioned)
    w_begin = _step(board, "begin", None, force=True)[1]
    st = board.status()
    pending = tmp_path / "pending.img"
    shutil.copyfile(board.path, pending)
    cert = _issue(board, ca, st)
    w_install = _step(board, "install", None, c=b64u(cert), ca_b64=b64u(ca.ca.der))[1]

    outcomes = {"old": 0, "new": 0}
    for _n, s in _sweep(board, ca, provisioned, "begin", w_begin, [old_cert], force=True):
        assert s["state"] == "complete" and s["pub"] == first["pub"]  # untouched until install
        outcomes["old"] += 1
    for _n, s in _sweep(board, ca, pending, "install", w_install, [old_cert, b64u(cert)],
                        c=b64u(cert), ca_b64=b64u(ca.ca.der)):
        assert s["state"] == "complete", s  # never without an identity
        outcomes["old" if s["pub"] == first["pub"] else "new"] += 1
    print(f"\nforced re-provisioning: power cut at each of {w_begin} + {w_install} block writes: "
          f"kept the old identity {outcomes['old']}x, had the new one {outcomes['new']}x")
    assert outcomes["old"] and outcomes["new"]
