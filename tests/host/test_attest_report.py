"""Reports of appraisals: JUnit XML (a testcase per rule), JSON, the terminal table, EAR
(verified with jwcrypto), the fleet view's problems, and the HTML report opened in headless
Chromium (it renders its tables; a screenshot lands in the test's tmp folder).

The boards are recorded in the real inventory (a fresh SQLite file, then a fresh PostgreSQL
schema, per test) with certificates from a real device CA (tests/conftest.py `enroll`); the
tokens they "sent" are made here with their test keys."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto import jwk, jwt

from mpguard import keys
from mpguard.attest import ear, fleet, html, policy, report, run, store
from mpguard.errors import AttestError, DuplicateIdentity

KEY1 = ec.derive_private_key(0x71C0FFEE0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF01234567, ec.SECP256R1())
KEY2 = ec.derive_private_key(0x42C0FFEE0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF01234567, ec.SECP256R1())
U1 = bytes.fromhex("02240ac4000001")
U2 = bytes.fromhex("02240ac4000002")
T0 = 1_750_000_000.0
# what the stock board says, markup included: every report shows it as text
STOCK_LAST = "confirmed <b>board</b> [bold]x[/bold]"


def attest_once(inv, eat, key, ueid, nonce, **over):
    over.setdefault("iat", int(T0))
    tok = eat.token(key, eat.claims(nonce, ueid, **over))
    return run.appraise_token(store.Store(inv), policy.load(), tok, nonce, T0, T0 + 1)


@pytest.fixture
def two(inventory, enroll, eat):
    inv = inventory
    enroll(inv, KEY1, U1)  # hardened
    enroll(inv, KEY2, U2)  # stock
    attest_once(inv, eat, KEY1, U1, "nonce-one-00000001")
    stock = {"jtag_disable": {"s": "ok", "v": {"JTAG_DISABLE": 0}},
             "webrepl": {"s": "ok", "v": {"configured": True, "in_boot": True, "running": False,
                                          "password": "default"}},
             "update": {"s": "ok", "v": {"seq": 3, "app": "demo", "ver": "1.2.0", "trial": False,
                                         "last": STOCK_LAST}}}
    attest_once(inv, eat, KEY2, U2, "nonce-two-00000001", posture=stock, dbgstat="enabled",
                swname="<script>alert(1)</script>")
    return inv


def test_junit_has_a_testcase_per_rule_and_board(two):
    f = fleet.build(store.Store(two))
    root = ET.fromstring(report.junit(f))
    suites = root.findall("testsuite")
    n = len(policy.load().rules)
    assert [len(s.findall("testcase")) for s in suites] == [n, n]
    assert [s.get("name") for s in suites] == [f"mpguard.attest.{U1.hex()}",
                                                f"mpguard.attest.{U2.hex()}"]
    stock = next(s for s in suites if U2.hex() in s.get("name"))
    failed = {tc.get("name").split(":")[0] for tc in stock.findall("testcase")
              if tc.find("failure") is not None}
    assert failed == {"jtag-disabled", "webrepl-default-password"}
    assert stock.get("failures") == "2" and stock.get("tests") == str(n)
    tc = next(tc for tc in stock.findall("testcase") if tc.get("name").startswith("jtag"))
    assert tc.get("classname") == "ETSI EN 303 645 5.6-4"
    assert "JTAG_DISABLE" in tc.find("failure").text  # the hint, in the CI log


def test_json_report_round_trips_and_names_the_evidence(two):
    data = json.loads(report.as_json(fleet.build(store.Store(two)).as_dict()))
    assert data["verdict"] == "fail" and len(data["boards"]) == 2
    r = next(r for b in data["boards"] for r in b["results"] if r["rule"] == "jtag-disabled"
             and r["outcome"] == "fail")
    assert r["src"] == "mpguard_posture.jtag_disable" and r["value"] == "enabled"
    assert [(b["ueid"], b["verdict"]) for b in data["boards"]] == [(U1.hex(), "pass"),
                                                                  (U2.hex(), "fail")]
    assert data["boards"][0]["kid"] == keys.thumbprint(KEY1)


def test_table_shows_results_and_hints_and_escapes_board_text(two):
    text = report.table(fleet.build(store.Store(two)))
    assert "jtag-disabled" in text and "FAIL" in text and "espefuse" in text
    assert U1.hex() in text and U2.hex() in text  # the boards, by UEID
    assert "confirmed <b>board</b>" in text and "[bold]x[/bold]" in text  # text, not markup


def test_fleet_counts_per_rule(two):
    f = fleet.build(store.Store(two))
    assert f.rules["jtag-disabled"]["pass"] == 1 and f.rules["jtag-disabled"]["fail"] == 1
    assert f.problems == []


def test_fleet_problems_a_single_board_cannot_see(inventory, enroll, eat):
    inv = inventory
    rec = enroll(inv, KEY1, U1, days=5)  # a certificate the device CA issued for 5 days
    idle = bytes.fromhex("02240ac4000009")
    enroll(inv, ec.generate_private_key(ec.SECP256R1()), idle)
    # a clone (the same key on a second board) and a second record of one UEID: the real
    # inventory refuses both (unique key and UEID), so the fleet can never hold them ...
    with pytest.raises(DuplicateIdentity) as e:
        enroll(inv, KEY1, U2)
    assert e.value.reason == "duplicate_key"
    with pytest.raises(DuplicateIdentity) as e:
        enroll(inv, KEY2, U1)
    assert e.value.reason == "duplicate_ueid"
    assert [d.ueid for d in inv.devices()] == [U1.hex(), idle.hex()]
    up = {"update": {"s": "ok", "v": {"seq": 5, "app": "demo", "ver": "5", "trial": False,
                                      "last": "confirmed"}}}
    down = {"update": {"s": "ok", "v": {"seq": 3, "app": "demo", "ver": "3", "trial": False,
                                        "last": "confirmed"}}}
    attest_once(inv, eat, KEY1, U1, "nonce-seq-00000005", posture=up)
    attest_once(inv, eat, KEY1, U1, "nonce-seq-00000003", posture=down)
    f = fleet.build(store.Store(inv))
    kinds = {p["kind"]: p for p in f.problems}
    assert set(kinds) == {"cert_expiry", "seq_backwards", "never_attested"}
    assert "5 -> 3" in kinds["seq_backwards"]["detail"]
    assert kinds["seq_backwards"]["boards"] == [U1.hex()]
    assert kinds["cert_expiry"]["boards"] == [U1.hex()]
    na = rec.certificate.not_after  # read from the certificate by the inventory
    assert dt.timedelta(days=4) < na - dt.datetime.now(dt.UTC) <= dt.timedelta(days=5)
    assert na.astimezone(dt.UTC).isoformat(timespec="seconds") in kinds["cert_expiry"]["detail"]
    assert kinds["never_attested"]["boards"] == [idle.hex()]
    assert f.verdict() == "fail"
    # ... and a clone that signs with the board's key, under its own UEID, is refused on the
    # genuine board's record, where the fleet view shows it
    with pytest.raises(AttestError) as e:
        attest_once(inv, eat, KEY1, U2, "nonce-clone-0000001")
    assert e.value.reason == "ueid_mismatch"
    b1 = next(b for b in fleet.build(store.Store(inv)).boards if b.ueid == U1.hex())
    assert (b1.verdict, b1.refused) == ("refused", "ueid_mismatch")


def test_since_filters_attestations(two):
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    f = fleet.build(store.Store(two), since=later)
    assert all(b.verdict == "none" for b in f.boards)
    assert {p["kind"] for p in f.problems} == {"never_attested"}


def test_ear_is_a_jwt_jwcrypto_verifies(two):
    st = store.Store(two)
    f = fleet.build(st)
    b = next(b for b in f.boards if b.ueid == U1.hex())  # hardened
    ap = policy.Appraisal("mpguard-default@1",
                          [policy.Result(**r) for r in b.results])
    body = ear.claims(ap, b.ueid, iat=int(T0), nonce="abc")
    vkey = keys.generate()
    tok = ear.sign(body, vkey)
    k = jwk.JWK.from_pyca(vkey.public_key())
    got = json.loads(jwt.JWT(jwt=tok, key=k, algs=["ES256"], check_claims={}).claims)
    sub = got["submods"][b.ueid]
    assert got["eat_profile"] == "tag:github.com,2023:veraison/ear"
    assert sub["ear.status"] == "affirming"
    assert set(sub["ear.trustworthiness-vector"].values()) == {2}
    stock = next(b for b in f.boards if b.ueid == U2.hex())
    ap2 = policy.Appraisal("p", [policy.Result(**r) for r in stock.results])
    tv = ear.claims(ap2, stock.ueid)["submods"][stock.ueid]
    assert tv["ear.status"] == "contraindicated"
    assert tv["ear.trustworthiness-vector"]["configuration"] == 96


def test_html_escapes_everything_a_board_said(two):
    page = html.render(fleet.build(store.Store(two)))
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "confirmed &lt;b&gt;board&lt;/b&gt;" in page and "<b>board</b>" not in page
    assert f'id="b-{U1.hex()}"' in page and f'id="b-{U2.hex()}"' in page  # a section per board
    assert 'id="boards"' in page and 'id="rules"' in page
    assert "http://" not in page and "https://" not in page.split("</style>")[0]  # self-contained


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def test_html_report_renders_in_headless_chromium(two, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (CI installs Debian's chromium in .ci/run)")
    page = tmp_path / "fleet.html"
    page.write_text(html.render(fleet.build(store.Store(two))))
    common = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
              f"--user-data-dir={tmp_path / 'profile'}"]
    env = dict(os.environ, HOME=str(tmp_path))
    dom = subprocess.run(common + ["--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, env=env)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the DOM Chromium built: both tables with their rows, a row per board
    root = dom.stdout
    assert root.count('<tr><td><a href="#b-') == 2
    assert 'id="rules"' in root and "jtag-disabled" in root
    shot = tmp_path / "fleet.png"
    res = subprocess.run(common + [f"--screenshot={shot}", "--window-size=1200,1600",
                                   page.as_uri()], capture_output=True, text=True, timeout=120,
                         env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
