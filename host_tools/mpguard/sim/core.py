"""`mpguard sim` as a library: start, list, stop virtual boards; arm power cuts; read wear.

    info = start(name="a", board="sim", baud=115200)   # returns once the board answers
    subprocess.run(["mpremote", "connect", info.port, "exec", "print(1)"])
    stats("a")["writes"]; arm_power_cut("a", after=3, torn=True); stop("a")

Each sim is a detached supervisor process (see supervisor.py) with its own folder under
`state.sims_root()` ($MPGUARD_SIM_DIR or the per-user state folder), so `list` and `stop`
work from any folder. A stopped sim started again under the same name keeps its flash.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import MpguardError, SimError
from . import state

DEFAULT_BOARD = "sim"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_LFS_MAGIC = b"littlefs"
# What the firmware itself keeps on the heap (its code, REPL, the erase buffer), added to
# the profile's heap so user code sees about the board's heap. Measured: bench/sim.py.
FIRMWARE_HEAP = 30 * 1024
# Fallback when mpguard.boards is missing (a partial checkout).
_FALLBACK = {"kind": "sim", "chip": "esp32", "heap_bytes": 65536, "flash_bytes": 2 << 20,
             "block_size": 4096, "efuse": {}}
DEFAULT_CUT_WINDOW = 64


@dataclass
class SimInfo:
    name: str
    running: bool
    port: str | None
    pid: int | None
    state_dir: str
    image: str
    board: str
    baud: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _profile(kind: str) -> dict[str, Any]:
    try:
        from .. import boards
    except ImportError:  # pragma: no cover - only in a partial checkout
        if kind != "sim":
            raise SimError(f"unknown board kind {kind!r}") from None
        return dict(_FALLBACK)
    try:
        return boards.load_profile(kind)
    except MpguardError as e:
        raise SimError(str(e)) from None


def _sim_dir(name: str) -> Path:
    if not _NAME_RE.match(name):
        raise SimError(f"bad sim name {name!r}: use 1-32 letters, digits, '.', '_' or '-'")
    return state.sims_root() / name


def _info(d: Path) -> SimInfo:
    cfg = state.read_json(d / state.CONFIG) or {}
    running = state.is_running(d)
    st = (state.read_json(d / state.STATE_FILE) or {}) if running else {}
    return SimInfo(
        name=d.name,
        running=running,
        port=st.get("port"),
        pid=st.get("pid"),
        state_dir=str(d),
        image=cfg.get("image", ""),
        board=cfg.get("board", {}).get("kind", ""),
        baud=cfg.get("baud"),
    )


def list_sims() -> list[SimInfo]:
    """Every sim in the state folder, running or stopped, sorted by name."""
    root = state.sims_root()
    if not root.is_dir():
        return []
    return [_info(d) for d in sorted(root.iterdir()) if (d / state.CONFIG).exists()]


def get(name: str) -> SimInfo:
    d = _sim_dir(name)
    if not (d / state.CONFIG).exists():
        raise SimError(f"no sim named {name!r} in {state.sims_root()}")
    return _info(d)


def _default_name() -> str:
    root = state.sims_root()
    i = 0
    while True:
        name = f"sim{i}"
        if not state.is_running(root / name):
            return name
        i += 1


def check_image(path: Path, block_size: int) -> int:
    """Number of blocks of a flash image; SimError if it is not a littlefs2 (or blank) image."""
    size = path.stat().st_size
    if size == 0 or size % block_size or size // block_size < 4:
        raise SimError(
            f"{path} is not a littlefs image for {block_size}-byte blocks "
            f"(size {size} is not a multiple of the block size, at least 4 blocks)"
        )
    with open(path, "rb") as f:
        head = f.read(2 * block_size)
    blank = head.count(0xFF) == len(head)
    for blk in (0, 1):
        sb = head[blk * block_size : blk * block_size + 32]
        if sb[8:16] == _LFS_MAGIC:
            bs = int.from_bytes(sb[24:28], "little")
            if bs != block_size:
                raise SimError(f"{path} is a littlefs image with {bs}-byte blocks, the board uses {block_size}")
            return size // block_size
    if not blank:
        raise SimError(f"{path} is not a littlefs image (no littlefs superblock, not blank flash)")
    return size // block_size


def _blank_image(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        chunk = b"\xff" * (64 * 1024)
        left = size
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)


def _efuse_words(efuse: str | os.PathLike[str], profile: dict[str, Any]) -> dict[str, int]:
    try:
        from .. import efuse as efuse_mod
    except ImportError:  # pragma: no cover
        raise SimError("eFuse support (mpguard.efuse) is not installed") from None
    path = Path(efuse)
    if not path.exists():
        raise SimError(f"eFuse file {path} does not exist (create it with espefuse --virt --path-efuse-file)")
    try:
        words = efuse_mod.efuse_words(path, profile)
    except MpguardError as e:
        raise SimError(f"eFuse file {path}: {e}") from None
    return {str(a): int(w) for a, w in words.items()}


def cut_plan(after: int | None, seed: int | None, torn: bool, window: int = DEFAULT_CUT_WINDOW) -> tuple[int, int]:
    """(N, permille): cut at the N-th block write, letting permille/1000 of it reach flash.

    With a seed and no N, N is drawn from 1..window; a torn write keeps a seeded fraction
    (or half without a seed); an untorn cut lets the N-th write complete.
    """
    rng = random.Random(seed)
    if after is None:
        if seed is None:
            raise SimError("a power cut needs --power-cut-after N or --power-cut-seed S")
        after = rng.randint(1, window)
    if after < 1:
        raise SimError("--power-cut-after must be at least 1")
    if not torn:
        return after, 1000
    return after, (rng.randint(1, 999) if seed is not None else 500)


def start(
    name: str | None = None,
    *,
    image: str | os.PathLike[str] | None = None,
    efuse: str | os.PathLike[str] | None = None,
    board: str = DEFAULT_BOARD,
    baud: int | None = None,
    power_cut_after: int | None = None,
    power_cut_seed: int | None = None,
    torn: bool = False,
    net: dict[str, bool] | None = None,
    timeout: float = 15.0,
) -> SimInfo:
    """Start a virtual board in the background; return once it answers on its port."""
    name = name or _default_name()
    d = _sim_dir(name)
    if state.is_running(d):
        raise SimError(f"sim {name!r} is already running on {_info(d).port}")
    if baud is not None and not 300 <= baud <= 10_000_000:
        raise SimError(f"--baud {baud} is out of range (300..10000000)")
    profile = _profile(board)
    bs = int(profile["block_size"])
    old = state.read_json(d / state.CONFIG) or {}
    img = Path(image).expanduser().resolve() if image else Path(old.get("image") or d / state.IMAGE)
    if image is None and old.get("image") and not Path(old["image"]).exists():
        img = d / state.IMAGE
    for other in list_sims():
        if other.running and other.name != name and other.image == str(img):
            raise SimError(f"image {img} is in use by sim {other.name!r}")
    if img.exists():
        blocks = check_image(img, bs)
    else:
        _blank_image(img, int(profile["flash_bytes"]))
        blocks = int(profile["flash_bytes"]) // bs
    words = _efuse_words(efuse, profile) if efuse else {}
    cut = None
    if power_cut_after is not None or power_cut_seed is not None:
        cut = cut_plan(power_cut_after, power_cut_seed, torn)
    elif torn:
        raise SimError("--torn needs --power-cut-after or --power-cut-seed")
    from ..unixport import micropython_path

    d.mkdir(parents=True, exist_ok=True)
    cfg = {
        "name": name,
        "image": str(img),
        "blocks": blocks,
        "block_size": bs,
        "board": profile,
        "baud": baud,
        "efuse": words,
        "efuse_file": str(Path(efuse).resolve()) if efuse else None,
        "uid": old.get("uid") or ("240ac4" + secrets.token_hex(3)),
        "net": net or old.get("net") or {"ap_active": False, "ap_open": False, "sta_connected": False},
        "heapsize": int(profile["heap_bytes"]) + FIRMWARE_HEAP,
        "micropython": micropython_path(),
        "cut_on_start": list(cut) if cut else None,
    }
    state.write_json(d / state.CONFIG, cfg)
    state.write_cut(d, None)
    r, w = os.pipe()
    log = open(d / state.LOG_FILE, "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mpguard.sim.supervisor", str(d), str(w)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(w,),
            start_new_session=True,
            cwd=str(d),
        )
    finally:
        os.close(w)
        log.close()
    proc.wait()  # the supervisor forks and its first process exits at once
    msg = _read_ready(r, timeout)
    if not msg.startswith("ok "):
        _kill_dir(d)
        why = msg[6:] if msg.startswith("error ") else (msg or "no answer")
        raise SimError(f"sim {name!r} did not start: {why} (log: {d / state.LOG_FILE})")
    return _info(d)


def _read_ready(fd: int, timeout: float) -> str:
    buf = b""
    end = time.monotonic() + timeout
    try:
        while b"\n" not in buf:
            left = end - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(fd)
    return buf.decode(errors="replace").strip()


def _kill_dir(d: Path, timeout: float = 5.0) -> bool:
    st = state.read_json(d / state.STATE_FILE) or {}
    pid = st.get("pid")
    if not state.is_running(d):
        return False
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + timeout
    while state.is_running(d):
        if time.monotonic() > end:
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + timeout
        time.sleep(0.01)
    return True


def stop(name: str) -> SimInfo:
    """Stop a running sim (its flash and counters stay in its folder)."""
    d = _sim_dir(name)
    if not (d / state.CONFIG).exists():
        raise SimError(f"no sim named {name!r} in {state.sims_root()}")
    if not _kill_dir(d):
        raise SimError(f"sim {name!r} is not running")
    return _info(d)


def stop_all() -> list[SimInfo]:
    return [stop(s.name) for s in list_sims() if s.running]


def stats(name: str, timeout: float = 5.0) -> dict[str, Any]:
    """Flash wear (block writes, erases, reads; per-block counts) and reset counters."""
    d = _sim_dir(name)
    if not (d / state.CONFIG).exists():
        raise SimError(f"no sim named {name!r} in {state.sims_root()}")
    if state.is_running(d):
        old = state.read_stats(d).get("gen", 0)
        pid = (state.read_json(d / state.STATE_FILE) or {}).get("pid")
        if pid:
            os.kill(pid, signal.SIGUSR1)
            end = time.monotonic() + timeout
            while state.read_stats(d).get("gen", 0) == old and time.monotonic() < end:
                time.sleep(0.005)
    return state.read_stats(d)


def arm_power_cut(
    name: str, after: int | None = None, seed: int | None = None, torn: bool = False,
    window: int = DEFAULT_CUT_WINDOW,
) -> tuple[int, int]:
    """Cut the power of a running sim at its N-th block write from now; returns (N, permille)."""
    d = _sim_dir(name)
    if not state.is_running(d):
        raise SimError(f"sim {name!r} is not running")
    plan = cut_plan(after, seed, torn, window)
    now = stats(name)["writes"]
    state.write_cut(d, (now + plan[0], plan[1]))
    return plan


def disarm_power_cut(name: str) -> None:
    state.write_cut(_sim_dir(name), None)


def wait_for(name: str, key: str, value: int, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until stats(name)[key] >= value (e.g. a power cut happened); returns the stats."""
    end = time.monotonic() + timeout
    while True:
        st = stats(name)
        if st.get(key, 0) >= value:
            return st
        if time.monotonic() > end:
            raise SimError(f"sim {name!r}: {key} stayed at {st.get(key)} (wanted {value})")
        time.sleep(0.02)
