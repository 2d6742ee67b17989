"""The production line on virtual boards with the real transport, espefuse and a SQLite
inventory: boards join mid-run (hot-plug), one pulled out mid-deploy fails `disconnected` and
the station goes on; plugged in again it resumes from the inventory's record (no step redone,
no eFuse burned twice); an inventory locked mid-batch parks boards and loses nothing; the
travellers verify with the station's key; the CLI's JSON lines and exit codes."""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from line_helpers import Run, make_project, pulled_out_during_deploy, seed_blank, station_file  # noqa: E402

import mpguard.sim as simlib  # noqa: E402
from mpguard import cli, fuse, reasons  # noqa: E402
from mpguard.inventory import Inventory  # noqa: E402
from mpguard.inventory.line import Line  # noqa: E402
from mpguard.line import sims, traveller  # noqa: E402

pytestmark = pytest.mark.timeout(600)
STEPS = 'agent = true\nharden = { profile = "production" }\ndeploy = "app.bundle"\n'


def inventory(proj) -> Line:
    return Line(Inventory.open(project_root=proj.root))


def test_hot_plug_disconnect_and_resume(sim_dir, tmp_path):
    proj = make_project(tmp_path)
    path = station_file(tmp_path, "a", STEPS)
    sims.start(proj.root, "a", 2)
    joined = threading.Event()

    def hook(e, rows):
        r = rows.get(e.port)
        if r is None:
            return
        if e.kind == "start" and r.label == "sim:a-1" and not joined.is_set():
            joined.set()
            sims.start(proj.root, "a", 3)  # a board plugged in mid-run

    with pulled_out_during_deploy("sim:a-2", "a-2"):
        run = Run(path, "sim:a-*", count=3, hook=hook).go()
    s = run.summary
    assert (s.passed, s.failed) == (2, 1), [(r.label, r.status, r.reason) for r in run.sr.rows.values()]
    assert run.row("sim:a-2").reason == "disconnected"
    assert run.row("sim:a-3").status == "pass"  # the board that joined mid-run
    line = inventory(proj)
    mac2 = run.row("sim:a-2").mac
    rec = line.board("B1", mac2)
    assert rec.status == "fail" and rec.reason == "disconnected"
    assert [x.step for x in rec.steps] == ["agent", "harden"]
    burned_at = rec.steps[1].started_at
    efuse2 = sims.folder(proj.root, "a") / "a-2.efuse"
    before = efuse2.read_bytes()

    # plugged in again: it resumes after harden; the boards that passed are left alone
    sims.start(proj.root, "a", 2)
    run2 = Run(path, "sim:a-*", count=3).go()
    assert (run2.summary.passed, run2.summary.already) == (1, 2)
    steps2 = {e.data["step"]: e.data["status"] for e in run2.of("sim:a-2", "step")
              if e.data["status"] != "running"}
    assert steps2 == {"agent": "skipped", "harden": "skipped", "deploy": "done"}
    rec = line.board("B1", mac2)
    assert rec.status == "pass" and [x.step for x in rec.steps] == ["agent", "harden", "deploy"]
    assert rec.steps[1].started_at == burned_at  # the burn is the first run's, once
    assert efuse2.read_bytes() == before
    st = fuse.status(fuse.target_for(efuse_file=efuse2), fuse.anchors_bytes(run2.ctx.anchors))
    assert st.facts["jtag"] == "disabled-permanently" and st.facts["anchors_pin"] == "match"
    # its traveller: every step, signed by the station's key the inventory records
    body = traveller.verify(rec.traveller, line)
    assert body["result"] == "pass" and body["mac"] == mac2 and body["batch"] == "B1"
    assert [x["step"] for x in body["steps"]] == ["agent", "harden", "deploy"]
    assert body["versions"]["app"]["name"] == "lineapp"
    assert all(b.traveller for b in line.boards(batch="B1"))
    line.inv.close()


