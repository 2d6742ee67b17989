"""Where a board's eFuses are, and the installed espefuse (esptool 5.x) run against them.

A `Target` is one chip's eFuses: a real board on a serial port (`espefuse --port P`), or a
virtual chip (`espefuse --virt --path-efuse-file F`), which is what a virtual board reads its
eFuses from (docs/sim.md). espefuse always runs as its own process, its console-script entry
point with the command line that `mpguard fuse harden` prints in its dry run. That process is
forked from a server that imported espefuse once (fuse/efserver.py: most of a run was its
imports), where the `espefuse` command is this environment's; else, or with
MPGUARD_ESPEFUSE_FORK=0, it is the `espefuse` command itself (docs/decisions/0027).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import boards
from ..errors import FuseError

TIMEOUT = 180.0  # seconds for one espefuse run (a real board resets into its ROM loader)
_DETECTED = re.compile(r"Detecting chip type\.\.\. (ESP32[-A-Z0-9]*)")


@dataclass(frozen=True)
class Target:
    """One chip's eFuses: `port` (a real board) or `efuse_file` (a virtual chip)."""

    chip: str  # esptool's chip name (esp32, esp32s3, ...) or "auto" (a real port, detected)
    kind: str  # the board profile (boards/KIND.json) that names the posture's eFuse fields
    port: str | None = None
    efuse_file: Path | None = None
    sim: str | None = None  # the virtual board this eFuse file belongs to

    @property
    def virtual(self) -> bool:
        return self.efuse_file is not None

    @property
    def label(self) -> str:
        if self.sim:
            return f"virtual board {self.sim} (eFuse file {self.efuse_file})"
        return f"eFuse file {self.efuse_file}" if self.virtual else f"port {self.port}"

    def args(self) -> list[str]:
        """espefuse's options naming this chip."""
        where = (["--virt", "--path-efuse-file", str(self.efuse_file)] if self.virtual
                 else ["--port", str(self.port)])
        return ["--chip", self.chip, *where]

    def profile(self) -> dict[str, Any]:
        return boards.load_profile(self.kind)


def espefuse_path() -> str:
    """The espefuse of this installation (next to this Python, else on PATH)."""
    cand = _own_espefuse()
    if cand.exists():
        return str(cand)
    found = shutil.which("espefuse")
    if not found:
        raise FuseError("no_espefuse")
    return found


def command(target: Target, *args: str) -> list[str]:
    """The full espefuse command line for `args` on `target`."""
    return [espefuse_path(), *target.args(), *args]


def shell_line(argv: list[str]) -> str:
    """A command line as a user would type it (the program by its name)."""
    return shlex.join(["espefuse", *argv[1:]])


