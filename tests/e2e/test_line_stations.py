"""Many stations, one PostgreSQL inventory (a real server, tests/inventory_db.py): three station
processes with four virtual boards each, at once: twelve distinct identities, every record
once, every traveller complete and signed; a board moved from one station to another
mid-batch is not provisioned twice. Needs device identity (mpguard provision)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from line_helpers import Run, make_project, pulled_out_during_deploy, seed_blank, station_file  # noqa: E402

import mpguard.sim as simlib  # noqa: E402
from mpguard.attest import policy  # noqa: E402
from mpguard.identity import records  # noqa: E402
from mpguard.inventory import Inventory  # noqa: E402
from mpguard.inventory.line import Line  # noqa: E402
from mpguard.line import sims, traveller  # noqa: E402

pytest.importorskip("mpguard.identity.provision", reason="device identity is not in this build")
pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]
# the boards are not hardened here (test_line.py burns eFuses): a policy without the JTAG rule
STEPS = ('agent = true\nprovision = true\ndeploy = "app.bundle"\n'
         'attest = { policy = "nojtag.toml" }\n')
MPGUARD = str(Path(sys.executable).parent / "mpguard")


def setup(folder: Path):
    proj = make_project(folder)
    rules = policy.default_text().split("[[rule]]")
    keep = [r for r in rules[1:] if 'id = "jtag-disabled"' not in r]
    (folder / "nojtag.toml").write_text("[[rule]]".join([rules[0], *keep]))
    return proj


def test_three_stations_share_one_postgresql_inventory(pg_server, sim_dir, tmp_path, blank_chip):
    url = pg_server.new_schema()
    proj = setup(tmp_path)
    procs = []
    for n in (1, 2, 3):
        path = station_file(tmp_path, f"s{n}", STEPS, batch="PG", inventory=url)
        seed_blank(proj.root, f"s{n}", blank_chip)
        procs.append(subprocess.Popen(
            [MPGUARD, "line", "run", "--station", str(path), "--sims", "4", "--count", "4",
             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "MPGUARD_SIM_DIR": str(sim_dir)}))
    outs = [p.communicate(timeout=800) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        lines = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
        summary = next((x for x in lines if x["event"] == "summary"), {})
        assert lines and lines[-1] == summary, [x["event"] for x in lines][-5:]
        failed = [x for x in lines if x["event"] == "done" and x.get("status") != "pass"]
        assert p.returncode == 0 and summary.get("passed") == 4, (failed, err[-2000:])
    with Inventory.open(url) as inv:
        devs = inv.devices(batch="PG")
        assert len(devs) == 12 and len({d.ueid for d in devs}) == 12
        assert len({d.thumbprint for d in devs}) == 12
        assert {d.station for d in devs} == {"s1", "s2", "s3"}
        assert len(inv.events(kind="provision")) == 12  # no identity recorded twice
        for d in devs:
            assert len(inv.certificates(d.ueid)) == 1
        line = Line(inv)
        boards = line.boards(batch="PG")
        assert len(boards) == 12 and len({b.mac for b in boards}) == 12
        for b in boards:
            assert b.status == "pass" and b.claimed_by is None
            assert [s.step for s in b.steps] == ["agent", "provision", "deploy", "attest"]
            body = traveller.verify(b.traveller, line)
            # the UEID as mpguard shows UEIDs (base64url); the inventory keeps hex
            assert body["v"] == 2 and body["station"] == b.station
            assert body["ueid"] == traveller.ueid_shown(b.ueid) == records.ueid_b64(b.ueid)
            assert body["attestation"]["verdict"] in ("pass", "warn")
            assert [s["step"] for s in body["steps"]] == ["agent", "provision", "deploy", "attest"]
    assert not any(s.running for s in simlib.list_sims())
    del proj


def test_a_board_moved_between_stations_is_provisioned_once(pg_server, sim_dir, tmp_path,
                                                             blank_chip):
    url = pg_server.new_schema()
    proj = setup(tmp_path)
    one = station_file(tmp_path, "m1", STEPS, batch="MV", inventory=url)
    two = station_file(tmp_path, "m2", STEPS, batch="MV", inventory=url)
    seed_blank(proj.root, "mv", blank_chip)
    sims.start(proj.root, "mv", 1)

    with pulled_out_during_deploy("sim:mv-1", "mv-1"):  # taken off station m1 during its deploy
        run1 = Run(one, "sim:mv-*", count=1).go()
    assert run1.summary.failed == 1 and run1.row("sim:mv-1").reason == "disconnected"
    sims.start(proj.root, "mv", 1)  # plugged into station m2
    run2 = Run(two, "sim:mv-*", count=1).go()
    assert run2.summary.passed == 1, run2.row("sim:mv-1").reason
    steps = {e.data["step"]: e.data["status"] for e in run2.of("sim:mv-1", "step")
             if e.data["status"] != "running"}
    assert steps == {"agent": "skipped", "provision": "skipped", "deploy": "done",
                     "attest": "done"}
    with Inventory.open(url) as inv:
        (dev,) = inv.devices(batch="MV")
        assert len(inv.events(dev.ueid, kind="provision")) == 1
        assert len(inv.certificates(dev.ueid)) == 1 and dev.station == "m1"
        line = Line(inv)
        (b,) = line.boards(batch="MV")
        body = traveller.verify(b.traveller, line)
        assert [(s["step"], s["station"]) for s in body["steps"]] == [
            ("agent", "m1"), ("provision", "m1"), ("deploy", "m2"), ("attest", "m2")]
        assert body["station"] == "m2"


def test_a_board_failing_attestation_is_marked_with_the_rule(pg_server, sim_dir, tmp_path,
                                                             blank_chip):
    url = pg_server.new_schema()
    proj = setup(tmp_path)
    path = station_file(tmp_path, "g", STEPS.replace('{ policy = "nojtag.toml" }', "true"),
                        batch="GATE", inventory=url)
    seed_blank(proj.root, "g", blank_chip)
    sims.start(proj.root, "g", 1)
    run = Run(path, "sim:g-*", count=1).go()
    assert run.summary.failed == 1
    assert "attest_failed" in run.row("sim:g-1").reason
    assert "jtag-disabled" in run.row("sim:g-1").reason  # the rule that failed
    with Inventory.open(url) as inv:
        line = Line(inv)
        (b,) = line.boards(batch="GATE")
        assert b.status == "fail" and "jtag-disabled" in b.reason
        body = traveller.verify(b.traveller, line)
        assert body["result"] == "fail" and "jtag-disabled" in body["attestation"]["failed"]
        assert [s["step"] for s in body["steps"]] == ["agent", "provision", "deploy"]
