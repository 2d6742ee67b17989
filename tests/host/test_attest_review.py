"""The host side of attestation against a board that lies, a sender without a key, and a
careless operator (review C): every odd token is a typed refusal or a judged attestation,
recorded against the right board (or none), never a traceback; the fleet report and the EAR
never call such a board good.

Tokens are signed here with test keys registered in a real inventory (a SQLite file, then a
PostgreSQL schema) with certificates from a real device CA (tests/conftest.py `enroll`,
`eat`), verified and appraised by the real code (mpguard.attest.run.appraise_token), and
reported by the real report code. A malicious board is modelled as one that holds a valid,
provisioned identity key and signs whatever claims it likes; an unauthenticated one as
anything that answers on the port without any key."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mpguard import cli, jose, keys
from mpguard.attest import ear, facts, fleet, policy, run, store
from mpguard.errors import AttestError, MpguardError
from mpguard.inventory import Inventory

KEY1 = ec.derive_private_key(0x71C0FFEE0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF01234567, ec.SECP256R1())
KEY2 = ec.derive_private_key(0x42C0FFEE0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF01234567, ec.SECP256R1())
U1 = bytes.fromhex("02240ac4000001")
U2 = bytes.fromhex("02240ac4000002")
T0 = 1_750_000_000.0
ESC = "\x1b]0;owned\x07\x1b[2J\x1b[31m"


def ok(v):
    return {"s": "ok", "v": v}


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


@pytest.fixture
def inv_url(inventory_url):
    return inventory_url


@pytest.fixture
def inv(inv_url, enroll):
    with Inventory.open(inv_url) as i:
        enroll(i, KEY1, U1)
        enroll(i, KEY2, U2)
        yield i


def appraise(inv, tok, nonce, pol=None):
    return run.appraise_token(store.Store(inv), pol or policy.load(), tok, nonce, T0, T0 + 1)


def signed(eat, key, ueid, nonce, *, payload=None, **over):
    over.setdefault("iat", int(T0))
    c = eat.claims(nonce, ueid, **over)
    body = payload(c) if payload else json.dumps(c).encode()
    return jose.sign(body, key, {"typ": "eat+jwt"})


def unsigned(header_json: bytes, claims: dict) -> str:
    """A token anyone can make: no key, a signature of zeros."""
    return b64(header_json) + "." + b64(json.dumps(claims).encode()) + "." + b64(b"\0" * 64)


def no_crash(fn):
    """A refusal must be typed (AttestError); any other exception is a bug."""
    try:
        return fn()
    except AttestError as e:
        return e


def refusals(inv, ueid):
    return [(e.data.get("nonce"), e.data.get("reason"))
            for e in inv.events(ueid=ueid, kind="attestation_refused")]


# -- an unauthenticated token: a kid that is no thumbprint ---------------------------------

@pytest.mark.parametrize("kid", [
    "\ud800",  # a lone surrogate: the inventory's driver cannot encode it
    "A" * 42 + "\x00",  # NUL: PostgreSQL refuses it in text
    "A" * 44,  # too long for a SHA-256 thumbprint
    "A" * 42 + "B",  # 43 characters, but not the canonical base64url of 32 bytes
    "A" * 42 + "=",
    ESC,
], ids=["lone_surrogate", "nul", "too_long", "not_canonical", "padding", "escapes"])
def test_a_kid_that_is_no_thumbprint_is_unknown_device(inv, eat, kid):
    # the JSON header {"kid":"\ud800"} decodes to a lone surrogate that SQLAlchemy cannot
    # encode: no key needed to make `mpguard attest` die with a traceback
    nonce = "nonce-surrogate-001"
    hdr = json.dumps({"alg": "ES256", "kid": kid}).encode()
    tok = unsigned(hdr, eat.claims(nonce, U1, iat=int(T0)))
    with pytest.raises(AttestError) as e:
        appraise(inv, tok, nonce)
    assert e.value.reason == "unknown_device"
    assert "\x1b" not in str(e.value) and "\x00" not in str(e.value)
    str(e.value).encode()  # printable as UTF-8: no lone surrogate in the message
    assert refusals(inv, U1) == []


# -- a malicious board (valid key) with odd numbers ------------------------------------------

def test_huge_iat_is_a_typed_refusal_not_a_crash(inv, eat):
    # abs(iat - now) with iat = 10**309 was an OverflowError; integer claims are bounded
    nonce = "nonce-huge-iat-0001"
    tok = signed(eat, KEY1, U1, nonce, iat=10**309)
    r = no_crash(lambda: appraise(inv, tok, nonce))
    assert isinstance(r, AttestError) and r.reason == "bad_claims"
    assert refusals(inv, U1) == [(nonce, "bad_claims")]


@pytest.mark.parametrize("posture, fact", [
    ({"secure_version": ok([1])}, "secure_version"),  # list.values()
    ({"jtag_disable": ok({"JTAG_DISABLE": "1"})}, "jtag"),  # a text where a field is a number
], ids=["secure_version_list", "jtag_text"])
def test_odd_fact_values_are_unreadable(inv, eat, posture, fact):
    nonce = "nonce-odd-fact-0001"
    tok = signed(eat, KEY1, U1, nonce, posture=posture)
    att = appraise(inv, tok, nonce)
    assert att.evidence.facts[fact].status == "unreadable"
    assert [e.data["nonce"] for e in inv.events(ueid=U1, kind="attestation")] == [nonce]


@pytest.mark.parametrize("posture", [
    {"flash": ok({"free": float("inf"), "total": 1})},
    {"heap": ok({"free": float("nan")})},
    {"update": ok({"seq": float("-inf"), "app": "d", "ver": "1", "trial": False,
                   "last": "confirmed"})},
], ids=["flash_free_inf", "heap_free_nan", "update_seq_minus_inf"])
def test_non_json_numbers_are_a_refusal_of_the_signer(inv, eat, posture):
    # json.dumps writes Infinity and NaN, which RFC 8259 does not allow: the claims parser
    # (docs/decisions/0032) refuses them, recorded against the board whose key signed them
    nonce = "nonce-odd-fact-0001"
    tok = signed(eat, KEY1, U1, nonce, posture=posture)
    assert b"Infinity" in jose.b64u_dec(tok.split(".")[1]) or b"NaN" in jose.b64u_dec(tok.split(".")[1])
    r = no_crash(lambda: appraise(inv, tok, nonce))
    assert isinstance(r, AttestError) and r.reason == "bad_claims" and "not JSON" in str(r)
    assert refusals(inv, U1) == [(nonce, "bad_claims")]


@pytest.mark.parametrize("value", ["false", 0, 1, None])
def test_partition_encrypted_must_be_a_boolean(eat, value):
    # bool("false") is True: a text must not read as "encrypted"
    c = eat.claims("nonce-part-enc-0001", U1, posture={"partition_encrypted": ok(value)})
    f = facts.derive(c)["flash_encryption_consistent"]
    assert f.status == "unreadable"
    r = next(r for r in policy.load().appraise(facts.derive(c)).results
             if r.rule == "flash-encryption-consistent")
    assert r.outcome != "pass"


# -- a malicious board makes its attestation unrecordable ---------------------------------

POISON = [
    {"anchors_pin": ok("-----BEGIN PRIVATE KEY-----")},
    {"micropython": ok({"version": {"password": 1}, "mpy": "6.3"})},
    {"update": ok({"seq": 3, "app": "d", "ver": "1", "trial": False, "last": float("nan")})},
]
POISON_IDS = ["pem_text", "password_key", "nan"]


@pytest.mark.parametrize("posture", POISON, ids=POISON_IDS)
def test_a_board_cannot_make_its_attestation_unrecordable(inv, eat, posture):
    # the inventory refuses the board's values (private_data / bad_event): that is recorded
    # as the board's refusal (without the values), not an InventoryError (exit 2) that leaves
    # the board's previous, passing attestation as its latest
    appraise(inv, signed(eat, KEY1, U1, "nonce-first-good-01"), "nonce-first-good-01")
    nonce = "nonce-poisoned-0001"
    tok = signed(eat, KEY1, U1, nonce, posture=posture)
    try:
        appraise(inv, tok, nonce)
    except AttestError as e:
        assert e.exit_code == 4 and e.reason == "bad_claims"
    except MpguardError as e:
        pytest.fail(f"untyped for attestation: {type(e).__name__} {getattr(e, 'reason', '')} "
                    f"(exit {e.exit_code}), nothing recorded")
    assert refusals(inv, U1) == [(nonce, "bad_claims")]
    assert "PRIVATE KEY" not in json.dumps([e.data for e in inv.events(ueid=U1)])
    b1 = next(b for b in fleet.build(store.Store(inv)).boards if b.ueid == U1.hex())
    assert (b1.verdict, b1.refused) == ("refused", "bad_claims")


# -- a refusal is recorded only against the board that signed it ---------------------------

def test_forged_kid_refusal_is_not_recorded_against_the_named_board(inv, eat):
    # a token with board 1's thumbprint (public) and a signature of zeros is refused bad_sig;
    # board 1 never signed it, so it is not board 1's refusal
    appraise(inv, signed(eat, KEY1, U1, "nonce-good-000001"), "nonce-good-000001")
    nonce = "nonce-forged-00001"
    hdr = json.dumps({"alg": "ES256", "kid": keys.thumbprint(KEY1)}).encode()
    tok = unsigned(hdr, eat.claims(nonce, U1, iat=int(T0)))
    with pytest.raises(AttestError) as e:
        appraise(inv, tok, nonce)
    assert e.value.reason == "bad_sig"
    assert refusals(inv, U1) == []
    b1 = next(b for b in fleet.build(store.Store(inv)).boards if b.ueid == U1.hex())
    assert b1.verdict == "pass"


def test_a_signed_refusal_is_still_recorded(inv, eat):
    # signed by board 2's key but naming board 1's UEID: board 2 signed it, so it is board 2's
    nonce = "nonce-signed-bad-01"
    with pytest.raises(AttestError) as e:
        appraise(inv, signed(eat, KEY2, U1, nonce), nonce)
    assert e.value.reason == "ueid_mismatch"
    assert refusals(inv, U2) == [(nonce, "ueid_mismatch")] and refusals(inv, U1) == []


# -- the CLI: exit codes and what reaches the operator's terminal ---------------------------

class _FakeLink:
    """What BoardLink does with a board's answers, without a board: `answer(name, args)` gives
    the board's answer to a call."""

    answer = None

    def __init__(self, port):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def soft_reset(self):
        pass

    def call(self, name, args=(), *, timeout=None):
        return type(self).answer(name, args)


