"""One board's run through the station's steps, in its own thread.

1. the board's MAC (the port's, or esptool read-mac) names it; the inventory's traveller for
   (batch, MAC) is claimed for this station (another station's fresh claim: held, not run);
   a board that passed already is reported as such and left alone (if its traveller verifies
   and, on a station with an attest step, its attestation passes again);
2. each step the inventory does not record as completed runs; each completion is written to
   the station's journal first, then to the inventory (a step that succeeded is never run
   again, by this station or another: line_steps is unique per board and step), except
   `attest`, a measurement that changes nothing: the station that finishes a board attests it
   itself in that run, so a step the inventory says is done but the chip does not show
   (recorded by whoever can write the inventory) fails the board by its policy;
3. the end: the traveller (every step, timings, versions, the attestation) is signed with the
   station's key and stored with the board's status (pass, or fail with the reason).

A link failure while the port is gone is `disconnected`. An inventory that cannot be reached
parks the board: what it did stays in the journal until the station can write it. A station
stopped (Ctrl-C: `stop` set) lets the step running finish and starts no other: the board is
let go `parked` with the reason `interrupted before STEP`, no traveller (it is not finished),
and a later run goes on from its recorded steps.

The claim is renewed before each step and with each step recorded. A station that finds
another one holds the board (its claim lapsed: a step longer than the lease) stops that board
before its next step, `held` with the reason `claim lost to station X`, and writes nothing
more to its row (the step it finished is still recorded: it was done).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import files
from ..errors import InventoryError, InventoryUnavailable, LineError, LinkError, MpguardError
from ..inventory.line import BoardRecord, Line
from . import steps, traveller
from .ports import Port, read_mac


@dataclass
class Event:
    kind: str  # start | step | progress | done | held | parked | interrupted
    port: str
    data: dict[str, Any] = field(default_factory=dict)


class Journal:
    """What the inventory must still get: JSON lines in the project (written before the
    inventory, replayed when it can be reached again), so nothing a board did is lost."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()

    def add(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(entry, default=str) + "\n")

    def pending(self) -> list[dict[str, Any]]:
        with self.lock:
            if not self.path.exists():
                return []
            return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]

    def flush(self, line: Line) -> int:
        """Write every pending entry to the inventory (idempotent); how many were written.
        InventoryUnavailable if it still cannot be reached (what is left stays)."""
        with self.lock:
            if not self.path.exists():
                return 0
            todo = [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]
            done = 0
            try:
                for e in todo:
                    rec = line.board(e["batch"], e["mac"])
                    if rec is None:
                        rec = line.claim(e["batch"], e["mac"], e["station"]).board
                    line.step_done(rec.id, e["step"], e["station"],
                                   datetime.fromisoformat(e["started"]),
                                   datetime.fromisoformat(e["ended"]), e["detail"])
                    done += 1
            finally:
                rest = todo[done:]
                if rest:
                    self.path.write_text("".join(json.dumps(e) + "\n" for e in rest))
                else:
                    self.path.unlink(missing_ok=True)
            return done

    def recorded(self, batch: str, mac: str) -> set[str]:
        return {e["step"] for e in self.pending() if e["batch"] == batch and e["mac"] == mac}


