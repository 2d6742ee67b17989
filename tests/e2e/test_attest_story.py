"""Attestation end to end on the virtual board, through the real mpremote transport: the
agent signs a token of its posture, mpguard verifies and judges it, records it in the
inventory, reports it (CLI: JSON, JUnit, HTML); burning JTAG_DISABLE with espefuse on the
sim's eFuse file changes `dbgstat` in the next token; the board refuses a replayed nonce.

Device identity and the inventory are not on this branch yet: a test stand-in for
guard.identity (a fixed key, the UEID from the board's MAC) is copied to the board, and the
inventory is the in-memory stand-in of tests/conftest.py (FakeInventory).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import mpguard.sim as simlib
from mpguard import cli, keys, project, reasons
from mpguard.agent import install as agent_install
from mpguard.attest import board, fleet, policy, run, store
from mpguard.cli import attest as cli_attest
from mpguard.errors import DeviceRefused
from mpguard.link import BoardLink
from mpguard.updates import deploy, release

pytestmark = pytest.mark.timeout(600)
ESPEFUSE = str(Path(sys.executable).parent / "espefuse")
D = 0x6A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9
KEY = ec.derive_private_key(D, ec.SECP256R1())
IDENTITY = f'''# test stand-in for guard.identity (device identity lands on its own branch)
from guard import hw
def key():
    return {D:#x}, {keys.public_bytes(KEY)!r}
def ueid():
    return b"\\x02" + hw.unique_id()
'''
GOOD = 'import guard\nprint("app {v} running")\nguard.confirm()\n'


def espefuse(path: Path, *args: str) -> None:
    subprocess.run([ESPEFUSE, "--virt", "--path-efuse-file", str(path), "--chip", "esp32", *args],
                   check=True, capture_output=True, timeout=120)


def give_identity(link: BoardLink) -> bytes:
    """Copy the identity stand-in next to the agent (listed in its digests, as an agent
    build with identity would be); return the board's UEID."""
    link.put(IDENTITY.encode(), "/lib/guard/identity.py")
    d = json.loads(link.get(agent_install.DIGESTS))
    d["files"]["identity.py"] = hashlib.sha256(IDENTITY.encode()).hexdigest()
    link.put(json.dumps(d, sort_keys=True).encode(), agent_install.DIGESTS)
    return b"\x02" + bytes.fromhex(link.eval("__import__('machine').unique_id().hex()"))


def test_attest_story_on_the_virtual_board(sim_factory, tmp_path, fake_inventory, monkeypatch):
    efuse = tmp_path / "efuse.bin"
    espefuse(efuse, "summary")  # a fresh chip: nothing burned
    info = sim_factory("att", efuse=str(efuse))
    proj = project.init(tmp_path / "proj", passphrase=None, targets=["sim"])
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text(GOOD.format(v="1.0.0"))
    release.build_release(proj, app, "1.0.0", tmp_path / "v1.bundle", passphrase=None, app="demo")
    inv = fake_inventory
    st = store.Store(inv)
    pol = policy.load()
    with BoardLink(info.port) as link:
        agent_install.install(link, project.anchor_set(list(proj.anchors().values())), force=True)
        ueid = give_identity(link)
        inv.add_device(ueid, KEY, name="att")
        res = deploy.deploy(link, (tmp_path / "v1.bundle").read_bytes(), wait=20)
        assert res.outcome == "confirmed", res

        att = run.attest(link, st, pol)
        c = att.evidence.claims
        assert c["ueid"] and att.evidence.device.name == "att"
        assert c["dbgstat"] == "enabled" and c["oemboot"] is False
        assert c["swname"] == "demo" and c["swversion"] == ["1.0.0"]
        assert c["measres"] == [["mpguard", [["app", "success"], ["agent", "success"]]]]
        assert c["bootcount"] >= 2  # power-on + the deploy's reset
        out = {r.rule: r.outcome for r in att.appraisal.results}
        assert out["jtag-disabled"] == "fail" and out["app-integrity"] == "pass"
        assert att.verdict == "fail"
        # an independent JOSE library agrees, with only the board's public key
        assert jwt.decode(att.evidence.token, KEY.public_key(), algorithms=["ES256"])["ueid"] == c["ueid"]

        # the board refuses a nonce it has already signed over (same boot)
        n = run.new_nonce()
        board.token(link, n)
        with pytest.raises(DeviceRefused) as e:
            board.token(link, n)
        assert e.value.reason == "replay"

        # the app is changed on the board: its measurement fails
        link.put(b"print('tampered')\n", f"/app/{res.status['active']}/main.py")
        att2 = run.attest(link, st, pol)
        assert att2.evidence.posture["app"]["v"]["bad"] == ["main.py"]
        assert {r.rule: r.outcome for r in att2.appraisal.results}["app-integrity"] == "fail"
        link.put(GOOD.format(v="1.0.0").encode(), f"/app/{res.status['active']}/main.py")

    # JTAG_DISABLE burned on the sim's eFuse file; the chip reads its eFuses at power-on
    espefuse(efuse, "--do-not-confirm", "burn-efuse", "JTAG_DISABLE", "1")
    simlib.stop("att")
    info = sim_factory("att", efuse=str(efuse))

    # the CLI, as a production line would run it: exit code, JSON, JUnit, HTML
    monkeypatch.setattr(cli_attest.attest_store, "open_store", lambda root, url: st)
    junit, page = tmp_path / "att.xml", tmp_path / "att.html"
    rc = cli.main(["attest", "--port", "sim:att", "--project", str(proj.root), "--json",
                   "--junit", str(junit), "--html", str(page)])
    assert rc in (reasons.EXIT_WARN, reasons.EXIT_FAIL)  # a stock chip still warns (secure boot, flash encryption) or fails
    last = inv.events_[-1]
    assert last["kind"] == "attestation"
    assert dict(last["data"]["facts"])["jtag"]["value"] == "disabled-permanently"
    token = last["data"]["token"]
    assert jwt.decode(token, KEY.public_key(), algorithms=["ES256"])["dbgstat"] == "disabled-permanently"
    assert {r["rule"]: r["outcome"] for r in last["data"]["results"]}["jtag-disabled"] == "pass"
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert len(cases) == len(pol.rules)
    assert "jtag-disabled" in page.read_text()

    # the fleet view: one board, three attestations, nothing a fleet would flag
    f = fleet.build(st)
    assert [b.attestations for b in f.boards] == [3] and f.problems == []
    assert f.boards[0].claims["dbgstat"] == "disabled-permanently"
