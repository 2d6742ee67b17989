"""The HIL plugin as another project uses it: examples/hil-suite runs as an outside project
(a pytest of its own, in a folder of its own); a power cut in a test is a BoardReset at once;
the `sim_only` marker; the port handed to the mpguard command inside a test."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpguard.errors import BoardReset

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(600)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hil-suite"


def test_the_example_hil_suite_runs_as_an_outside_project(pytester):
    for p in EXAMPLE.rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts:
            dest = pytester.path / p.relative_to(EXAMPLE)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    res.assert_outcomes(passed=5)
    # and on a real board: the sim_only test is skipped with its reason, before any board
    # is opened; the others fail to reach the (absent) board with a clear error
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "--board", "/dev/ttyUSB9")
    res.assert_outcomes(skipped=1, errors=4)
    out = res.stdout.str()
    assert "needs the virtual board's controls; running on a real board (/dev/ttyUSB9)" in out
    assert "NoPortError: no such port: /dev/ttyUSB9" in out


def test_sim_only_marker_skips_on_a_real_board(pytester):
    pytester.makepyfile("import pytest\n@pytest.mark.sim_only\ndef test_x():\n    pass\n"
                        "def test_y():\n    pass\n")
    res = pytester.runpytest("--board", "/dev/ttyUSB9", "-rs")
    res.assert_outcomes(skipped=1, passed=1)
    res = pytester.runpytest()
    res.assert_outcomes(passed=2)


@pytest.mark.sim_only
def test_a_power_cut_in_a_test_is_a_board_reset_at_once(sim, board):
    sim.arm_power_cut(after=1)
    with pytest.raises(BoardReset) as ei:
        board.put(bytes(20000), "/big.bin")
    assert b"rst:0x1 (POWERON_RESET)" in ei.value.output
    assert sim.stats()["power_cuts"] == 1
    assert board.eval("1 + 1") == 2  # the next use reconnects
    assert b"rst:0x1 (POWERON_RESET)" in board.console  # the report shows it


def test_the_port_is_lent_to_a_command_and_taken_back(board, board_port):
    assert board_port == board.port
    board.exec("x = 1")
    with board.detached() as port:
        r = subprocess.run([sys.executable, "-m", "mpguard", "status", "--port", port, "--json"],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["agent"] is None
    assert board.eval("2 * 21") == 42


def test_clean_board_empties_the_filesystem(board, request):
    board.mkdir("/lib/old")
    board.put(b"left over", "/lib/old/f.txt")
    board.put(b"print('boot')", "/boot.py")
    clean = request.getfixturevalue("clean_board")
    assert clean.listdir("/") == []
    board.put(b"keep", "/keep.txt")
    assert sorted(board.wipe(keep=("/keep.txt",))) == []
    assert board.listdir("/") == ["keep.txt"]
