"""Ctrl-C on `mpguard line run` (a real process, a real SIGINT, two throttled virtual boards
with eFuse files): the boards finish the step they are in and start no other, so the harden
step after it burns nothing; the run exits 130; the boards are recorded unfinished (`parked`,
"interrupted before harden", no traveller) and the next run goes on with them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from line_helpers import Run, make_project, seed_blank, station_file  # noqa: E402

from mpguard import boards  # noqa: E402
from mpguard.inventory import Inventory  # noqa: E402
from mpguard.inventory.line import Line  # noqa: E402
from mpguard.line import sims, traveller  # noqa: E402

pytestmark = pytest.mark.timeout(600)
MPGUARD = str(Path(sys.executable).parent / "mpguard")
STEPS = 'agent = true\nharden = { profile = "production" }\ndeploy = "app.bundle"\n'


def _default_sigint() -> None:  # a test run from a background job ignores SIGINT: undo that
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_before_the_next_step_and_burns_nothing(sim_dir, tmp_path, blank_chip):
    proj = make_project(tmp_path)
    seed_blank(proj.root, "i", blank_chip)
    chip = boards.load_profile("sim")["chip"]
    blank = sims.blank_file(proj.root, "i", chip).read_bytes()
    path = station_file(tmp_path, "i", STEPS)
    proc = subprocess.Popen(
        [MPGUARD, "line", "run", "--station", str(path), "--sims", "2", "--baud", "115200",
         "--keep-sims", "--json", "--i-understand-this-is-irreversible"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=_default_sigint, env={**os.environ, "MPGUARD_SIM_DIR": str(sim_dir)})
    lines: list[dict] = []
    reader = threading.Thread(target=lambda: lines.extend(json.loads(ln) for ln in proc.stdout
                                                          if ln.strip()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both boards in their first step (agent)
            running = {x["port"] for x in list(lines) if x["event"] == "step"
                       and x["step"] == "agent" and x["status"] == "running"}
            if running == {"sim:i-1", "sim:i-2"} or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert running == {"sim:i-1", "sim:i-2"}, lines
        assert not any(x["event"] == "step" and x["status"] == "done" for x in lines)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    err = proc.stderr.read()
    assert rc == 130, (rc, err[-2000:], lines[-5:])
    assert "Traceback" not in err and "interrupted" in err
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["stopped"] is True
    assert summary["interrupted"] == 2 and summary["passed"] == summary["failed"] == 0
    stopped = {x["port"]: x for x in lines if x["event"] == "interrupted"}
    assert set(stopped) == {"sim:i-1", "sim:i-2"}
    assert all(x["step"] == "harden" for x in stopped.values())
    for x in lines:  # agent finished (the step running), nothing after it started
        if x["event"] == "step" and x["status"] == "running":
            assert x["step"] == "agent", x
    for n in (1, 2):  # not one eFuse bit burned
        assert (sims.folder(proj.root, "i") / f"i-{n}.efuse").read_bytes() == blank
    with Inventory.open(project_root=proj.root) as inv:
        line = Line(inv)
        recs = line.boards(batch="B1")
        assert len(recs) == 2
        for r in recs:
            assert r.status == "parked" and r.reason == "interrupted before harden"
            assert r.claimed_by is None and r.traveller is None  # let go, not finished
            assert [s.step for s in r.steps] == ["agent"]
    # the next run goes on with them: agent skipped, harden and deploy run
    again = Run(path, "sim:i-*", count=2).go()
    assert again.summary.passed == 2 and again.summary.interrupted == 0
    for label in ("sim:i-1", "sim:i-2"):
        steps = {e.data["step"]: e.data["status"] for e in again.of(label, "step")
                 if e.data["status"] != "running"}
        assert steps == {"agent": "skipped", "harden": "done", "deploy": "done"}, steps
    with Inventory.open(project_root=proj.root) as inv:
        line = Line(inv)
        for r in line.boards(batch="B1"):
            assert r.status == "pass" and [s.step for s in r.steps] == ["agent", "harden",
                                                                        "deploy"]
            assert traveller.verify(r.traveller, line)["result"] == "pass"
    for n in (1, 2):
        assert (sims.folder(proj.root, "i") / f"i-{n}.efuse").read_bytes() != blank