class Worker(threading.Thread):
    def __init__(self, ctx: steps.Context, port: Port, line: Line, journal: Journal,
                 key: Any, emit: Callable[[Event], None], present: Callable[[str], bool],
                 stop: threading.Event | None = None):
        super().__init__(name=f"board {port.label}", daemon=True)
        self.ctx, self.port, self.line, self.journal = ctx, port, line, journal
        self.key, self.emit, self.present = key, emit, present
        self.stop = stop or threading.Event()
        self.status = "running"
        self.reason: str | None = None
        self.mac: str | None = None
        self.board_id: int | None = None

    def _progress(self, what: str, done: int, total: int) -> None:
        self.emit(Event("progress", self.port.device, {"what": what, "done": done,
                                                        "total": total}))

    def run(self) -> None:
        b = steps.Board(self.ctx, self.port, self._progress)
        try:
            try:
                self._run(b)
            except InventoryUnavailable:
                raise
            except MpguardError as e:
                gone = isinstance(e, LinkError) and not self.present(self.port.device)
                self._fail(b, "disconnected" if gone else _reason(e))
            except OSError as e:  # the port failing under us: gone, or a fault to report
                gone = not self.present(self.port.device)
                self._fail(b, "disconnected" if gone else f"port error: {e}")
            except Exception as e:  # noqa: BLE001 - a bug fails one board, not the station
                self._fail(b, f"internal error: {type(e).__name__}: {e}")
        except InventoryUnavailable as e:
            self._end("parked", f"inventory: {e.reason}")
        finally:
            b.close()

    def _fail(self, b: steps.Board, reason: str) -> None:
        if self.board_id is None:  # not claimed yet: nothing recorded to close
            self._end("fail", reason)
        else:
            self._finish(b, self.board_id, "fail", reason)

    def _end(self, status: str, reason: str | None) -> None:
        self.status, self.reason = status, reason
        self.emit(Event("parked" if status == "parked" else "done", self.port.device,
                        {"status": status, "reason": reason, "mac": self.mac}))

    def _run(self, b: steps.Board) -> None:
        st = self.ctx.station
        self.mac = self.port.mac or read_mac(self.port.device)
        self.emit(Event("start", self.port.device, {"mac": self.mac}))
        claim = self.line.claim(st.batch, self.mac, st.name)
        if not claim.ok:
            self.status, self.reason = "held", f"held by station {claim.held_by}"
            self.emit(Event("held", self.port.device, {"by": claim.held_by, "mac": self.mac}))
            return
        rec = claim.board
        self.board_id = rec.id
        known = traveller.ueid_shown(rec.ueid)  # the inventory's (hex) as mpguard shows it
        b.ueid = known
        if rec.status == "pass":
            try:
                traveller.check(rec.traveller or "", self.line, rec)
            except InventoryError:
                raise  # the inventory failed us: parked (unavailable) or a fault, not a verdict
            except MpguardError as e:
                self._end("fail", "recorded as passed, but its traveller does not verify for "
                          f"this board ({_reason(e)}): the inventory was altered? see "
                          "`mpguard line status`")
                return
            # a traveller proves what the inventory's station keys sign, and whoever can write
            # the inventory can record a key: a station with an attest step measures the
            # board again (it changes nothing) before it calls it passed
            if "attest" in st.order:
                self.emit(Event("step", self.port.device, {"step": "attest", "status": "running"}))
                try:
                    steps.RUN["attest"](b, st.steps["attest"])
                except (LinkError, InventoryUnavailable):
                    raise
                except MpguardError as e:
                    self._end("fail", "recorded as passed, but its attestation now fails "
                              f"({_reason(e)}): the inventory or the board was altered? see "
                              "`mpguard line status`")
                    return
                self.emit(Event("step", self.port.device, {"step": "attest", "status": "done",
                                                            "ueid": b.ueid}))
            self.status, self.reason = "pass", "already passed"
            self.emit(Event("done", self.port.device, {"status": "pass", "reason": self.reason,
                                                        "mac": self.mac, "ueid": known}))
            return
        done = rec.done | self.journal.recorded(st.batch, self.mac)
        for name in st.order:
            # attest is never skipped: the board's own signed posture, judged by the policy,
            # is measured by the station that finishes it, whatever the inventory records
            # (a step marked done by whoever can write it, harden above all, shows there)
            if name in done and name != "attest":
                self.emit(Event("step", self.port.device, {"step": name, "status": "skipped"}))
                continue
            if self.stop.is_set():  # the station is stopping: no further step (above all no burn)
                self._interrupted(rec.id, name)
                return
            holder = self.line.renew(rec.id, st.name)
            if holder is not None:  # taken over (or let go) while this station worked on it
                self._lost(holder, name)
                return
            self.emit(Event("step", self.port.device, {"step": name, "status": "running"}))
            t0 = datetime.now(UTC)
            m0 = time.monotonic()
            try:
                detail = steps.RUN[name](b, st.steps[name])
            except (LinkError, InventoryUnavailable):
                raise
            except MpguardError as e:
                self._finish(b, rec.id, "fail", f"{name}: {_reason(e)}")
                return
            t1 = datetime.fromtimestamp(t0.timestamp() + time.monotonic() - m0, UTC)
            self.journal.add({"batch": st.batch, "mac": self.mac, "step": name,
                              "station": st.name, "started": t0.isoformat(),
                              "ended": t1.isoformat(), "detail": detail})
            self.journal.flush(self.line)
            if b.ueid and b.ueid != known:  # provision made it (base64url, as it shows it)
                self.line.set_ueid(rec.id, files.b64u_dec(b.ueid))
                known = b.ueid
            self.emit(Event("step", self.port.device, {"step": name, "status": "done",
                                                        "seconds": round(time.monotonic() - m0, 2),
                                                        "ueid": b.ueid}))
        self._finish(b, rec.id, "pass", None)

    def _interrupted(self, board_id: int, step: str) -> None:
        """Let go of an unfinished board (no traveller): `parked`, interrupted before `step`;
        its completed steps are recorded, so the next run (any station's) goes on from there."""
        reason = f"interrupted before {step}"
        try:
            self.line.release(board_id, self.ctx.station.name, "parked", reason)
        except LineError as e:
            if e.reason != "claim_lost":
                raise
            self._lost(self.line.renew(board_id, self.ctx.station.name) or "", step)
            return
        self.status, self.reason = "interrupted", reason
        self.emit(Event("interrupted", self.port.device, {"status": "interrupted",
                                                          "reason": reason, "mac": self.mac,
                                                          "step": step}))

    def _finish(self, b: steps.Board, board_id: int, result: str, reason: str | None) -> None:
        st = self.ctx.station
        rec = self.line.board(st.batch, self.mac or "")
        assert rec is not None  # claimed above: the row exists
        body = traveller.payload(rec, station=st.name, operator=st.operator, kind=b.kind,
                                 result=result, reason=reason, versions=b.versions)
        try:
            self.line.release(board_id, st.name, result, reason, traveller.sign(body, self.key))
        except LineError as e:
            if e.reason != "claim_lost":
                raise
            self._lost(self.line.renew(board_id, st.name) or "", None, result)
            return
        self._end(result, reason)

    def _lost(self, holder: str, step: str | None, result: str | None = None) -> None:
        """Another station holds the board now (this one's claim lapsed): stop it here,
        writing nothing more to its row; `held`, with why."""
        by = f"station {holder}" if holder else "no station (it was let go)"
        where = f"before {step}" if step else f"at its end ({result} not recorded)"
        self.status = "held"
        self.reason = f"claim lost to {by}: stopped {where}"
        self.emit(Event("held", self.port.device, {"by": holder or "-", "mac": self.mac,
                                                   "reason": self.reason}))


def _reason(e: MpguardError) -> str:
    r = getattr(e, "reason", None)
    msg = str(e)
    return f"{r}: {msg}" if r and not msg.startswith(r) else msg


__all__ = ["BoardRecord", "Event", "Journal", "Worker"]
