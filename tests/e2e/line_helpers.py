"""Helpers for the production-line tests (imported by them; no fixtures here)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mpguard import boards, project
from mpguard import sim as simlib
from mpguard.line import ports as ports_mod
from mpguard.line import run as line_run
from mpguard.line import sims, station
from mpguard.line import steps as line_steps
from mpguard.updates import release

APP = 'import guard\nprint("line app {v}")\nguard.confirm()\n'


def make_project(folder: Path, version: str = "1.0.0") -> project.Project:
    proj = project.init(folder / "proj", passphrase=None, targets=["sim"])
    app = folder / "app"
    app.mkdir(exist_ok=True)
    (app / "main.py").write_text(APP.format(v=version))
    release.build_release(proj, app, version, folder / "app.bundle", passphrase=None, app="lineapp")
    return proj


def seed_blank(project_root: Path, station: str, blank_chip: Any) -> None:
    """The station's blank chip (the file its `--sims` boards' eFuse files are copied from) as
    a copy of the session's blank (blank_chip, tests/conftest.py), not made by espefuse once
    more: the same bytes (tests/host/test_fuse.py checks). test_line.py's hot-plug test,
    which burns its boards, leaves it to the station to make."""
    chip = boards.load_profile("sim")["chip"]
    blank_chip(chip, sims.blank_file(project_root, station, chip))


def station_file(folder: Path, name: str, steps: str, *, batch: str = "B1", parallel: int = 4,
                 inventory: str | None = None) -> Path:
    inv = f'inventory = "{inventory}"\n' if inventory else ""
    text = (f'[station]\nname = "{name}"\noperator = "tester"\nbatch = "{batch}"\n'
            f'project = "proj"\nparallel = {parallel}\n{inv}\n[steps]\n{steps}')
    p = folder / f"{name}.toml"
    p.write_text(text)
    return p


class Run:
    """A station run (library level), its events, and what it left."""

    def __init__(self, path: Path, ports: str, *, count: int | None = None,
                 idle: float | None = 3.0, hook: Any = None, busy_timeout: float = 5.0,
                 db: str | None = None):
        self.st = station.load(path)
        self.ctx, self.line, self.key = line_run.prepare(
            self.st, passphrase=None, burn=True, inventory=db, busy_timeout=busy_timeout)
        self.events: list[Any] = []
        self.hook = hook
        self.sr = line_run.StationRun(self.ctx, self.line, self.key, ports_mod.parse(ports),
                                      count=count, idle=idle, on_event=self._on)
        self.summary: Any = None

    def _on(self, e: Any, rows: Any) -> None:
        self.events.append(e)
        if self.hook:
            self.hook(e, rows)

    def go(self) -> Run:
        try:
            self.summary = self.sr.run()
        finally:
            self.ctx.inventory.close()
        return self

    def in_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.go)
        t.start()
        return t

    def of(self, label: str, kind: str | None = None) -> list[Any]:
        port = next((p for p, r in self.sr.rows.items() if r.label == label), None)
        return [e for e in self.events if e.port == port and (kind is None or e.kind == kind)]

    def row(self, label: str) -> Any:
        return next(r for r in self.sr.rows.values() if r.label == label)


@contextlib.contextmanager
def pulled_out_during_deploy(label: str, sim: str) -> Iterator[None]:
    """Board `label` (a running virtual board `sim`) is pulled out at its deploy's first
    progress report, in the worker itself: a hook on the station's events comes from its
    queue, possibly after a small deploy has finished."""
    real = line_steps.RUN["deploy"]

    def deploy(b: Any, cfg: Any) -> Any:
        if b.port.label == label:
            progress = b.progress

            def first(*a: Any) -> None:
                simlib.stop(sim)  # pulled out during its transfer
                b.progress = progress
                progress(*a)

            b.progress = first
        return real(b, cfg)

    line_steps.RUN["deploy"] = deploy
    try:
        yield
    finally:
        line_steps.RUN["deploy"] = real
