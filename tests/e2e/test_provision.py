"""`provision` end to end on a board (virtual by default; `--board PORT` for a real one):
identity made on the board, certificate from the project's CA, inventory record; idempotent
and resumable; --force revokes and keeps history; clones, foreign keys, a locked or
unreachable inventory and a link lost mid-way, each refused or recovered with the board and
the inventory consistent."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from idhelp import Proj, snapshot

import mpguard.sim as simlib
from mpguard.errors import BoardNotAnswering, IdentityError, InventoryUnavailable
from mpguard.identity import board as idboard
from mpguard.identity import ca as device_ca
from mpguard.identity import provision as prov
from mpguard.link import BoardLink

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def p(tmp_path) -> Proj:
    return Proj(tmp_path / "proj")


def run(link, p: Proj, **kw) -> prov.Provisioned:
    return prov.provision(link, p.proj, passphrase=None, **kw)


def test_provision_story_then_already_provisioned(board, p):
    res = run(board, p)
    assert res.outcome == "provisioned" and res.board_kind
    st = idboard.status(board)
    assert st["state"] == "complete" and st["kid"] == res.kid and st["ueid"] == res.ueid
    cert_der, ca_der = idboard.certificate(board)
    cert = x509.load_der_x509_certificate(cert_der)
    ca = device_ca.certificate(p.root)
    cert.verify_directly_issued_by(ca)  # cryptography: the chain holds
    assert ca_der == ca.public_bytes(serialization.Encoding.DER)
    assert format(cert.serial_number, "x") == res.serial
    with p.inventory() as inv:
        dev = inv.device(idboard.unb64u(res.ueid))
        assert dev is not None and dev.thumbprint == res.kid and dev.certificate.der == cert_der
        assert dev.mac.replace(":", "") == st["uid"]
        assert [e.kind for e in inv.events(ueid=dev.ueid)] == ["provision"]
    # run again: the board proves it holds the recorded key; nothing changes anywhere
    files, inv_state = snapshot(board), p.state()
    again = run(board, p)
    assert again.outcome == "already" and again.kid == res.kid and again.serial == res.serial
    assert snapshot(board) == files and p.state() == inv_state


def test_force_reprovision_revokes_the_old_certificate_and_keeps_history(board, p):
    first = run(board, p)
    with pytest.raises(IdentityError) as e:
        run(board, p, force=True, days=0)
    assert e.value.reason == "bad_days"
    second = run(board, p, force=True)
    assert second.outcome == "reprovisioned" and second.kid != first.kid
    assert second.ueid == first.ueid and second.revoked == [first.serial]
    crl = device_ca.crl(p.root)
    assert crl.get_revoked_certificate_by_serial_number(int(first.serial, 16)) is not None
    assert crl.get_revoked_certificate_by_serial_number(int(second.serial, 16)) is None
    with p.inventory() as inv:
        certs = inv.certificates(idboard.unb64u(first.ueid))
        assert [format(c.serial, "x") for c in certs] == [first.serial, second.serial]
        assert certs[0].revoked and not certs[1].revoked
        kinds = [ev.kind for ev in inv.events(ueid=idboard.unb64u(first.ueid))]
        assert kinds == ["provision", "reprovision"]
    assert run(board, p).outcome == "already"


def test_board_answering_with_a_different_key_than_its_record(board, p, tmp_path):
    first = run(board, p)
    other = Proj(tmp_path / "other")  # the board gets an identity elsewhere
    assert run(board, other, force=True).outcome == "provisioned"
    files, inv_state = snapshot(board), p.state()
    with pytest.raises(IdentityError) as e:
        run(board, p)
    assert e.value.reason == "key_mismatch"
    assert snapshot(board) == files and p.state() == inv_state
    assert run(board, p, force=True).kid != first.kid  # --force gives it a new identity here


def test_same_ueid_for_a_second_board_is_refused(board, p):
    """A board with a recorded UEID but without the recorded key (wiped, or a second board
    claiming the UEID) gets no identity without --force."""
    run(board, p)
    board.remove("/mpguard/id")
    files, inv_state = snapshot(board), p.state()
    with pytest.raises(IdentityError) as e:
        run(board, p)
    assert e.value.reason == "identity_known"
    assert snapshot(board) == files and p.state() == inv_state


def _clone(sim, name: str) -> simlib.SimInfo:
    """A second virtual board (its own MAC) booting a copy of `sim`'s flash image."""
    sim_dir = Path(sim.info.state_dir).parent
    img = sim_dir / f"{name}.img"
    simlib.stop(sim.name)
    shutil.copyfile(sim.info.image, img)
    sim.info = simlib.start(name=sim.name, board=sim.info.board)
    return simlib.start(name=name, image=str(img))


def test_cloned_flash_image_is_refused(sim, board, p):
    run(board, p)
    board.close()
    clone = _clone(sim, f"{sim.name[:20]}-clone")
    try:
        with BoardLink(clone.port, timeout=30) as link:
            st = idboard.status(link)
            files, inv_state = snapshot(link), p.state()
            with pytest.raises(IdentityError) as e:
                run(link, p)
            assert e.value.reason == "ueid_mismatch"  # its certificate names another board
            assert snapshot(link) == files and p.state() == inv_state
            assert st["state"] == "complete"
    finally:
        simlib.stop(clone.name)


