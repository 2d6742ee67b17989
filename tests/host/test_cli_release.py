"""`mpguard init` and `mpguard release build|verify` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpguard import cli

PW = "a passphrase nobody guesses"


@pytest.fixture
def proj(tmp_path, monkeypatch):
    monkeypatch.setenv("MPGUARD_PASSPHRASE", PW)
    root = tmp_path / "proj"
    assert cli.main(["init", str(root), "--target", "sim", "--json"]) == 0
    app = root / "apps" / "blinky"
    app.mkdir(parents=True)
    (app / "main.py").write_text("print('blink')\n")
    monkeypatch.chdir(app)  # commands find the project upwards from here
    return root


def _secrets_absent(text, root):
    assert PW not in text
    assert "PRIVATE KEY" not in text
    pem = (root / "keys" / "release-1.pem").read_text()
    body = "".join(pem.splitlines()[1:-1])
    assert body[:40] not in text


def test_init_json_and_human(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MPGUARD_PASSPHRASE", PW)
    assert cli.main(["init", str(tmp_path / "p"), "--json"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out)
    assert info["encrypted"] is True and info["targets"] == ["esp32"]
    assert (tmp_path / "p" / "anchors.json").exists()
    _secrets_absent(out, tmp_path / "p")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "q", "--no-passphrase"]) == 0
    out = capsys.readouterr().out
    assert "NOT encrypted" in out
    _secrets_absent(out, tmp_path / "q")


def test_init_twice_is_a_clear_error(proj, capsys):
    capsys.readouterr()
    assert cli.main(["init", str(proj)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpguard: ") and "already an mpguard project" in err


def test_init_without_passphrase_source_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MPGUARD_PASSPHRASE", raising=False)
    assert cli.main(["init", str(tmp_path / "p")]) != 0  # no terminal under pytest
    assert "MPGUARD_PASSPHRASE" in capsys.readouterr().err
    assert not (tmp_path / "p" / "mpguard.json").exists()


def test_build_then_verify(proj, capsys):
    capsys.readouterr()
    assert cli.main(["release", "build", ".", "--version", "1.0", "-o", "../b1.bundle", "--json"]) == 0
    out = capsys.readouterr().out
    r1 = json.loads(out)
    _secrets_absent(out, proj)
    assert r1["app"] == "blinky" and r1["seq"] == 1 and r1["targets"] == ["sim"]
    assert cli.main(["release", "build", ".", "--version", "1.1", "-o", "../b2.bundle",
                     "--confirm-after", "30", "--expires-days", "10"]) == 0
    out = capsys.readouterr().out
    assert "sequence 2" in out and "blinky 1.1" in out
    assert cli.main(["release", "verify", "../b2.bundle"]) == 0
    out = capsys.readouterr().out
    assert "VERIFIED" in out and "NOT VERIFIED" not in out
    assert "after 30s healthy" in out and "main.py" in out and ": valid" in out
    assert cli.main(["release", "verify", "../b1.bundle", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] and rep["manifest"]["seq"] == 1


def test_verify_tampered_and_foreign(proj, tmp_path, capsys):
    assert cli.main(["release", "build", ".", "--version", "1.0", "-o", "../b.bundle"]) == 0
    data = bytearray((proj / "apps" / "b.bundle").read_bytes())
    data[-2] ^= 1
    bad = tmp_path / "bad.bundle"
    bad.write_bytes(bytes(data))
    capsys.readouterr()
    assert cli.main(["release", "verify", str(bad)]) == 4
    out = capsys.readouterr().out
    assert "NOT VERIFIED" in out and "do not match its SHA-256" in out
    # a bundle from another project: unknown key, against this project's anchors
    assert cli.main(["init", str(tmp_path / "other"), "--target", "sim"]) == 0
    other_app = tmp_path / "oapp"
    other_app.mkdir()
    (other_app / "main.py").write_text("")
    assert cli.main(["release", "build", str(other_app), "--version", "1", "-o",
                     str(tmp_path / "o.bundle"), "--project", str(tmp_path / "other")]) == 0
    capsys.readouterr()
    assert cli.main(["release", "verify", str(tmp_path / "o.bundle"), "--json"]) == 4
    rep = json.loads(capsys.readouterr().out)
    assert rep["signature"] == "unknown_key"
    assert cli.main(["release", "verify", str(tmp_path / "o.bundle"), "--anchors",
                     str(tmp_path / "other" / "anchors.json")]) == 0


def test_errors_are_one_line(proj, tmp_path, capsys, monkeypatch):
    capsys.readouterr()
    assert cli.main(["release", "build", "nowhere", "--version", "1", "-o", "x.bundle"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpguard: ") and "not a folder" in err and "Traceback" not in err
    assert cli.main(["release", "verify", "missing.bundle"]) == 2
    assert "cannot read" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert cli.main(["release", "build", str(proj / "apps" / "blinky"), "--version", "1",
                     "-o", "x.bundle"]) == 2
    assert "no mpguard project" in capsys.readouterr().err
    monkeypatch.setenv("MPGUARD_PASSPHRASE", "wrong")
    assert cli.main(["release", "build", str(proj / "apps" / "blinky"), "--version", "1",
                     "-o", "x.bundle", "--project", str(proj)]) != 0
    err = capsys.readouterr().err
    assert "passphrase" in err and "wrong" not in err.replace("wrong passphrase", "")
    assert not (tmp_path / "x.bundle").exists()


def test_build_caps_confirm_after_and_guards_sequence_jumps(proj, capsys):
    capsys.readouterr()
    assert cli.main(["release", "build", ".", "--version", "1", "-o", "../c.bundle",
                     "--confirm-after", "86401"]) == 2
    assert "86400" in capsys.readouterr().err
    assert cli.main(["release", "build", ".", "--version", "1", "-o", "../j.bundle",
                     "--seq", str(2**20 + 2)]) == 2
    assert "--seq-jump" in capsys.readouterr().err
    assert cli.main(["release", "build", ".", "--version", "1", "-o", "../j.bundle",
                     "--seq", str(2**20 + 2), "--seq-jump", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["seq"] == 2**20 + 2 and len(res["measurement"]) == 64
    # the next one follows on without a jump
    assert cli.main(["release", "build", ".", "--version", "2", "-o", "../k.bundle",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 2**20 + 3
    # an explicit sequence issued before, the last one included, is never issued again
    for seq in (2**20 + 3, 1):
        assert cli.main(["release", "build", ".", "--version", "2", "-o", "../s.bundle",
                         "--seq", str(seq)]) == 2
        assert "not above the last issued" in capsys.readouterr().err
        assert not Path("../s.bundle").exists()
    with pytest.raises(SystemExit):  # a release is exactly the app folder: no --remove
        cli.main(["release", "build", ".", "--version", "3", "-o", "../r.bundle",
                  "--remove", "old.py"])


def test_verify_prints_unverified_times_and_numbers_safely(proj, tmp_path, capsys):
    from mpguard import jose, keys
    from mpguard.updates import bundle

    key = keys.generate()
    for bad in ({"iat": 10**20, "exp": "soon"}, {"iat": -5, "exp": 2**70, "confirm": "x\x1b"},
                {"files": [["main.py", 1]], "seq": True}):
        m = {"fmt": 1, "seq": 9, "targets": ["sim"], "app": "a", "ver": "1", "agent": "0.1.0",
             "iat": 1, "files": [["main.py", 1, "00" * 32]]}
        m.update(bad)
        (tmp_path / "x.bundle").write_bytes(
            bundle.assemble(jose.sign(json.dumps(m).encode(), key), [b"x"]))
        capsys.readouterr()
        assert cli.main(["release", "verify", str(tmp_path / "x.bundle")]) == 4
        out = capsys.readouterr()
        assert out.out.splitlines()[-1] == "  NOT VERIFIED" and "Traceback" not in out.err
        assert "\x1b" not in out.out


def _snapshot(root):
    """Every file of the project (bytes), to check that a refused build changed nothing."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(argv, capsys, *words):
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpguard: ") and "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


