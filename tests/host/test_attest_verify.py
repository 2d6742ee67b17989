"""mpguard.attest.verify: a token is accepted only from a known board, signed by its key,
carrying its UEID and this attestation's nonce, in time, with RFC 9711's claim types. One
test per refusal, each asserting the exact reason; the inventory is left as it was or gains
only the refusal record.

The tokens are made here, signed with test keys (so each refusal can be built); the boards
they are verified against are recorded in the real inventory (a fresh SQLite file, then a
fresh PostgreSQL schema, per test) with certificates from a real device CA, through the
inventory's own API (tests/conftest.py `enroll`)."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto import jwk
from jwcrypto import jws as jcjws

from mpguard import jose, keys
from mpguard.attest import policy, run, store, verify
from mpguard.errors import AttestError

D1 = 0x1D3A6B2C9F0E8D7C6B5A49382716051F2E3D4C5B6A79880716253443526170FF
D2 = 0x2C4B7A6D5E8F9A0B1C2D3E4F5061728394A5B6C7D8E9FA0B1C2D3E4F506172
KEY = ec.derive_private_key(D1, ec.SECP256R1())
OTHER = ec.derive_private_key(D2, ec.SECP256R1())
UEID = bytes.fromhex("02240ac4a1b2c3")
UEID2 = bytes.fromhex("02240ac4d4e5f6")
NONCE = "host-nonce-0123456789AB"
T0 = 1_750_000_000.0


@pytest.fixture
def inv(inventory, enroll):
    enroll(inventory, KEY, UEID)
    enroll(inventory, OTHER, UEID2)
    return inventory


def check(inv, tok, nonce=NONCE, issued=T0, now=T0 + 2, window=60.0):
    return verify.Verifier(store.Store(inv), window).verify(tok, nonce, issued, now)


def good(eat, **over):
    over.setdefault("iat", int(T0))
    return eat.claims(NONCE, UEID, **over)


def test_good_token_is_evidence(inv, eat):
    ev = check(inv, eat.token(KEY, good(eat)))
    rec = inv.device(UEID)
    assert ev.device.ueid == UEID and ev.kid == keys.thumbprint(KEY) == rec.thumbprint
    assert keys.public_bytes(ev.device.public_key) == rec.public_key == keys.public_bytes(KEY)
    assert ev.device.cert_not_after == rec.certificate.not_after  # from the certificate
    assert ev.claims["dbgstat"] == "disabled-fully-and-permanently"


def test_the_same_token_verifies_with_pyjwt_and_jwcrypto(inv, eat):
    tok = eat.token(KEY, good(eat))
    check(inv, tok)
    c = jwt.decode(tok, KEY.public_key(), algorithms=["ES256"], options={"verify_iat": False})
    j = jcjws.JWS()
    j.deserialize(tok)
    j.verify(jwk.JWK.from_pyca(KEY.public_key()))
    assert json.loads(j.payload) == c


def refusal(inv, tok, **kw) -> str:
    before = inv.events()
    assert [e.kind for e in before] == ["provision", "provision"]
    with pytest.raises(AttestError) as e:
        check(inv, tok, **kw)
    assert inv.events() == before  # verification alone writes nothing
    return e.value.reason


def test_unknown_board(inv, eat):
    stranger = ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1())
    c = eat.claims(NONCE, bytes.fromhex("02aabbccddeeff"), iat=int(T0))
    assert refusal(inv, eat.token(stranger, c)) == "unknown_device"


def test_wrong_key_for_a_known_board(inv, eat):
    stranger = ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1())
    assert refusal(inv, eat.token(stranger, good(eat))) == "wrong_key"


def test_ueid_mismatch_another_boards_key(inv, eat):
    # signed by board 2's genuine key, but claiming board 1's UEID
    assert refusal(inv, eat.token(OTHER, good(eat))) == "ueid_mismatch"


def test_a_revoked_board_is_refused(inv, eat):
    tok = eat.token(KEY, good(eat))
    check(inv, tok)  # trusted before
    inv.revoke(inv.device(UEID).certificate.serial, "keyCompromise")
    with pytest.raises(AttestError) as e:
        check(inv, tok)
    assert (e.value.reason, e.value.detail) == ("device_revoked", "keyCompromise")
    check(inv, eat.token(OTHER, eat.claims(NONCE, UEID2, iat=int(T0))))  # the other board is not


def test_old_nonce(inv, eat):
    c = eat.claims("an-older-nonce-000001", UEID, iat=int(T0))
    assert refusal(inv, eat.token(KEY, c)) == "old_nonce"


def test_stale_answer_and_stale_iat(inv, eat):
    tok = eat.token(KEY, good(eat))
    assert refusal(inv, tok, now=T0 + 61) == "stale"
    assert refusal(inv, eat.token(KEY, good(eat, iat=int(T0) - 3600))) == "stale"


def test_token_without_iat_relies_on_the_nonce_window(inv, eat):
    c = good(eat)
    del c["iat"]
    assert check(inv, eat.token(KEY, c)).claims["eat_nonce"] == NONCE


def test_every_tampered_byte_is_refused(inv, eat):
    tok = eat.token(KEY, good(eat))
    raw = tok.encode()
    seen = set()
    v = verify.Verifier(store.Store(inv), 60.0)  # one store: each kid is looked up once
    for i in range(len(raw)):
        for flip in (1, 0x20):
            b = bytearray(raw)
            b[i] ^= flip
            try:
                v.verify(b.decode("latin-1"), NONCE, T0, T0 + 2)
            except AttestError as e:
                seen.add(e.reason)
                continue
            # base64url's last character may carry unused bits; a change there that still
            # decodes to the same bytes is not a change of the token
            assert jose.b64u_dec(bytes(b).split(b".")[1]) == jose.b64u_dec(raw.split(b".")[1])
            pytest.fail(f"byte {i} ^ {flip:#x} was accepted")
    assert "bad_sig" in seen and "jws_format" in seen


def _resign(key, hdr, payload: bytes) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    h = base64.urlsafe_b64encode(json.dumps(hdr).encode()).rstrip(b"=").decode()
    p = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    r, s = decode_dss_signature(key.sign(f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256())))
    sig = base64.urlsafe_b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).rstrip(b"=")
    return f"{h}.{p}.{sig.decode()}"


BAD_CLAIMS = {
    "eat_nonce missing": lambda c: c.pop("eat_nonce"),
    "nonce too short": lambda c: c.update(eat_nonce="short"),
    "ueid not base64url": lambda c: c.update(ueid="AiQK+xAECAw="),
    "ueid too short": lambda c: c.update(ueid="AiQK"),
    "oemboot not bool": lambda c: c.update(oemboot="true"),
    "dbgstat unknown": lambda c: c.update(dbgstat="off"),
    "dbgstat as CBOR int": lambda c: c.update(dbgstat=3),
    "uptime negative": lambda c: c.update(uptime=-1),
    "swversion not array": lambda c: c.update(swversion="1.2.0"),
    "measurements body not base64url": lambda c: c.update(measurements=[[50, "!!"]]),
    "measres result unknown": lambda c: c.update(measres=[["mpguard", [["app", "ok"]]]]),
    "wrong profile": lambda c: c.update(eat_profile="https://example.com/other"),
    "posture missing": lambda c: c.pop("mpguard_posture"),
    "fact without status": lambda c: c["mpguard_posture"].update(jtag_disable={"v": 1}),
    "ok fact without value": lambda c: c["mpguard_posture"].update(jtag_disable={"s": "ok"}),
}


@pytest.mark.parametrize("name", BAD_CLAIMS)
def test_claims_of_the_wrong_type_are_refused(inv, eat, name):
    c = good(eat)
    BAD_CLAIMS[name](c)
    assert refusal(inv, eat.token(KEY, c)) == "bad_claims"


@pytest.mark.parametrize("hdr, reason", [
    ({"alg": "none", "kid": "x"}, "jws_alg"),
    ({"alg": "ES256", "kid": "x", "crit": ["exp"]}, "jws_crit"),
    ({"alg": "HS256", "kid": "x"}, "jws_alg"),
])
def test_header_refusals(inv, eat, hdr, reason):
    hdr = dict(hdr, kid=keys.thumbprint(KEY))
    tok = _resign(KEY, hdr, json.dumps(good(eat)).encode())
    assert refusal(inv, tok) == reason


def test_payload_not_json_is_refused(inv):
    tok = _resign(KEY, {"alg": "ES256", "kid": keys.thumbprint(KEY)}, b"\xff not json")
    assert refusal(inv, tok) == "bad_claims"


@pytest.mark.parametrize("ueid", [None, 10**12, -1, "", "AQ", "not base64url!", ["x"],
                                  base64.urlsafe_b64encode(b"\x09" * 7).decode().rstrip("=")])
def test_an_unknown_signer_with_any_ueid_is_unknown_device(inv, eat, ueid):
    claims = good(eat)
    if ueid is None:
        del claims["ueid"]
    else:
        claims["ueid"] = ueid
    stranger = ec.derive_private_key(0x57A4, ec.SECP256R1())
    assert refusal(inv, eat.token(stranger, claims)) == "unknown_device"


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 2000 + b"1" + b"}" * 2000])
def test_payload_nested_past_the_parsers_stack_is_refused_not_a_crash(inv, body):
    # signed by the board's own key: only a refusal stands between it and the verifier
    tok = _resign(KEY, {"alg": "ES256", "kid": keys.thumbprint(KEY)}, body)
    assert len(tok) <= verify.MAX_TOKEN
    assert refusal(inv, tok) == "bad_claims"
    # signed by no board: read unverified only to name the refusal, which must not crash
    # (nor ask the inventory for a UEID no board can have)
    assert refusal(inv, _resign(ec.derive_private_key(0xBAD, ec.SECP256R1()),
                                {"alg": "ES256", "kid": "x" * 43}, body)) == "unknown_device"


def test_replayed_token_is_refused_and_recorded(inv, eat):
    st = store.Store(inv)
    pol = policy.load()
    tok = eat.token(KEY, good(eat))
    att = run.appraise_token(st, pol, tok, NONCE, T0, T0 + 1)
    assert att.verdict in ("pass", "warn", "fail")
    assert [e.kind for e in inv.events(ueid=UEID)] == ["provision", "attestation"]
    with pytest.raises(AttestError) as e:
        run.appraise_token(st, pol, tok, NONCE, T0, T0 + 1)
    assert e.value.reason == "replayed"
    got = inv.events(ueid=UEID)
    assert [e.kind for e in got] == ["provision", "attestation", "attestation_refused"]
    assert got[2].data == {"nonce": NONCE, "reason": "replayed", "kid": keys.thumbprint(KEY)}
    assert got[1].data["token"] == tok and got[1].data["nonce"] == NONCE
    assert [e.kind for e in inv.events(ueid=UEID2)] == ["provision"]  # the other board: nothing


def test_a_refusal_by_a_known_signer_is_recorded(inv, eat):
    st = store.Store(inv)
    c = eat.claims("an-older-nonce-000001", UEID, iat=int(T0))
    with pytest.raises(AttestError):
        run.appraise_token(st, policy.load(), eat.token(KEY, c), NONCE, T0, T0 + 1)
    got = inv.events(ueid=UEID)
    assert [e.kind for e in got] == ["provision", "attestation_refused"]
    assert got[1].data["reason"] == "old_nonce"


def test_keys_are_parsed_once_per_kid(inv, eat, monkeypatch):
    calls = []
    real = store.device_from
    monkeypatch.setattr(store, "device_from", lambda r: calls.append(1) or real(r))
    v = verify.Verifier(store.Store(inv))
    tok = eat.token(KEY, good(eat))
    for _ in range(5):
        v.verify(tok, NONCE, T0, T0 + 1)
    assert len(calls) == 1
