"""The compiled parsers of the verification hot path (docs/decisions/0032) answer as the
standard library's strict forms did, and refuse what they refuse.

- `files.b64u_dec` (pybase64) against the strict decoder it replaced (binascii's
  strict_mode after mapping the alphabet, kept here as the reference): the same bytes for
  every text one decodes, ValueError for every text the other refuses, over generated texts
  that mix the base64url alphabet with the standard one's "+" and "/", padding, spaces,
  newlines, NUL and non-ASCII, of every length modulo 4.
- the attestation verifier's claims parser (msgspec) against `json.loads` on generated JSON
  documents (the same objects), and through `Verifier.verify` on signed tokens: what
  RFC 8259 does not allow (NaN, Infinity, numbers past a double, lone surrogates, a
  byte-order mark) is a `bad_claims` refusal, an integer of any size stays an exact integer,
  and a claim checked for its type is refused as before.
"""

from __future__ import annotations

import base64
import binascii
import json
import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from mpguard import files, jose
from mpguard.attest import store, verify
from mpguard.errors import AttestError
from mpguard.inventory import Inventory

_TO_STD = bytes.maketrans(b"-_+/=", b"+/!!!")
_STD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def reference_b64u_dec(text: str | bytes) -> bytes:
    """The strict decoder before 0032: binascii strict_mode on the alphabet mapped to the
    standard one ("+", "/", "=" mapped to a refused character), canonical last character."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
    n = len(raw) & 3
    if n == 1:
        raise ValueError
    std = raw.translate(_TO_STD)
    try:
        out = binascii.a2b_base64(std + (b"", b"", b"==", b"=")[n], strict_mode=True)
    except (binascii.Error, ValueError):
        raise ValueError from None
    if n and _STD.index(std[-1:]) & (0x0F if n == 2 else 0x03):
        raise ValueError
    return out


def outcome(fn, arg):
    try:
        return fn(arg)
    except ValueError:
        return ValueError


ALPHABET = ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            "+/= \n\t\r\x00é.")


@settings(max_examples=1500, deadline=None)
@given(st.one_of(
    st.text(alphabet=ALPHABET, max_size=40),
    st.text(alphabet=ALPHABET, min_size=100, max_size=300),
    # valid encodings of random bytes (short, and long enough for the decoder's vector
    # loop: a token's payload is 2.7 KB of text), then one character changed, cut or added
    st.builds(lambda b, i, c, cut: _mutate(b, i, c, cut),
              st.binary(max_size=64) | st.binary(min_size=200, max_size=3000),
              st.integers(0, 4000), st.sampled_from(ALPHABET),
              st.sampled_from(["replace", "cut", "add", "none"]))))
def test_b64u_dec_answers_as_the_strict_decoder_it_replaced(text):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the decoder warns of nothing
        got = outcome(files.b64u_dec, text)
        got_bytes = outcome(files.b64u_dec, text.encode("utf-8"))
    want = outcome(reference_b64u_dec, text)
    assert got == want
    if text.isascii():
        assert got_bytes == want
    # and as pybase64 answers where its compiled extension cannot load (its pure fallback)
    compiled = files.pybase64
    files.pybase64 = _FALLBACK
    try:
        assert outcome(files.b64u_dec, text) == want
    finally:
        files.pybase64 = compiled


class _FALLBACK:
    from pybase64._fallback import b64decode
    b64decode = staticmethod(b64decode)


def _mutate(b: bytes, i: int, c: str, how: str) -> str:
    t = base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    if how == "none" or not t:
        return t
    i %= len(t)
    if how == "replace":
        return t[:i] + c + t[i + 1:]
    if how == "cut":
        return t[:i]
    return t[:i] + c + t[i:]


@pytest.mark.parametrize("text", [
    "ab+d", "ab/d", "ab=d", "abc=", "ab==", "abcd=", "ab d", "ab\nd", "a", "abc\x00",
    "QR", "QUF", "é", "",
])
def test_b64u_dec_refusals_named(text):
    """What the old decoder refused (a non-canonical last character: "QR", "QUF"; the
    standard alphabet's "+" and "/"; padding) the new one refuses; "" decodes to b""."""
    want = outcome(reference_b64u_dec, text)
    assert outcome(files.b64u_dec, text) == want
    assert (want == b"") == (text == "")


# -- the claims parser ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30)


@settings(max_examples=120, deadline=None)
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=8), st.booleans())
def test_claims_parser_reads_the_objects_json_reads(doc, ascii_only):
    text = json.dumps(doc, ensure_ascii=ascii_only)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(doc, ensure_ascii=False)):
        return  # lone surrogates: refused by the new parser (the test below), taken by json
    raw = text.encode("utf-8")
    try:
        want = json.loads(raw)
    except ValueError:
        want = ValueError
    try:
        got = verify._CLAIMS_JSON.decode(raw)
    except ValueError:
        got = ValueError
    assert got == want
    if got is not ValueError:  # integers stay integers, of every size
        assert json.dumps(got) == json.dumps(want)


