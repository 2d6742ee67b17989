"""Where a board's eFuses are, and the installed espefuse (esptool 5.x) run against them.

A `Target` is one chip's eFuses: a real board on a serial port (`espefuse --port P`), or a
virtual chip (`espefuse --virt --path-efuse-file F`), which is what a virtual board reads its
eFuses from (docs/sim.md). espefuse always runs as its own process, exactly as a user would
run it, and the exact command line is what `mpguard fuse harden` prints in its dry run.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
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
    cand = Path(sys.executable).parent / "espefuse"
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


def run(argv: list[str], *, timeout: float = TIMEOUT) -> str:
    """Run espefuse; its output, or FuseError("espefuse_failed") with its last lines."""
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise FuseError("espefuse_failed", f"no answer in {timeout:.0f} s") from None
    out = res.stdout + res.stderr
    if res.returncode != 0:
        tail = " | ".join(ln.strip() for ln in out.strip().splitlines()[-3:] if ln.strip())
        raise FuseError("espefuse_failed", tail or f"exit code {res.returncode}")
    return out


def summary(target: Target) -> tuple[dict[str, Any], Target]:
    """espefuse's summary as JSON (field name -> {value, raw_value, writeable, ...}), and the
    target with its chip resolved (a real port's chip is detected by espefuse)."""
    with tempfile.TemporaryDirectory(prefix="mpguard-fuse-") as d:
        out = Path(d) / "summary.json"
        text = run(command(target, "summary", "--format", "json", "--file", str(out)))
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
        return Target(chip or boards.load_profile(kind)["chip"], kind, efuse_file=path)
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