def _run_attest(monkeypatch, inv_url, answer, capsys):
    import mpguard.cli.attest as cli_attest
    import mpguard.link as link

    _FakeLink.answer = staticmethod(answer)
    monkeypatch.setattr(link, "BoardLink", _FakeLink)
    monkeypatch.setattr(cli_attest, "resolve_port", lambda p: p)
    rc = cli.main(["attest", "--port", "/dev/fake", "--inventory", inv_url])
    return rc, capsys.readouterr()


def test_unknown_kid_with_terminal_escapes_is_not_printed_raw(inv, inv_url, eat, monkeypatch, capsys):
    def answer(name, args):
        if name == "attest.prepare":
            return 100
        hdr = json.dumps({"alg": "ES256", "kid": ESC}).encode()
        return unsigned(hdr, eat.claims(args[0], U1, iat=int(T0)))

    rc, out = _run_attest(monkeypatch, inv_url, answer, capsys)
    assert rc == 4
    assert "\x1b" not in out.err and "\x07" not in out.err, repr(out.err)


@pytest.mark.parametrize("posture", POISON, ids=POISON_IDS)
def test_attest_of_an_unrecordable_board_exits_refused(inv, inv_url, eat, monkeypatch, capsys,
                                                        posture):
    def answer(name, args):
        if name == "attest.prepare":
            return 100
        return signed(eat, KEY1, U1, args[0], posture=posture, iat=int(__import__("time").time()))

    rc, out = _run_attest(monkeypatch, inv_url, answer, capsys)
    assert rc == 4, out.err  # refused, not 2 (bad input)
    # NaN is not JSON (RFC 8259): the claims parser refuses it before the inventory would
    why = "payload is not JSON" if posture is POISON[2] else "inventory refuses"
    assert "claims" in out.err and why in out.err
    assert [r for _, r in refusals(inv, U1)] == ["bad_claims"]


