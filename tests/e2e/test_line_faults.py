"""Named faults on the line (virtual boards, SQLite): a power cut during a step fails the board
and plugged in again it resumes and passes; a board already provisioned by another project's
CA is refused, not re-provisioned; `devices export` carries each board's signed traveller."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from line_helpers import Run, make_project, seed_blank, station_file  # noqa: E402

import mpguard.sim as simlib  # noqa: E402
from mpguard import cli  # noqa: E402
from mpguard.inventory import Inventory  # noqa: E402
from mpguard.inventory.line import Line  # noqa: E402
from mpguard.line import sims  # noqa: E402
from mpguard.line import steps as steps_mod  # noqa: E402

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize("step,after", [("agent", 3), ("deploy", 2)])
def test_power_cut_during_a_step_then_resume(sim_dir, tmp_path, step, after, monkeypatch,
                                              blank_chip):
    proj = make_project(tmp_path)
    seed_blank(proj.root, "p", blank_chip)
    path = station_file(tmp_path, "p", 'agent = true\ndeploy = "app.bundle"\n')
    sims.start(proj.root, "p", 1)
    real = steps_mod.RUN[step]

    def cut_then_run(b, cfg):
        # armed in the worker as the step begins (the station's events reach a hook later,
        # from its queue: armed from there, the cut fell after a fast deploy had finished)
        simlib.arm_power_cut("p-1", after=after)  # the power goes at its Nth flash write
        return real(b, cfg)

    monkeypatch.setitem(steps_mod.RUN, step, cut_then_run)
    run = Run(path, "sim:p-*", count=1).go()
    monkeypatch.setitem(steps_mod.RUN, step, real)
    assert simlib.stats("p-1")["power_cuts"] == 1
    row = run.row("sim:p-1")
    assert row.status == "fail" and "board_reset" in row.reason, row.reason  # named, not a hang
    with Inventory.open(project_root=proj.root) as inv:
        rec = Line(inv).board("B1", row.mac)
        assert rec.status == row.status
        done_before = [x.step for x in rec.steps]
    assert step not in done_before  # the cut step is not recorded as done
    run2 = Run(path, "sim:p-*", count=1).go()
    assert run2.summary.passed + run2.summary.already == 1
    with Inventory.open(project_root=proj.root) as inv:
        rec = Line(inv).board("B1", row.mac)
        assert rec.status == "pass" and [x.step for x in rec.steps] == ["agent", "deploy"]
        assert [x.step for x in rec.steps][: len(done_before)] == done_before


def test_board_of_another_projects_ca_is_refused(sim_dir, tmp_path, blank_chip):
    pytest.importorskip("mpguard.identity.provision", reason="device identity is not in this build")
    theirs = make_project(tmp_path / "theirs")
    ours = make_project(tmp_path / "ours")
    steps = "agent = true\nprovision = true\n"
    seed_blank(theirs.root, "x", blank_chip)
    sims.start(theirs.root, "x", 1)
    assert Run(station_file(tmp_path / "theirs", "x", steps), "sim:x-*", count=1).go() \
        .summary.passed == 1
    run = Run(station_file(tmp_path / "ours", "x", 'agent = true\nprovision = true\n'),
              "sim:x-*", count=1).go()
    row = run.row("sim:x-1")
    # refused at its first step: it holds the other project's trust anchors
    assert row.status == "fail" and "other trust anchors" in row.reason, row.reason
    with Inventory.open(project_root=ours.root) as inv:
        assert inv.devices() == []  # nothing provisioned in our inventory
        (b,) = Line(inv).boards(batch="B1")
        assert b.status == "fail" and "provision" not in {x.step for x in b.steps}


def test_devices_export_carries_the_travellers(sim_dir, tmp_path, capsys, monkeypatch,
                                                blank_chip):
    pytest.importorskip("mpguard.identity.provision", reason="device identity is not in this build")
    proj = make_project(tmp_path)
    seed_blank(proj.root, "e", blank_chip)
    sims.start(proj.root, "e", 1)
    Run(station_file(tmp_path, "e", "agent = true\nprovision = true\n"), "sim:e-*", count=1).go()
    monkeypatch.chdir(proj.root)
    out = tmp_path / "export"
    assert cli.main(["devices", "export", "--output", str(out)]) == 0
    (row,) = json.loads((out / "devices.json").read_text())
    (name,) = row["travellers"]
    assert (out / name).read_text().count(".") == 2  # a compact JWS
