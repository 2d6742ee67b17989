"""What host verification remembers between tokens never changes an answer.

mpguard.jose remembers parsed headers (by their exact base64url text) and mpguard.keys parsed
public keys (by their exact SEC1 bytes), so that a fleet's tokens verify at the rate of the
signature check itself (bench/host_verify.py). Each test warms those caches with a good token
first, then shows that a forgery, an unknown kid, a key taken out of the set (an anchor
withdrawn, a board whose identity was replaced) are refused exactly as with cold caches.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from mpguard import files, jose, keys
from mpguard.attest import store, verify
from mpguard.errors import AttestError, JoseError
from mpguard.updates import bundle

KEY = ec.derive_private_key(0x51D1E5, ec.SECP256R1())
OTHER = ec.derive_private_key(0x07E4, ec.SECP256R1())
KID = keys.thumbprint(KEY)


def reason(token, key_set) -> str:
    with pytest.raises(JoseError) as e:
        jose.verify(token, key_set)
    return e.value.reason


def forge(token: str, key: ec.EllipticCurvePrivateKey) -> str:
    """The token's header and payload, byte for byte (the claimed kid too), signed by `key`."""
    h64, p64, _ = token.split(".")
    der = key.sign(f"{h64}.{p64}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{h64}.{p64}.{files.b64u_enc(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def test_a_forgery_with_the_same_header_is_refused_once_the_caches_are_warm():
    good = jose.sign(b'{"n": 1}', KEY)
    point = keys.public_bytes(KEY)
    for _ in range(3):  # warm: the header and the key bytes are remembered now
        assert jose.verify(good, {KID: point})[1] == b'{"n": 1}'
    h64 = good.split(".")[0].encode()
    assert h64 in jose._HEADERS and point in keys._POINTS
    forged = forge(good, OTHER)
    assert forged.split(".")[:2] == good.split(".")[:2]  # same header bytes, same claimed kid
    assert reason(forged, {KID: point}) == "bad_sig"
    assert reason(forged, {KID: KEY.public_key()}) == "bad_sig"
    # the forger's own key, listed under the claimed kid, is what the signature matches:
    # the answer follows the caller's key set, not anything remembered for the kid
    assert jose.verify(forged, {KID: keys.public_bytes(OTHER)})[1] == b'{"n": 1}'
    assert reason(good, {KID: keys.public_bytes(OTHER)}) == "bad_sig"
    assert jose.verify(good, {KID: point})[1] == b'{"n": 1}'


def test_unknown_or_withdrawn_kid_is_refused_after_it_verified():
    good = jose.sign(b"{}", KEY)
    anchors = {KID: keys.public_bytes(KEY), keys.thumbprint(OTHER): keys.public_bytes(OTHER)}
    jose.verify(good, anchors)
    del anchors[KID]  # the anchor is withdrawn
    assert reason(good, anchors) == "unknown_key"
    assert reason(good, {}) == "unknown_key"


def test_the_key_cache_is_keyed_by_the_exact_bytes():
    good = jose.sign(b"{}", KEY)
    pub = KEY.public_key()
    full = pub.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint)
    short = pub.public_bytes(serialization.Encoding.X962,
                             serialization.PublicFormat.CompressedPoint)
    assert jose.verify(good, {KID: full}) and jose.verify(good, {KID: short})
    assert keys.public_from_bytes(full) is keys.public_from_bytes(full)  # parsed once
    assert keys.public_bytes(keys.public_from_bytes(short)) == full
    # bytes that are not a point are refused every time, never remembered
    bad = bytes([4]) + bytes(64)
    for _ in range(2):
        assert reason(good, {KID: bad}) == "bad_key"
    assert bad not in keys._POINTS


def test_a_header_is_handed_out_as_a_copy():
    good = jose.sign(b"{}", KEY, {"typ": "eat+jwt"})
    hdr, _ = jose.verify(good, {KID: KEY.public_key()})
    hdr["kid"] = keys.thumbprint(OTHER)
    hdr["alg"] = "none"
    again, _ = jose.verify(good, {KID: KEY.public_key()})
    assert again == {"alg": "ES256", "kid": KID, "typ": "eat+jwt"}


