"""Whoever can write the inventory can record a line step as done that no station ran: every
station then skips it (steps are recorded once, not signed one by one). The `attest` step is
the exception: the station that finishes a board attests it itself in that run, whatever the
inventory records, so a step the chip does not show fails the board by the station's policy.

On a virtual board with the real transport, espefuse and a SQLite inventory: `harden` and
`attest` are recorded done by a forger before any station has seen the board; the station
skips the burn (its eFuse file stays blank) but attests the board, whose token says JTAG is
enabled, and the default policy's `jtag-disabled` rule fails it. No traveller says pass."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from line_helpers import Run, make_project, seed_blank, station_file  # noqa: E402

from mpguard.inventory import Inventory  # noqa: E402
from mpguard.inventory.line import Line  # noqa: E402
from mpguard.line import ports, sims, traveller  # noqa: E402

pytestmark = pytest.mark.timeout(300)
STEPS = 'agent = true\nprovision = true\nharden = { profile = "production" }\nattest = true\n'


def _station_and_board(tmp_path, blank_chip):
    """A project, station f's file (STEPS), one virtual board of it running, its port and
    the project's inventory (as a Line)."""
    proj = make_project(tmp_path)
    seed_blank(proj.root, "f", blank_chip)
    path = station_file(tmp_path, "f", STEPS)
    sims.start(proj.root, "f", 1)
    (port,) = ports.SimPorts("f-*").poll().values()
    return proj, path, port, Line(Inventory.open(project_root=proj.root))


def test_a_harden_step_forged_in_the_inventory_fails_the_board_at_its_attestation(
        sim_dir, tmp_path, blank_chip):
    proj, path, port, line = _station_and_board(tmp_path, blank_chip)
    claim = line.claim("B1", port.mac, "forger")  # the board's row, as a station makes it
    line.release(claim.board.id, "forger", "parked", "interrupted before agent")
    now = datetime.now(UTC)
    assert line.step_done(claim.board.id, "harden", "forger", now, now, {"profile": "production"})
    assert line.step_done(claim.board.id, "attest", "forger", now, now, {"verdict": "pass"})
    efuse = sims.folder(proj.root, "f") / "f-1.efuse"
    blank = efuse.read_bytes()

    run = Run(path, "sim:f-*", count=1).go()
    row = run.row("sim:f-1")
    assert (row.status, run.summary.passed) == ("fail", 0), row.reason
    assert row.reason.startswith("attest: ") and "jtag-disabled" in row.reason, row.reason
    steps = {e.data["step"]: e.data["status"] for e in run.of("sim:f-1", "step")
             if e.data["status"] != "running"}
    # the forged harden is skipped (no station burns twice what the inventory says is burned);
    # the forged attest is not: the station attested the board itself, and that failed it
    # (a failed step has no "done" event: the board's end says why)
    assert steps == {"agent": "done", "provision": "done", "harden": "skipped"}
    assert [e.data["step"] for e in run.of("sim:f-1", "step")
            if e.data["status"] == "running"][-1] == "attest"
    assert efuse.read_bytes() == blank  # nothing burned
    rec = line.board("B1", port.mac)
    assert rec.status == "fail"
    body = traveller.verify(rec.traveller, line)  # the station's signed account says fail
    assert body["result"] == "fail" and body["attestation"]["verdict"] == "fail"
    assert "jtag-disabled" in body["attestation"]["failed"]
    line.inv.close()


def test_an_inventory_writer_who_records_a_station_key_of_their_own_skips_the_attestation(
        sim_dir, tmp_path, blank_chip):
    """Review (2026-11-27): the row 'who can write the inventory' says a forged step is caught
    because the attest step is never skipped. But `line_stations` is a table of the same
    inventory: the writer records a station key of their own, records the steps, sets the
    board `pass` and signs its traveller with that key. The traveller verifies for the row, so
    the station reports the board 'already passed' and never attests it: no eFuse burned, no
    attestation, and the station's own run counts it as passed."""
    from mpguard import keys

    proj, path, port, line = _station_and_board(tmp_path, blank_chip)
    evil = keys.generate()  # the forger's own "station" key: no passphrase, no project
    line.register_station("qa-2", keys.public_bytes(evil), keys.thumbprint(evil))
    claim = line.claim("B1", port.mac, "qa-2")
    now = datetime.now(UTC)
    for step in ("agent", "provision", "harden", "attest"):
        assert line.step_done(claim.board.id, step, "qa-2", now, now, {"forged": True})
    rec = line.board("B1", port.mac)
    body = traveller.payload(rec, station="qa-2", operator="x", kind=None, result="pass",
                             reason=None, versions={"attestation": {"verdict": "pass"}})
    line.release(claim.board.id, "qa-2", "pass", None, traveller.sign(body, evil))
    efuse = sims.folder(proj.root, "f") / "f-1.efuse"
    blank = efuse.read_bytes()

    run = Run(path, "sim:f-*", count=1).go()
    row = run.row("sim:f-1")
    ran = [e.data["step"] for e in run.of("sim:f-1", "step") if e.data["status"] == "running"]
    assert efuse.read_bytes() == blank  # nothing burned
    # what the row 'in part' promises: a station with an attest step attests every board it
    # finishes, whatever the inventory says; here the station attests nothing and says pass
    assert "attest" in ran or row.status != "pass", (
        f"board {row.status} ({row.reason}) without any attestation: steps run {ran}")
    # since: a board recorded passed is attested again on a station with an attest step; this
    # one was never provisioned (no identity), so its attestation fails, and so does the board
    assert ran == ["attest"] and row.status == "fail" and run.summary.passed == 0
    assert row.reason.startswith("recorded as passed, but its attestation now fails"), row.reason
    assert line.board("B1", port.mac).status == "pass"  # its row is not written (as before)
    line.inv.close()
