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
    assert cli.main(["release", "build", ".", "--version", "1.0", "-o", "b1.bundle", "--json"]) == 0
    out = capsys.readouterr().out
    r1 = json.loads(out)
    _secrets_absent(out, proj)
    assert r1["app"] == "blinky" and r1["seq"] == 1 and r1["targets"] == ["sim"]
    assert cli.main(["release", "build", ".", "--version", "1.1", "-o", "b2.bundle",
                     "--confirm-after", "30", "--expires-days", "10"]) == 0
    out = capsys.readouterr().out
    assert "sequence 2" in out and "blinky 1.1" in out
    assert cli.main(["release", "verify", "b2.bundle"]) == 0
    out = capsys.readouterr().out
    assert "VERIFIED" in out and "NOT VERIFIED" not in out
    assert "after 30s healthy" in out and "main.py" in out and ": valid" in out
    assert cli.main(["release", "verify", "b1.bundle", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] and rep["manifest"]["seq"] == 1


def test_verify_tampered_and_foreign(proj, tmp_path, capsys):
    assert cli.main(["release", "build", ".", "--version", "1.0", "-o", "b.bundle"]) == 0
    data = bytearray((proj / "apps" / "blinky" / "b.bundle").read_bytes())
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
    assert cli.main(["release", "build", ".", "--version", "1", "-o", "c.bundle",
                     "--confirm-after", "86401"]) == 2
    assert "86400" in capsys.readouterr().err
    assert cli.main(["release", "build", ".", "--version", "1", "-o", "j.bundle",
                     "--seq", str(2**20 + 2)]) == 2
    assert "--seq-jump" in capsys.readouterr().err
    assert cli.main(["release", "build", ".", "--version", "1", "-o", "j.bundle",
                     "--seq", str(2**20 + 2), "--seq-jump", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["seq"] == 2**20 + 2 and len(res["measurement"]) == 64
    # the next one follows on without a jump
    assert cli.main(["release", "build", ".", "--version", "2", "-o", "k.bundle",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 2**20 + 3
    # an explicit sequence issued before, the last one included, is never issued again
    for seq in (2**20 + 3, 1):
        assert cli.main(["release", "build", ".", "--version", "2", "-o", "s.bundle",
                         "--seq", str(seq)]) == 2
        assert "not above the last issued" in capsys.readouterr().err
        assert not Path("s.bundle").exists()
    with pytest.raises(SystemExit):  # a release is exactly the app folder: no --remove
        cli.main(["release", "build", ".", "--version", "3", "-o", "r.bundle",
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
