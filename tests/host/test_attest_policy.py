"""The policy: the default ships and parses, every rule names an ETSI EN 303 645 provision;
facts decode the eFuse fields as esptool / ESP-IDF read them; each rule's outcome and the
verdict follow from the facts; a malformed policy is refused with the reason bad_policy."""

from __future__ import annotations

import re

import pytest

from mpguard.attest import facts, policy
from mpguard.errors import AttestError

UEID = bytes.fromhex("02240ac4a1b2c3")


def appraise(eat, **over):
    c = eat.claims("n" * 16, UEID, **over)
    return policy.load().appraise(facts.derive(c))


def outcome(ap, rule):
    return next(r for r in ap.results if r.rule == rule).outcome


def test_default_policy_names_etsi_provisions_and_hints():
    p = policy.load()
    assert p.ident == "mpguard-default@1" and len(p.rules) >= 15
    for r in p.rules:
        assert re.fullmatch(r"5\.\d+-\d+", r.etsi), r.id
        assert r.hint and r.title, r.id
    provisions = {r.etsi.split("-")[0] for r in p.rules}
    assert {"5.1", "5.3", "5.4", "5.5", "5.6", "5.7"} <= provisions
    assert any(r.etsi == "5.6-4" and r.fact == "jtag" for r in p.rules)


def test_a_hardened_board_passes(eat):
    ap = appraise(eat)
    assert ap.verdict == "pass", [(r.rule, r.outcome, r.value) for r in ap.results if r.outcome != "pass"]
    assert outcome(ap, "credentials-rotated") == "skip"  # unsupported until rotation lands


def test_a_stock_board_fails_with_the_reasons(eat):
    post = {
        "secure_boot": {"s": "ok", "v": {"ABS_DONE_0": 0, "ABS_DONE_1": 0}},
        "flash_encryption": {"s": "ok", "v": {"FLASH_CRYPT_CNT": 0}},
        "jtag_disable": {"s": "ok", "v": {"JTAG_DISABLE": 0}},
        "uart_download_disable": {"s": "ok", "v": {"UART_DOWNLOAD_DIS": 0}},
        "partition_encrypted": {"s": "ok", "v": False},
        "repl_uart": {"s": "ok", "v": True},
        "webrepl": {"s": "ok", "v": {"configured": True, "in_boot": True, "running": True,
                                     "password": "default"}},
        "wifi_ap": {"s": "ok", "v": {"ap_active": True, "ap_open": True, "sta_connected": False}},
    }
    ap = appraise(eat, posture=post, oemboot=False, dbgstat="enabled")
    assert ap.verdict == "fail"
    want = {"jtag-disabled": "fail", "webrepl-default-password": "fail", "wifi-ap-not-open": "fail",
            "secure-boot": "warn", "flash-encryption": "warn", "uart-download-disabled": "warn",
            "repl-off": "warn", "webrepl-off": "warn", "flash-encryption-release": "pass",
            "flash-encryption-consistent": "pass", "app-integrity": "pass"}
    assert {k: outcome(ap, k) for k in want} == want
    r = next(r for r in ap.results if r.rule == "jtag-disabled")
    assert r.value == "enabled" and r.src == "mpguard_posture.jtag_disable" and "espefuse" in r.hint


@pytest.mark.parametrize("cnt, wr_dis, want", [
    (0, 0, "off"),
    (1, 0, "development"),
    (3, 0, "off"),  # even parity: disabled again (development mode re-flash)
    (7, 0, "development"),
    (1, 1 << 2, "release"),  # FLASH_CRYPT_CNT write-protected (WR_DIS bit 2 on the ESP32)
    (127, 0, "release"),  # a full counter cannot change
])
def test_flash_encryption_mode_from_counter_parity_and_write_protection(eat, cnt, wr_dis, want):
    post = {"flash_encryption": {"s": "ok", "v": {"FLASH_CRYPT_CNT": cnt}},
            "key_protect": {"s": "ok", "v": {"WR_DIS": wr_dis, "RD_DIS": 0}}}
    f = facts.derive(eat.claims("n" * 16, UEID, posture=post))
    assert f["flash_encryption"].value == want


def test_encryption_mode_unknown_without_write_protect_bits_is_unreadable(eat):
    post = {"flash_encryption": {"s": "ok", "v": {"FLASH_CRYPT_CNT": 1}},
            "key_protect": {"s": "unreadable", "why": "bad_profile"}}
    f = facts.derive(eat.claims("n" * 16, UEID, posture=post))
    assert f["flash_encryption"].status == "unreadable"  # never guessed


def test_partition_flag_disagreeing_with_efuses_fails(eat):
    post = {"partition_encrypted": {"s": "ok", "v": False}}  # eFuses say encrypted
    assert outcome(appraise(eat, posture=post), "flash-encryption-consistent") == "fail"


