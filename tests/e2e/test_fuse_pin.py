"""eFuse hardening on the virtual board, for real: `mpguard fuse harden` burns the sim's
`espefuse --virt` file; afterwards espefuse's own summary, `mpguard fuse status` and the
board's signed attestation agree; an anchors file swapped through the REPL makes the board
refuse every update (anchors_pin) and its attestation say so, until the pinned anchors are back.

The board is provisioned for real (key made on the board, certificate from the project's
device CA) and its attestations are verified against, and recorded in, the real inventory:
a fresh PostgreSQL schema the project's config names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from idhelp import Proj

import mpguard.sim as simlib
from mpguard import cli, fuse, project
from mpguard.agent import install as agent_install
from mpguard.attest import policy, run, store
from mpguard.identity import board as idboard
from mpguard.identity import provision as prov
from mpguard.link import BoardLink
from mpguard.updates import deploy, release

pytestmark = pytest.mark.timeout(600)
ESPEFUSE = str(Path(sys.executable).parent / "espefuse")
APP = 'import guard\nprint("app {v} running")\nguard.confirm()\n'


def bundle(proj: project.Project, tmp: Path, version: str) -> bytes:
    app = tmp / f"app-{version}"
    app.mkdir(parents=True)
    (app / "main.py").write_text(APP.format(v=version))
    out = tmp / f"{version}.bundle"
    release.build_release(proj, app, version, out, passphrase=None, app="demo")
    return out.read_bytes()


def test_burn_then_summary_status_and_attestation_agree(sim_factory, mpr, tmp_path, pg_server,
                                                        capsys, blank_chip):
    efuse = blank_chip("esp32", tmp_path / "efuse.bin")
    info = sim_factory("pin", efuse=str(efuse))
    p = Proj(tmp_path / "proj", inventory=pg_server.new_schema())
    proj = p.proj
    anchors = proj.board_anchors()
    inv = p.inventory()
    st = store.Store(inv)
    with BoardLink(info.port) as link:
        ident = prov.provision(link, proj, passphrase=None)  # the agent, then the identity
        assert ident.outcome == "provisioned" and ident.agent_installed
        ueid = idboard.unb64u(ident.ueid)
        assert deploy.deploy(link, bundle(proj, tmp_path, "1.0.0"), wait=20).outcome == "confirmed"
        first = run.attest(link, st, policy.load())
        before = first.evidence.facts
    assert before["anchors_pin"].value == "unpinned"
    assert first.evidence.device.ueid == ueid and first.evidence.kid == ident.kid

    # the burn, through the CLI as an operator runs it (the dry run is printed first)
    rc = cli.main(["fuse", "harden", "--port", "sim:pin", "--profile", "production", "--burn",
                   fuse.CONFIRM_FLAG, "--project", str(proj.root)])
    out = capsys.readouterr().out
    assert rc == 0 and out.index("irreversible") < out.index("burned 4 step(s)")

    # 1. espefuse's own summary
    summ = tmp_path / "summary.json"
    subprocess.run([ESPEFUSE, "--virt", "--path-efuse-file", str(efuse), "--chip", "esp32",
                    "summary", "--format", "json", "--file", str(summ)], check=True,
                   capture_output=True, timeout=120)
    told = json.loads(summ.read_text())
    assert told["JTAG_DISABLE"]["value"] is True and told["UART_DOWNLOAD_DIS"]["value"] is True
    assert told["BLOCK3"]["writeable"] is False
    # 2. mpguard fuse status
    assert cli.main(["fuse", "status", "--port", "sim:pin", "--project", str(proj.root),
                     "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    # 3. the board's attestation (the sim reads its eFuses again at the reset before it)
    with BoardLink(info.port) as link:
        att = run.attest(link, st, policy.load())
    facts = att.evidence.facts
    for name in ("jtag", "uart_download", "secure_boot", "flash_encryption", "anchors_pin"):
        assert facts[name].value == status["facts"][name], name
    assert status["facts"]["jtag"] == "disabled-permanently"
    assert status["facts"]["anchors_pin"] == "match" and status["anchors_pin"]["locked"]
    assert att.evidence.claims["dbgstat"] == "disabled-permanently"
    outcome = {r.rule: r.outcome for r in att.appraisal.results}
    assert outcome["anchors-pinned"] == "pass" and outcome["jtag-disabled"] == "pass"

    # a REPL user swaps the trust anchors for their own key's: every update is refused
    intruder = project.init(tmp_path / "intruder", passphrase=None, targets=["sim"])
    theirs = tmp_path / "theirs.json"
    theirs.write_bytes(fuse.anchors_bytes(project.anchor_set(list(intruder.anchors().values()))))
    mpr(info.port, "fs", "cp", str(theirs), ":/mpguard/anchors.json")
    bundle(intruder, tmp_path / "intruder-app", "1.9.0")  # their sequence passes the board's
    with BoardLink(info.port) as link:
        # the install checks the anchors against the pin first: theirs (which would verify
        # against their anchors) and the project's own are both refused for the anchors
        for who, reason in ((intruder, "anchors_pin"), (proj, "anchors_pin")):
            res = deploy.deploy(link, bundle(who, tmp_path / who.root.name, "2.0.0"), wait=20)
            assert (res.outcome, res.reason) == ("refused", reason), who.root
        att = run.attest(link, st, policy.load())
        assert att.evidence.facts["anchors_pin"].value == "mismatch"
        assert {r.rule: r.outcome for r in att.appraisal.results}["anchors-pin-match"] == "fail"
        assert link.call("update.status")["app"] == "demo"  # still the app it had
        # the pinned anchors back: updates from the project go through again
        link.put(fuse.anchors_bytes(anchors), agent_install.ANCHORS)
        res = deploy.deploy(link, bundle(proj, tmp_path / "again", "2.0.1"), wait=20)
        assert res.outcome == "confirmed", res
    # the inventory holds the board's history: its provisioning and three attestations, each
    # with the anchors_pin fact the board reported then
    hist = inv.events(ueid=ueid)
    assert [e.kind for e in hist] == ["provision"] + ["attestation"] * 3
    assert [dict(e.data["facts"])["anchors_pin"]["value"] for e in hist[1:]] == [
        "unpinned", "match", "mismatch"]
    inv.close()


def test_status_compares_the_pin_with_the_boards_own_anchors(sim_factory, mpr, tmp_path,
                                                               capsys, monkeypatch, blank_chip):
    """`fuse status --port` judges the pin against the anchors file the board holds (what
    guard.pin checks at every install), wherever it is run from; the project's anchors are
    reported beside it, and used (and named) only when the board's cannot be read."""
    efuse = blank_chip("esp32", tmp_path / "efuse.bin")
    info = sim_factory("pa", efuse=str(efuse))
    a = project.init(tmp_path / "a", passphrase=None, targets=["sim"])
    b = project.init(tmp_path / "b", passphrase=None, targets=["sim"])
    assert cli.main(["agent", "install", "--port", "sim:pa", "--project", str(a.root)]) == 0
    assert cli.main(["fuse", "harden", "--port", "sim:pa", "--profile", "development", "--burn",
                     fuse.CONFIRM_FLAG, "--project", str(a.root)]) == 0
    capsys.readouterr()

    def status(*extra: str) -> dict:
        assert cli.main(["fuse", "status", "--port", "sim:pa", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    # from another project: the board holds the pinned anchors, so it is a match
    pin = status("--project", str(b.root))["anchors_pin"]
    assert (pin["state"], pin["compared_with"], pin["project"]) == ("match", "board", "mismatch")
    # outside any project: still judged against the board
    monkeypatch.chdir(tmp_path)
    st = status()
    assert st["facts"]["anchors_pin"] == "match" and st["anchors_pin"]["compared_with"] == "board"
    assert st["anchors_pin"]["project"] is None
    # the board's anchors swapped for b's: the board refuses every update, and status says so
    # even run from the pinned project a
    theirs = tmp_path / "theirs.json"
    theirs.write_bytes(fuse.anchors_bytes(b.board_anchors()))
    mpr(info.port, "fs", "cp", str(theirs), ":/mpguard/anchors.json")
    pin = status("--project", str(a.root))["anchors_pin"]
    assert (pin["state"], pin["compared_with"], pin["project"]) == ("mismatch", "board", "match")
    assert cli.main(["fuse", "status", "--port", "sim:pa", "--project", str(a.root)]) == 0
    text = capsys.readouterr().out
    assert "mismatch" in text and "the board's anchors file /mpguard/anchors.json" in text
    # a board that cannot be read (stopped): the project's anchors, and the text says so
    simlib.stop("pa")
    pin = status("--project", str(a.root))["anchors_pin"]
    assert (pin["state"], pin["compared_with"]) == ("match", "project")
    assert "not running" in pin["note"]
    assert cli.main(["fuse", "status", "--port", "sim:pa", "--project", str(a.root)]) == 0
    assert "the project's anchors" in capsys.readouterr().out


def test_harden_refuses_to_pin_anchors_the_board_does_not_hold(sim_factory, tmp_path, capsys,
                                                               blank_chip):
    """`fuse harden` from a project whose anchors the board does not hold: pinning them would
    lock the board out of every update its own anchors accept, for ever. Refused (exit 4,
    pin_board_mismatch) in the dry run and with --burn, and not one eFuse bit changes; from
    the board's own project the plan says the board holds its anchors."""
    efuse = blank_chip("esp32", tmp_path / "efuse.bin")
    sim_factory("pm", efuse=str(efuse))
    a = project.init(tmp_path / "a", passphrase=None, targets=["sim"])
    b = project.init(tmp_path / "b", passphrase=None, targets=["sim"])
    assert cli.main(["agent", "install", "--port", "sim:pm", "--project", str(a.root)]) == 0
    capsys.readouterr()
    before = efuse.read_bytes()
    for extra in ([], ["--burn", fuse.CONFIRM_FLAG]):
        rc = cli.main(["fuse", "harden", "--port", "sim:pm", "--profile", "development",
                       "--project", str(b.root), "--json", *extra])
        out = json.loads(capsys.readouterr().out)
        assert rc == 4 and out["error"]["reason"] == "pin_board_mismatch", out
        assert efuse.read_bytes() == before
    assert cli.main(["fuse", "harden", "--port", "sim:pm", "--profile", "development",
                     "--project", str(a.root)]) == 0
    assert "the board holds this project's anchors" in capsys.readouterr().out
    assert efuse.read_bytes() == before  # a dry run
