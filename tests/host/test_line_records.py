"""`mpguard line status` and `mpguard line station` over a batch recorded in a real (SQLite)
inventory, without boards: travellers signed with a real station key, then one altered in the
inventory as someone with write access to it would."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from mpguard import cli, files, keys, project, reasons
from mpguard.inventory import Inventory
from mpguard.inventory import schema as s
from mpguard.inventory.line import Line
from mpguard.line import traveller

STATION = """[station]
name = "S1"
operator = "alice"
batch = "B-9"

[steps]
agent = true
"""
MACS = ("24:0a:c4:00:00:01", "24:0a:c4:00:00:02")


def ueid_of(mac: str) -> bytes:
    return b"\x02" + bytes.fromhex(mac.replace(":", ""))


@pytest.fixture
def batch(tmp_path, monkeypatch):
    """A project with a station file and two boards of batch B-9, each finished by station
    S1 with a signed traveller (as `line run` leaves them)."""
    proj = project.init(tmp_path / "proj", passphrase=None, targets=["sim"])
    (proj.root / "S1.toml").write_text(STATION)
    key = traveller.station_key(proj.root, "S1", None)
    now = datetime.now(UTC)
    with Inventory.open(project_root=proj.root) as inv:
        line = Line(inv)
        line.register_station("S1", keys.public_bytes(key), keys.thumbprint(key))
        for mac in MACS:
            rec = line.claim("B-9", mac, "S1").board
            line.set_ueid(rec.id, ueid_of(mac))
            line.step_done(rec.id, "agent", "S1", now, now, {"files": 3})
            rec = line.board("B-9", mac)
            body = traveller.payload(rec, station="S1", operator="alice", kind="sim",
                                     result="fail", reason="attest: attest_failed",
                                     versions={})
            line.release(rec.id, "S1", "fail", "attest: attest_failed",
                         traveller.sign(body, key))
    monkeypatch.chdir(proj.root)
    return proj


def tamper(proj, mac: str, **values) -> None:
    """Change a board's row in the inventory behind the line's back."""
    with Inventory.open(project_root=proj.root) as inv, inv._write() as conn:
        conn.execute(sa.update(s.line_boards).where(s.line_boards.c.mac == mac).values(**values))


def forged(token: str) -> str:
    """The traveller with its payload's result turned to pass (the signature kept)."""
    head, body, sig = token.split(".")
    data = json.loads(files.b64u_dec(body))
    data["result"] = "pass"
    return ".".join([head, files.b64u_enc(json.dumps(data).encode()), sig])


def status_json(capsys, *args: str) -> tuple[int, dict]:
    rc = cli.main(["line", "status", "--station", "S1.toml", "--json", *args])
    return rc, json.loads(capsys.readouterr().out)


def test_status_all_valid_exits_0(batch, capsys):
    rc, out = status_json(capsys)
    assert rc == reasons.EXIT_OK and out["ok"] is True
    assert [b["traveller"] for b in out["boards"]] == ["valid", "valid"]
    assert out["travellers"] == {"valid": 2, "invalid": 0, "none": 0}


def test_a_traveller_that_does_not_verify_is_a_nonzero_exit(batch, capsys):
    with Inventory.open(project_root=batch.root) as inv:
        token = Line(inv).board("B-9", MACS[0]).traveller
    tamper(batch, MACS[0], traveller=forged(token), status="pass", reason=None)
    rc, out = status_json(capsys)
    assert rc == reasons.EXIT_REFUSED and out["ok"] is False
    assert out["exit_code"] == reasons.EXIT_REFUSED
    bad = {b["mac"]: b["traveller"] for b in out["boards"]}
    assert bad == {MACS[0]: "bad_sig", MACS[1]: "valid"}
    assert out["travellers"] == {"valid": 1, "invalid": 1, "none": 0}
    # the text says so too, and which board
    assert cli.main(["line", "status", "--station", "S1.toml"]) == reasons.EXIT_REFUSED
    text = capsys.readouterr().out
    assert "traveller bad_sig" in text and "1 traveller(s) do not verify" in text
    assert MACS[0] in text.splitlines()[-1]


def test_a_finished_board_without_its_traveller_is_a_nonzero_exit(batch, capsys):
    tamper(batch, MACS[1], traveller=None, status="pass", reason=None)
    rc, out = status_json(capsys)
    assert rc == reasons.EXIT_REFUSED
    assert {b["mac"]: b["traveller"] for b in out["boards"]}[MACS[1]] == "missing"


