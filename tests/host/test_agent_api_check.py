"""`make lint`'s API check: agent code calling what ESP32 MicroPython lacks fails mypy."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpguard.agent import package as agentpkg

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / ".venv" / "mpstubs"


def _mypy(agent: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini",
         "--custom-typeshed-dir", str(STUBS), "guard"],
        cwd=agent, capture_output=True, text=True, env={"MYPYPATH": str(STUBS), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def agent_copy(tmp_path):
    if not STUBS.exists():
        pytest.fail("ESP32 stubs missing: run `make test` (it installs them into .venv/mpstubs)")
    dest = tmp_path / "agent"
    shutil.copytree(agentpkg.agent_dir(), dest)
    return dest


def test_real_agent_passes(agent_copy):
    res = _mypy(agent_copy)
    assert res.returncode == 0, res.stdout


@pytest.mark.parametrize("line, what", [
    ("import hashlib\nhashlib.sha512(b'x')\n", "sha512"),
    ("import subprocess\n", "subprocess"),
    ("import machine\nmachine.no_such_call()\n", "no_such_call"),
])
def test_call_esp32_lacks_fails(agent_copy, line, what):
    (agent_copy / "guard" / "bad.py").write_text(line)
    res = _mypy(agent_copy)
    assert res.returncode != 0
    assert "guard/bad.py" in res.stdout and what in res.stdout, res.stdout
