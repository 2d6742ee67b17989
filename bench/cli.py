"""What a `mpguard` command costs before it does its work: whole processes of `--version`,
`--help`, `sim list` and `devices list` (a SQLite inventory at the current schema, no board),
each run RUNS times after a warm-up, alternating, CPU seconds (user + system, the process and
its children) and wall seconds, min and median (docs/decisions/0021-cli-startup.md).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 15
MPGUARD = str(Path(sys.executable).parent / "mpguard")


def _run(args: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one `mpguard ARGS` process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([MPGUARD, *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench.cli: mpguard {' '.join(args)} exited {proc.returncode}")
    return ru.ru_utime + ru.ru_stime, wall


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, MPGUARD_SIM_DIR=str(Path(tmp) / "sims"),
                   MPGUARD_PASSPHRASE="bench passphrase")
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as `make` runs it: compiled modules kept
        subprocess.run([MPGUARD, "init", "proj", "--target", "sim"], env=env, cwd=tmp,
                       check=True, capture_output=True)
        proj = str(Path(tmp) / "proj")
        db = f"sqlite:///{tmp}/inv.db"
        cases = {
            "--version": ["--version"],
            "--help": ["--help"],
            "sim list": ["sim", "list"],
            "devices list (SQLite at head)": ["devices", "list", "--db", db],
        }
        for args in cases.values():  # warm-up: compiled modules written, the inventory made
            _run(args, env, proj)
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        wall: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(RUNS):
            for name, args in cases.items():
                c, w = _run(args, env, proj)
                cpu[name].append(c)
                wall[name].append(w)
    parts = [f"{name} {statistics.median(cpu[name]) * 1000:.0f} ({min(cpu[name]) * 1000:.0f}) ms CPU, "
             f"{statistics.median(wall[name]) * 1000:.0f} ms wall" for name in cases]
    print(f"| `mpguard` start-up, whole process, median (min) of {RUNS} alternating runs | "
          + "; ".join(parts) + " | | |")


if __name__ == "__main__":
    main()
