"""Attestation end to end on the virtual board, through the real mpremote transport: the
agent signs a token of its posture, mpguard verifies and judges it, records it in the
inventory, reports it (CLI: JSON, JUnit, HTML); burning JTAG_DISABLE with espefuse on the
sim's eFuse file changes `dbgstat` in the next token; the board refuses a replayed nonce.

Everything is real: the board is provisioned (its key made on the board, certified by the
project's device CA, recorded in the inventory) and the inventory is a fresh PostgreSQL
schema the project's config names. The second test runs it all as a user does, through the
`mpguard` command, and then searches the host side for the board's private key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from idhelp import (
    MPGUARD,
    Cli,
    Proj,
    find_key,
    flash_private_keys,
    host_side,
    key_encodings,
    public_point,
    split_probe,
    use_inventory,
)

import mpguard.sim as simlib
from mpguard import cli, files, keys, reasons
from mpguard.attest import board, fleet, policy, run, store
from mpguard.errors import DeviceRefused
from mpguard.identity import board as idboard
from mpguard.identity import ca as device_ca
from mpguard.identity import provision as prov
from mpguard.inventory import Inventory
from mpguard.link import BoardLink
from mpguard.sim import folder as simfolder
from mpguard.updates import deploy, release

pytestmark = pytest.mark.timeout(600)
ESPEFUSE = str(Path(sys.executable).parent / "espefuse")
GOOD = 'import guard\nprint("app {v} running")\nguard.confirm()\n'


def espefuse(path: Path, *args: str) -> None:
    subprocess.run([ESPEFUSE, "--virt", "--path-efuse-file", str(path), "--chip", "esp32", *args],
                   check=True, capture_output=True, timeout=120)


@pytest.fixture
def inv_url(pg_server) -> str:
    """A fresh PostgreSQL schema: the test's inventory."""
    return pg_server.new_schema()


def board_public_key(p: Proj, ueid: bytes):
    """The board's public key as a third party gets it: from its certificate in the
    inventory, after checking that the project's device CA issued that certificate."""
    with p.inventory() as inv:
        rec = inv.device(ueid)
    assert rec is not None
    cert = x509.load_der_x509_certificate(rec.certificate.der)
    cert.verify_directly_issued_by(device_ca.certificate(p.root))
    assert keys.public_bytes(cert.public_key()) == rec.public_key
    return cert.public_key(), rec


def test_attest_story_on_the_virtual_board(sim_factory, tmp_path, inv_url, blank_chip):
    efuse = blank_chip("esp32", tmp_path / "efuse.bin")  # a fresh chip: nothing burned
    info = sim_factory("att", efuse=str(efuse))
    p = Proj(tmp_path / "proj", inventory=inv_url)
    proj = p.proj
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text(GOOD.format(v="1.0.0"))
    release.build_release(proj, app, "1.0.0", tmp_path / "v1.bundle", passphrase=None, app="demo")
    inv = p.inventory()
    st = store.Store(inv)
    pol = policy.load()
    with BoardLink(info.port) as link:
        ident = prov.provision(link, proj, passphrase=None)  # installs the agent, then the identity
        assert ident.outcome == "provisioned" and ident.agent_installed
        ueid = idboard.unb64u(ident.ueid)
        pub, rec = board_public_key(p, ueid)
        assert rec.thumbprint == ident.kid and rec.mac.replace(":", "") == info.uid
        res = deploy.deploy(link, (tmp_path / "v1.bundle").read_bytes(), wait=20)
        assert res.outcome == "confirmed", res

        att = run.attest(link, st, pol)
        c = att.evidence.claims
        assert c["ueid"] == files.b64u_enc(ueid) == ident.ueid
        assert att.evidence.device.ueid == ueid and att.evidence.kid == ident.kid
        assert att.evidence.device.cert_not_after == rec.certificate.not_after
        assert c["dbgstat"] == "enabled" and c["oemboot"] is False
        assert c["swname"] == "demo" and c["swversion"] == ["1.0.0"]
        assert c["measres"] == [["mpguard", [["app", "success"], ["agent", "success"]]]], c["mpguard_posture"]["app"]
        assert c["bootcount"] >= 2  # power-on + the deploy's reset
        out = {r.rule: r.outcome for r in att.appraisal.results}
        assert out["jtag-disabled"] == "fail" and out["app-integrity"] == "pass"
        assert att.verdict == "fail"
        # an independent JOSE library agrees, with only the board's public key (from its
        # certificate)
        assert jwt.decode(att.evidence.token, pub, algorithms=["ES256"])["ueid"] == c["ueid"]

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

    # the CLI, as a production line would run it (the project's inventory): exit code, JSON,
    # JUnit, HTML
    junit, page = tmp_path / "att.xml", tmp_path / "att.html"
    rc = cli.main(["attest", "--port", "sim:att", "--project", str(proj.root), "--json",
                   "--junit", str(junit), "--html", str(page)])
    assert rc in (reasons.EXIT_WARN, reasons.EXIT_FAIL)  # a stock chip still warns (secure boot, flash encryption) or fails
    last = inv.events(ueid=ueid)[-1]
    assert last.kind == "attestation"
    assert dict(last.data["facts"])["jtag"]["value"] == "disabled-permanently"
    token = last.data["token"]
    assert jwt.decode(token, pub, algorithms=["ES256"])["dbgstat"] == "disabled-permanently"
    assert {r["rule"]: r["outcome"] for r in last.data["results"]}["jtag-disabled"] == "pass"
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert len(cases) == len(pol.rules)
    assert "jtag-disabled" in page.read_text()
    # the board's history in the inventory, in order
    assert [e.kind for e in inv.events(ueid=ueid)] == ["provision", "attestation",
                                                      "attestation", "attestation"]

    # the fleet view: one board, three attestations, nothing a fleet would flag
    f = fleet.build(st)
    assert [b.attestations for b in f.boards] == [3] and f.problems == []
    assert f.boards[0].claims["dbgstat"] == "disabled-permanently"
    assert (f.boards[0].ueid, f.boards[0].kid) == (ueid.hex(), ident.kid)
    inv.close()


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ, MPGUARD_SIM_DIR=str(tmp_path / "sims"), MPGUARD_PASSPHRASE="pw")
    yield e
    subprocess.run(MPGUARD + ["sim", "stop", "--all"], env=e, capture_output=True)


