"""The line's records against someone who can write to the inventory but holds no station key,
against a station that outlives its claim, and against a station whose clock is off: a real
inventory (SQLite; both backends for the claims), real station keys, a real Worker (its steps
stubbed, no board)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from test_line_records import MACS, STATION, ueid_of  # the same batch of S1

from mpguard import cli, keys, project, reasons
from mpguard.errors import LineError
from mpguard.inventory import Inventory
from mpguard.inventory import records as inv_records
from mpguard.inventory import schema as s
from mpguard.inventory.line import Line
from mpguard.line import station as station_mod
from mpguard.line import steps, traveller
from mpguard.line.ports import Port
from mpguard.line.worker import Journal, Worker


@pytest.fixture
def batch(tmp_path, monkeypatch):
    """Batch B-9 of two boards finished by station S1: MACS[0] passed, MACS[1] failed, each
    with its genuine signed traveller (as `line run` leaves them)."""
    proj = project.init(tmp_path / "proj", passphrase=None, targets=["sim"])
    (proj.root / "S1.toml").write_text(STATION)
    key = traveller.station_key(proj.root, "S1", None)
    now = datetime.now(UTC)
    with Inventory.open(project_root=proj.root) as inv:
        line = Line(inv)
        line.register_station("S1", keys.public_bytes(key), keys.thumbprint(key))
        for mac, result, reason in ((MACS[0], "pass", None),
                                    (MACS[1], "fail", "attest: attest_failed")):
            rec = line.claim("B-9", mac, "S1").board
            line.set_ueid(rec.id, ueid_of(mac))
            line.step_done(rec.id, "agent", "S1", now, now, {"files": 3})
            rec = line.board("B-9", mac)
            body = traveller.payload(rec, station="S1", operator="alice", kind="sim",
                                     result=result, reason=reason, versions={})
            line.release(rec.id, "S1", result, reason, traveller.sign(body, key))
    monkeypatch.chdir(proj.root)
    return proj


def tamper(proj, mac: str, **values) -> None:
    """What an insider with write access to the inventory (no station key) can do."""
    with Inventory.open(project_root=proj.root) as inv, inv._write() as conn:
        conn.execute(sa.update(s.line_boards).where(s.line_boards.c.mac == mac).values(**values))


def status_json(capsys) -> tuple[int, dict]:
    rc = cli.main(["line", "status", "--station", "S1.toml", "--json"])
    return rc, json.loads(capsys.readouterr().out)


def worker(proj, inv, mac: str, key, ran: list[str], monkeypatch, *, station: str = STATION,
           hook=None) -> Worker:
    """A real Worker of station S1 on `mac` (no board: each step records its name in `ran`;
    `hook(name)` runs inside a step, as something happening while it lasts)."""
    path = proj.root / "S1.toml"
    path.write_text(station)
    st = station_mod.load(path)

    def step(name):
        def run(b, cfg):
            ran.append(name)
            if hook:
                hook(name)
            return {"n": len(ran)}
        return run

    for name in st.order:
        monkeypatch.setitem(steps.RUN, name, step(name))
    ctx = steps.Context(station=st, project=proj, passphrase=None, inventory=inv, anchors={},
                        burn=True)
    return Worker(ctx, Port(device="/dev/null", label="p", mac=mac), Line(inv),
                  Journal(proj.root / "line" / "S1.journal"), key, lambda e: None,
                  lambda dev: True)


# --- a failed board turned into a passed one, without forging its traveller -------------


def test_row_status_flipped_to_pass_with_its_genuine_fail_traveller_does_not_verify(
        batch, capsys):
    """The insider leaves the signed traveller (result: fail) alone and only sets the row's
    status to pass: the traveller does not verify for that row (exit 4)."""
    tamper(batch, MACS[1], status="pass", reason=None)
    rc, out = status_json(capsys)
    boards = {b["mac"]: b for b in out["boards"]}
    assert boards[MACS[1]]["status"] == "pass"  # what the row now says
    assert boards[MACS[1]]["traveller"] == "traveller_mismatch"
    assert boards[MACS[0]]["traveller"] == "valid"
    assert rc == reasons.EXIT_REFUSED


def test_a_passed_boards_traveller_copied_onto_a_failed_board_does_not_verify(batch, capsys):
    """Board 0's genuine pass traveller copied onto board 1 (another MAC, UEID), its row set
    to pass: the signature verifies, its mac and ueid are not board 1's."""
    with Inventory.open(project_root=batch.root) as inv:
        good = Line(inv).board("B-9", MACS[0]).traveller
    tamper(batch, MACS[1], status="pass", reason=None, traveller=good)
    rc, out = status_json(capsys)
    board = {b["mac"]: b for b in out["boards"]}[MACS[1]]
    assert board["traveller"] == "traveller_mismatch"
    assert rc == reasons.EXIT_REFUSED


