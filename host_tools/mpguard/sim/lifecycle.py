"""`mpguard sim` as a library: start, list, stop and remove virtual boards.

    info = start(name="a", board="sim", baud=115200)   # returns once the board answers
    subprocess.run(["mpremote", "connect", info.port, "exec", "print(1)"])
    stop("a"); rm("a")

Each sim is a detached supervisor process (supervisor.py) with its own folder under
`folder.sims_root()` ($MPGUARD_SIM_DIR or the per-user state folder), so `list` and `stop`
work from any folder. A stopped sim started again under the same name keeps its flash;
`rm` and `prune` delete stopped sims' folders. Counters and power cuts: control.py.
(Over 300 lines: start's checks of every setting belong beside the start they guard.)
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import SimError
from . import folder
from .control import cut_plan
from .hardware import DEFAULT_FS, FS_KINDS, blank_image, check_image, efuse_words, profile

DEFAULT_BOARD = "sim"
# What the firmware itself keeps on the heap (its code, the REPLs' buffers), added to the
# profile's heap so user code sees about the board's heap. Measured: bench/sim.py, and what
# code at the REPL finds free (tests/e2e/test_sim_mpremote.py): with 32 KiB it was 2.0 KiB
# (sim) to 3.6 KiB (esp32s2) under the profile's heap once the firmware came from .mpy files
# (decisions/0024), whose modules keep their cache paths as __file__.
FIRMWARE_HEAP = 35 * 1024
# The bytecode of the peripherals (machine.Pin, I2C, ... network.WLAN: C in flash on a board)
# when an app loads them: held in reserve by the firmware and given back as they load, so the
# app's free heap stays about the profile's (firmware/_simhw.py load). Measured: all of them.
PERIPHERAL_HEAP = 28 * 1024
MAX_LATENCY_MS = 1000  # one second each way: far beyond any USB-serial bridge


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
    latency_ms: float | None = None
    rx_buffer: int = folder.RX_BUFFER  # bytes that may wait unread on the board (0: no limit)
    efuse_file: str | None = None  # its `espefuse --virt` file (mpguard fuse burns it)
    uid: str | None = None  # machine.unique_id(), hex: the board's MAC
    fs: str = DEFAULT_FS  # the flash's filesystem: "littlefs", or "fat" (`start --fs fat`)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _info(d: Path) -> SimInfo:
    cfg = folder.read_json(d / folder.CONFIG) or {}
    running = folder.is_running(d)
    st = (folder.read_json(d / folder.STATE_FILE) or {}) if running else {}
    return SimInfo(
        name=d.name,
        running=running,
        port=st.get("port"),
        pid=st.get("pid"),
        state_dir=str(d),
        image=cfg.get("image", ""),
        board=cfg.get("board", {}).get("kind", ""),
        baud=cfg.get("baud"),
        latency_ms=cfg.get("latency_ms"),
        rx_buffer=cfg.get("rx_buffer", folder.RX_BUFFER),
        efuse_file=cfg.get("efuse_file"),
        uid=cfg.get("uid"),
        fs=cfg.get("fs", DEFAULT_FS),
    )


def list_sims() -> list[SimInfo]:
    """Every sim in the state folder, running or stopped, sorted by name."""
    root = folder.sims_root()
    if not root.is_dir():
        return []
    return [_info(d) for d in sorted(root.iterdir()) if (d / folder.CONFIG).exists()]


def get(name: str) -> SimInfo:
    return _info(folder.existing(name))


def _default_name() -> str:
    root = folder.sims_root()
    i = 0
    while True:
        name = f"sim{i}"
        if not folder.is_running(root / name):
            return name
        i += 1


def _already_running(d: Path, board: str | None, image: Path | None, baud: int | None,
                     latency: float | None, fs: str | None, other: list[str]) -> SimInfo:
    """A running sim, asked to start again: its info, unless the call wants another board."""
    cfg = folder.read_json(d / folder.CONFIG) or {}
    if board is not None and board != cfg.get("board", {}).get("kind"):
        other.append("--board")
    if image is not None and str(image) != cfg.get("image"):
        other.append("--image")
    if baud is not None and baud != cfg.get("baud"):
        other.append("--baud")
    if latency is not None and latency != (cfg.get("latency_ms") or 0):
        other.append("--latency")
    if fs is not None and fs != cfg.get("fs", DEFAULT_FS):
        other.append("--fs")
    info = _info(d)
    if other:
        raise SimError(f"sim {d.name!r} is already running on {info.port}; stop it to start it "
                       f"with other settings ({', '.join(other)})")
    return info


def start(
    name: str | None = None,
    *,
    image: str | os.PathLike[str] | None = None,
    efuse: str | os.PathLike[str] | None = None,
    board: str | None = None,
    baud: int | None = None,
    latency: float | None = None,
    rx_buffer: int | None = None,
    power_cut_after: int | None = None,
    power_cut_seed: int | None = None,
    torn: bool = False,
    net: dict[str, bool] | None = None,
    fs: str | None = None,
    timeout: float = 15.0,
) -> SimInfo:
    """Start a virtual board in the background; return once it answers on its port.

    `board` defaults to the board the sim had before, else DEFAULT_BOARD. `baud` limits the
    port to baud/10 bytes per second each way; `latency` (milliseconds) delays every byte
    each way, as a USB-serial bridge does (1-16 ms on real boards). `rx_buffer` is how many
    bytes may wait unread on the board before more are lost (folder.ESP32_RX_BUFFER: the ESP32
    port's stdin ring buffer; default 0: no limit, nothing lost). `fs` is the filesystem of
    its flash, FS_KINDS: "littlefs" (what MicroPython's esp32 port formats) or "fat" (a board
    whose filesystem an older firmware made); it goes with the image, so it defaults to the
    sim's before, else "littlefs", and an image of the other kind is refused. Starting a sim
    that runs returns its info (SimError if other settings were asked for).
    """
    if name == "":  # `--name ""`: a name given, and not one
        raise SimError("--name is empty")
    name = name or _default_name()
    d = folder.sim_dir(name)
    img_arg = Path(image).expanduser().resolve() if image else None
    if folder.is_running(d):
        other = [opt for opt, given in (("--efuse", efuse), ("--power-cut-after", power_cut_after),
                                        ("--power-cut-seed", power_cut_seed), ("--torn", torn),
                                        ("net", net)) if given is not None and given is not False]
        running_rx = (folder.read_json(d / folder.CONFIG) or {}).get("rx_buffer", folder.RX_BUFFER)
        if rx_buffer is not None and rx_buffer != running_rx:
            other.append("--rx-buffer")
        return _already_running(d, board, img_arg, baud, latency, fs, other)
    if baud is not None and not 300 <= baud <= 10_000_000:
        raise SimError(f"--baud {baud} is out of range (300..10000000)")
    if latency is not None and not (isinstance(latency, (int, float)) and 0 <= latency <= MAX_LATENCY_MS):
        raise SimError(f"--latency {latency} is out of range (0..{MAX_LATENCY_MS} ms)")
    if rx_buffer is not None and not (isinstance(rx_buffer, int) and (rx_buffer == 0 or 2 <= rx_buffer <= 1 << 20)):
        raise SimError(f"--rx-buffer {rx_buffer} is out of range (0, or 2..1048576 bytes)")
    if fs is not None and fs not in FS_KINDS:
        raise SimError(f"--fs {fs!r} is not one of {', '.join(FS_KINDS)}")
    old = folder.read_json(d / folder.CONFIG) or {}
    fs = fs or old.get("fs") or DEFAULT_FS
    prof = profile(board or old.get("board", {}).get("kind") or DEFAULT_BOARD)
    words = efuse_words(efuse, prof) if efuse else {}  # checked before anything is made
    bs = int(prof["block_size"])
    img = img_arg or Path(old.get("image") or d / folder.IMAGE)
    if img_arg is None and old.get("image") and not Path(old["image"]).exists():
        img = d / folder.IMAGE
    for other_sim in list_sims():
        if other_sim.running and other_sim.name != name and other_sim.image == str(img):
            raise SimError(f"image {img} is in use by sim {other_sim.name!r}")
    cut = None  # checked before anything is made: a refused start leaves nothing behind
    if power_cut_after is not None or power_cut_seed is not None:
        cut = cut_plan(power_cut_after, power_cut_seed, torn)
    elif torn:
        raise SimError("--torn needs --power-cut-after or --power-cut-seed")
    if img.exists():
        blocks = check_image(img, bs, fs)
    else:
        if img_arg is not None and not img.parent.is_dir():  # a typo is not a folder to make
            raise SimError(f"--image {img}: no folder {img.parent}")
        blank_image(img, int(prof["flash_bytes"]))
        blocks = int(prof["flash_bytes"]) // bs
    from ..unixport import micropython_path

    d.mkdir(parents=True, exist_ok=True)
    cfg = {
        "name": name,
        "image": str(img),
        "blocks": blocks,
        "block_size": bs,
        "fs": fs,
        "board": prof,
        "baud": baud,
        "latency_ms": float(latency) if latency else None,
        "rx_buffer": folder.RX_BUFFER if rx_buffer is None else rx_buffer,
        "efuse": words,
        "efuse_file": str(Path(efuse).resolve()) if efuse else None,
        "uid": old.get("uid") or ("240ac4" + secrets.token_hex(3)),
        "net": net or old.get("net") or {"ap_active": False, "ap_open": False, "sta_connected": False},
        "heapsize": int(prof["heap_bytes"]) + FIRMWARE_HEAP + PERIPHERAL_HEAP,
        "peripheral_kib": PERIPHERAL_HEAP // 1024,
        "micropython": micropython_path(),
        "cut_on_start": list(cut) if cut else None,
    }
    folder.write_json(d / folder.CONFIG, cfg)
    folder.write_cut(d, None)
    r, w = os.pipe()
    log = open(d / folder.LOG_FILE, "ab")
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
        raise SimError(f"sim {name!r} did not start: {why} (log: {d / folder.LOG_FILE})")
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
    st = folder.read_json(d / folder.STATE_FILE) or {}
    pid = st.get("pid")
    if not folder.is_running(d):
        return False
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + timeout
    while folder.is_running(d):
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
    d = folder.existing(name)
    if not _kill_dir(d):
        raise SimError(f"sim {name!r} is not running")
    return _info(d)


def stop_all() -> list[SimInfo]:
    return [stop(s.name) for s in list_sims() if s.running]


def _remove(d: Path) -> None:
    """Delete a stopped sim's folder, holding its lock so that no start races the removal.

    Only the folder goes: a flash image or eFuse file the user gave from elsewhere stays.
    """
    try:
        held = folder.Held(d)
    except OSError as e:
        raise SimError(f"cannot remove sim {d.name!r}: {e}") from None
    if not held.ok:
        raise SimError(f"sim {d.name!r} is running")
    try:
        shutil.rmtree(d)  # never follows symlinks (the tty link to the port stays a link)
    except OSError as e:
        raise SimError(f"cannot remove sim {d.name!r}: {e}") from None
    finally:
        held.release()


def rm(name: str, force: bool = False) -> SimInfo:
    """Remove a stopped sim's folder; a running one only with force (stopped first)."""
    d = folder.existing(name)
    if d.is_symlink():
        raise SimError(f"{d} is a symbolic link, not a sim's folder; remove it yourself")
    info = _info(d)
    if info.running:
        if not force:
            raise SimError(f"sim {name!r} is running on {info.port}: stop it first, or use --force")
        _kill_dir(d)
    _remove(d)
    return info


def prune(dry_run: bool = False) -> list[SimInfo]:
    """Remove every stopped sim (with dry_run: only list them); returns those sims."""
    gone = []
    for s in list_sims():
        d = Path(s.state_dir)
        if s.running or d.is_symlink():
            continue
        if not dry_run:
            try:
                _remove(d)
            except SimError:
                continue  # started meanwhile
        gone.append(s)
    return gone
