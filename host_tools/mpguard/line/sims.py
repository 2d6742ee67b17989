"""`--sims N`: the station's own virtual boards, `<station>-1` .. `<station>-N`.

Each has its own eFuse file (`espefuse --virt`, a blank chip made by espefuse once and copied)
in the project's line/<station>/ folder, so `harden` burns it for real; its flash and MAC stay
in its sim folder, so a station started again with the same boards resumes them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import boards, fuse, sim


def folder(project_root: Path, station: str) -> Path:
    return project_root / "line" / station


def blank_file(project_root: Path, station: str, chip: str) -> Path:
    """The station's blank chip: each board's eFuse file starts as a copy of it."""
    return folder(project_root, station) / f"blank-{chip}.efuse"


def start(project_root: Path, station: str, n: int, *, board: str | None = None,
          baud: int | None = None) -> list[str]:
    """Start (or find running) the station's N virtual boards; their names."""
    kind = board or "sim"
    chip = boards.load_profile(kind)["chip"]
    d = folder(project_root, station)
    blank = blank_file(project_root, station, chip)
    if not blank.exists():
        fuse.new_virtual_chip(blank, chip)
    names = []
    for i in range(1, n + 1):
        name = f"{station}-{i}"
        ef = d / f"{name}.efuse"
        if not ef.exists():
            shutil.copy(blank, ef)
        running = any(s.name == name and s.running for s in sim.list_sims())
        if not running:
            sim.start(name, efuse=str(ef), board=kind, baud=baud)
        names.append(name)
    return names


def stop(names: list[str]) -> None:
    for name in names:
        try:
            sim.stop(name)
        except sim.SimError:
            pass


def pattern(station: str) -> str:
    return f"{station}-*"