KEY = ec.derive_private_key(0x5EC0FFEE0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF01234567, ec.SECP256R1())
UEID = bytes.fromhex("02240ac4000077")
T0 = 1_750_000_000.0


@pytest.fixture
def verifier(tmp_path, enroll):
    with Inventory.open(f"sqlite:///{tmp_path / 'inv.db'}") as inv:
        enroll(inv, KEY, UEID)
        yield verify.Verifier(store.Store(inv))


def _token(eat, payload: bytes) -> str:
    return jose.sign(payload, KEY, {"typ": "eat+jwt"})


def _claims_text(eat, extra: str) -> bytes:
    """The claims of a good token with `extra` (JSON text of one more member) spliced in."""
    text = json.dumps(eat.claims("nonce-fast-0001", UEID, iat=int(T0)))
    return (text[:-1] + ", " + extra + "}").encode()


@pytest.mark.parametrize("extra", [
    '"x": NaN', '"x": Infinity', '"x": -Infinity', '"x": 1e400', '"x": "\\ud800"',
    '"x": ' + '[' * 1500 + ']' * 1500,
])
def test_non_rfc8259_claims_are_refused_as_bad_claims(verifier, eat, extra):
    tok = _token(eat, _claims_text(eat, extra))
    with pytest.raises(AttestError) as e:
        verifier.verify(tok, "nonce-fast-0001", T0, T0 + 1)
    assert e.value.reason == "bad_claims"
    # the signer is named (the signature verified): the refusal is recorded against it
    assert verifier.signer is not None and verifier.signer.ueid == UEID


def test_a_byte_order_mark_is_refused(verifier, eat):
    tok = _token(eat, b"\xef\xbb\xbf" + _claims_text(eat, '"x": 1'))
    with pytest.raises(AttestError) as e:
        verifier.verify(tok, "nonce-fast-0001", T0, T0 + 1)
    assert e.value.reason == "bad_claims"


def test_large_integers_stay_exact_and_typed_claims_are_still_checked(verifier, eat):
    big = 2**70 + 1  # a double would round it
    ev = verifier.verify(_token(eat, _claims_text(eat, f'"x": {big}, "y": -{big}')),
                         "nonce-fast-0001", T0, T0 + 1)
    assert ev.claims["x"] == big and type(ev.claims["x"]) is int and ev.claims["y"] == -big
    for extra, name in [(f'"uptime": {2**63}', "uptime"), ('"uptime": 1.0', "uptime"),
                        ('"bootcount": -1', "bootcount"), ('"oemboot": 1', "oemboot")]:
        text = json.loads(_claims_text(eat, '"z": 0'))
        text.update(json.loads("{" + extra + "}"))
        tok = _token(eat, json.dumps(text).encode())
        with pytest.raises(AttestError) as e:
            verifier.verify(tok, "nonce-fast-0001", T0, T0 + 1)
        assert (e.value.reason, e.value.detail) == ("bad_claims", name)


@pytest.mark.parametrize("text", [
    b'{"a":01}', b'{"a":+1}', b'{"a":.5}', b'{"a":0x1}', b'{"a":1,}', b'[1,]', b"{'a':1}",
    b'{"a":1}//c', b"{a:1}", b'{"a":"\t"}', b'{"a":"\\x41"}', b'{"a" 1}', b'{"a":1 "b":2}',
    b'{"a":tru}', b'{"a":1}{}', b'{"a":"\\u12"}', b"\x00{}", b'{"a":1.}', b'{"a":-}',
    b'{"a":1e}', b'{"a":"\xc0\x80"}', b"",
    # what json.loads takes and RFC 8259 does not: refused by the claims parser alone
    b'{"a":NaN}', b'{"a":Infinity}', b'{"a":1e400}', b'{"a":"\\ud800"}', b'{"a":"\xed\xa0\x80"}',
    b"\xef\xbb\xbf{}",
])
def test_claims_parser_refuses_what_is_not_json(text):
    with pytest.raises(ValueError):  # msgspec.DecodeError and UnicodeDecodeError are
        verify._CLAIMS_JSON.decode(text)