def test_a_step_row_added_after_the_traveller_does_not_verify(batch, capsys):
    """The row's recorded steps must be the ones the traveller lists."""
    now = datetime.now(UTC)
    with Inventory.open(project_root=batch.root) as inv, inv._write() as conn:
        bid = conn.execute(sa.select(s.line_boards.c.id)
                           .where(s.line_boards.c.mac == MACS[0])).scalar_one()
        conn.execute(sa.insert(s.line_steps).values(
            board_id=bid, step="harden", station="S1", started_at=now, ended_at=now,
            seconds=1.0, detail={"burned": ["JTAG_DISABLE"]}))
    rc, out = status_json(capsys)
    assert {b["mac"]: b for b in out["boards"]}[MACS[0]]["traveller"] == "traveller_mismatch"
    assert rc == reasons.EXIT_REFUSED


def test_a_traveller_naming_another_station_than_its_signer_does_not_verify(batch, capsys):
    """Station S2 (its own key, registered) signs a traveller whose payload says S1."""
    key2 = traveller.station_key(batch.root, "S2", None)
    with Inventory.open(project_root=batch.root) as inv:
        line = Line(inv)
        line.register_station("S2", keys.public_bytes(key2), keys.thumbprint(key2))
        rec = line.board("B-9", MACS[1])
        body = traveller.payload(rec, station="S1", operator="alice", kind="sim",
                                 result="pass", reason=None, versions={})
        tok = traveller.sign(body, key2)
    tamper(batch, MACS[1], status="pass", reason=None, traveller=tok)
    rc, out = status_json(capsys)
    board = {b["mac"]: b for b in out["boards"]}[MACS[1]]
    assert board["traveller"] == "bad_station"
    assert rc == reasons.EXIT_REFUSED


def test_the_line_does_not_skip_a_board_whose_pass_row_its_traveller_contradicts(
        batch, monkeypatch):
    """A failed board whose row an insider set to pass: the station does not report it
    'already passed' (nor run it, nor write to it): it fails it here, saying why. A board
    that did pass is still 'already passed'."""
    tamper(batch, MACS[1], status="pass", reason=None)
    key = traveller.station_key(batch.root, "S1", None)
    ran: list[str] = []
    with Inventory.open(project_root=batch.root) as inv:
        before = Line(inv).board("B-9", MACS[1])
        w = worker(batch, inv, MACS[1], key, ran, monkeypatch)
        w.run()
        assert w.status == "fail" and w.reason != "already passed"
        assert "traveller does not verify" in w.reason and "traveller_mismatch" in w.reason
        assert ran == []
        after = Line(inv).board("B-9", MACS[1])
        assert (after.status, after.traveller, after.claimed_by) == ("pass", before.traveller,
                                                                     None)
        ok = worker(batch, inv, MACS[0], key, ran, monkeypatch)
        ok.run()
        assert (ok.status, ok.reason, ran) == ("pass", "already passed", [])


# --- claims: renewed while the station works; lost claims; the database's clock ----------


def age(inv: Inventory, board_id: int, minutes: float) -> None:
    """Time passing for the board's claim: its claimed_at moved `minutes` into the past."""
    with inv._write() as conn:
        at = conn.execute(sa.select(s.line_boards.c.claimed_at)
                          .where(s.line_boards.c.id == board_id)).scalar_one()
        conn.execute(sa.update(s.line_boards).where(s.line_boards.c.id == board_id)
                     .values(claimed_at=at - timedelta(minutes=minutes)))


def test_a_station_recording_steps_keeps_its_claim(inventory):
    """Station A claims a board, completes a step 9 minutes later (a slow flash), and works
    on: 2 minutes after that step (11 after its claim) station B cannot take the board."""
    line = Line(inventory)
    a = line.claim("B-10", MACS[0], "A")
    assert a.ok
    age(inventory, a.board.id, 9)
    t = datetime.now(UTC)
    assert line.step_done(a.board.id, "agent", "A", t, t, {})
    age(inventory, a.board.id, 2)
    b = line.claim("B-10", MACS[0], "B")
    assert not b.ok and b.held_by == "A"
    age(inventory, a.board.id, 9)  # A silent for 11 minutes: a crashed station's claim
    assert line.claim("B-10", MACS[0], "B").ok


