"""`mpguard provision`, `devices` and `ca` as a user runs them against a virtual board (keys
encrypted with a passphrase), `openssl verify` on what `devices export` writes, and the test
that the board's private key appears nowhere on the host side: not in the project folder,
the inventory, the exported files, the CLI's output, the sim's log or what the board printed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from idhelp import MPGUARD, Cli, board_private_key, find_key, host_side, key_encodings, split_probe

import mpguard.sim as simlib
from mpguard.link import BoardLink

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ, MPGUARD_SIM_DIR=str(tmp_path / "sims"), MPGUARD_PASSPHRASE="pw")
    yield e
    subprocess.run(MPGUARD + ["sim", "stop", "--all"], env=e, capture_output=True)


def test_cli_provision_devices_export_and_the_key_never_leaves_the_board(env, tmp_path):
    cli = Cli(env, tmp_path)
    cli("sim", "start", "--name", "b")
    cli("init", "proj", "--target", "sim")
    cli.cwd = tmp_path / "proj"
    assert (cli.cwd / "keys" / "device-ca.pem").read_bytes().startswith(
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----")

    # the board has no agent yet: provision installs it, then the identity
    first = cli.json("provision", "--port", "sim:b", "--batch", "b-1", "--station", "desk")
    assert first["outcome"] == "provisioned" and first["agent_installed"]
    again = cli.json("provision", "--port", "sim:b")
    assert again["outcome"] == "already" and again["serial"] == first["serial"]
    text = cli("provision", "--port", "sim:b").stdout
    assert "already provisioned" in text and "nothing changed" in text
    forced = cli.json("provision", "--port", "sim:b", "--force")
    assert forced["outcome"] == "reprovisioned" and forced["revoked"] == [first["serial"]]

    # deploy records its outcome in the board's history
    (cli.cwd / "app").mkdir()
    (cli.cwd / "app" / "main.py").write_text("import guard\nguard.confirm()\n")
    cli("release", "build", "app", "--version", "1.0.0", "-o", "app.bundle")
    assert cli.json("deploy", "--port", "sim:b", "app.bundle")["outcome"] == "confirmed"

    rows = cli.json("devices", "list")["devices"]
    assert [(r["ueid"], r["serial"], r["state"], r["batch"]) for r in rows] == [
        (first["ueid"], forced["serial"], "valid", "b-1")]
    csv_text = cli("devices", "list", "--csv").stdout
    assert csv_text.splitlines()[0].startswith("ueid,kind,chip,mac,kid,serial")
    assert first["ueid"] in csv_text
    shown = cli.json("devices", "show", first["ueid"])
    assert [c["state"] for c in shown["certificates"]] == ["revoked", "valid"]
    assert [e["kind"] for e in shown["events"]] == ["provision", "reprovision", "deploy"]
    dep = shown["events"][-1]["data"]
    assert dep["outcome"] == "confirmed" and dep["runs"] == {"app": "app", "ver": "1.0.0", "seq": 1}
    # the same bundle again is refused; --json carries `error` as every command's failure does
    again = cli.json("deploy", "--port", "sim:b", "app.bundle", code=4)
    assert again["ok"] is False and again["exit_code"] == 4 and again["outcome"] == "refused"
    assert again["error"]["type"] == "DeployRefused" and again["error"]["reason"], again
    assert "mpguard: no board" in cli("devices", "show", "AgAAAAAAAAAA", code=2).stderr

    # what export writes, openssl verifies (and its CRL check refuses a revoked one)
    cli("devices", "export", "-o", str(tmp_path / "out"))
    out = tmp_path / "out"
    board_pem = out / f"{first['ueid']}.pem"
    assert json.loads((out / "devices.json").read_text())[0]["certificate"] == board_pem.name
    if shutil.which("openssl"):
        ok = subprocess.run(["openssl", "verify", "-CAfile", str(out / "devices-ca.pem"),
                             str(board_pem)], capture_output=True, text=True)
        assert ok.returncode == 0 and ": OK" in ok.stdout, ok.stderr
        cli("devices", "revoke", first["ueid"], "--reason", "keyCompromise")
        # again: refused (4, as docs/devices.md says; it was 2), nothing changed
        again = cli("devices", "revoke", first["ueid"], code=4)
        assert "revoked" in again.stderr
        cli("devices", "export", "-o", str(out), "--csv")
        bad = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile",
                              str(out / "devices-ca.pem"), "-CRLfile",
                              str(out / "devices-ca-crl.pem"), str(board_pem)],
                             capture_output=True, text=True)
        assert bad.returncode != 0 and "revoked" in (bad.stdout + bad.stderr).lower()
    assert (out / "devices.csv").exists()

    # the passphrase is needed to issue: without it nothing happens (the board is untouched)
    # a validity out of range is bad input (2), refused before the board makes a key
    for days in ("0", "-5", "99999999"):
        r = cli("provision", "--port", "sim:b", "--force", "--days", days, code=2)
        assert "days" in r.stderr, r.stderr
    assert cli.json("devices", "show", first["ueid"])["certificates"][-1]["serial"] == \
        forced["serial"]
    no_pw = {k: v for k, v in env.items() if k != "MPGUARD_PASSPHRASE"}
    r = cli("provision", "--port", "sim:b", "--force", code=2, env=no_pw)
    assert "passphrase" in r.stderr

    # the grep: the board's key (read from its flash by the board, test-only) is nowhere
    os.environ["MPGUARD_SIM_DIR"] = env["MPGUARD_SIM_DIR"]
    try:
        with BoardLink(simlib.get("b").port) as link:
            sec1 = board_private_key(link)
            console = link.console
    finally:
        del os.environ["MPGUARD_SIM_DIR"]
    encodings = key_encodings(sec1)
    assert find_key(split_probe(encodings), encodings)  # it finds a key split over PEM lines
    blobs = host_side(tmp_path, tmp_path / "sims", cli.transcript, console)
    assert any("inventory.db" in k for k in blobs) and any(k.endswith(".log") for k in blobs)
    assert find_key(blobs, encodings) == []


def test_ca_init_for_a_project_made_before_identities(env, tmp_path):
    cli = Cli(env, tmp_path)
    cli("init", "old", "--target", "sim")
    cli.cwd = tmp_path / "old"
    for name in ("keys/device-ca.pem", "devices-ca.pem", "devices-ca-crl.pem"):
        (cli.cwd / name).unlink()  # as a project made before this release looks
    r = cli("provision", "--port", "/dev/null-no-such-port", code=2)
    assert "no device CA" in r.stderr and "ca init" in r.stderr
    info = cli.json("ca", "init")
    assert info["encrypted"] and info["crl_revoked"] == 0
    r = cli("ca", "init", code=2)
    assert "mpguard: the project already has a device CA" in r.stderr
    assert "passphrase" not in r.stderr  # refused before asking for one
    shown = cli.json("ca", "show")
    assert shown["sha256"] == info["sha256"]
    crl = cli.json("ca", "crl")
    assert crl["crl_revoked"] == 0 and crl["sha256"] == info["sha256"]


def test_help_lists_exit_codes():
    for cmd in (["provision"], ["devices", "list"], ["ca", "init"]):
        r = subprocess.run(MPGUARD + cmd + ["--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "exit codes: 0 success" in r.stdout, cmd
