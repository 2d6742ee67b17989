"""The station file (TOML): who runs the station, which batch, and the steps every board goes
through. Checked as a whole before any board is touched; every problem is named with its
table and key (LineError "bad_station", exit 2). docs/line.md shows a complete file.

    [station]   name, operator, batch (required); project (folder, default "."), inventory
                (database URL, default the project's), parallel (boards at once, default 8),
                board (board kind, default detected)
    [steps]     firmware, agent, provision, harden, deploy, attest: each optional; the order
                is fixed (STEPS); paths are relative to the station file
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import boards
from ..errors import LineError
from ..fuse import profiles

STEPS = ("firmware", "agent", "provision", "harden", "deploy", "attest")
MAX_PARALLEL = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_STATION_KEYS = {"name", "operator", "batch", "project", "inventory", "parallel", "board"}
_STEP_KEYS: dict[str, set[str]] = {
    "firmware": {"file", "address", "baud"},
    "agent": set(),
    "provision": {"days"},
    "harden": {"profile", "jtag", "uart_download", "pin", "pin_lock", "flash_encryption",
               "secure_boot"},
    "deploy": {"bundle", "wait"},
    "attest": {"policy", "accept"},
}
_SHORT = {"firmware": "file", "deploy": "bundle", "attest": "policy", "harden": "profile"}
_NEEDS = {"provision": "agent", "deploy": "agent", "attest": "provision"}


@dataclass(frozen=True)
class Station:
    path: Path
    name: str
    operator: str
    batch: str
    project: Path
    inventory: str | None = None
    parallel: int = 8
    board: str | None = None
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> its settings

    @property
    def order(self) -> list[str]:
        return [s for s in STEPS if s in self.steps]


def _bad(path: Path, where: str, what: str) -> LineError:
    return LineError("bad_station", f"{path.name}: {where}: {what}")


def _name(path: Path, where: str, v: Any) -> str:
    if not isinstance(v, str) or not _NAME.fullmatch(v):
        raise _bad(path, where, "1..64 letters, digits, '_', '.', '@', '-' (a letter or digit first)")
    return v


def _file(path: Path, where: str, v: Any) -> Path:
    if not isinstance(v, str) or not v:
        raise _bad(path, where, "a file name")
    p = (path.parent / v).resolve()
    if not p.is_file():
        raise _bad(path, where, f"{p} does not exist")
    return p


def _step(path: Path, name: str, v: Any) -> dict[str, Any] | None:
    where = f"[steps] {name}"
    if v is False:
        return None
    if v is True:
        if name in ("firmware", "deploy"):
            raise _bad(path, where, f"give the {_SHORT[name]}")
        return {}
    if isinstance(v, str) and name in _SHORT:
        v = {_SHORT[name]: v}
    if not isinstance(v, dict):
        raise _bad(path, where, "true, false, a table" + (f" or the {_SHORT[name]}"
                                                          if name in _SHORT else ""))
    unknown = set(v) - _STEP_KEYS[name]
    if unknown:
        raise _bad(path, where, f"unknown key(s) {', '.join(sorted(unknown))} "
                   f"(known: {', '.join(sorted(_STEP_KEYS[name])) or 'none'})")
    out = dict(v)
    for key in ("file", "bundle", "policy"):
        if key in out:
            out[key] = _file(path, f"{where}.{key}", out[key])
    if name in ("firmware", "deploy") and _SHORT[name] not in out:
        raise _bad(path, where, f"{_SHORT[name]} is required")
    for key, lo, hi in (("address", 0, 1 << 24), ("baud", 9600, 4_000_000), ("days", 1, 36500),
                        ("wait", 1, 600)):
        if key in out and (not isinstance(out[key], int) or isinstance(out[key], bool)
                           or not lo <= out[key] <= hi):
            raise _bad(path, f"{where}.{key}", f"an integer {lo}..{hi}")
    if name == "harden":
        out.setdefault("profile", "production")
        if out["profile"] not in profiles.PROFILES:
            raise _bad(path, f"{where}.profile", f"one of {', '.join(profiles.PROFILES)}")
        for key in ("flash_encryption", "secure_boot"):
            if key in out and out[key] not in ("off", "chip"):
                out[key] = str(_file(path, f"{where}.{key}", out[key]))
    if name == "attest":
        acc = out.setdefault("accept", ["pass", "warn"])
        if not isinstance(acc, list) or not acc or not set(acc) <= {"pass", "warn", "fail"}:
            raise _bad(path, f"{where}.accept", 'a list of "pass", "warn", "fail"')
    return out


def load(path: str | Path) -> Station:
    """Read and check the station file at `path`."""
    p = Path(path).expanduser().resolve()
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise LineError("bad_station", f"{p} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LineError("bad_station", f"cannot read {p}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise LineError("bad_station", f"{p.name}: not valid TOML: {e}") from None
    unknown = set(data) - {"station", "steps"}
    if unknown:
        raise _bad(p, "top level", f"unknown table(s) {', '.join(sorted(unknown))} "
                   "(known: station, steps)")
    st, steps = data.get("station"), data.get("steps")
    if not isinstance(st, dict):
        raise _bad(p, "[station]", "the table is missing")
    if not isinstance(steps, dict) or not steps:
        raise _bad(p, "[steps]", "the table is missing or empty")
    unknown = set(st) - _STATION_KEYS
    if unknown:
        raise _bad(p, "[station]", f"unknown key(s) {', '.join(sorted(unknown))} "
                   f"(known: {', '.join(sorted(_STATION_KEYS))})")
    for key in ("name", "operator", "batch"):
        if key not in st:
            raise _bad(p, f"[station] {key}", "is required")
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise _bad(p, "[steps]", f"unknown step(s) {', '.join(sorted(unknown))} "
                   f"(known: {', '.join(STEPS)})")
    chosen = {k: c for k, v in steps.items() if (c := _step(p, k, v)) is not None}
    for step, needs in _NEEDS.items():
        if step in chosen and needs not in chosen:
            raise _bad(p, f"[steps] {step}", f"needs {needs} (the board must have it first)")
    par = st.get("parallel", 8)
    if not isinstance(par, int) or isinstance(par, bool) or not 1 <= par <= MAX_PARALLEL:
        raise _bad(p, "[station] parallel", f"an integer 1..{MAX_PARALLEL}")
    board = st.get("board")
    if board is not None and board not in boards.profile_kinds():
        raise _bad(p, "[station] board", f"one of {', '.join(boards.profile_kinds())}")
    inv = st.get("inventory")
    if inv is not None and (not isinstance(inv, str) or not inv):
        raise _bad(p, "[station] inventory", "a database URL")
    proj = st.get("project", ".")
    if not isinstance(proj, str):
        raise _bad(p, "[station] project", "a folder")
    root = (p.parent / proj).resolve()
    if not (root / "mpguard.json").is_file():
        raise _bad(p, "[station] project", f"{root} is not an mpguard project")
    return Station(p, _name(p, "[station] name", st["name"]),
                   _name(p, "[station] operator", st["operator"]),
                   _name(p, "[station] batch", st["batch"]), root, inv, par, board, chosen)
