"""The CLI when a board resets or stalls (issue #15 item 1), as a user meets it: `mpguard
deploy` and `mpguard agent install` after `mpguard sim cut`, an overall deadline, `mpguard
status`, a port another program holds, and deploy on a board without the agent; every
outcome one JSON object with --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mpguard.sim as simlib
from mpguard.link import BoardLink

pytestmark = pytest.mark.timeout(300)
MPGUARD = [str(Path(sys.executable).parent / "mpguard")]
CHATTY = 'import guard, time\nguard.confirm()\nwhile True:\n    print("tick")\n    time.sleep_ms(20)\n'


class Desk:
    """A running virtual board `desk` and a project `p` next to it, driven by the CLI."""

    def __init__(self, root: Path):
        self.root = root
        self.env = dict(os.environ, MPGUARD_PASSPHRASE="pw")  # MPGUARD_SIM_DIR: sim_dir's
        self.proj = root / "p"

    def __call__(self, *args: str, ok: tuple[int, ...] | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run(MPGUARD + list(args), env=self.env, cwd=self.proj, capture_output=True,
                           text=True, timeout=240)
        if ok is not None:
            assert r.returncode in ok, (args, r.returncode, r.stdout, r.stderr)
        return r

    def json(self, *args: str, rc: int) -> dict:
        r = self(*args, "--json")
        obj = json.loads(r.stdout)  # exactly one object, whatever happened
        assert (r.returncode, obj["exit_code"], obj["ok"]) == (rc, rc, rc == 0), r.stderr
        return obj

    def release(self, version: str, src: str, **files: bytes) -> str:
        d = self.proj / f"app-{version}"
        d.mkdir()
        (d / "main.py").write_text(src)
        for name, data in files.items():
            (d / name).write_bytes(data)
        out = f"demo-{version}.bundle"
        self("release", "build", d.name, "--app", "demo", "--version", version, "-o", out, ok=(0,))
        return out


@pytest.fixture
def desk(sim_factory, tmp_path) -> Desk:
    sim_factory("desk")
    d = Desk(tmp_path)
    subprocess.run(MPGUARD + ["init", str(d.proj), "--target", "sim"], env=d.env,
                   capture_output=True, check=True)
    d("agent", "install", "--port", "sim:desk", ok=(0,))
    return d


def test_deploy_when_the_board_resets_mid_transfer_exits_3_and_keeps_the_old_app(desk):
    desk("deploy", "--port", "sim:desk", desk.release("1.0.0", CHATTY), ok=(0,))
    v2 = desk.release("2.0.0", CHATTY, **{"data.bin": os.urandom(30000)})
    desk("sim", "cut", "desk", "--after", "2", "--torn", ok=(0,))
    obj = desk.json("deploy", "--port", "sim:desk", v2, "--wait", "20", rc=3)
    assert obj["error"]["type"] == "BoardReset" and obj["error"]["reason"] == "board_reset"
    assert obj["error"]["message"] == ("the board reset during the transfer; it kept its old "
                                       "app, demo 1.0.0 (sequence 1); run again")
    assert simlib.stats("desk")["power_cuts"] == 1
    st = desk.json("status", "--port", "sim:desk", rc=0)
    assert (st["update"]["ver"], st["update"]["trial"], st["main_py"]) == ("1.0.0", None, "agent")
    # the text form says the same, on stderr, with what to do
    desk("sim", "cut", "desk", "--after", "2", "--torn", ok=(0,))
    r = desk("deploy", "--port", "sim:desk", v2, ok=(3,))
    assert "mpguard: the board reset during the transfer" in r.stderr and "hint: " in r.stderr
    r = desk("deploy", "--port", "sim:desk", v2, ok=(0,))
    assert r.stdout.startswith("confirmed: demo 2.0.0 (sequence 2) runs on ")


def test_agent_install_when_the_board_resets_mid_install_exits_3_then_runs_again(desk):
    desk("deploy", "--port", "sim:desk", desk.release("1.0.0", CHATTY), ok=(0,))
    desk("sim", "cut", "desk", "--after", "3", ok=(0,))
    # --format py: every module is written again, so the cut comes during the install
    obj = desk.json("agent", "install", "--port", "sim:desk", "--force", "--format", "py", rc=3)
    assert obj["error"]["type"] == "BoardReset"
    assert obj["error"]["message"].startswith("the board reset during the agent install")
    desk("agent", "install", "--port", "sim:desk", "--force", ok=(0,))
    st = desk.json("status", "--port", "sim:desk", rc=0)
    assert st["agent"] and st["main_py"] == "agent" and st["update"]["ver"] == "1.0.0"
    desk("deploy", "--port", "sim:desk", desk.release("2.0.0", CHATTY), ok=(0,))


def test_a_deploy_that_outlasts_its_deadline_ends_with_exit_3(desk):
    desk("deploy", "--port", "sim:desk", desk.release("1.0.0", CHATTY), ok=(0,))
    big = desk.release("2.0.0", CHATTY, **{"data.bin": os.urandom(30000)})
    simlib.stop("desk")
    # ~3840 B/s: the transfer needs 8 s or more, four times its deadline; the wait after it
    # is shorter than at a slower baud (what the board credited drains sooner)
    simlib.start("desk", baud=38400)
    obj = desk.json("deploy", "--port", "sim:desk", big, "--deadline", "2", rc=3)
    assert obj["error"]["type"] == "LinkDeadline" and obj["error"]["reason"] == "deadline", obj
    assert "did not finish before its deadline" in obj["error"]["message"]
    # the board reads ahead: the block it credited (up to 16 KiB, ~4 s at 38400 baud) is
    # still on its way, ahead of what the next command types (docs/decisions/0018)
    end = time.monotonic() + 60
    while (r := desk("status", "--port", "sim:desk", "--json")).returncode == 3 and time.monotonic() < end:
        time.sleep(1)
    st = json.loads(r.stdout)
    assert r.returncode == 0, r.stderr
    assert (st["update"]["ver"], st["update"]["trial"]) == ("1.0.0", None)


def test_status_of_a_board_without_the_agent(sim_factory, tmp_path):
    sim_factory("bare")
    d = Desk(tmp_path)
    d.proj.mkdir()
    st = d.json("status", "--port", "sim:bare", rc=0)
    assert st["agent"] is None and st["main_py"] == "absent"
    assert st["warnings"] == ["no mpguard agent answers on this board: run `mpguard agent install`"]
    obj = d.json("status", "--port", "sim:nobody", rc=2)
    assert "nobody" in obj["error"]["message"]


def test_deploy_without_the_agent_is_json_too(sim_factory, tmp_path):
    sim_factory("bare")
    d = Desk(tmp_path)
    d.proj.mkdir()
    (d.proj / "x.bundle").write_bytes(b"MPGB" + bytes(100))
    obj = d.json("deploy", "--port", "sim:bare", "x.bundle", rc=2)
    assert obj["error"]["type"] == "CommandError"
    assert "run `mpguard agent install` first" in obj["error"]["message"]


def test_a_port_held_by_another_program_says_so(sim_factory, tmp_path):
    info = sim_factory("held")
    d = Desk(tmp_path)
    d.proj.mkdir()
    with BoardLink(info.port):  # e.g. a test's `board` fixture
        obj = d.json("status", "--port", "sim:held", rc=3)
    assert obj["error"]["type"] == "NoPortError"
    assert "it may be in use by another program" in obj["error"]["message"]
    d.json("status", "--port", "sim:held", rc=0)  # let go: it opens


def test_a_port_held_for_a_moment_by_a_fork_is_waited_for(sim_factory):
    """A process forked by another thread holds a copy of every open file, and with it the
    lock of a port a link just closed, until it execs: for a moment the port is busy. The
    link tries again for a second before it says the port is in use."""
    import fcntl

    info = sim_factory("moment")
    with BoardLink(info.port) as link:
        link.exec("x = 1")
        pid = os.fork()  # the fork holds the open port, and its lock, for 0.4 s
        if pid == 0:
            time.sleep(0.4)
            os._exit(0)
    try:
        # the fork's copy keeps the lock: an exclusive open of our own fails now
        fd = os.open(info.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        with BoardLink(info.port) as link:  # yet the link opens it once the fork lets go
            assert link.eval("1 + 1") == 2
    finally:
        os.waitpid(pid, 0)