def test_unsupported_facts_follow_the_rule(eat):
    post = {"jtag_disable": {"s": "unreadable", "why": "bad_profile"},
            "wifi_ap": {"s": "unsupported"}}
    ap = appraise(eat, posture=post)
    assert outcome(ap, "jtag-disabled") == "warn"  # unsupported = "warn"
    assert outcome(ap, "wifi-ap-not-open") == "skip"
    r = next(r for r in ap.results if r.rule == "jtag-disabled")
    assert r.status == "unreadable" and r.value is None


def test_unknown_hwmodel_makes_efuse_facts_unsupported(eat):
    import base64

    ap = appraise(eat, hwmodel=base64.urlsafe_b64encode(b"esp99").rstrip(b"=").decode())
    assert next(r for r in ap.results if r.rule == "jtag-disabled").status == "unsupported"


def test_integrity_and_update_rules(eat):
    post = {"app": {"s": "ok", "v": {"result": "fail", "bad": ["main.py"]}},
            "agent": {"s": "ok", "v": {"result": "not-run"}},
            "update": {"s": "ok", "v": {"seq": 4, "app": "demo", "ver": "2", "trial": True,
                                        "last": "rolled_back"}},
            "anchors": {"s": "ok", "v": []},
            "micropython": {"s": "ok", "v": {"version": "1.22.2", "mpy": "6.2"}}}
    ap = appraise(eat, posture=post)
    got = {k: outcome(ap, k) for k in ("app-integrity", "agent-integrity", "update-confirmed",
                                       "update-not-rolled-back", "trust-anchors",
                                       "micropython-version")}
    assert got == {"app-integrity": "fail", "agent-integrity": "fail", "update-confirmed": "warn",
                   "update-not-rolled-back": "warn", "trust-anchors": "fail",
                   "micropython-version": "warn"}


def test_a_wrongly_typed_value_never_passes():
    r = policy.Rule("r", "t", "5.1-1", "f", "fail", "min", 10)
    assert not r.passes("100") and not r.passes(True) and r.passes(10)
    e = policy.Rule("r", "t", "5.1-1", "f", "fail", "equals", False)
    assert not e.passes(0) and e.passes(False)


BAD = {
    "not toml": "[[rule",
    "no policy id": "[[rule]]\nid='a'",
    "no rules": "[policy]\nid='p'",
    "two tests": "[policy]\nid='p'\n[[rule]]\nid='a'\ntitle='t'\netsi='5.1-1'\nfact='f'\nseverity='fail'\nequals=1\nmin=2",
    "no test": "[policy]\nid='p'\n[[rule]]\nid='a'\ntitle='t'\netsi='5.1-1'\nfact='f'\nseverity='fail'",
    "bad severity": "[policy]\nid='p'\n[[rule]]\nid='a'\ntitle='t'\netsi='5.1-1'\nfact='f'\nseverity='pass'\nequals=1",
    "unknown key": "[policy]\nid='p'\n[[rule]]\nid='a'\ntitle='t'\netsi='5.1-1'\nfact='f'\nseverity='warn'\nequals=1\nfoo=2",
    "bad tv": "[policy]\nid='p'\n[[rule]]\nid='a'\ntitle='t'\netsi='5.1-1'\nfact='f'\nseverity='warn'\nequals=1\ntv='x'",
    "duplicate ids": "[policy]\nid='p'\n" + "[[rule]]\nid='a'\ntitle='t'\netsi='5.1-1'\nfact='f'\nseverity='warn'\nequals=1\n" * 2,
    "in not a list": "[policy]\nid='p'\n[[rule]]\nid='a'\ntitle='t'\netsi='5.1-1'\nfact='f'\nseverity='warn'\nin='x'",
}


@pytest.mark.parametrize("name", BAD)
def test_malformed_policy_is_refused(name):
    with pytest.raises(AttestError) as e:
        policy.parse(BAD[name])
    assert e.value.reason == "bad_policy" and e.value.exit_code == 2


def test_custom_policy_file(tmp_path, eat):
    f = tmp_path / "p.toml"
    f.write_text("[policy]\nid='lab'\nversion=2\n[[rule]]\nid='jtag'\ntitle='JTAG off'\n"
                 "etsi='5.6-4'\nfact='jtag'\nequals='disabled-permanently'\nseverity='fail'\n")
    p = policy.load(f)
    ap = p.appraise(facts.derive(eat.claims("n" * 16, UEID)))
    assert ap.policy == "lab@2" and [r.outcome for r in ap.results] == ["pass"]
    with pytest.raises(AttestError):
        policy.load(tmp_path / "absent.toml")
