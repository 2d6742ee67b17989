"""Helpers for end-to-end tests that drive virtual boards with the real mpremote CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from simproc import children

import mpguard.sim as simlib
from mpguard.sim import folder as simfolder

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


# --- what the sims were doing when a test failed ---------------------------------------


def _proc(pid: int) -> str:
    """One process as the kernel sees it: state, where it sleeps, its command."""
    def read(name: str) -> str:
        try:
            return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return "?"

    stat = read("stat")
    state = stat[stat.rfind(")") + 2:].split(" ", 1)[0] if ")" in stat else "?"
    return f"pid {pid} state {state} wchan {read('wchan')} syscall {read('syscall').split(' ')[0]}: {read('cmdline')[:120]}"




def sims_report() -> str:
    """Every running sim of this test: its processes (state, wait channel), the supervisor's
    threads' Python stacks (faulthandler on SIGUSR2) and the end of its log, its counters."""
    out = []
    try:
        sims = [s for s in simlib.list_sims() if s.running and s.pid]
    except Exception as e:  # a report must not hide the failure it reports on
        return f"(sims could not be listed: {e!r})"
    for s in sims:
        try:
            os.kill(s.pid, signal.SIGUSR2)
        except OSError:
            pass
    time.sleep(0.3 if sims else 0)
    for s in sims:
        out.append(f"sim {s.name} (port {s.port}):")
        todo = [s.pid]
        while todo:
            pid = todo.pop()
            out.append("  " + _proc(pid))
            tasks = sorted(int(t.name) for t in Path(f"/proc/{pid}/task").glob("*"))
            for tid in tasks if len(tasks) > 1 else ():
                out.append("    thread " + _proc(tid))
            if pid != s.pid and shutil.which("gdb"):  # the interpreter's native stacks
                try:  # functions only: no argument values (a frame may hold key bytes)
                    bt = subprocess.run(["gdb", "-p", str(pid), "-batch",
                                         "-ex", "set print frame-arguments none",
                                         "-ex", "thread apply all bt 16"],
                                        capture_output=True, text=True, timeout=30).stdout
                except (OSError, subprocess.SubprocessError) as e:
                    bt = repr(e)
                out += ["    gdb: " + ln for ln in bt.splitlines() if ln.startswith(("#", "Thread"))]
            todo += children(pid)
        log = Path(s.state_dir) / simfolder.LOG_FILE
        try:
            out += ["  log: " + ln for ln in log.read_text(errors="replace").splitlines()[-40:]]
        except OSError:
            pass
        try:
            st = simlib.stats(s.name)
            out.append("  stats: " + ", ".join(f"{k}={st[k]}" for k in sorted(st) if isinstance(st[k], int)))
        except Exception as e:
            out.append(f"  stats: {e!r}")
    return "\n".join(out)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        text = sims_report()
        if text:
            rep.sections.append(("sims when the test failed", text))