@contextlib.contextmanager
def _ctrl_c_after() -> Iterator[None]:
    """A Ctrl-C meanwhile is held until the block ends, then raised (in the main thread;
    elsewhere, as in a line's workers, the main thread decides): a burn is not cut short by
    one, and mpguard leaving would end the run with it (its fork server ends with mpguard)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
    if held:
        raise KeyboardInterrupt


def run(argv: list[str], *, timeout: float = TIMEOUT) -> str:
    """Run espefuse; its output, or FuseError("espefuse_failed") with its last lines. A
    Ctrl-C during the run is raised after it (_ctrl_c_after)."""
    with _ctrl_c_after():
        return _run(argv, timeout)


def _run(argv: list[str], timeout: float) -> str:
    server = _server() if Path(argv[0]) == _own_espefuse() else None
    got = server.run(argv[1:], timeout) if server is not None else None
    if got is None:
        try:
            # its own session: a Ctrl-C at the terminal does not cut a burn short
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise FuseError("espefuse_failed", f"no answer in {timeout:.0f} s") from None
        got = (res.returncode, res.stdout + res.stderr)
    code, out = got
    if code != 0:
        raise FuseError("espefuse_failed", failure(out) or f"exit code {code}")
    return out


def failure(out: str, limit: int = 300) -> str:
    """What a failed espefuse run said went wrong: the text of its error box (click's usage
    errors), else its "A fatal error occurred" line, else its last three lines."""
    lines = [ln.strip() for ln in out.splitlines()]
    for i, ln in enumerate(lines):
        if ln.startswith("╭─ Error"):
            body = []
            for b in lines[i + 1:]:
                if b.startswith("╰"):
                    break
                body.append(b.strip("│").strip())
            text = " ".join(x for x in body if x)
            return text if len(text) <= limit else text[: limit - 3] + "..."
    for ln in lines:
        if "A fatal error occurred:" in ln:
            return ln.split("A fatal error occurred:", 1)[1].strip()
    return " | ".join(ln for ln in lines[-3:] if ln)


def _own_espefuse() -> Path:
    return Path(sys.executable).parent / "espefuse"


class _Server:
    """The client of fuse/efserver.py (a forkserver.Zygote of that script): one per process,
    started at its first run, ended when this process's end of the socketpair closes (at
    exit). Runs may come from several threads (a station's workers): only a request and its
    answer take turns."""

    def __init__(self) -> None:
        from ..forkserver import Zygote

        self.z = Zygote(Path("/"), pdeathsig=False, quiet=True,
                        script=str(Path(__file__).with_name("efserver.py")))
        self.z.sock.settimeout(60)
        self.lock = threading.Lock()
        try:
            self.ok = self.z._reply() == b"ok"
        except OSError:
            self.ok = False

    def run(self, args: list[str], timeout: float) -> tuple[int, str] | None:
        """(exit code, stdout + stderr) of `espefuse ARGS`; None: the server failed (the caller
        runs the command instead)."""
        out = tempfile.TemporaryFile()
        err = tempfile.TemporaryFile()
        status_r, status_w = os.pipe()
        try:
            try:
                req = {"argv": args, "env": dict(os.environ), "cwd": os.getcwd()}
            except OSError:  # this process's folder is gone: the command can still run there
                return None
            with open(os.devnull, "rb") as devnull:
                try:
                    with self.lock:
                        pid = int(self.z._ask(req, [devnull.fileno(), out.fileno(),
                                                    err.fileno(), status_w]))
                except (OSError, ValueError):
                    self.close()
                    return None
            os.close(status_w)
            status_w = -1
            code = _status(status_r, pid, timeout)
            out.seek(0)
            err.seek(0)
            text = (out.read() + err.read()).decode("utf-8", "replace")
            return code, text
        finally:
            out.close()
            err.close()
            os.close(status_r)
            if status_w >= 0:
                os.close(status_w)

    def close(self) -> None:
        self.ok = False
        self.z.close()


def _status(fd: int, pid: int, timeout: float) -> int:
    """The exit code a run writes to its status pipe (1: it ended without writing one)."""
    if not select.select([fd], [], [], timeout)[0]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise FuseError("espefuse_failed", f"no answer in {timeout:.0f} s")
    data = b""
    while True:
        chunk = os.read(fd, 16)
        if not chunk:
            break
        data += chunk
    try:
        return int(data)
    except ValueError:
        return 1


_servers: dict[int, _Server | None] = {}  # pid -> this process's server (None: not usable)
_servers_lock = threading.Lock()


def _server() -> _Server | None:
    if os.environ.get("MPGUARD_ESPEFUSE_FORK", "1") == "0":
        return None
    pid = os.getpid()
    with _servers_lock:
        if pid not in _servers:
            try:
                s: _Server | None = _Server()
            except (OSError, ValueError):
                s = None
            if s is not None and not s.ok:
                s.close()
                s = None
            if s is not None:
                atexit.register(s.close)
            _servers[pid] = s
        s = _servers[pid]
    return s if s is not None and s.ok else None


def summary(target: Target) -> tuple[dict[str, Any], Target]:
    """espefuse's summary as JSON (field name -> {value, raw_value, writeable, ...}), and the
    target with its chip resolved (a real port's chip is detected by espefuse).

    Read-only: an eFuse file is read through a copy (espefuse writes its virtual chip's file
    back at the end of every run, resized to the chip it was told), so the file's bytes never
    change here; a file whose size is not that of the target's chip is refused first."""
    with tempfile.TemporaryDirectory(prefix="mpguard-fuse-") as d:
        out = Path(d) / "summary.json"
        read = target
        if target.virtual and target.efuse_file is not None and target.efuse_file.exists():
            check_file(target.efuse_file, target.chip)
            copy = Path(d) / "efuse.bin"
            copy.write_bytes(target.efuse_file.read_bytes())
            read = replace(target, efuse_file=copy)
        text = run(command(read, "summary", "--format", "json", "--file", str(out)))
        try:
            data = json.loads(out.read_text())
        except (OSError, ValueError):
            raise FuseError("espefuse_failed", "no JSON summary") from None
    if target.chip == "auto":
        m = _DETECTED.search(text)
        if not m:
            raise FuseError("espefuse_failed", "the chip type was not detected: give --chip")
        chip = m.group(1).lower().replace("-", "")
        kind = target.kind if target.kind != "auto" else chip
        target = replace(target, chip=chip, kind=kind)
    if not isinstance(data, dict):
        raise FuseError("espefuse_failed", "the summary is not a JSON object")
    return data, target


def target_for(port: str | None = None, efuse_file: str | Path | None = None, *,
               chip: str | None = None, board: str | None = None) -> Target:
    """The eFuses `--port` (a serial port, `sim:NAME`, or a virtual board's port) or
    `--efuse-file` (with `--chip` or `--board`, unless the file's size says ESP32) name."""
    if bool(port) == bool(efuse_file):
        raise FuseError("bad_target", "give --port P or --efuse-file F (one of them)")
    if chip is not None and chip not in _CHIPS:
        raise FuseError("bad_target", f"--chip {chip!r}: one of {', '.join(_CHIPS)}")
    if efuse_file:
        path = Path(efuse_file).expanduser().resolve()
        if not path.is_file():
            raise FuseError("bad_target", f"eFuse file {path} does not exist")
        kind = board or chip or ("esp32" if path.stat().st_size == _ESP32_FILE else None)
        if not kind:
            raise FuseError("bad_target", f"which chip is {path}? give --chip")
        target = Target(chip or boards.load_profile(kind)["chip"], kind, efuse_file=path)
        check_file(path, target.chip)
        return target
    assert port
    info = _sim_of(port)
    if info is not None:
        if not info.efuse_file:
            raise FuseError("no_efuses", info.name)
        prof = boards.load_profile(board or info.board or "sim")
        return Target(prof["chip"], prof["kind"], port=info.port, efuse_file=Path(info.efuse_file),
                      sim=info.name)
    if board and not chip:
        chip = boards.load_profile(board)["chip"]
    return Target(chip or "auto", board or chip or "auto", port=port)


_CHIPS = ("esp32", "esp32s2", "esp32s3", "esp32c3")
_ESP32_FILE = 288  # bytes of an ESP32's eFuse register window (EFUSE_MEM_SIZE)
# the size of a virtual chip's eFuse file as espefuse makes it, per chip
FILE_SIZES = {"esp32": _ESP32_FILE, "esp32s2": 512, "esp32s3": 512, "esp32c3": 512}
_NAMES = {"esp32": "ESP32", "esp32s2": "ESP32-S2", "esp32s3": "ESP32-S3", "esp32c3": "ESP32-C3"}


def check_file(path: Path, chip: str) -> None:
    """Refuse (bad_target) an eFuse file whose size is not that of `chip`'s virtual eFuse file:
    espefuse would read it as that chip's, report wrong facts and write it back resized."""
    want = FILE_SIZES.get(chip)
    if want is None:
        return
    size = path.stat().st_size
    if size == want:
        return
    like = [_NAMES[c] for c, n in FILE_SIZES.items() if n == size]
    seems = (f"it looks like an eFuse file of {' / '.join(like)} ({size} bytes)" if like else
             f"it is {size} bytes, the size of no chip's eFuse file")
    raise FuseError("bad_target", f"eFuse file {path} is not an {_NAMES[chip]}'s ({want} bytes): "
                    f"{seems}; give the file's own --chip")


def _sim_of(port: str) -> Any:
    """The virtual board behind `sim:NAME` or behind a running virtual board's port, or None."""
    from .. import sim

    if port.startswith("sim:"):
        try:
            return sim.get(port[4:])
        except sim.SimError as e:
            raise FuseError("bad_target", str(e)) from None
    for info in sim.list_sims():
        if info.running and info.port == port:
            return info
    return None


def new_virtual_chip(path: Path, chip: str = "esp32") -> Path:
    """A blank virtual chip's eFuse file, made by espefuse itself (its own defaults)."""
    if path.exists():
        raise FuseError("bad_target", f"{path} exists already")
    path.parent.mkdir(parents=True, exist_ok=True)
    summary(Target(chip, chip, efuse_file=path))
    return path
