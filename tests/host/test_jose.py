"""mpguard.jose against independent JOSE libraries (jwcrypto, PyJWT) and bad tokens."""

from __future__ import annotations

import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st
from jwcrypto import jwk, jws

from mpguard import jose, keys
from mpguard.errors import JoseError

KEY = keys.generate()
PUB = keys.public_bytes(KEY)
KID = jose.thumbprint(KEY)


def _jwk(key) -> jwk.JWK:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return jwk.JWK.from_pem(pem)


def test_jwcrypto_and_pyjwt_verify_what_we_sign():
    tok = jose.sign(b'{"seq":1}', KEY, {"typ": "mpguard-manifest"})
    v = jws.JWS()
    v.deserialize(tok)
    v.verify(_jwk(KEY).public(), alg="ES256")
    assert v.payload == b'{"seq":1}'
    assert v.jose_header["kid"] == KID == _jwk(KEY).thumbprint()
    assert jwt.api_jws.decode(tok, KEY.public_key(), algorithms=["ES256"]) == b'{"seq":1}'


def test_we_verify_what_jwcrypto_and_pyjwt_sign():
    s = jws.JWS(b"payload from jwcrypto")
    s.add_signature(_jwk(KEY), alg="ES256", protected=json.dumps({"alg": "ES256", "kid": KID}))
    tok = s.serialize(compact=True)
    assert jose.verify(tok, {KID: PUB})[1] == b"payload from jwcrypto"
    tok2 = jwt.api_jws.encode(b"payload from PyJWT", KEY, algorithm="ES256", headers={"kid": KID})
    hdr, payload = jose.verify(tok2, {KID: KEY.public_key()})
    assert payload == b"payload from PyJWT" and hdr["alg"] == "ES256"


def test_signing_is_deterministic():
    assert jose.sign(b"x", KEY) == jose.sign(b"x", KEY)


def _tok(header: dict, payload: bytes = b"p", key=KEY) -> str:
    """A token with an arbitrary header, correctly signed (to reach the header checks)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    inp = jose.b64u_enc(json.dumps(header).encode()) + "." + jose.b64u_enc(payload)
    r, s = decode_dss_signature(key.sign(inp.encode(), ec.ECDSA(hashes.SHA256())))
    return inp + "." + jose.b64u_enc(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


GOOD = _tok({"alg": "ES256", "kid": KID})
H, P_, S = GOOD.split(".")
OTHER = keys.generate()

BAD_TOKENS = {
    "alg none": (_tok({"alg": "none", "kid": KID}), "jws_alg"),
    "alg HS256": (_tok({"alg": "HS256", "kid": KID}), "jws_alg"),
    "alg missing": (_tok({"kid": KID}), "jws_alg"),
    "alg es256 lower case": (_tok({"alg": "es256", "kid": KID}), "jws_alg"),
    "unknown crit": (_tok({"alg": "ES256", "kid": KID, "crit": ["exp"], "exp": 1}), "jws_crit"),
    "kid missing": (_tok({"alg": "ES256"}), "unknown_key"),
    "kid not trusted": (_tok({"alg": "ES256", "kid": "someone"}), "unknown_key"),
    "kid not a string": (_tok({"alg": "ES256", "kid": 5}), "unknown_key"),
    "signed by another key under our kid": (_tok({"alg": "ES256", "kid": KID}, key=OTHER), "bad_sig"),
    "two parts": (H + "." + P_, "jws_format"),
    "four parts": (GOOD + ".x", "jws_format"),
    "empty header": ("." + P_ + "." + S, "jws_format"),
    "header not JSON": (jose.b64u_enc(b"alg") + "." + P_ + "." + S, "jws_format"),
    "header a JSON list": (jose.b64u_enc(b"[1]") + "." + P_ + "." + S, "jws_format"),
    "padding in header": (H + "=." + P_ + "." + S, "jws_format"),
    "standard base64 in header": (H.replace("-", "+").replace("_", "/") + "A+/." + P_ + "." + S, "jws_format"),
    "duplicate alg member": (
        jose.b64u_enc(b'{"alg":"none","alg":"ES256","kid":"%s"}' % KID.encode()) + "." + P_ + "." + S,
        "jws_format",
    ),
    "signature truncated": (GOOD[:-2], "bad_sig"),
    "signature DER-length": (H + "." + P_ + "." + jose.b64u_enc(b"0" * 70), "bad_sig"),
    "too large": (GOOD + "A" * 20000, "too_large"),
    "header too large": (jose.b64u_enc(b" " * 2000) + "." + P_ + "." + S, "too_large"),
    "non-ASCII": ("é" + GOOD, "jws_format"),
}


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_bad_tokens_refused_with_exact_reason(case):
    tok, reason = BAD_TOKENS[case]
    with pytest.raises(JoseError) as ei:
        jose.verify(tok, {KID: PUB})
    assert ei.value.reason == reason


def test_good_token_verifies_and_every_tampered_byte_is_refused():
    assert jose.verify(GOOD, {KID: PUB}) == ({"alg": "ES256", "kid": KID}, b"p")
    for i in range(len(GOOD)):
        c = GOOD[i]
        for repl in {"A", "B", "-"} - {c}:
            bad = GOOD[:i] + repl + GOOD[i + 1 :]
            with pytest.raises(JoseError):
                jose.verify(bad, {KID: PUB})


def test_sign_refuses_other_algorithms_and_crit():
    with pytest.raises(JoseError) as ei:
        jose.sign(b"x", KEY, {"alg": "none"})
    assert ei.value.reason == "jws_alg"
    with pytest.raises(JoseError) as ei:
        jose.sign(b"x", KEY, {"crit": ["b64"]})
    assert ei.value.reason == "jws_crit"


@settings(max_examples=40, deadline=None)
@given(payload=st.binary(max_size=300), typ=st.text(max_size=20))
def test_property_round_trip_with_pyjwt(payload, typ):
    tok = jose.sign(payload, KEY, {"typ": typ})
    assert jwt.api_jws.decode(tok, KEY.public_key(), algorithms=["ES256"]) == payload
    hdr, got = jose.verify(tok, {KID: PUB})
    assert got == payload and hdr["typ"] == typ