def test_a_board_still_running_has_no_traveller_yet(batch, capsys):
    tamper(batch, MACS[1], traveller=None, status="running")
    rc, out = status_json(capsys)
    assert rc == reasons.EXIT_OK
    assert {b["mac"]: b["traveller"] for b in out["boards"]}[MACS[1]] is None
    assert out["travellers"] == {"valid": 1, "invalid": 0, "none": 1}


def test_status_shows_ueids_in_base64url_as_the_rest_of_mpguard(batch, capsys):
    want = [files.b64u_enc(ueid_of(m)) for m in MACS]
    _, out = status_json(capsys)
    assert [b["ueid"] for b in out["boards"]] == want
    assert cli.main(["line", "status", "--station", "S1.toml"]) == 0
    text = capsys.readouterr().out
    for u, m in zip(want, MACS, strict=True):
        assert u in text and ueid_of(m).hex() not in text
    # the same form `devices list` would show for these boards
    from mpguard.identity import records
    assert want == [records.ueid_b64(ueid_of(m).hex()) for m in MACS]


# --- `mpguard line station`: the station's public key, for whoever verifies travellers ----


def test_station_public_key_as_pem_and_json_never_the_private_key(batch, capsys):
    from cryptography.hazmat.primitives import serialization

    key = keys.load_private(traveller.key_path(batch.root, "S1"))
    assert cli.main(["line", "station", "--station", "S1.toml", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    (st,) = data["stations"]
    assert (st["name"], st["kid"]) == ("S1", keys.thumbprint(key))
    pub = serialization.load_pem_public_key(st["public_key_pem"].encode())
    assert keys.public_bytes(pub) == keys.public_bytes(key)
    assert st["public_key"] == files.b64u_enc(keys.public_bytes(key))
    assert "PRIVATE" not in out
    # text: the PEM itself, ready for a JOSE library or openssl
    assert cli.main(["line", "station", "--name", "S1"]) == 0
    text = capsys.readouterr().out
    assert st["public_key_pem"].strip() in text and st["kid"] in text and "PRIVATE" not in text
    # a traveller verifies with that key alone (as an outside verifier does)
    with Inventory.open(project_root=batch.root) as inv:
        token = Line(inv).board("B-9", MACS[0]).traveller
    from mpguard import jose
    _, body = jose.verify(token, {st["kid"]: keys.public_bytes(pub)})
    assert json.loads(body)["mac"] == MACS[0]


def test_station_list_and_unknown_station(batch, capsys):
    assert cli.main(["line", "station", "--json"]) == 0  # every station of the inventory
    assert [s["name"] for s in json.loads(capsys.readouterr().out)["stations"]] == ["S1"]
    rc = cli.main(["line", "station", "--name", "S2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == reasons.EXIT_USAGE and out["error"]["reason"] == "unknown_station"
    assert "line run" in out["error"]["hint"]


# --- `mpguard devices export`: every file it writes is reported, travellers included ------


@pytest.mark.parametrize("index", ["json", "csv"])
def test_devices_export_reports_the_traveller_files_it_writes(batch, enroll, capsys, tmp_path,
                                                              index):
    from cryptography.hazmat.primitives.asymmetric import ec

    with Inventory.open(project_root=batch.root) as inv:
        for mac in MACS:
            enroll(inv, ec.generate_private_key(ec.SECP256R1()), ueid_of(mac))
    out = tmp_path / "export"
    flag = ["--csv"] if index == "csv" else []
    assert cli.main(["devices", "export", "-o", str(out), "--json", *flag]) == 0
    reported = json.loads(capsys.readouterr().out)["files"]
    written = sorted(str(p) for p in out.iterdir())
    assert sorted(reported) == written
    names = [files.b64u_enc(ueid_of(m)) for m in MACS]
    assert {f"{n}.B-9.traveller.jws" for n in names} <= {p.rsplit("/", 1)[1] for p in reported}
    assert f"devices.{index}" in {p.rsplit("/", 1)[1] for p in reported}
    # the text lists the same files, one a line
    assert cli.main(["devices", "export", "-o", str(tmp_path / "again"), *flag]) == 0
    text = capsys.readouterr().out.splitlines()
    assert sorted(text) == sorted(str(p) for p in (tmp_path / "again").iterdir())