def test_inventory_locked_mid_batch_parks_and_loses_nothing(sim_dir, tmp_path, blank_chip):
    proj = make_project(tmp_path)
    seed_blank(proj.root, "b", blank_chip)
    path = station_file(tmp_path, "b", 'agent = true\ndeploy = "app.bundle"\n')
    sims.start(proj.root, "b", 2)
    db = proj.root / "inventory.db"
    locked = threading.Event()
    holder: list[sqlite3.Connection] = []

    released = threading.Event()

    def unlock(after: float) -> None:
        time.sleep(after)
        if not released.is_set():
            released.set()
            holder[0].execute("ROLLBACK")
            holder[0].close()

    def hook(e, rows):
        if e.kind == "step" and e.data.get("step") == "agent" and e.data["status"] == "running" \
                and not locked.is_set():
            locked.set()
            c = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
            c.execute("BEGIN EXCLUSIVE")  # another writer holds the inventory
            holder.append(c)
            threading.Thread(target=unlock, args=(60,), daemon=True).start()  # at the latest
        if e.kind == "parked":
            threading.Thread(target=unlock, args=(1,), daemon=True).start()

    run = Run(path, "sim:b-*", count=2, busy_timeout=0.5).go()  # no hook yet: warm-up below
    assert run.summary.passed == 2
    # a second batch on the same boards, with the inventory locked during its first step
    path = station_file(tmp_path, "b", 'agent = true\ndeploy = "app.bundle"\n', batch="B2")
    run = Run(path, "sim:b-*", count=2, busy_timeout=0.5, hook=hook).go()
    kinds = [e.kind for e in run.events]
    assert "parked" in kinds and "inventory" in kinds[kinds.index("parked"):]
    assert run.summary.passed == 2 and run.summary.failed == 0, [(r.label, r.status, r.reason) for r in run.sr.rows.values()]
    line = inventory(proj)
    for rec in line.boards(batch="B2"):
        assert rec.status == "pass" and [x.step for x in rec.steps] == ["agent", "deploy"]
        assert traveller.verify(rec.traveller, line)["result"] == "pass"
    assert not (proj.root / "line" / "b.journal").exists()  # everything reached the inventory
    line.inv.close()


def test_cli_json_lines_and_status(sim_dir, tmp_path, capsys, blank_chip):
    proj = make_project(tmp_path)
    seed_blank(proj.root, "c", blank_chip)
    path = station_file(tmp_path, "c", 'agent = true\ndeploy = "app.bundle"\n')
    rc = cli.main(["line", "run", "--station", str(path), "--sims", "2", "--count", "2", "--json"])
    out = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert rc == reasons.EXIT_OK
    assert out[-1]["event"] == "summary" and out[-1]["passed"] == 2
    done = [o for o in out if o["event"] == "done"]
    assert sorted(o["port"] for o in done) == ["sim:c-1", "sim:c-2"]
    assert not any(s.running for s in simlib.list_sims())  # --sims boards stopped at the end
    assert cli.main(["line", "status", "--station", str(path), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["counts"]["pass"] == 2
    assert all(b["traveller"] == "valid" for b in st["boards"])
    del proj


def test_ueids_in_line_output_are_base64url_also_on_resume(sim_dir, tmp_path, capsys,
                                                           monkeypatch):
    """A board provisioned, failed (no eFuse file for harden), then resumed by the station:
    every UEID the line shows (JSON lines of both runs, `line status`, the traveller) is the
    base64url form `devices list` and `provision` show, not the inventory's hex."""
    pytest.importorskip("mpguard.identity.provision", reason="device identity is not in this build")
    proj = make_project(tmp_path)
    simlib.start("u-1")  # no eFuse file: harden fails after provision
    path = station_file(tmp_path, "u", 'agent = true\nprovision = true\nharden = "development"\n')

    def run_json(*extra: str) -> list[dict]:
        cli.main(["line", "run", "--station", str(path), "--ports", "sim:u-*", "--count", "1",
                  "--json", *extra])
        return [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]

    first = run_json(fuse.CONFIRM_FLAG)
    assert [e["reason"] for e in first if e["event"] == "done"] == [
        "harden: no_efuses: the virtual board has no eFuse file (u-1)"]
    monkeypatch.chdir(proj.root)
    assert cli.main(["devices", "list", "--json"]) == 0
    (dev,) = json.loads(capsys.readouterr().out)["devices"]
    ueid = dev["ueid"]  # base64url, as provision showed it
    # the board comes back to a station without harden: it resumes after provision
    path.write_text(path.read_text().replace('harden = "development"\n', ""))
    second = run_json()
    assert [(e["step"], e["status"]) for e in second if e["event"] == "step"] == [
        ("agent", "skipped"), ("provision", "skipped")]
    third = run_json()  # passed already
    shown = {e["ueid"] for e in first + second + third if e.get("ueid")}
    assert shown == {ueid}, shown
    assert [e["reason"] for e in third if e["event"] == "done"] == ["already passed"]
    assert cli.main(["line", "status", "--station", str(path), "--json"]) == 0
    (board,) = json.loads(capsys.readouterr().out)["boards"]
    assert board["ueid"] == ueid and board["traveller"] == "valid"
    assert cli.main(["line", "status", "--station", str(path)]) == 0
    assert ueid in capsys.readouterr().out
    with Inventory.open(project_root=proj.root) as inv:
        (rec,) = Line(inv).boards(batch="B1")
        body = traveller.verify(rec.traveller, Line(inv))
    assert body["ueid"] == ueid and body["v"] == 2
