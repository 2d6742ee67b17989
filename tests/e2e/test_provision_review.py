"""A review's finds in provisioning and uninstall (2026-11-27), each a test that failed before
its fix: a board's status then begin naming different UEIDs (or a recorded one) cannot take a
recorded identity without --force; uninstall does not delete a provisioned board's key unless
told; a record whose certificate does not parse is bad_store, not a traceback; a leftover
pending key beside a current key its record names is "already"."""

from __future__ import annotations

import pytest
from idhelp import Cli, Proj

from mpguard.agent import install as agent_install
from mpguard.agent import uninstall as agent_uninstall
from mpguard.errors import CommandError, IdentityError
from mpguard.identity import board as idboard
from mpguard.identity import provision as prov

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def p(tmp_path) -> Proj:
    return Proj(tmp_path / "proj")


def run(link, p: Proj, **kw) -> prov.Provisioned:
    return prov.provision(link, p.proj, passphrase=None, **kw)


def test_status_without_ueid_then_begin_with_a_recorded_ueid_takes_over_without_force(
        board, p, monkeypatch):
    """provision.py:120-141: the refusals (identity_known) are decided on identity.status's
    UEID, the issuance on identity.begin's. A board whose status names no UEID (as a fresh
    `rand`-UEID board honestly does) but whose begin names a UEID the inventory has gets
    that board's identity WITHOUT --force: the recorded board's certificate is revoked
    (superseded) and the record now points at the new key."""
    first = run(board, p)
    board.remove("/mpguard/id")  # this board (or a second one claiming its UEID) has no key
    # without the lie: refused, as docs/provision.md says
    with pytest.raises(IdentityError) as e:
        run(board, p)
    assert e.value.reason == "identity_known"
    orig = idboard.status

    def lying_status(link):  # the board's status answer names no UEID (begin's still does)
        st = orig(link)
        st["ueid"] = None
        return st

    monkeypatch.setattr(idboard, "status", lying_status)
    try:
        res = run(board, p)
    except IdentityError as e:
        assert e.reason in ("identity_known", "ueid_mismatch")
        return
    # what happens: another key for the recorded UEID, no --force, the old cert revoked
    with p.inventory() as inv:
        revoked = [format(c.serial, "x") for c in inv.revoked()]
    pytest.fail(f"no --force, yet {res.outcome}: UEID {res.ueid} now has key {res.kid} "
                f"(was {first.kid}); revoked {revoked}")


def test_uninstall_of_a_provisioned_board_needs_force(board, p):
    # it removed /mpguard, the only copy of the board's identity key, without a word; the
    # inventory kept a certificate for a key that no longer existed anywhere
    res = run(board, p)
    before = {f: board.sha256(f) for f in ("/mpguard/id", "/main.py", "/lib/guard/rpc.mpy")}
    with pytest.raises(CommandError) as e:
        agent_uninstall.uninstall(board)
    assert "identity" in str(e.value) and "--force" in str(e.value)
    assert {f: board.sha256(f) for f in before} == before  # nothing changed
    rep = agent_uninstall.uninstall(board, force=True)  # told: it goes
    assert "/mpguard/id" in rep.removed and not board.exists("/mpguard/id")
    agent_install.install(board, p.proj.board_anchors(), force=True)
    assert idboard.status(board)["state"] != "complete" and res.kid


def test_identity_record_whose_certificate_is_not_a_certificate_is_a_traceback(
        board, p, tmp_path):
    """provision.py:174-175: a "complete" record (the board's DER framing holds) whose
    certificate is not X.509 makes x509.load_der_x509_certificate raise ValueError: the CLI
    prints an internal error/traceback (exit 1) instead of refusing bad_store (exit 4)."""
    run(board, p)
    key = board.get("/mpguard/id")[:121]
    board.put(key + b"\x30\x03\x02\x01\x00" + b"\x30\x03\x02\x01\x00", "/mpguard/id")
    st = idboard.status(board)
    assert st["state"] == "complete"  # the board says so
    board.close()
    import os
    cli = Cli(dict(os.environ), p.root)
    r = cli("provision", "--port", board.port, code=(1, 4))
    assert r.returncode == 4 and "Traceback" not in r.stderr, r.stderr[-800:]


def test_left_over_pending_key_makes_a_consistent_board_refused_with_a_false_reason(board, p):
    """provision.py:122,133-135: a board whose identity matches its record but which also
    holds a pending key (an interrupted `provision --force` cut before the inventory was
    written, or an interrupted identity rotation: both leave /mpguard/id.new) skips the
    "already" check and is refused identity_known, "the board has none of it", although it
    holds the recorded key (and proves it)."""
    first = run(board, p)
    board.soft_reset()  # key generation wants a whole heap, as provision gives it
    board.call("identity.begin", [idboard.b64u(b"\x01" * 32), True])  # the cut --force run
    st = idboard.status(board)
    assert st["state"] == "complete" and st["kid"] == first.kid and st["pending_kid"]
    try:
        res = run(board, p)
    except IdentityError as e:
        pytest.fail(f"refused {e.reason}: {e} (the board holds key {st['kid']}, its record's)")
    assert res.outcome in ("already", "resumed")