def test_bad_headers_are_refused_every_time_and_not_remembered():
    good = jose.sign(b"{}", KEY)
    _, p64, s64 = good.split(".")
    for hdr, why in [({"alg": "none", "kid": KID}, "jws_alg"),
                     ({"alg": "ES256", "kid": KID, "crit": ["x"]}, "jws_crit"),
                     ({"alg": "ES256"}, "unknown_key")]:
        h64 = files.b64u_enc(jose.header_json(hdr))
        for _ in range(2):
            assert reason(f"{h64}.{p64}.{s64}", {KID: KEY.public_key()}) == why
        assert h64.encode() not in jose._HEADERS or why == "unknown_key"


def test_the_caches_stay_bounded(monkeypatch):
    monkeypatch.setattr(jose, "HEADER_CACHE", 4)
    monkeypatch.setattr(keys, "POINT_CACHE", 4)
    monkeypatch.setattr(jose, "_HEADERS", {})  # what earlier tests left is not this test's
    monkeypatch.setattr(keys, "_POINTS", {})
    signers = [ec.derive_private_key(0x1000 + i, ec.SECP256R1()) for i in range(10)]
    tokens = [(jose.sign(b"{}", k), keys.thumbprint(k), keys.public_bytes(k)) for k in signers]
    for _ in range(2):
        for tok, kid, point in tokens:
            assert jose.verify(tok, {kid: point})[1] == b"{}"
            assert len(jose._HEADERS) <= 4 and len(keys._POINTS) <= 4
    # the last signers are remembered; the first were let go and still verify
    assert tokens[-1][0].split(".")[0].encode() in jose._HEADERS
    assert jose.verify(tokens[0][0], {tokens[0][1]: tokens[0][2]})[1] == b"{}"


def test_release_bundle_with_a_withdrawn_anchor_or_a_forged_manifest(tmp_path):
    app = [("main.py", b"print('x')\n")]
    good = bundle.build(app, KEY, app="demo", version="1.0.0", seq=1, targets=["esp32"])
    anchors = {KID: keys.public_bytes(KEY)}
    for _ in range(2):
        assert bundle.inspect(good, anchors)["ok"]
    token, payload = bundle.split(good)
    forged_token = forge(token.decode(), OTHER).encode()
    forged = good[: bundle.HDR_LEN - 2] + len(forged_token).to_bytes(2, "big") + forged_token + payload
    assert bundle.split(forged)[0] == forged_token
    rep = bundle.inspect(forged, anchors)
    assert not rep["ok"] and rep["signature"] == "bad_sig"
    rep = bundle.inspect(good, {keys.thumbprint(OTHER): keys.public_bytes(OTHER)})
    assert not rep["ok"] and rep["signature"] == "unknown_key"


# --- attestation: the verifier against a real inventory -----------------------------------

UEID = bytes.fromhex("02240ac4cace01")
NONCE = "cache-nonce-0123456789"


def claims(ueid: bytes = UEID, nonce: str = NONCE) -> bytes:
    return json.dumps({
        "eat_profile": verify.PROFILE, "eat_nonce": nonce, "ueid": files.b64u_enc(ueid),
        "measres": [["mpguard", [["app", "success"]]]],
        verify.CLAIM: {"reset_cause": {"s": "ok", "v": 1}, "key_purpose": {"s": "unsupported"}},
    }).encode()


def check(st: store.Store, tok: str) -> verify.Evidence:
    return verify.Verifier(st).verify(tok, NONCE, 1000.0, 1001.0)


def refused(st: store.Store, tok: str) -> str:
    with pytest.raises(AttestError) as e:
        check(st, tok)
    return e.value.reason