def test_same_public_key_for_a_second_board_is_refused(sim, board, p):
    """A second board offering a key the inventory knows (a cloned pending key): refused
    before anything is issued."""
    run(board, p)
    key_record = board.get("/mpguard/id")[:121]  # test-only: moved board to board
    board.close()
    clone = _clone(sim, f"{sim.name[:20]}-twin")
    try:
        with BoardLink(clone.port, timeout=30) as link:
            link.remove("/mpguard/id")
            link.put(key_record, "/mpguard/id.new")
            assert idboard.status(link)["state"] == "pending"
            inv_state = p.state()
            with pytest.raises(IdentityError) as e:
                run(link, p)
            assert e.value.reason == "duplicate_key"
            assert p.state() == inv_state
            assert idboard.status(link)["state"] == "pending"
    finally:
        simlib.stop(clone.name)


def _drop_link_before(monkeypatch, name: str, after: bool = False):
    """The link breaks at board call `name`: before it reaches the board, or after the
    board did it but before the answer came back."""
    orig = getattr(idboard, name)

    def broken(link, *a, **kw):
        if after:
            orig(link, *a, **kw)
        link.close()
        raise BoardNotAnswering("cable pulled")

    monkeypatch.setattr(idboard, name, broken)


@pytest.mark.parametrize("where", ["csr", "install", "install-after"])
def test_link_lost_mid_provision_then_rerun(board, p, monkeypatch, where):
    name = where.split("-")[0]
    _drop_link_before(monkeypatch, name, after=where.endswith("after"))
    with pytest.raises(BoardNotAnswering):
        run(board, p)
    monkeypatch.undo()
    board.connect()
    st = idboard.status(board)
    pending = st["pending_kid"]
    assert st["state"] == ("complete" if where == "install-after" else "pending")
    res = run(board, p)
    expect = {"csr": "provisioned", "install": "resumed", "install-after": "already"}[where]
    assert res.outcome == expect
    if pending:
        assert res.kid == pending  # the board's pending key was kept, not a new one made
    with p.inventory() as inv:
        devs = inv.devices()
        assert len(devs) == 1 and len(inv.certificates(devs[0].ueid)) == 1
        assert devs[0].certificate.der == idboard.certificate(board)[0]
        assert not inv.revoked()


def test_inventory_locked_leaves_the_board_consistent(board, p):
    idboard.reset_heap(board)
    with p.inventory():
        pass  # the database exists
    db = sqlite3.connect(p.root / "inventory.db", isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")  # another writer holds the lock
    try:
        with p.inventory(busy_timeout=0.3) as inv:
            with pytest.raises(InventoryUnavailable) as e:
                prov.provision(board, p.proj, passphrase=None, inventory=inv)
        assert e.value.exit_code == 7 and "lock" in str(e.value)
    finally:
        db.rollback()
        db.close()
    st = idboard.status(board)
    assert st["state"] == "pending"  # a key without a certificate: no identity, resumable
    assert p.state()["devices"] == []
    res = run(board, p)
    assert res.outcome == "provisioned" and res.kid == st["pending_kid"]


def test_inventory_unreachable_changes_nothing(board, p):
    files = snapshot(board)
    with pytest.raises(InventoryUnavailable):
        run(board, p, db="postgresql://mpguard@127.0.0.1:1/none")
    assert snapshot(board) == files


def test_certificate_on_the_board_is_the_inventorys_byte_for_byte(board, p):
    res = run(board, p)
    st = idboard.status(board)
    with p.inventory() as inv:
        der = inv.device(idboard.unb64u(res.ueid)).certificate.der
    assert hashlib.sha256(der).hexdigest() == st["cert_sha256"]


def _tampered_csr(kind: str, orig):
    """A board (or a man in the middle) answering with a bad certificate request."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import AttributeOID, NameOID

    def csr(link, challenge, pending=True):
        der = bytearray(orig(link, challenge, pending))
        if kind == "wrong signature":
            der[-3] ^= 0x01
        elif kind == "key not on the curve":
            i = der.find(b"\x03\x42\x00\x04") + 4
            der[i + 63] ^= 0x01  # last byte of Y
        elif kind == "UEID mismatch":
            key = ec.generate_private_key(ec.SECP256R1())
            der = bytearray(x509.CertificateSigningRequestBuilder().subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AgAAAAAAAA")]))
                .add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
                .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
        return bytes(der)

    return csr


@pytest.mark.parametrize("kind,reason", [("wrong signature", "bad_sig"),
                                         ("key not on the curve", "bad_key"),
                                         ("UEID mismatch", "ueid_mismatch")])
def test_bad_certificate_request_from_the_board_issues_nothing(board, p, monkeypatch, kind,
                                                               reason):
    monkeypatch.setattr(idboard, "csr", _tampered_csr(kind, idboard.csr))
    with pytest.raises(IdentityError) as e:
        run(board, p)
    assert e.value.reason == reason
    monkeypatch.undo()
    assert p.state() == {"devices": [], "certs": {}, "events": []}
    st = idboard.status(board)
    assert st["state"] == "pending"  # a key without a certificate: no identity
    assert run(board, p).kid == st["pending_kid"]  # an honest run then finishes


def test_damaged_identity_record_needs_force_and_is_replaced(board, p):
    first = run(board, p)
    board.put(b"\x30\x03\x02\x01\x00" * 4, "/mpguard/id")  # the record no longer parses
    files, inv_state = snapshot(board), p.state()
    with pytest.raises(IdentityError) as e:
        run(board, p)
    assert e.value.reason == "bad_store"
    assert snapshot(board) == files and p.state() == inv_state
    res = run(board, p, force=True)
    assert res.outcome == "reprovisioned" and res.revoked == [first.serial]
    assert idboard.status(board)["state"] == "complete"
