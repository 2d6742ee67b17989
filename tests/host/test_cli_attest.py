"""`mpguard attest` and `mpguard report` as commands: exit codes, one JSON object, the report
files; bad input refused before any board or inventory is touched.

The project's inventory is the real one (its `inventory` config key names a fresh SQLite file,
then a fresh PostgreSQL schema); the board is recorded in it with a certificate from the
project's device CA, and the tokens are made here with the board's test key."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mpguard import cli, keys, project, reasons
from mpguard.attest import policy, run, store
from mpguard.identity import ca

KEY = ec.derive_private_key(0x3A5C0FFEE, ec.SECP256R1())
UEID = bytes.fromhex("02240ac4abcdef")
T0 = 1_750_000_000.0


@pytest.fixture
def proj(tmp_path, inventory_url):
    p = project.init(tmp_path / "proj", passphrase=None, targets=["sim"])
    cfg = p.root / project.CONFIG_NAME
    cfg.write_text(json.dumps(dict(json.loads(cfg.read_text()), inventory=inventory_url)))
    return project.load(p.root)


@pytest.fixture
def device_ca(proj):
    """The project's own device CA (what `enroll` issues the board's certificate with)."""
    return ca.DeviceCA(proj.root, None)


@pytest.fixture
def inv(inventory, enroll):
    # `inventory` is the one the project's config names (the same inventory_url)
    enroll(inventory, KEY, UEID)
    return inventory


def attest(inv, eat, **over):
    over.setdefault("iat", int(T0))
    nonce = run.new_nonce()
    tok = eat.token(KEY, eat.claims(nonce, UEID, **over))
    return run.appraise_token(store.Store(inv), policy.load(), tok, nonce, T0, T0 + 1)


def test_report_exit_code_json_and_files(inv, eat, proj, tmp_path, capsys):
    attest(inv, eat)
    junit, page = tmp_path / "r.xml", tmp_path / "r.html"
    rc = cli.main(["report", "--project", str(proj.root), "--json", "--junit", str(junit),
                   "--html", str(page)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["exit_code"] == 0 and out["verdict"] == "pass" and out["ok"]
    assert [(b["ueid"], b["kid"], b["attestations"]) for b in out["boards"]] == [
        (UEID.hex(), keys.thumbprint(KEY), 1)]
    assert len(ET.parse(junit).getroot().findall(".//testcase")) == len(policy.load().rules)
    assert UEID.hex() in page.read_text()


def test_report_fails_when_a_board_fails(inv, eat, proj, capsys):
    attest(inv, eat, posture={"jtag_disable": {"s": "ok", "v": {"JTAG_DISABLE": 0}}})
    assert cli.main(["report", "--project", str(proj.root)]) == reasons.EXIT_FAIL
    text = capsys.readouterr().out
    assert "jtag-disabled" in text and "espefuse" in text


def test_report_warns(inv, eat, proj):
    attest(inv, eat, posture={"repl_uart": {"s": "ok", "v": True}})
    assert cli.main(["report", "--project", str(proj.root)]) == reasons.EXIT_WARN


def test_report_since(inv, eat, proj, capsys):
    attest(inv, eat)
    assert cli.main(["report", "--project", str(proj.root), "--since", "1h", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["boards"][0]["attestations"] == 1
    assert cli.main(["report", "--project", str(proj.root), "--since", "yesterday"]) == 2


def test_bad_policy_is_refused_before_the_board(proj, tmp_path, capsys):
    bad = tmp_path / "p.toml"
    bad.write_text("[policy]\nid = 'x'\n")
    rc = cli.main(["attest", "--port", str(tmp_path / "no-such-port"), "--policy", str(bad),
                   "--project", str(proj.root), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 2 and out["error"]["reason"] == "bad_policy"


def test_ear_key_without_ear_is_usage(proj, tmp_path):
    rc = cli.main(["attest", "--port", "x", "--ear-key", str(tmp_path / "k.pem"),
                   "--project", str(proj.root)])
    assert rc == 2


@pytest.mark.parametrize("boards", [0, 1])
def test_report_without_attestations_says_so_and_how_to_make_one(inventory, enroll, proj,
                                                                 tmp_path, capsys, boards):
    if boards:
        enroll(inventory, KEY, UEID)  # provisioned, never attested
    page = tmp_path / "r.html"
    rc = cli.main(["report", "--project", str(proj.root), "--json", "--html", str(page)])
    out = json.loads(capsys.readouterr().out)  # one object
    assert rc == reasons.EXIT_USAGE and out["exit_code"] == rc and out["ok"] is False
    assert out["error"]["reason"] == "no_attestations"
    assert "mpguard attest --port" in out["error"]["hint"]
    assert ("1 board(s) in the inventory, none attested yet" if boards else
            "no board yet: provision one") in out["error"]["message"]
    assert not page.exists()  # nothing written
    assert cli.main(["report", "--project", str(proj.root)]) == reasons.EXIT_USAGE
    err = capsys.readouterr().err
    assert "no attestations" in err and "mpguard attest --port" in err


def test_report_since_excluding_every_attestation_says_so(inv, eat, proj, capsys):
    attest(inv, eat)
    rc = cli.main(["report", "--project", str(proj.root), "--since", "2999-01-01"])
    assert rc == reasons.EXIT_USAGE
    assert "no attestation since 2999-01-01" in capsys.readouterr().err


def test_report_shows_a_board_never_attested_in_one_line_not_an_empty_table(inv, eat, proj,
                                                                            enroll, capsys):
    attest(inv, eat)
    other = ec.derive_private_key(0x5EED, ec.SECP256R1())
    enroll(inv, other, bytes.fromhex("02240ac4000002"))
    assert cli.main(["report", "--project", str(proj.root)]) == 0
    text = capsys.readouterr().out
    (line,) = [ln for ln in text.splitlines() if ln.startswith("02240ac4000002")]
    assert "not attested" in line and "mpguard attest --port" in line
    assert text.count("┃ rule") == 1  # the table of the attested board only
