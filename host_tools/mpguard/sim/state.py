"""Where sims live and the small files they share (one folder per sim under `sims_root()`).

    NAME/config.json  what `start` asked for (image, board profile, baud, eFuse words, uid)
    NAME/state.json   written by the running supervisor: pid, port (removed when it stops)
    NAME/lock         flock held by the running supervisor: the liveness test
    NAME/tty          symlink to the port (/dev/pts/N) while running
    NAME/flash.img    the board's flash (unless --image names another file)
    NAME/cut          power-cut arming, read by the firmware at every block write
    NAME/stats.json   flash wear and reset counters, kept across restarts
    NAME/supervisor.log
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

CONFIG = "config.json"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
TTY_LINK = "tty"
IMAGE = "flash.img"
CUT_FILE = "cut"
STATS_FILE = "stats.json"
BOOT_FILE = "boot.json"
LOG_FILE = "supervisor.log"
_CUT_LEN = 32

STATS_ZERO: dict[str, Any] = {
    "writes": 0,
    "erases": 0,
    "reads": 0,
    "block_writes": {},
    "block_erases": {},
    "boots": 0,
    "soft_resets": 0,
    "hard_resets": 0,
    "power_cuts": 0,
    "crashes": 0,
    "formats": 0,
    "last_cut": None,
}


def sims_root() -> Path:
    """The per-user folder of sims: $MPGUARD_SIM_DIR, else $XDG_STATE_HOME/mpguard/sims."""
    env = os.environ.get("MPGUARD_SIM_DIR")
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mpguard" / "sims"


def firmware_dir() -> Path:
    return Path(__file__).resolve().parent / "firmware"


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def read_stats(d: Path) -> dict[str, Any]:
    st = dict(STATS_ZERO)
    st["block_writes"] = {}
    st["block_erases"] = {}
    got = read_json(d / STATS_FILE)
    if isinstance(got, dict):
        st.update(got)
    return st


def write_stats(d: Path, stats: dict[str, Any]) -> None:
    write_json(d / STATS_FILE, stats)


def write_cut(d: Path, spec: tuple[int, int] | None) -> None:
    """Arm (cut at block write number AT of the sim's life, permille of it lands) or disarm.

    One fixed-size record written in place: the firmware keeps the file open and rereads it
    at every block write.
    """
    path = d / CUT_FILE
    old = b""
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        pass
    try:
        seq = int(old.split()[0]) + 1 if old.strip() else 1
    except ValueError:
        seq = 1
    after, permille = spec if spec else (0, 1000)
    rec = f"{seq} {after} {permille}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, rec.ljust(_CUT_LEN - 1) + b"\n" if len(rec) < _CUT_LEN else rec, 0)
    finally:
        os.close(fd)


def is_running(d: Path) -> bool:
    """True while a supervisor holds the sim's lock (robust to pid reuse and zombies)."""
    path = d / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