def test_the_board_key_is_nowhere_on_the_host_after_provision_and_attest(env, tmp_path,
                                                                         pg_server):
    """Provisioning and attestation as a user runs them, with every report; then the board's
    private key (read from the virtual board's flash image file, as only a test can) is
    searched for in everything the host side has: the project folder, a pg_dump of the
    inventory's schema, the commands' output, the sim's logs, the reports."""
    url = pg_server.new_schema()
    cli = Cli(env, tmp_path)
    cli("sim", "start", "--name", "g")
    cli("init", "proj", "--target", "sim")
    cli.cwd = root = tmp_path / "proj"
    use_inventory(root, url)  # mpguard.json names the PostgreSQL schema: every command uses it
    prov_out = cli.json("provision", "--port", "sim:g", "--batch", "b-1")
    assert prov_out["outcome"] == "provisioned" and prov_out["agent_installed"]
    (root / "app").mkdir()
    (root / "app" / "main.py").write_text(GOOD.format(v="1.0.0"))
    cli("release", "build", "app", "--version", "1.0.0", "-o", "app.bundle")
    assert cli.json("deploy", "--port", "sim:g", "app.bundle")["outcome"] == "confirmed"
    ear_key = tmp_path / "ear-key.pem"
    keys.save_private(keys.generate(), ear_key, None, allow_plaintext=True)
    graded = (reasons.EXIT_WARN, reasons.EXIT_FAIL)  # a stock chip: warn or fail, never refused
    att = cli.json("attest", "--port", "sim:g", "--junit", "att.xml", "--html", "att.html",
                   "--ear", "att.ear", "--ear-key", str(ear_key), code=graded)
    assert att["device"]["ueid"] == idboard.unb64u(prov_out["ueid"]).hex()
    assert att["device"]["kid"] == prov_out["kid"] and att["token"]
    rep_out = cli.json("report", "--junit", "fleet.xml", "--html", "fleet.html", code=graded)
    assert [b["attestations"] for b in rep_out["boards"]] == [1]
    cli("devices", "show", prov_out["ueid"])
    cli("sim", "stop", "--all")  # the flash image file is complete once the board is off

    # the board's keys, from its flash image (the host's commands never read it)
    sims = tmp_path / "sims"
    found = flash_private_keys(sims / "g" / simfolder.IMAGE)
    with Inventory.open(url) as inv:
        (dev,) = inv.devices()
        kinds = [e.kind for e in inv.events(ueid=dev.ueid)]
    assert dev.thumbprint == prov_out["kid"]
    assert dev.public_key in [public_point(k) for k in found]  # the identity key is among them
    assert kinds == ["provision", "deploy", "attestation"]

    dump = pg_server.dump(url)
    # the dump holds the board's records: the search below looks at real data
    assert dev.ueid.encode() in dump and dev.thumbprint.encode() in dump
    assert att["token"].split(".")[1].encode() in dump and b"attestation" in dump
    blobs = host_side(tmp_path, sims, cli.transcript, b"")
    blobs["inventory dump"] = dump
    for name in ("proj/att.html", "proj/att.xml", "proj/att.ear", "proj/fleet.html",
                 "proj/fleet.xml", "proj/mpguard.json"):
        assert name in blobs, name
    assert any(k.startswith("sims/") and k.endswith(".log") for k in blobs)
    assert json.loads(blobs["proj/mpguard.json"])["inventory"] == url
    for sec1 in found:
        enc = key_encodings(sec1)
        assert find_key(split_probe(enc), enc)  # the search finds a key split over lines
        assert find_key(blobs, enc) == []