def test_attestation_refuses_a_forged_token_and_a_replaced_key_after_warm_caches(inventory, fleet):
    ident = fleet.identity(7, key=KEY)
    fleet.add(inventory, 7, ident, ueid=UEID.hex())
    st = store.Store(inventory)
    good = jose.sign(claims(), KEY, {"typ": "eat+jwt"})
    for _ in range(3):
        assert check(st, good).device.ueid == UEID
    forged = forge(good, OTHER)
    assert refused(st, forged) == "bad_sig"
    # a token of a key the inventory does not know, claiming the board's UEID: wrong key
    assert refused(st, jose.sign(claims(), OTHER, {"typ": "eat+jwt"})) == "wrong_key"
    # the board's identity is replaced (its old certificate revoked): the next attestation,
    # with its own view of the inventory, refuses the old key although it was parsed already
    new = fleet.identity(8)
    inventory.replace_identity(UEID, public_key=new.public_key, cert_der=new.cert_der,
                               provisioned_by="tester@line-1")
    fresh = store.Store(inventory)
    assert refused(fresh, good) == "wrong_key"
    assert check(fresh, jose.sign(claims(), new.key, {"typ": "eat+jwt"})).device.ueid == UEID


# --- the key a kid names: the caller's, every time ------------------------------------------

def test_same_kid_another_key_the_set_decides_and_a_bad_signature_is_refused_on_a_warm_key():
    good = jose.sign(b'{"n": 2}', KEY)
    other_point = keys.public_bytes(OTHER)
    for key_set in ({KID: keys.public_bytes(KEY)}, {KID: KEY.public_key()}):
        for _ in range(2):  # warm: the header, the key's bytes, the key object checked
            assert jose.verify(good, key_set)[1] == b'{"n": 2}'
        # the same kid now names another key: that key is the one the signature is checked with
        assert reason(good, {KID: other_point}) == "bad_sig"
        assert reason(good, {KID: OTHER.public_key()}) == "bad_sig"
        # and the warm key itself still refuses a signature it did not make: flipped bits in
        # r, in s, s replaced by n - s's neighbour, and r || s swapped
        h64, p64, s64 = good.split(".")
        sig = files.b64u_dec(s64)
        r, s = sig[:32], sig[32:]
        for bad in (bytes([r[0] ^ 1]) + r[1:] + s, r + s[:31] + bytes([s[31] ^ 1]), s + r,
                    bytes(64), r + bytes(32)):
            assert reason(f"{h64}.{p64}.{files.b64u_enc(bad)}", key_set) == "bad_sig"
        assert jose.verify(good, key_set)[1] == b'{"n": 2}'


@pytest.mark.parametrize("curve", [ec.SECP256K1(), ec.BrainpoolP256R1(), ec.SECP384R1()])
def test_a_key_of_another_curve_is_refused_as_object_private_or_public(curve):
    good = jose.sign(b"{}", KEY)
    jose.verify(good, {KID: KEY.public_key()})  # warm
    alien = ec.derive_private_key(0x1234567, curve)
    for key in (alien, alien.public_key()):
        with pytest.raises(Exception) as e:
            keys.p256_public(key)
        assert "P-256" in str(e.value)
        assert reason(good, {KID: key}) == "bad_key"
    # a P-256 private key is taken for its public half, as before
    assert keys.public_bytes(keys.p256_public(KEY)) == keys.public_bytes(KEY)


# --- claim texts remembered by the attestation verifier ---------------------------------------

def test_a_remembered_claim_text_gives_the_same_answer_for_every_bound(monkeypatch):
    monkeypatch.setattr(verify, "_B64U_LEN", {})
    text = files.b64u_enc(bytes(40))  # 40 bytes: a measurement body, too long for a UEID
    for _ in range(2):
        assert verify._b64u(text)  # 1..4096
        assert not verify._b64u(text, 7, 33)
        assert verify._b64u(text, 40, 40) and not verify._b64u(text, 41, 64)
    assert verify._B64U_LEN == {text: 40}


def test_texts_that_do_not_decode_are_refused_every_time_and_never_remembered(monkeypatch):
    monkeypatch.setattr(verify, "_B64U_LEN", {})
    good = files.b64u_enc(b"\x02\x24\x0a\xc4\xca\xce\x01")
    assert verify._b64u(good, 7, 33)
    for bad in ("AiQKxMrOAQ=", "AiQKxMrOAR", "AiQK+MrOAQ", "AiQKxMrOA", "é", 7, None,
                ["AiQKxMrOAQ"]):
        for _ in range(2):
            assert not verify._b64u(bad, 1, 33)
    assert list(verify._B64U_LEN) == [good]
    assert not verify._b64u("", 1, 33) and verify._b64u("", 0, 33)  # zero bytes: the bound


