"""Helpers for end-to-end tests that drive virtual boards with the real mpremote CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mpguard.sim as simlib

BIN = Path(sys.executable).parent
MPREMOTE = str(BIN / "mpremote")


def mpremote(port: str, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `mpremote connect PORT ARGS...` as a subprocess (the real CLI, default soft reset)."""
    proc = subprocess.run(
        [MPREMOTE, "connect", port, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"mpremote {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="session")
def mpr():
    """The `mpremote(port, *args, timeout=, check=)` runner."""
    return mpremote


@pytest.fixture(scope="session")
def mpremote_bin() -> str:
    return MPREMOTE


@pytest.fixture
def sim_dir(tmp_path, monkeypatch):
    """A private sims folder (MPGUARD_SIM_DIR) in the test's tmp folder; every sim in it is
    stopped and removed afterwards."""
    d = tmp_path / "sims"
    monkeypatch.setenv("MPGUARD_SIM_DIR", str(d))
    yield d
    for s in simlib.list_sims():
        if not Path(s.state_dir).is_symlink():  # a test's decoy, not a sim
            simlib.rm(s.name, force=True)


@pytest.fixture
def sim_factory(sim_dir):
    """start(name=..., **kw) -> SimInfo, in the private sims folder."""

    def start(name: str = "t", **kw):
        return simlib.start(name, **kw)

    return start