# -- a revoked board in the fleet report ----------------------------------------------------

def test_a_revoked_board_does_not_pass_in_the_fleet_report(inv, eat):
    # the recorded token still "re-verifies" with the revoked key; the board is not trusted
    appraise(inv, signed(eat, KEY1, U1, "nonce-pre-revoke-1"), "nonce-pre-revoke-1")
    appraise(inv, signed(eat, KEY2, U2, "nonce-pre-revoke-2"), "nonce-pre-revoke-2")
    assert fleet.build(store.Store(inv)).verdict() == "pass"
    inv.revoke(inv.device(U1).certificate.serial, "keyCompromise")
    f = fleet.build(store.Store(inv))
    b1 = next(b for b in f.boards if b.ueid == U1.hex())
    b2 = next(b for b in f.boards if b.ueid == U2.hex())
    assert (b1.verdict, b1.refused, f.verdict()) == ("refused", "device_revoked", "fail")
    assert b2.verdict == "pass"


# -- a careless operator's policy -------------------------------------------------------------

JTAG_RULE = """
[policy]
id = "line-3"
[[rule]]
id = "jtag"
title = "JTAG off"
etsi = "5.6-4"
fact = "{fact}"
in = ["disabled-permanently", "disabled-soft"]
severity = "fail"
"""


