"""`mpguard agent install` and `mpguard deploy` as a user runs them, against a virtual board,
and `make demo`'s story."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import mpguard.sim as simlib
from mpguard.cli import demo

pytestmark = pytest.mark.timeout(300)
MPGUARD = [str(Path(sys.executable).parent / "mpguard")]


@pytest.fixture
def env(tmp_path, monkeypatch):
    e = dict(os.environ, MPGUARD_SIM_DIR=str(tmp_path / "sims"), MPGUARD_PASSPHRASE="pw")
    monkeypatch.setenv("MPGUARD_SIM_DIR", e["MPGUARD_SIM_DIR"])  # mpguard.sim in this process
    yield e
    for s in simlib.list_sims():
        simlib.rm(s.name, force=True)


def cli(env, cwd, *args):
    return subprocess.run(MPGUARD + list(args), env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def board_files(env, name):
    """Every file on the board with its SHA-256 (read with the real mpremote)."""
    port = simlib.get(name).port
    code = ("import os,hashlib,binascii\n"
            "def w(d):\n for e in os.ilistdir(d):\n  p=d.rstrip('/')+'/'+e[0]\n"
            "  if e[1]==0x4000: w(p)\n  else: print(p, binascii.hexlify(hashlib.sha256("
            "open(p,'rb').read()).digest()).decode())\nw('/')")
    out = subprocess.run([str(Path(sys.executable).parent / "mpremote"), "connect", port,
                          "exec", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return sorted(out.stdout.split("\n"))


def test_agent_install_idempotent_and_refusals(env, tmp_path):
    assert cli(env, tmp_path, "sim", "start", "--name", "b").returncode == 0
    assert cli(env, tmp_path, "init", "p1", "--target", "sim").returncode == 0
    assert cli(env, tmp_path, "init", "p2", "--target", "sim").returncode == 0
    r = cli(env, tmp_path / "p1", "agent", "install", "--port", "sim:b", "--json")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["format"] == "mpy" and first["board_kind"] == "sim"
    assert "/lib/guard/install.mpy" in first["written"] and "/main.py" in first["written"]
    again = json.loads(cli(env, tmp_path / "p1", "agent", "install", "--port", "sim:b",
                           "--json").stdout)
    assert again["written"] == [] and len(again["unchanged"]) == len(first["written"])

    before = board_files(env, "b")
    # another project's anchors are refused; the board is unchanged
    r = cli(env, tmp_path / "p2", "agent", "install", "--port", "sim:b")
    assert r.returncode == 2
    assert "other trust anchors" in r.stderr and r.stderr.startswith("mpguard: ")
    assert board_files(env, "b") == before
    # --force replaces them
    r = cli(env, tmp_path / "p2", "agent", "install", "--port", "sim:b", "--force", "--json")
    assert r.returncode == 0
    written = json.loads(r.stdout)["written"]  # the new anchors, after their comb tables
    assert written[-1] == "/mpguard/anchors.json"
    assert written[:-1] and all(p.startswith("/mpguard/tab/") for p in written[:-1])
    # anchors emptied by hand: refused even with --force (the board would trust no key, for
    # good), nothing written
    before = board_files(env, "b")
    a = tmp_path / "p2" / "anchors.json"
    a.write_text(json.dumps(dict(json.loads(a.read_text()), keys={})))
    r = cli(env, tmp_path / "p2", "agent", "install", "--port", "sim:b", "--force")
    assert r.returncode == 2 and "name no release key" in r.stderr, r.stderr
    assert board_files(env, "b") == before


def test_agent_install_refuses_a_users_own_main_py(env, tmp_path):
    cli(env, tmp_path, "sim", "start", "--name", "c")
    cli(env, tmp_path, "init", "p", "--target", "sim")
    port = simlib.get("c").port
    (tmp_path / "main.py").write_text("print('my own app')\n")
    subprocess.run([str(Path(sys.executable).parent / "mpremote"), "connect", port, "fs", "cp",
                    str(tmp_path / "main.py"), ":/main.py"], check=True, capture_output=True)
    before = board_files(env, "c")
    r = cli(env, tmp_path / "p", "agent", "install", "--port", "sim:c")
    assert r.returncode == 2 and "its own /main.py" in r.stderr
    assert board_files(env, "c") == before


def test_bad_ports_and_files_are_clear_errors(env, tmp_path):
    cli(env, tmp_path, "init", "p", "--target", "sim")
    r = cli(env, tmp_path / "p", "agent", "install", "--port", "sim:nope")
    assert r.returncode == 2 and r.stderr.startswith("mpguard: ") and "nope" in r.stderr
    r = cli(env, tmp_path / "p", "deploy", "--port", "/dev/ttyNOPE", str(tmp_path / "x.bundle"))
    assert r.returncode == 2 and "cannot read" in r.stderr
    (tmp_path / "x.bundle").write_bytes(b"MPGB")
    r = cli(env, tmp_path / "p", "deploy", "--port", "/dev/ttyNOPE", str(tmp_path / "x.bundle"))
    assert r.returncode == 3 and "no such port" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_demo_tells_the_whole_story(tmp_path, capsys, monkeypatch):
    made = []  # the demo's MQTT passwords, to prove none is printed or left behind
    token = demo.secrets.token_urlsafe
    monkeypatch.setattr(demo.secrets, "token_urlsafe", lambda n: made.append(token(n)) or made[-1])
    assert demo.run(tmp_path / "demo") == 0
    out = capsys.readouterr().out
    assert "confirmed: demo 1.0.0 (sequence 1) runs on /dev/" in out
    assert "confirmed: demo 2.0.0 (sequence 2) runs on /dev/" in out
    # the rollback as the agent's state tells it (not the console: deterministic)
    assert "agent state | last update: rolled_back demo 3.0.0 (sequence 3) after 3 trial boots" in out
    assert "outcome: rolled_back; the board runs demo 2.0.0 (seq 2)" in out
    assert re.search(r"refused by the board /dev/\S+ \(uid [0-9a-f]+, sim\): signed by a key "
                     "that is not trusted here", out)
    assert "the board trusts " in out  # the numbers: who signed, whom the board trusts
    # the provisioning step: an identity, then "already provisioned"; the deploys recorded
    assert "provisioned: " in out and "already provisioned with a matching record" in out
    assert out.count("  deploy       ") == 4

    # the rotation step against a real broker: the CONNACK codes are the broker's answers, the
    # app's lines the board's console, the rotation line the CLI's (none is the demo's script)
    rot = out[out.index("\n== 5. rotation"):]
    assert re.search(r"secret mqtt set on \S+: epoch 1 \(was 0\)", rot)
    assert re.search(r"confirmed: demo 5\.0\.0 \(sequence 4\) runs on /dev/", rot)
    assert re.search(r"mqtt rotated on \S+: tested on the board, committed, epoch 2 "
                     r"\(the board restarted\)", rot)
    assert ("CONNECT as board with the old password (24 chars): CONNACK 5, refused: not "
            "authorized") in rot
    assert "CONNECT as board with the new password (24 chars): CONNACK 0, accepted" in rot
    # the app connected before the rotation (first password) and after the old one was retired
    assert rot.count("    | APP: mqtt connected") == 2
    assert rot.index("mqtt rotated on") < rot.index("retires the first password") \
        < rot.rindex("    | APP: mqtt connected")
    assert re.search(r"mqtt +epoch 2", rot)
    # no password in the output or in the project folder; the broker is stopped
    assert len(made) == 2 and all(len(p) == 24 for p in made)
    assert not [p for p in made if p in out]
    files = [f for f in (tmp_path / "demo").rglob("*") if f.is_file()]
    assert files and not [f for f in files for p in made if p.encode() in f.read_bytes()]
    assert not (tmp_path / "demo" / "secrets").exists()
    broker_port = int(re.search(r"amqtt on 127\.0\.0\.1:(\d+)", rot).group(1))
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker_port), timeout=2).close()


def test_commands_on_a_board_without_the_agent_say_to_install_it(env, tmp_path):
    # attest, secret status and rotate identity asked the board's guard.rpc for an answer and
    # printed "board raised ImportError" (exit 1); like deploy, they say what to do (exit 2),
    # and neither the board nor the inventory changes
    from idhelp import Proj

    simlib.start("bare")
    p = Proj(tmp_path / "proj")
    before_board = board_files(env, "bare")
    before_inv = p.state()
    for args in (["attest"], ["secret", "status"], ["rotate", "identity"],
                 ["attest", "--json"], ["anchors", "push"]):
        r = cli(env, p.root, *args, "--port", "sim:bare")
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        told = r.stdout + r.stderr
        assert "Traceback" not in told and "mpguard agent install" in told, (args, told)
        if "--json" in args:
            out = json.loads(r.stdout)
            assert out["ok"] is False and out["exit_code"] == 2, out
        elif args[0] == "anchors":  # its hint said to run `anchors push` again
            assert "has no trust anchors" in r.stderr and "anchors push" not in r.stderr, r.stderr
        else:
            assert "missing or incomplete" in r.stderr, (args, r.stderr)
    assert board_files(env, "bare") == before_board
    assert p.state() == before_inv


def test_a_stopped_virtual_board_is_not_reachable(env, tmp_path):
    # as an unplugged board: exit 3 (it was 2, bad input, against the README's table)
    simlib.start("off")
    simlib.stop("off")
    r = cli(env, tmp_path, "status", "--port", "sim:off", "--json")
    assert r.returncode == 3, (r.stdout, r.stderr)
    out = json.loads(r.stdout)
    assert out["error"]["type"] == "NoPortError" and "sim start --name off" in out["error"]["message"]