def test_renew_keeps_a_claim_and_says_who_took_it(inventory):
    line = Line(inventory)
    a = line.claim("B-10", MACS[0], "A").board
    age(inventory, a.id, 9)
    assert line.renew(a.id, "A") is None
    age(inventory, a.id, 2)
    assert not line.claim("B-10", MACS[0], "B").ok
    age(inventory, a.id, 9)
    assert line.claim("B-10", MACS[0], "B").ok
    assert line.renew(a.id, "A") == "B"


def test_a_station_that_lost_its_claim_is_told_so(inventory):
    """B took the board over from A (A's claim had lapsed). A's step is still recorded (it
    was done to the board) without renewing anything for A, and A's release is refused
    (claim_lost): B's row stays as it is."""
    line = Line(inventory)
    a = line.claim("B-10", MACS[0], "A").board
    age(inventory, a.id, 30)
    assert line.claim("B-10", MACS[0], "B").ok
    t = datetime.now(UTC)
    assert line.step_done(a.id, "provision", "A", t, t, {})
    with pytest.raises(LineError) as e:
        line.release(a.id, "A", "pass", None, "a.b.c")
    assert e.value.reason == "claim_lost" and "held by B" in str(e.value)
    after = line.board("B-10", MACS[0])
    assert (after.status, after.claimed_by, after.traveller) == ("running", "B", None)
    assert "provision" in after.done


def test_a_worker_whose_board_is_taken_over_stops_it_and_says_why(tmp_path, monkeypatch):
    """While station S1 runs its first step (longer than the lease), station S9 takes the
    board over: S1 does not start its next step, does not sign or release anything, and
    reports the board held, naming who took it."""
    proj = project.init(tmp_path / "proj", passphrase=None, targets=["sim"])
    key = traveller.station_key(proj.root, "S1", None)
    ran: list[str] = []
    with Inventory.open(project_root=proj.root) as inv:
        line = Line(inv)
        line.register_station("S1", keys.public_bytes(key), keys.thumbprint(key))

        def takeover(name):
            if name == "agent":
                rec = line.board("B-9", MACS[0])
                age(inv, rec.id, 11)
                assert line.claim("B-9", MACS[0], "S9").ok

        w = worker(proj, inv, MACS[0], key, ran, monkeypatch, hook=takeover,
                   station=STATION + 'harden = { profile = "production" }\n')
        w.run()
        rec = line.board("B-9", MACS[0])
    assert ran == ["agent"]  # harden (a burn) never started
    assert w.status == "held" and w.reason == "claim lost to station S9: stopped before harden"
    assert (rec.status, rec.claimed_by, rec.traveller) == ("running", "S9", None)
    assert rec.done == {"agent"}


def test_a_clock_ahead_does_not_take_over_a_fresh_claim(inventory, monkeypatch):
    """Claims are dated and compared with the database's clock: station B, whose clock runs
    11 minutes ahead, cannot take a claim made a second ago."""
    line = Line(inventory)
    real = datetime.now(UTC)
    assert line.claim("B-10", MACS[0], "A").ok
    monkeypatch.setattr(inv_records, "now", lambda: real + timedelta(minutes=11))
    b = line.claim("B-10", MACS[0], "B")
    assert not b.ok and b.held_by == "A"


def test_a_clock_behind_does_not_keep_a_crashed_stations_claim(inventory, monkeypatch):
    """Station A crashed 11 minutes ago; station B's clock runs an hour behind: on the
    database's clock A's claim has lapsed, and B takes the board (not an hour later)."""
    line = Line(inventory)
    a = line.claim("B-10", MACS[0], "A").board
    age(inventory, a.id, 11)
    monkeypatch.setattr(inv_records, "now", lambda: datetime.now(UTC) - timedelta(hours=1))
    assert line.claim("B-10", MACS[0], "B").ok


# --- devices export from a station sharing the inventory: its CRL misses a revocation ------


