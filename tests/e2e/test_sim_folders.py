"""Sims that tests start never land among the user's sims, and are gone after the tests.

A test session (run here with pytester, with HOME and XDG_STATE_HOME pointing at a fake
user) uses the HIL plugin's `board`/`sim` fixtures, restarts its sim, and also starts a sim
of its own through mpguard.sim and the CLI without any fixture. Afterwards the user's state
folder holds no sim and every sim's folder is gone, its supervisor stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(180)

INNER = '''
import json, os, subprocess, sys
from pathlib import Path
import mpguard.sim as simlib

def _record(**kw):
    with open(os.environ["SIM_RECORD"], "a") as f:
        f.write(json.dumps(kw) + "\\n")

def test_board_fixture(board, sim, tmp_path_factory):
    assert board.eval("1 + 1") == 2
    sim.restart()
    _record(kind="fixture", dir=sim.info.state_dir, pid=sim.info.pid,
            basetemp=str(tmp_path_factory.getbasetemp()))

def test_own_sims():
    info = simlib.start("mine")  # left running on purpose
    _record(kind="library", dir=info.state_dir, pid=info.pid)
    mpguard = str(Path(sys.executable).parent / "mpguard")
    out = subprocess.run([mpguard, "sim", "start", "--name", "cli"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    info = simlib.get("cli")
    _record(kind="cli", dir=info.state_dir, pid=info.pid)
'''


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("scope", ["function", "module"])
def test_sims_of_a_test_session_stay_out_of_the_users_folder(pytester, tmp_path, monkeypatch, scope):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.delenv("MPGUARD_SIM_DIR", raising=False)  # as in a user's shell
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("SIM_RECORD", str(record))
    pytester.makepyfile(INNER)
    res = pytester.runpytest("-p", "no:cacheprovider", "--board-scope", scope)
    res.assert_outcomes(passed=2)

    users = home / ".local" / "state" / "mpguard" / "sims"
    assert not users.exists(), f"sims in the user's state folder: {os.listdir(users)}"
    assert "MPGUARD_SIM_DIR" not in os.environ  # the session gave the variable back
    seen = [json.loads(line) for line in record.read_text().splitlines()]
    assert [s["kind"] for s in seen] == ["fixture", "library", "cli"]
    fixture = seen[0]
    assert Path(fixture["dir"]).is_relative_to(fixture["basetemp"])  # the fixture's tmp folder
    for s in seen:
        assert not Path(s["dir"]).exists(), f"{s['kind']} sim left behind: {s['dir']}"
        assert not _alive(s["pid"]), f"{s['kind']} sim still running"
    assert not Path(seen[1]["dir"]).parent.exists()  # the session's own sims folder is gone too