def test_a_rule_naming_an_unknown_fact_is_refused():
    # docs/attest.md's posture table names the raw claim `jtag_disable`: a rule on it was
    # never "ok", so a board with JTAG enabled got the rule's `unsupported` outcome (warn)
    with pytest.raises(AttestError) as e:
        policy.parse(JTAG_RULE.format(fact="jtag_disable"))
    assert e.value.reason == "bad_policy" and e.value.exit_code == 2
    assert "rule jtag" in str(e.value) and "jtag_disable" in str(e.value)
    assert "uart_download" in str(e.value)  # the known facts are listed


def test_a_rule_naming_a_known_fact_judges_it(inv, eat):
    pol = policy.parse(JTAG_RULE.format(fact="jtag"))
    nonce = "nonce-jtag-on-0001"
    tok = signed(eat, KEY1, U1, nonce, dbgstat="enabled",
                 posture={"jtag_disable": ok({"JTAG_DISABLE": 0})})
    assert appraise(inv, tok, nonce, pol).verdict == "fail"


def test_the_known_facts_are_those_derived(eat):
    assert set(facts.derive(eat.claims("nonce-facts-00001", U1))) == set(facts.FACTS)
    for r in policy.load().rules:
        assert r.fact in facts.FACTS


# -- the EAR of a failing board ---------------------------------------------------------------