def test_build_refuses_the_project_folder_its_parent_and_keys(proj, tmp_path, capsys):
    (proj / "main.py").write_text("print('root')\n")
    (proj / "keys" / "main.py").write_text("print('keys')\n")
    before = _snapshot(proj)
    out = tmp_path / "root.bundle"
    for appdir, what in ((proj, "is the project's folder"), (tmp_path, "holds the project's"),
                         (proj / "keys", "inside the project's keys folder")):
        _refused(["release", "build", str(appdir), "--version", "5", "-o", str(out)],
                 capsys, what)
        assert not out.exists()
    assert _snapshot(proj) == before and not (proj / "releases.json").exists()


def test_build_refuses_private_keys_and_project_files(proj, tmp_path, capsys):
    from cryptography.hazmat.primitives import serialization

    from mpguard import keys

    app = proj / "apps" / "blinky"
    out = tmp_path / "x.bundle"
    der = keys.generate().private_bytes(serialization.Encoding.DER,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    pem = (proj / "keys" / "release-1.pem").read_bytes()
    cases = [
        ("copied.txt", lambda p: p.write_bytes(b"notes\n" + pem)),  # PEM armour in a file
        ("key.der", lambda p: p.write_bytes(der)),  # a DER private key
        ("cfg.json", lambda p: p.hardlink_to(proj / "mpguard.json")),  # the config, hard-linked
    ]
    for name, make in cases:
        make(app / name)
        before = _snapshot(proj)
        err = _refused(["release", "build", ".", "--version", "1", "-o", str(out)], capsys,
                       name)
        _secrets_absent(err, proj)
        assert not out.exists() and _snapshot(proj) == before
        (app / name).unlink()
    # the inventory, where the config puts it (here: inside the app folder)
    cfg = json.loads((proj / "mpguard.json").read_text())
    cfg["inventory"] = "sqlite:///apps/blinky/devices.db"
    (proj / "mpguard.json").write_text(json.dumps(cfg))
    (app / "devices.db").write_bytes(b"SQLite format 3\0")
    _refused(["release", "build", ".", "--version", "1", "-o", str(out)], capsys,
             "devices.db", "project's own files")
    assert not out.exists() and not (proj / "releases.json").exists()


def test_build_refuses_a_copy_of_an_inventory_under_any_name(proj, tmp_path, capsys):
    # a copy (not the project's file: another inode, another name) of an inventory holding a
    # board; another SQLite database, not an inventory, goes in as any data file
    import shutil
    import sqlite3

    from mpguard.inventory import Inventory

    app = proj / "apps" / "blinky"
    out = tmp_path / "inv.bundle"
    db = tmp_path / "fleet.db"
    with Inventory.open(f"sqlite:///{db}") as inv:
        inv.add_event(None, "note", {"who": "operator-7Hq2"})
    shutil.copyfile(db, app / "table.bin")
    before = _snapshot(proj)
    err = _refused(["release", "build", ".", "--version", "1", "-o", str(out)], capsys,
                   "table.bin", "copy of an mpguard inventory")
    assert "operator-7Hq2" not in err
    assert not out.exists() and _snapshot(proj) == before
    assert not (proj / "releases.json").exists()
    (app / "table.bin").unlink()
    other = sqlite3.connect(app / "notes.db")
    other.execute("CREATE TABLE notes (t TEXT)")
    other.commit()
    other.close()
    assert cli.main(["release", "build", ".", "--version", "1", "-o", str(out), "--json"]) == 0
    capsys.readouterr()


def test_build_symlinks_inside_followed_outside_refused(proj, tmp_path, capsys):
    app = proj / "apps" / "blinky"
    out = tmp_path / "s.bundle"
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret\n")
    (app / "lib").mkdir()
    (app / "lib" / "util.py").write_text("X = 1\n")
    for name, target, words in (("leak.txt", secret, ["leak.txt", "outside the app folder"]),
                                ("gone.py", tmp_path / "nothing", ["gone.py"]),
                                ("up.py", proj / "mpguard.json", ["up.py"]),
                                ("dir", tmp_path, ["dir", "symlinked folder"]),
                                ("lib2", app / "lib", ["lib2", "symlinked folder"])):
        (app / name).symlink_to(target)
        err = _refused(["release", "build", ".", "--version", "1", "-o", str(out)], capsys,
                       *words)
        assert "$6$secret" not in err and not out.exists()
        (app / name).unlink()
    assert not (proj / "releases.json").exists()
    # a link to a file inside the folder is followed: its contents go in under its name
    (app / "alias.py").symlink_to(app / "lib" / "util.py")
    assert cli.main(["release", "build", ".", "--version", "1", "-o", str(out), "--json"]) == 0
    capsys.readouterr()
    assert cli.main(["release", "verify", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert {f["path"]: f["size"] for f in rep["files"]}["alias.py"] == 6


def test_build_output_must_be_a_file_outside_the_app(proj, tmp_path, capsys):
    before = _snapshot(proj)
    for o, words in (("x.bundle", ["inside the app folder"]),
                     ("../blinky/y.bundle", ["inside the app folder"]),
                     (str(tmp_path / "nonexist" / "x.bundle"), ["does not exist"]),
                     (str(tmp_path), ["is a folder"]), (".", ["is a folder"])):
        _refused(["release", "build", ".", "--version", "1", "-o", o], capsys, *words)
    assert _snapshot(proj) == before and not (proj / "releases.json").exists()
    assert not (proj / "apps" / "blinky" / "x.bundle").exists()


def test_build_refuses_a_release_key_that_is_not_the_configured_one(proj, tmp_path, capsys):
    assert cli.main(["init", str(tmp_path / "other"), "--target", "sim"]) == 0
    (proj / "keys" / "release-1.pem").write_bytes(
        (tmp_path / "other" / "keys" / "release-1.pem").read_bytes())
    kid = json.loads((proj / "mpguard.json").read_text())["release_keys"][0]["kid"]
    before = _snapshot(proj)
    out = tmp_path / "w.bundle"
    err = _refused(["release", "build", ".", "--version", "1", "-o", str(out)], capsys,
                   "is not the project's release key", kid)
    _secrets_absent(err, proj)
    assert not out.exists() and _snapshot(proj) == before
    assert not (proj / "releases.json").exists()


def test_build_writes_no_bundle_when_the_record_cannot_be_written(
        proj, tmp_path, capsys):
    out = tmp_path / "b.bundle"
    out.write_bytes(b"an older bundle")
    # the record cannot be written (its folder is a file): no bundle, the old one stays
    cfg = json.loads((proj / "mpguard.json").read_text())
    cfg["releases"] = "blocked/releases.json"
    (proj / "mpguard.json").write_text(json.dumps(cfg))
    (proj / "blocked").write_text("")
    capsys.readouterr()
    assert cli.main(["release", "build", ".", "--version", "1", "-o", str(out), "--json"]) == 2
    obj = json.loads(capsys.readouterr().out)
    assert obj["ok"] is False and "no bundle was written" in obj["error"]["message"]
    assert out.read_bytes() == b"an older bundle"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_build_refuses_a_copy_of_an_inventory_taken_while_it_is_open(proj, tmp_path, capsys):
    """Review (2026-11-27): an inventory copied while a program has it open (a station's
    `line run`) holds its tables and rows in its write-ahead log: the database file is a
    page of nothing, the `-wal` file beside it the boards, MACs, certificates and events.
    Neither is told an inventory (is_inventory reads the database file's own tables only),
    so a careless `cp inventory.db* apps/blinky/` builds, and the bundle carries the rows."""
    import shutil

    from mpguard.inventory import Inventory

    app = proj / "apps" / "blinky"
    out = tmp_path / "wal.bundle"
    db = tmp_path / "fleet.db"
    with Inventory.open(f"sqlite:///{db}") as inv:
        inv.add_event(None, "note", {"who": "operator-7Hq2"})
        for suffix in ("", "-wal"):  # while it is open, as a station holds it
            shutil.copyfile(f"{db}{suffix}", app / f"fleet.db{suffix}")
    capsys.readouterr()
    code = cli.main(["release", "build", ".", "--version", "1", "-o", str(out), "--json"])
    capsys.readouterr()
    assert code == 2 or b"operator-7Hq2" not in out.read_bytes(), (
        "built: the bundle carries the inventory's rows from its -wal copy")
    # since: the log is refused by its magic, named, never its contents
    err = _refused(["release", "build", ".", "--version", "1", "-o", str(out)], capsys,
                   "fleet.db-wal", "write-ahead log")
    assert "operator-7Hq2" not in err and not out.exists()
    assert not (proj / "releases.json").exists()
