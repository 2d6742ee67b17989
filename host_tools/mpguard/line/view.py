"""What a station shows: a live table (rich) for people, JSON lines for machines."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .run import Row, Summary
from .worker import Event

_STYLE = {"pass": "bold green", "fail": "bold red", "parked": "yellow", "held": "yellow",
          "interrupted": "yellow", "running": "cyan", "gone": "dim", "waiting": "dim"}


def _short(u: str | None) -> str:
    return f"{u[:8]}…{u[-4:]}" if u and len(u) > 14 else (u or "")


def table(rows: dict[str, Row], title: str, note: str = "") -> Table:
    t = Table(title=title, caption=note or None, expand=False)
    for col in ("port", "board / MAC", "UEID", "step", "progress", "result", "time"):
        # the result (a failure's reason) keeps room to be read on a narrow terminal
        t.add_column(col, no_wrap=col != "result", min_width=24 if col == "result" else None)
    for r in sorted(rows.values(), key=lambda r: r.label):
        secs = r.seconds if r.status not in ("running",) else time.monotonic() - r.started
        result = r.status.upper() if r.status in ("pass", "fail") else r.status
        if r.reason:
            result += f": {r.reason}"
        t.add_row(r.label, r.mac or "", _short(r.ueid), r.step, r.progress,
                  f"[{_STYLE.get(r.status, '')}]{result}[/]", f"{secs:5.1f} s")
    return t


def summary_text(s: Summary) -> str:
    return (f"{s.passed} passed, {s.failed} failed, {s.parked} parked, {s.held} held by "
            f"another station, {s.already} passed before; {s.seconds:.0f} s, "
            f"{s.per_hour:.0f} boards/hour"
            + (f"; stopped (Ctrl-C): {s.interrupted} board(s) interrupted before their next "
               "step, the next run goes on with them" if s.stopped else ""))


class LiveView:
    """The station's live table, redrawn at each event (and four times a second)."""

    def __init__(self, title: str, console: Console | None = None):
        self.title = title
        self.console = console or Console(stderr=False)
        self.note = ""
        self.live = Live(table({}, title), console=self.console, refresh_per_second=4,
                         transient=False)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def on_event(self, e: Event, rows: dict[str, Row]) -> None:
        if e.kind == "parked":
            self.note = "inventory unreachable: no new boards; retrying"
        elif e.kind == "inventory":
            self.note = "inventory reachable again"
        elif e.kind == "interrupted":
            self.note = "stopping (Ctrl-C): boards finish their step, then stop"
        self.live.update(table(rows, self.title, self.note))


class JsonLines:
    """One JSON object per line and event (`--json`), then the summary."""

    def __init__(self, out: TextIO | None = None, every: float = 0.5):
        self.out = out or sys.stdout
        self.every = every  # progress: at most one line per board this often, and the last
        self.last: dict[str, float] = {}

    def on_event(self, e: Event, rows: dict[str, Row]) -> None:
        if e.kind == "progress" and e.data.get("done") != e.data.get("total"):
            now = time.monotonic()
            if now - self.last.get(e.port, 0.0) < self.every:
                return
            self.last[e.port] = now
        r = rows.get(e.port)
        rec: dict[str, Any] = {"event": e.kind, "port": r.label if r else e.port, **e.data}
        if r is not None:
            rec.setdefault("mac", r.mac)
            if r.ueid:
                rec.setdefault("ueid", r.ueid)
        self.out.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
        self.out.flush()