@pytest.mark.parametrize("severity, status", [("fail", "contraindicated"), ("warn", "warning")])
def test_ear_status_of_a_failing_board_is_not_affirming(inv, eat, severity, status):
    # a rule without `tv` (optional) contributed to no trustworthiness claim, so a board that
    # failed it (exit 9) got ear.status "affirming"
    text = f"""
[policy]
id = "p"
[[rule]]
id = "anchors"
title = "anchors"
etsi = "5.3-9"
fact = "anchors"
min = 1
severity = "fail"
tv = "executables"
[[rule]]
id = "jtag"
title = "JTAG off"
etsi = "5.6-4"
fact = "jtag"
equals = "disabled-permanently"
severity = "{severity}"
"""
    nonce = "nonce-ear-jtag-001"
    tok = signed(eat, KEY1, U1, nonce, dbgstat="enabled",
                 posture={"jtag_disable": ok({"JTAG_DISABLE": 0})})
    att = appraise(inv, tok, nonce, policy.parse(text))
    assert att.verdict == severity
    sub = ear.claims(att.appraisal, U1.hex())["submods"][U1.hex()]
    assert sub["ear.status"] == status
    assert sub["ear.trustworthiness-vector"] == {"executables": 2}


# -- type confusion in the appraisal ------------------------------------------------------------

@pytest.mark.parametrize("version", [2, 2.0, ["1", "24"], True])
def test_min_version_does_not_pass_a_non_string_version(inv, eat, version):
    nonce = "nonce-mpver-int-01"
    tok = signed(eat, KEY1, U1, nonce,
                 posture={"micropython": ok({"version": version, "mpy": "6.3"})})
    att = appraise(inv, tok, nonce)
    r = next(r for r in att.appraisal.results if r.rule == "micropython-version")
    assert r.outcome != "pass"


@pytest.mark.parametrize("test, expect, value, passes", [
    ("in", [0], False, False),
    ("in", [1], True, False),
    ("in", [False], 0, False),
    ("in", [False], False, True),
    ("in", [1], 1, True),
    ("not_in", [False], 0, True),
    ("not_in", [0], 0, False),
    ("not_in", [True], True, False),
])
def test_in_and_not_in_compare_types_as_equals_does(test, expect, value, passes):
    # True == 1 and 0 in [False] in Python; a rule's list names values of the fact's type
    r = policy.Rule("r", "r", "5.1-1", "key_read_protect", "fail", test, expect)
    assert r.passes(value) is passes


# -- an honest identity rotation is not an altered record --------------------------------------

def test_an_attestation_before_an_identity_rotation_is_key_rotated_not_bad_record(
        inv, eat, device_ca):
    # found by a newcomer's walkthrough: attest, `rotate identity`, `report` gave bad_record
    # ("the record was altered", exit 9) until the board was attested again
    from cryptography.hazmat.primitives import serialization

    from mpguard import files

    appraise(inv, signed(eat, KEY1, U1, "nonce-before-rotation"), "nonce-before-rotation")
    appraise(inv, signed(eat, KEY2, U2, "nonce-of-board-two"), "nonce-of-board-two")
    new = ec.generate_private_key(ec.SECP256R1())
    cert = device_ca.issue(new.public_key(), files.b64u_enc(U1))
    inv.replace_identity(U1, public_key=keys.public_bytes(new),
                         cert_der=cert.public_bytes(serialization.Encoding.DER),
                         provisioned_by="tester@host", event="rotate_identity")
    f = fleet.build(store.Store(inv))
    kinds = {p["kind"] for p in f.problems}
    assert "bad_record" not in kinds and "key_rotated" in kinds, f.problems
    b1 = next(b for b in f.boards if b.ueid == U1.hex())
    assert b1.claims and f.verdict() == "warn"  # its claims shown; attest it again
    # a token the record holds that no key of the board ever signed is still bad_record
    inv.add_event(U1, "attestation", {"token": signed(eat, KEY2, U1, "n-forged"),
                                      "nonce": "n-forged", "verdict": "pass", "facts": {}})
    f = fleet.build(store.Store(inv))
    assert "bad_record" in {p["kind"] for p in f.problems} and f.verdict() == "fail"
