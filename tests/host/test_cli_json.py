"""`--json`: one JSON object on stdout for every outcome, errors included, with the exit code;
unverified bundle text is escaped; init keeps private keys out of git; passphrase hygiene."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mpguard import cli, jose, keys
from mpguard.files import atomic_write
from mpguard.updates import bundle

PW = "a passphrase nobody guesses"


@pytest.fixture
def proj(tmp_path, monkeypatch):
    monkeypatch.setenv("MPGUARD_PASSPHRASE", PW)
    root = tmp_path / "proj"
    assert cli.main(["init", str(root), "--target", "sim"]) == 0
    (root / "app").mkdir()
    (root / "app" / "main.py").write_text("import guard\nguard.confirm()\n")
    monkeypatch.chdir(root)
    return root


def _json(capsys) -> dict:
    out = capsys.readouterr().out
    obj = json.loads(out)  # exactly one object: json.loads refuses trailing text
    assert isinstance(obj, dict)
    return obj


@pytest.mark.parametrize("argv, rc, etype", [
    (["release", "verify", "missing.bundle", "--json"], 2, "CommandError"),
    (["release", "build", "nowhere", "--version", "1", "-o", "x.bundle", "--json"], 2, "BundleError"),
    (["deploy", "--port", "/dev/no-such-port", "x.bundle", "--json"], 2, "CommandError"),
    (["deploy", "--port", "sim:nobody", "app", "--json"], 2, None),
    (["agent", "install", "--port", "/dev/no-such-port", "--json"], 3, "NoPortError"),
    (["release", "build", "app", "--json"], 2, "UsageError"),  # --version and -o missing
    # a review's finds (2026-11-27): each was a traceback, or accepted and then misleading
    (["init", "mpguard.json", "--no-passphrase", "--json"], 2, "ProjectError"),  # a file
    (["init", "mpguard.json/x", "--no-passphrase", "--json"], 2, "ProjectError"),
    (["deploy", "--port", "sim:nobody", "--wait", "-5", "x.bundle", "--json"], 2, "UsageError"),
    (["deploy", "--port", "sim:nobody", "--wait", "nan", "x.bundle", "--json"], 2, "UsageError"),
    (["devices", "export", "-o", "mpguard.json", "--json"], 2, "CommandError"),
    (["report", "--since", "99999999999d", "--json"], 2, None),  # before the calendar: no crash
    # a target no board can be (a board's kind comes from its profile): every board refused it
    (["init", "other", "--target", "nope", "--no-passphrase", "--json"], 2, "ProjectError"),
    (["line", "run", "--station", "s.toml", "--count", "0", "--json"], 2, "UsageError"),
    (["line", "run", "--station", "s.toml", "--count", "-1", "--json"], 2, "UsageError"),
    (["line", "run", "--station", "s.toml", "--idle", "nan", "--json"], 2, "UsageError"),
    (["release", "build", "app", "--version", "1", "-o", "t.bundle", "--target", "nope",
      "--json"], 2, "ProjectError"),
])
def test_errors_are_one_json_object(proj, capsys, argv, rc, etype):
    if argv[0] == "deploy" and "/dev/no-such-port" in argv:
        (proj / "x.bundle").write_bytes(b"")  # readable, so the port is what fails
        argv = [a if a != "x.bundle" else "missing-too.bundle" for a in argv]
    with pytest.raises(SystemExit) if etype == "UsageError" else _nothing():
        got = cli.main(argv)
        assert got == rc
    obj = _json(capsys)
    assert obj["ok"] is False and obj["exit_code"] == rc
    assert obj["error"]["message"]
    assert not (proj / "t.bundle").exists() and not (proj / "other").exists()
    assert not (proj / "releases.json").exists()  # no sequence taken
    if etype:
        assert obj["error"]["type"] == etype
    if etype == "UsageError":  # a hint that helps, not the command's name alone
        assert obj["error"]["hint"].endswith("--help`"), obj["error"]


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_wrong_passphrase_is_json_and_never_echoed(proj, capsys, monkeypatch):
    monkeypatch.setenv("MPGUARD_PASSPHRASE", "not-the-passphrase-at-all")
    assert cli.main(["release", "build", "app", "--version", "1", "-o", "a.bundle", "--json"]) == 2
    obj = _json(capsys)
    assert obj["error"]["type"] == "PassphraseError"
    assert "not-the-passphrase-at-all" not in json.dumps(obj)
    assert not (proj / "a.bundle").exists()


def test_success_carries_exit_code(proj, capsys):
    assert cli.main(["release", "build", "app", "--version", "1", "-o", "a.bundle", "--json"]) == 0
    obj = _json(capsys)
    assert obj["ok"] is True and obj["exit_code"] == 0 and obj["seq"] == 1
    assert cli.main(["release", "verify", "a.bundle", "--json"]) == 0
    assert _json(capsys)["signature"] == "valid"


def test_usage_error_through_the_real_command(proj):
    proc = subprocess.run([sys.executable, "-m", "mpguard", "deploy", "--json"],
                          capture_output=True, text=True, cwd=proj)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"]["type"] == "UsageError"


def test_every_command_help_lists_exit_codes(capsys):
    for argv in (["init"], ["agent", "install"], ["release", "build"], ["release", "verify"],
                 ["deploy"]):
        with pytest.raises(SystemExit):
            cli.main(argv + ["--help"])
        assert "exit codes:" in capsys.readouterr().out, argv


def test_unverified_text_cannot_paint_a_verdict(proj, capsys):
    """An app name with newlines and ANSI escapes, signed by an unknown key: printed escaped."""
    evil = "x\x1b[2K\r  VERIFIED\n\x1b[1A"
    key = keys.generate()
    m = {"fmt": 1, "seq": 9, "targets": ["sim"], "app": evil, "ver": "1\n  VERIFIED",
         "agent": "0.1.0", "iat": 1, "files": [["main.py", 1, "00" * 32]]}
    tok = jose.sign(json.dumps(m).encode(), key)
    (proj / "evil.bundle").write_bytes(bundle.assemble(tok, [b"x"]))
    assert cli.main(["release", "verify", "evil.bundle"]) == 4
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    lines = out.splitlines()
    assert [ln for ln in lines if ln.strip() == "VERIFIED"] == []
    assert lines[-1] == "  NOT VERIFIED"
    assert "NOT verified" in out


def test_init_writes_a_gitignore_for_private_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("MPGUARD_PASSPHRASE", PW)
    root = tmp_path / "p"
    root.mkdir()
    (root / ".gitignore").write_text("build/")  # the user's own, without a final newline
    assert cli.main(["init", str(root)]) == 0
    lines = (root / ".gitignore").read_text().splitlines()
    assert lines[0] == "build/" and "keys/*.pem" in lines
    if subprocess.run(["git", "--version"], capture_output=True).returncode == 0:
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        ignored = subprocess.run(["git", "-C", str(root), "check-ignore", "keys/release-1.pem"],
                                 capture_output=True, text=True)
        assert ignored.returncode == 0, "git would track the private key"


def test_init_gitignore_covers_the_lines_local_files(tmp_path, monkeypatch):
    """What `mpguard line` writes into the project: its station key, journal and the --sims
    boards' eFuse files stay out of git; the station file and the project's own records go in."""
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git is not installed")
    from mpguard.line import run as line_run
    from mpguard.line import sims, traveller

    monkeypatch.setenv("MPGUARD_PASSPHRASE", PW)
    root = tmp_path / "p"
    assert cli.main(["init", str(root), "--target", "sim"]) == 0
    local = [traveller.key_path(root, "H"), line_run.journal_path(root, "H"),
             sims.folder(root, "H") / "H-1.efuse", sims.folder(root, "H") / "blank-esp32.efuse"]
    kept = [root / "H.toml", root / "anchors.json", root / "mpguard.json", root / "releases.json",
            root / "devices-ca.pem"]
    for p in local + kept:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    res = subprocess.run(["git", "-C", str(root), "check-ignore", "--no-index",
                          *(str(p.relative_to(root)) for p in local + kept)],
                         capture_output=True, text=True)
    assert sorted(res.stdout.split()) == sorted(str(p.relative_to(root)) for p in local)
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "-uall"],
                            capture_output=True, text=True, check=True).stdout
    assert "line/" not in status and "H.toml" in status


def test_passphrase_asks_again_on_mismatch_and_warns_when_short(capsys):
    answers = iter(["short", "typo", "short", "short"])
    pw = keys.passphrase(confirm=True, env={}, ask=lambda _p: next(answers), interactive=True)
    assert pw == b"short"
    err = capsys.readouterr().err
    assert "differ" in err and "easy to guess" in err
    answers = iter(["a" * 20, "b" * 20] * 3)
    with pytest.raises(keys.PassphraseError, match="differ"):
        keys.passphrase(confirm=True, env={}, ask=lambda _p: next(answers), interactive=True)


def test_key_write_never_follows_a_planted_symlink(tmp_path):
    victim = tmp_path / "elsewhere.txt"
    victim.write_text("keep me")
    target = tmp_path / "keys"
    target.mkdir()
    (target / "release-1.pem").symlink_to(victim)  # planted before the key is written
    keys.save_private(keys.generate(), target / "release-1.pem", PW, overwrite=True)
    assert victim.read_text() == "keep me"
    assert not (target / "release-1.pem").is_symlink()
    # and without overwrite, a planted (even dangling) link counts as "exists"
    (target / "release-2.pem").symlink_to(tmp_path / "nowhere.pem")
    with pytest.raises(keys.KeyStoreError, match="exists"):
        keys.save_private(keys.generate(), target / "release-2.pem", PW)
    assert not (tmp_path / "nowhere.pem").exists()


def test_atomic_write_create_only(tmp_path):
    p = tmp_path / "f"
    atomic_write(p, b"1", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write(p, b"2", overwrite=False)
    assert p.read_bytes() == b"1" and sorted(x.name for x in tmp_path.iterdir()) == ["f"]


def test_attest_refuses_an_output_it_cannot_write_before_it_attests(proj, capsys):
    # it attested (and recorded the attestation in the inventory), then failed to write the
    # report; now the output is checked first: the port is never opened
    rc = cli.main(["attest", "--port", "sim:nobody", "--html", "no/such/dir/a.html", "--json"])
    obj = _json(capsys)
    assert rc == 2 and obj["error"]["type"] == "CommandError"
    assert "cannot write no/such/dir/a.html" in obj["error"]["message"]


def test_line_run_errors_are_one_json_line(proj, capsys):
    # line run --json is JSON lines: its error too is one line (it was an indented object in
    # the middle of the stream)
    rc = cli.main(["line", "run", "--station", "no-such-station.toml", "--json"])
    out = capsys.readouterr().out
    assert rc == 2 and out.count("\n") == 1, out
    obj = json.loads(out)
    assert obj["ok"] is False and obj["exit_code"] == 2


def test_error_text_never_carries_terminal_escapes(proj, capsys):
    # what a board or a token puts in an error (a reason, a kid, a detail; here a file name)
    # reached the terminal as it was: an escape sequence could retitle, clear or recolour it
    name = "evil\x1b]0;owned\x07\x1b[2J\u202e.bundle"
    assert cli.main(["release", "verify", name]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\u202e" not in err, repr(err)
    assert "evil\\x1b]0;owned\\x07" in err


def test_report_and_attest_take_db_as_the_other_commands_do(proj, capsys):
    # docs/inventory.md names the inventory with --db; attest and report knew only --inventory
    for argv in (["report", "--db", "sqlite:///nowhere-yet.db", "--json"],
                 ["attest", "--port", "sim:nobody", "--db", "sqlite:///nowhere-yet.db", "--json"]):
        cli.main(argv)
        obj = _json(capsys)
        assert obj["error"]["type"] != "UsageError", (argv, obj)


def test_init_names_the_operator_key_it_made(tmp_path, capsys):
    # docs/init.md lists keys/operator-1.pem; init's summary did not say it made one
    assert cli.main(["init", str(tmp_path / "p"), "--target", "sim", "--no-passphrase"]) == 0
    assert "operator key  " in capsys.readouterr().out
    assert cli.main(["init", str(tmp_path / "q"), "--target", "sim", "--no-passphrase",
                     "--json"]) == 0
    obj = _json(capsys)
    assert obj["operator_key"].endswith("keys/operator-1.pem") and obj["operator_kid"]
