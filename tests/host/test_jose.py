"""mpguard.jose against independent JOSE libraries (jwcrypto, PyJWT) and bad tokens."""

from __future__ import annotations

import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from jwcrypto import jwk, jws

from mpguard import jose, keys
from mpguard.errors import JoseError

# Fixed test keys (committed on purpose: the tables below are the same bytes on every run,
# so a case never passes or fails by the luck of a random key or nonce). The board's tests
# (tests/agent/test_jws.py) run the same table.
KEY = ec.derive_private_key(0x6A1D6F0C3E5B4A29180716253443526170817F9E8D7C6B5A4938271605F4E3D2,
                            ec.SECP256R1())
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
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    inp = jose.b64u_enc(json.dumps(header).encode()) + "." + jose.b64u_enc(payload)
    r, s = decode_dss_signature(
        key.sign(inp.encode(), ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
    return inp + "." + jose.b64u_enc(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


GOOD = _tok({"alg": "ES256", "kid": KID})
H, P_, S = GOOD.split(".")
OTHER = ec.derive_private_key(0x1C2B3A495867768594A3B2C1D0EFFEDCBA98765432100123456789ABCDEF0123,
                              ec.SECP256R1())
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _sig_variant(tok: str, how: str) -> str:
    """GOOD with its signature changed: high-S twin, 65 bytes r || 00 || s, a last base64url
    character with a trailing bit set (non-canonical: the same 64 bytes decode from it)."""
    h, p, s64 = tok.split(".")
    sig = jose.b64u_dec(s64)
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if how == "high-s":
        return f"{h}.{p}." + jose.b64u_enc(r.to_bytes(32, "big") + (N - s).to_bytes(32, "big"))
    if how == "65 bytes":
        return f"{h}.{p}." + jose.b64u_enc(sig[:32] + b"\0" + sig[32:])
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(s64[-1])
    assert last & 3 == 0  # 64 bytes: 86 characters, the last one carries 2 spare bits
    return f"{h}.{p}.{s64[:-1]}{alphabet[last | 1]}"

BAD_TOKENS = {
    "alg none": (_tok({"alg": "none", "kid": KID}), "jws_alg"),
    "alg HS256": (_tok({"alg": "HS256", "kid": KID}), "jws_alg"),
    "alg missing": (_tok({"kid": KID}), "jws_alg"),
    "alg es256 lower case": (_tok({"alg": "es256", "kid": KID}), "jws_alg"),
    "unknown crit": (_tok({"alg": "ES256", "kid": KID, "crit": ["exp"], "exp": 1}), "jws_crit"),
    "kid missing": (_tok({"alg": "ES256"}), "unknown_key"),
    "kid not trusted": (_tok({"alg": "ES256", "kid": "someone"}), "unknown_key"),
    "kid not a string": (_tok({"alg": "ES256", "kid": 5}), "unknown_key"),
    "kid a list holding the trusted kid": (_tok({"alg": "ES256", "kid": [KID]}), "unknown_key"),
    "signed by another key under our kid": (_tok({"alg": "ES256", "kid": KID}, key=OTHER), "bad_sig"),
    "two parts": (H + "." + P_, "jws_format"),
    "four parts": (GOOD + ".x", "jws_format"),
    "empty header": ("." + P_ + "." + S, "jws_format"),
    "header not JSON": (jose.b64u_enc(b"alg") + "." + P_ + "." + S, "jws_format"),
    "header a JSON list": (jose.b64u_enc(b"[1]") + "." + P_ + "." + S, "jws_format"),
    "header an empty JSON list": (jose.b64u_enc(b"[]") + "." + P_ + "." + S, "jws_format"),
    "header a JSON number": (jose.b64u_enc(b"7") + "." + P_ + "." + S, "jws_format"),
    "header an empty JSON string": (jose.b64u_enc(b'""') + "." + P_ + "." + S, "jws_format"),
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
    "signature of 65 bytes r || 00 || s": (_sig_variant(GOOD, "65 bytes"), "bad_sig"),
    "signature's last character not canonical": (_sig_variant(GOOD, "last char"), "bad_sig"),
    "header nested 200 levels (unsigned)": (
        jose.b64u_enc(b'{"alg":"ES256","x":' + b"[" * 200 + b"]" * 200 + b"}") + "." + P_ + "." + S,
        "jws_format"),
    "header nested object": (
        _tok({"alg": "ES256", "kid": KID, "jwk": {"kty": "EC"}}), "jws_format"),
    "header with a control character": (
        jose.b64u_enc(b'{"alg":"ES256","kid":"' + KID.encode() + b'\x01"}') + "." + P_ + "." + S,
        "jws_format"),
    "header not ASCII": (
        jose.b64u_enc('{"alg":"ES256","kid":"é"}'.encode()) + "." + P_ + "." + S, "jws_format"),
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


def test_high_s_twin_verifies_and_measures_the_same():
    # ECDSA signatures are malleable: (r, n - s) verifies too. The measurement of a release
    # is its signing input's digest, so both tokens measure the same.
    twin = _sig_variant(GOOD, "high-s")
    assert twin != GOOD and jose.verify(twin, {KID: PUB}) == jose.verify(GOOD, {KID: PUB})
    assert jose.measurement(twin) == jose.measurement(GOOD)
    assert jose.signing_input(GOOD) == (H + "." + P_).encode()


def test_json_shape():
    ok = [(b'{"a":1,"b":[1,[2]]}', 2), (b'{"a":"{[:]}"}', 1), (b'{"a":"\\""}', 1),
          (b"{}", 0), (b'{ "a" :\t1 }', 1), (b"[1]", 0)]
    for text, n in ok:
        assert jose.json_shape(text, 3) == n, text
    bad = [b'{"a":{"b":1}}', b'{"a":[[[[1]]]]}', b'{"a":"\x01"}', '{"a":"é"}'.encode(),
           b'{"a":1}\x00', b"[" * 5 + b"]" * 5]
    for text in bad:
        assert jose.json_shape(text, 3) == -1, text


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


_EDGE = [bytes(32), b"\x00" * 31 + b"\x01", b"\x7f" + b"\xff" * 31, b"\x80" + bytes(31),
         b"\xff" * 32, b"\x00\x80" + bytes(30), b"\x00\x7f" + b"\xff" * 30, b"\x00" * 30 + b"\x80\x00"]


@given(r=st.one_of(st.sampled_from(_EDGE), st.binary(min_size=32, max_size=32)),
       s=st.one_of(st.sampled_from(_EDGE), st.binary(min_size=32, max_size=32)))
@settings(max_examples=300, deadline=None)
def test_der_signature_is_what_cryptography_encodes(r, s):
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    der = jose.der_signature(r + s)
    assert der == encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
    assert decode_dss_signature(der) == (int.from_bytes(r, "big"), int.from_bytes(s, "big"))


def test_three_parts_exactly():
    tok = jose.sign(b"{}", KEY)
    h, p, s = tok.split(".")
    assert jose.verify(tok, {KID: PUB})[1] == b"{}"
    for bad in (f"{h}.{p}", f"{h}{p}{s}", f"{h}.{p}.{s}.", f".{h}.{p}.{s}", f"{h}.{p}..{s}",
                f"{h}..{p}.{s}", "", ".", "..", "...", f"{h}.{p}.{s}.{s}"):
        with pytest.raises(JoseError) as e:
            jose.verify(bad, {KID: PUB})
        assert e.value.reason == "jws_format", bad
    # two dots, the parts swapped about: parsed as three parts, refused for what they hold
    with pytest.raises(JoseError) as e:
        jose.verify(f"{h}.{s}.{p}", {KID: PUB})
    assert e.value.reason == "bad_sig"


@pytest.mark.parametrize("value", [10**12, 3, -1, None, 1.5, ["QQ"], {"QQ": 1}])
def test_b64u_dec_takes_text_or_bytes_only(value):
    # a JSON value that is not text must not become bytes(n): 10**12 zero bytes
    from mpguard import files

    with pytest.raises(ValueError):
        files.b64u_dec(value)
    with pytest.raises(JoseError) as e:
        jose.b64u_dec(value)
    assert e.value.reason == "jws_format"
    assert files.b64u_dec("QQ") == files.b64u_dec(b"QQ") == files.b64u_dec(bytearray(b"QQ")) == b"A"