def test_export_refuses_a_crl_that_misses_a_revocation_of_the_shared_inventory(
        tmp_path, monkeypatch, capsys, device_ca, enroll):
    """Two stations share one inventory, each with its copy of the project. A board revoked
    at station A (`devices revoke` signs A's CRL file) is exported at station B, whose CRL
    does not list it: B refuses (exit 4, crl_stale, nothing written) and says where to sign
    the CRL again. Once the CRL signed at A is copied to B, the export lists the revocation."""
    import shutil

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from mpguard import files
    from mpguard.identity import ca

    a = project.init(tmp_path / "A" / "proj", passphrase=None, targets=["sim"])
    for name in (ca.KEY_PATH, ca.CERT_PATH, ca.CRL_PATH):  # the project's CA: `enroll`'s
        shutil.copyfile(device_ca.root / name, a.root / name)
    b_root = tmp_path / "B" / "proj"
    shutil.copytree(a.root, b_root)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    ueid = ueid_of(MACS[0])
    with Inventory.open(url) as inv:
        dev = enroll(inv, ec.generate_private_key(ec.SECP256R1()), ueid)
    serial = dev.certificate.serial
    monkeypatch.chdir(a.root)
    assert cli.main(["devices", "revoke", files.b64u_enc(ueid), "--reason", "keyCompromise",
                     "--db", url]) == 0
    monkeypatch.chdir(b_root)
    out = tmp_path / "export"
    capsys.readouterr()
    assert cli.main(["devices", "export", "-o", str(out), "--db", url]) == reasons.EXIT_REFUSED
    err = capsys.readouterr().err
    assert "misses revocations" in err and format(serial, "x") in err and "mpguard ca crl" in err
    assert not out.exists()
    shutil.copyfile(a.root / ca.CRL_PATH, b_root / ca.CRL_PATH)  # the CRL signed at A
    assert cli.main(["devices", "export", "-o", str(out), "--db", url, "--json"]) == 0
    capsys.readouterr()
    assert json.loads((out / "devices.json").read_text())[0]["state"] == "revoked"
    crl = x509.load_pem_x509_crl((out / "devices-ca-crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None


# --- ca crl, devices export/show with odd input (a quick review of devices/ca) --------------


def test_crl_signing_never_takes_a_revocation_back_and_ids_are_exact(
        tmp_path, monkeypatch, capsys, device_ca, enroll):
    """`ca crl --db` of an empty (or mistyped) inventory signed a CRL without the revocations
    the current one lists: a compromised certificate verified again. Refused now (exit 4,
    the CRL untouched). And: a board's ID in a non-canonical spelling names no board; a
    repeated ID is exported once; an -o under a file is a typed error."""
    import shutil

    from cryptography.hazmat.primitives.asymmetric import ec

    from mpguard import files
    from mpguard.identity import ca

    p = project.init(tmp_path / "proj", passphrase=None, targets=["sim"])
    for name in (ca.KEY_PATH, ca.CERT_PATH, ca.CRL_PATH):  # the project's CA: `enroll`'s
        shutil.copyfile(device_ca.root / name, p.root / name)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    ueid = ueid_of(MACS[0])
    with Inventory.open(url) as inv:
        enroll(inv, ec.generate_private_key(ec.SECP256R1()), ueid)
    monkeypatch.chdir(p.root)
    ident = files.b64u_enc(ueid)
    assert cli.main(["devices", "revoke", ident, "--reason", "keyCompromise", "--db", url]) == 0
    crl = (p.root / ca.CRL_PATH).read_bytes()
    capsys.readouterr()
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    with Inventory.open(empty):
        pass
    assert cli.main(["ca", "crl", "--db", empty]) == reasons.EXIT_REFUSED
    assert "take them back" in capsys.readouterr().err
    assert (p.root / ca.CRL_PATH).read_bytes() == crl
    assert cli.main(["ca", "crl", "--db", url]) == 0  # the inventory that holds them: fine
    # the same UEID spelt with its unused low bits set names no board
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    other = ident[:-1] + last[last.index(ident[-1]) + 1]
    assert cli.main(["devices", "show", other, "--db", url]) == 2
    capsys.readouterr()
    out = tmp_path / "out"
    assert cli.main(["devices", "export", "-o", str(out), ident, ident, "--db", url]) == 0
    assert len(json.loads((out / "devices.json").read_text())) == 1
    capsys.readouterr()
    assert cli.main(["devices", "export", "-o", str(p.root / "mpguard.json" / "x"),
                     "--db", url]) == 2
    assert "Traceback" not in capsys.readouterr().err
