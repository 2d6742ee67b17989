"""`mpguard line run`: a station, until it is stopped.

1. prepare (before any board is touched): the station file, the project, its passphrase, the
   inventory (migrated), the station's key (registered in the inventory), the bundle (must
   verify with the project's anchors), the policy; the journal of an earlier run is replayed;
2. the loop: the ports are polled; a board that appears gets a worker (at most `parallel` at
   once), one that disappears fails its worker with `disconnected`; a finished board is not
   run again until it is unplugged and plugged in again;
3. the inventory cannot be reached: no new board is taken, the running ones finish their step
   and park (their steps wait in the journal), the journal is retried; once it is written,
   parked boards still plugged in resume where the inventory says they are;
4. stops on Ctrl-C (boards running finish their step and start no other: they are let go
   `parked`, "interrupted before STEP", and go on at the next run), after `count` boards, or
   after `idle` seconds with nothing running; the summary counts pass, fail, parked,
   interrupted, boards per hour.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import keys, project
from ..errors import InventoryUnavailable, LineError
from ..inventory import Inventory
from ..inventory.line import Line
from . import station as station_mod
from . import traveller
from .ports import Ports
from .steps import Context
from .worker import Event, Journal, Worker

POLL = 0.25  # seconds between port polls
RETRY = 2.0  # seconds between attempts to reach the inventory again


def journal_path(root: Path, name: str) -> Path:
    return root / "line" / f"{name}.journal"


def prepare(st: station_mod.Station, *, passphrase: bytes | None, burn: bool,
            inventory: str | None = None, busy_timeout: float = 5.0) -> tuple[Context, Line, Any]:
    """Everything a station needs, checked before any board: (context, line records, key)."""
    proj = project.find(st.project)
    if "harden" in st.steps and not burn:
        raise LineError("bad_station", "[steps] harden burns eFuses (irreversible): run "
                        "`mpguard fuse harden --dry-run` on a board first, then start the "
                        "station with --i-understand-this-is-irreversible")
    anchors = proj.board_anchors()
    data = policy = rel = None
    if "deploy" in st.steps:
        from ..updates import bundle

        data = Path(st.steps["deploy"]["bundle"]).read_bytes()
        rep = bundle.inspect(data, proj.anchors())
        if not rep["ok"]:
            raise LineError("bad_station", f"[steps] deploy: the bundle does not verify with "
                            f"the project's anchors: {rep['problems']}")
        rel = rep["manifest"]
    if "attest" in st.steps:
        from ..attest import policy as policy_mod

        policy = policy_mod.load(st.steps["attest"].get("policy"))
    key = traveller.station_key(proj.root, st.name, passphrase)
    inv = Inventory.open(inventory or st.inventory, project_root=proj.root,
                         busy_timeout=busy_timeout)
    try:
        line = Line(inv)
        line.register_station(st.name, keys.public_bytes(key), keys.thumbprint(key))
    except BaseException:
        inv.close()
        raise
    ctx = Context(st, proj, passphrase, inv, anchors, data, rel, policy, burn)
    return ctx, line, key


@dataclass
class Row:
    port: str
    label: str
    mac: str | None = None
    ueid: str | None = None
    step: str = ""
    progress: str = ""
    status: str = "waiting"  # waiting | running | pass | fail | parked | held | interrupted | gone
    reason: str | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0


@dataclass
class Summary:
    passed: int = 0
    failed: int = 0
    parked: int = 0
    held: int = 0
    already: int = 0  # boards that had passed before this run (not counted in the rate)
    interrupted: int = 0  # boards stopped by Ctrl-C before a step (not finished)
    seconds: float = 0.0
    stopped: bool = False  # the run was stopped by Ctrl-C

    @property
    def per_hour(self) -> float:
        return 3600 * (self.passed + self.failed) / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failed": self.failed, "parked": self.parked,
                "held": self.held, "already": self.already, "interrupted": self.interrupted,
                "stopped": self.stopped, "seconds": round(self.seconds, 1),
                "boards_per_hour": round(self.per_hour, 1)}


class StationRun:
    def __init__(self, ctx: Context, line: Line, key: Any, ports: Ports, *,
                 count: int | None = None, idle: float | None = None,
                 on_event: Callable[[Event, dict[str, Row]], None] | None = None):
        self.ctx, self.line, self.key, self.ports = ctx, line, key, ports
        self.count, self.idle = count, idle
        self.on_event = on_event or (lambda e, rows: None)
        self.events: queue.Queue[Event] = queue.Queue()
        self.rows: dict[str, Row] = {}
        self.workers: dict[str, Worker] = {}
        self.finished: set[str] = set()  # ports whose board ended (not again until re-plugged)
        self.present: set[str] = set()
        self.journal = Journal(journal_path(ctx.project.root, ctx.station.name))
        self.inventory_down = False
        self.summary = Summary()
        self.stop = threading.Event()

    def _emit(self, e: Event) -> None:
        self.events.put(e)

    def _apply(self, e: Event) -> None:
        r = self.rows.setdefault(e.port, Row(e.port, e.port))
        d = e.data
        r.mac = d.get("mac") or r.mac
        r.ueid = d.get("ueid") or r.ueid
        if e.kind == "start":
            r.status, r.reason, r.step, r.progress = "running", None, "", ""
            r.started = time.monotonic()
        elif e.kind == "step":
            r.step = d["step"]
            r.progress = "" if d["status"] == "running" else d["status"]
        elif e.kind == "progress":
            total = d["total"]
            r.progress = (f"{100 * d['done'] // total}% of {total // 1024} KiB" if total
                          else f"{d['done']} files")
        elif e.kind in ("done", "parked", "held", "interrupted"):
            r.status = "held" if e.kind == "held" else d["status"]
            r.reason = d.get("reason") or (f"held by {d['by']}" if e.kind == "held" else None)
            r.seconds = time.monotonic() - r.started
            if e.kind == "parked":
                self.inventory_down = True
        self.on_event(e, self.rows)

    def _reap(self) -> None:
        for port, w in list(self.workers.items()):
            if w.is_alive():
                continue
            del self.workers[port]
            s = w.status
            if s == "parked":
                self.summary.parked += 1
                continue  # taken again once the inventory is back
            self.finished.add(port)
            if s == "pass" and w.reason == "already passed":
                self.summary.already += 1
            elif s == "pass":
                self.summary.passed += 1
            elif s == "fail":
                self.summary.failed += 1
            elif s == "held":
                self.summary.held += 1
            elif s == "interrupted":
                self.summary.interrupted += 1

    def _retry_inventory(self) -> None:
        try:
            self.journal.flush(self.line)
            self.line.boards(batch=self.ctx.station.batch)  # reachable again?
        except InventoryUnavailable:
            return
        self.inventory_down = False
        self.summary.parked = 0
        self.on_event(Event("inventory", "", {"up": True}), self.rows)

    def _done(self, t_idle: float) -> bool:
        if self.stop.is_set():
            return True
        ended = self.summary.passed + self.summary.failed + self.summary.held + self.summary.already
        if self.count is not None and ended >= self.count and not self.workers:
            return True
        return bool(self.idle is not None and not self.workers and not self.inventory_down
                    and time.monotonic() - t_idle >= self.idle)

    def run(self) -> Summary:
        t0 = time.monotonic()
        t_idle = t0
        last_retry = 0.0
        try:
            self._retry_inventory()  # an earlier run's journal first
            while True:
                present = self.ports.poll()
                self.present = set(present)
                for gone in [p for p in self.finished if p not in present]:
                    self.finished.discard(gone)  # unplugged: plugging it in runs it again
                for port, row in self.rows.items():
                    if port not in present and row.status not in ("gone",) \
                            and port not in self.workers:
                        row.status = "gone" if row.status == "waiting" else row.status
                while not self.events.empty():
                    self._apply(self.events.get())
                self._reap()
                if self.inventory_down and time.monotonic() - last_retry >= RETRY:
                    last_retry = time.monotonic()
                    self._retry_inventory()
                if not self.inventory_down and not self.stop.is_set():
                    self._start_new(present)
                if self.workers:
                    t_idle = time.monotonic()
                if self._done(t_idle):
                    break
                time.sleep(POLL)
        except KeyboardInterrupt:  # the workers see it before their next step
            self.stop.set()
            self.summary.stopped = True
        for w in list(self.workers.values()):
            w.join()
        while not self.events.empty():
            self._apply(self.events.get())
        self._reap()
        self.summary.seconds = time.monotonic() - t0
        return self.summary

    def _start_new(self, present: dict[str, Any]) -> None:
        for port, p in sorted(present.items()):
            if len(self.workers) >= self.ctx.station.parallel:
                return
            if port in self.workers or port in self.finished:
                continue
            s = self.summary
            if self.count is not None and (s.passed + s.failed + s.held + s.already
                                           + len(self.workers)) >= self.count:
                return
            self.rows[port] = Row(port, p.label, mac=p.mac)
            w = Worker(self.ctx, p, self.line, self.journal, self.key, self._emit,
                       lambda d: d in self.ports.poll(), self.stop)
            self.workers[port] = w
            w.start()