def test_a_str_subclass_cannot_borrow_a_remembered_answer(monkeypatch):
    monkeypatch.setattr(verify, "_B64U_LEN", {})
    good = files.b64u_enc(b"\x02\x24\x0a\xc4\xca\xce\x01")
    assert verify._b64u(good, 7, 33)

    class Liar(str):  # claims to be the remembered text, is something else
        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return hash(good)

    assert not verify._b64u(Liar("not base64url!"), 7, 33)
    assert verify._b64u(Liar(good), 7, 33)  # decoded, not looked up
    assert list(verify._B64U_LEN) == [good]


def test_the_claim_text_memory_stays_bounded_and_keeps_long_texts_out(monkeypatch):
    monkeypatch.setattr(verify, "_B64U_LEN", {})
    monkeypatch.setattr(verify, "B64U_CACHE", 4)
    texts = [files.b64u_enc(bytes([i]) * 9) for i in range(10)]
    for t in texts:
        assert verify._b64u(t, 7, 33)
        assert len(verify._B64U_LEN) <= 4
    assert texts[-1] in verify._B64U_LEN and texts[0] not in verify._B64U_LEN
    assert verify._b64u(texts[0], 7, 33)
    long = files.b64u_enc(bytes(verify.B64U_CACHED_CHARS))  # more characters than remembered
    assert verify._b64u(long, 1, 4096) and long not in verify._B64U_LEN


def test_attestation_claims_are_checked_on_every_token_with_warm_memories(inventory, fleet):
    ident = fleet.identity(9, key=KEY)
    fleet.add(inventory, 9, ident, ueid=UEID.hex())
    st = store.Store(inventory)
    v = verify.Verifier(st)

    def token(**changes: object) -> str:
        c = json.loads(claims())
        c.update(changes)
        return jose.sign(json.dumps(c).encode(), KEY, {"typ": "eat+jwt"})

    for _ in range(3):
        assert v.verify(token(), NONCE, 1000.0, 1001.0).device.ueid == UEID
    body = files.b64u_enc(b'{"name": "app"}')
    assert v.verify(token(measurements=[[50, body]]), NONCE, 1000.0, 1001.0)
    for changes, why in [
        ({"ueid": files.b64u_enc(UEID[:6])}, "bad_claims"),  # 6 bytes: too short for a UEID
        ({"ueid": files.b64u_enc(b"\x02\x24\x0a\xc4\xca\xce\x02")}, "ueid_mismatch"),
        ({"measurements": [[50, body + "="]]}, "bad_claims"),
        ({"measurements": [[50, files.b64u_enc(UEID)], [50, ""]]}, "bad_claims"),
        ({"hwmodel": files.b64u_enc(bytes(33))}, "bad_claims"),
        ({"measres": [["mpguard", [["app", "fine"]]]]}, "bad_claims"),
        ({"submods": {"agent": []}}, "bad_claims"),
        ({verify.CLAIM: {"reset_cause": {"s": "ok"}}}, "bad_claims"),
    ]:
        for _ in range(2):
            with pytest.raises(AttestError) as e:
                v.verify(token(**changes), NONCE, 1000.0, 1001.0)
            assert e.value.reason == why, changes


def test_a_shared_memory_stays_bounded_under_threads():
    import threading

    cache: dict[int, int] = {}
    errors: list[BaseException] = []

    def fill(base: int) -> None:
        try:
            for i in range(20000):
                files.remember(cache, base + i, i, 8)
        except BaseException as e:  # any escape is the failure
            errors.append(e)

    threads = [threading.Thread(target=fill, args=(n * 10**6,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) <= 8 + len(threads)
    files.remember(cache, -1, -1, 8)
    assert len(cache) <= 8 and cache[-1] == -1
    empty: dict[int, int] = {}
    files.remember(empty, 1, 1, 0)  # a memory of nothing still takes the one being added
    assert empty == {1: 1}
