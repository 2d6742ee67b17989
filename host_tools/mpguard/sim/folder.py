"""A sim's folder and the small files in it (one folder per sim under `sims_root()`).

    NAME/config.json  what `start` asked for (image, board profile, baud, eFuse words, uid)
    NAME/state.json   written by the running supervisor: pid, port (removed when it stops)
    NAME/lock         flock held by the running supervisor: the liveness test
    NAME/tty          symlink to the port (/dev/pts/N) while running
    NAME/flash.img    the board's flash (unless --image names another file)
    NAME/cut          the power-cut record, reread by the firmware before every block write
    NAME/stats.json   flash wear and reset counters, kept across restarts
    NAME/boot.json    the boot config of the running firmware
    NAME/supervisor.log
    NAME/io.log       what the app did to its peripherals; NAME/io_in.json what the test set
    NAME/requests/    a caller's request to the running supervisor (ID.req, e.g. a reflash)
                      and its answer (ID.ans): control.py

The sim's own state, not to be confused with the agent's /mpguard/state.json on the board.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from ..errors import SimError
from .events import ev

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")

CONFIG = "config.json"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
TTY_LINK = "tty"
IMAGE = "flash.img"
CUT_FILE = "cut"
STATS_FILE = "stats.json"
BOOT_FILE = "boot.json"
LOG_FILE = "supervisor.log"
IO_LOG = "io.log"  # what the app did to its peripherals (firmware/_simio.py writes it)
IO_IN = "io_in.json"  # what the test set for the app's peripherals to read
REQUESTS = "requests"  # requests to the running supervisor and their answers (control.py)

# The board's console RX buffer, `sim start --rx-buffer N`: bytes that may wait unread before
# more are lost. The ESP32 port reads its REPL UART (and USB) into a 260-byte stdin ring
# buffer (ports/esp32/mphalport.c, stdin_ringbuf_array): ESP32_RX_BUFFER. The default, 0, is
# no limit (the stdin pipe's flow control, as a USB CDC console has): the board process is
# scheduled by a shared host, which can starve it longer than a board's UART handler ever
# waits, so a limit can lose bytes a board would not (docs/sim.md).
ESP32_RX_BUFFER = 260
RX_BUFFER = 0

STATS_ZERO: dict[str, Any] = {
    "writes": 0,
    "erases": 0,
    "reads": 0,
    "block_writes": {},
    "block_erases": {},
    "boots": 0,
    "soft_resets": 0,
    "hard_resets": 0,
    "wdt_resets": 0,
    "power_cuts": 0,
    "crashes": 0,
    "rx_dropped": 0,  # bytes typed while the board's RX buffer was full (lost)
    "formats": 0,
    "reflashes": 0,  # images written to the flash of the running board (control.reflash)
    "last_cut": None,
}


def sims_root() -> Path:
    """The per-user folder of sims: $MPGUARD_SIM_DIR, else $XDG_STATE_HOME/mpguard/sims."""
    env = os.environ.get("MPGUARD_SIM_DIR")
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mpguard" / "sims"


def sim_dir(name: str) -> Path:
    """The folder of sim `name` (which may not exist yet); SimError for a bad name."""
    if not _NAME_RE.match(name):
        raise SimError(f"bad sim name {name!r}: use 1-32 letters, digits, '.', '_' or '-'")
    return sims_root() / name


def existing(name: str) -> Path:
    """The folder of an existing sim; SimError if there is none of that name."""
    d = sim_dir(name)
    if not (d / CONFIG).exists():
        raise SimError(f"no sim named {name!r} in {sims_root()}")
    return d


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
    """Write the counters with the moment they were taken (`at`, CLOCK_MONOTONIC, which is
    the same clock in every process): a reader that asked at time T waits for `at` > T."""
    write_json(d / STATS_FILE, dict(stats, at=time.monotonic()))


def write_cut(d: Path, spec: tuple[int, int] | None) -> None:
    """Arm (cut at the N-th block write from now, permille of it lands) or disarm.

    One fixed-size record rewritten in place (format: firmware/_simev.py); the firmware
    keeps the file open and rereads it before every block write.
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
    rec = f"{seq} {after} {permille}".encode()
    if len(rec) >= ev.CUT_LEN:
        raise ValueError(f"cut record too long: {rec!r}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, rec.ljust(ev.CUT_LEN - 1) + b"\n", 0)
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


class Held:
    """The sim's lock, taken by a caller that must keep a supervisor from starting (rm)."""

    def __init__(self, d: Path):
        self.fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1

    @property
    def ok(self) -> bool:
        return self.fd >= 0

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
