# guard.rotate: credential rotation on the board (docs/rotate.md, decisions/0016-rotation.md):
# application secrets sent as JWE, kept encrypted, rotated in two phases with an epoch (the
# trust-anchor statement is guard.anchors). Secret values never appear in an answer, an error
# or a log.
# (Over 300 lines: the commands share one record and one atomic write; split, each would
# load the other on a heap with little room.)
#
# command(token), in order; any refusal changes nothing:
#  1. a JWS (RFC 7515, guard.jws) by an operator key of /mpguard/anchors.json "ops"
#     (guard.anchors.load: no_anchors; anchors_pin when a pin burned in eFuse names others)
#  2. its payload, a JSON object: "sub" is this board's UEID (wrong_board); "seq" is above
#     every command accepted before (cmd_replay); "name" matches _NAME (bad_name); "op" is
#     set, stage, commit or revert (bad_cmd)
#  3. "epoch": set and stage carry the committed epoch + 1 (old_epoch at or below it,
#     bad_epoch above); commit and revert the staged one (no_staged, old_epoch)
#  4. set and stage: "jwe" is decrypted (_jwe) to at most _MAX_VALUE bytes (secret_size)
#  5. one atomic write of the record (guard.store "sec"): a power cut leaves the old or the new
# _jwe(text), JWE compact (RFC 7516 7.1), in order:
#  1. five parts, the encrypted key empty (ECDH-ES direct, RFC 7518 4.6), IV 16 and tag 16
#     bytes, ciphertext whole blocks (bad_jwe); ciphertext at most _MAX_VALUE + 16 (secret_size)
#  2. header: alg ECDH-ES, enc A128CBC-HS256, no zip, no crit (bad_jwe); a kid that is not this
#     board's key thumbprint (wrong_board); epk a P-256 point on the curve (bad_key)
#  3. Z = ECDH(identity key, epk); CEK = Concat KDF (RFC 7518 4.6.2, NIST SP 800-56A 5.8.1)
#  4. A128CBC-HS256 (RFC 7518 5.2.2.2): tag checked in constant time before decrypting, then
#     PKCS#7 padding (bad_tag)
# At rest, record "sec": {"n": last seq, "w": [data key wrapped], "s": {name: [epoch, iat,
# value]}, "p": {name: [epoch, iat, value, boots]} (staged)}. The data key is random, wrapped
# with A128CBC-HS256 under HKDF(identity key); a value is sealed under it with AAD name.epoch.
# identity.install adds a wrapping under the new key before it changes the key (rewrap).
# A staged value reverts by itself at the _MAX_BOOTS-th boot (boot()) or after _TTL seconds of
# this boot without commit; a failed test reverts it at once.
# Reasons: bad_cmd wrong_board cmd_replay bad_name old_epoch bad_epoch no_staged secret_size
# too_many_secrets bad_jwe bad_tag no_test bad_secrets no_anchors anchors_pin, plus guard.jws's.
import json
import os
from binascii import a2b_base64, b2a_base64

# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import GuardError, _rt, store
from guard.mac import ct_eq, hkdf, hmac_sha256

_REC = const("sec")
_MAX_VALUE = const(384)
_MAX_NAMES = const(6)
_MAX_CMD = const(4096)
_MAX_BOOTS = const(3)
_TTL = const(600000)  # ms a staged value waits for its commit in one boot
_ENC = const("A128CBC-HS256")
_SAFE = const("abcdefghijklmnopqrstuvwxyz0123456789_")


def _cbc(k, aad, iv, data, tag=None):
    # A128CBC-HS256 (RFC 7518 5.2.2), k = MAC key || ENC key. tag None: encrypt -> (ct, tag);
    # else check the tag, decrypt -> plaintext
    from cryptolib import aes

    c = aes(k[16:], 2, iv)  # used only after the tag is checked when decrypting
    if tag is None:
        n = 16 - len(data) % 16
        data = c.encrypt(data + bytes((n,)) * n)
    t = hmac_sha256(k[:16], aad + iv + data + (len(aad) * 8).to_bytes(8, "big"))[:16]
    if tag is None:
        return data, t
    if not data or len(data) % 16 or not ct_eq(t, tag):
        raise GuardError("bad_tag")
    p = c.decrypt(data)
    n = p[-1]
    if not 0 < n <= 16 or p[-n:] != bytes((n,)) * n:
        raise GuardError("bad_tag")
    return p[:-n]


def _seal(k, aad, v):
    iv = os.urandom(16)
    c, t = _cbc(k, aad, iv, v)
    return b2a_base64(iv + c + t)[:-1].decode()  # (without its newline)


def _open(k, aad, blob):
    b = a2b_base64(blob)
    return _cbc(k, aad, b[:16], b[16:-16], b[-16:])


def _aad(name, e):
    return ("%s.%d" % (name, e)).encode()


def _kek(d=None):
    # the key that wraps the data key: HKDF-SHA256 (RFC 5869) of the identity key
    if d is None:
        from guard import identity

        d = identity.key()[0]
    return hkdf(None, d.to_bytes(32, "big"), b"mpguard secrets", 32)


def _load():
    r = store.read(_REC)
    try:
        r = json.loads(r) if r else {"n": 0, "w": [], "s": {}, "p": {}}
        r["s"], r["p"], r["w"]  # noqa: B018 (the members must be there)
    except (ValueError, KeyError, TypeError):
        raise GuardError("bad_secrets")
    return r


def _save(r):
    store.write(_REC, (json.dumps(r).encode(),))


def _dk(r, d=None):
    # the data key, unwrapped with the identity key (or d; made on first use); only the
    # wrapping that opened is kept at the next write
    k = _kek(d)
    for w in r["w"]:
        try:
            dk = _open(k, b"dk", w)
            r["w"] = [w]
            return dk
        except (GuardError, ValueError, IndexError):
            pass
    if r["w"]:
        raise GuardError("bad_secrets")
    dk = os.urandom(32)
    r["w"] = [_seal(k, b"dk", dk)]
    return dk


def _expire(r):
    # staged values past _TTL in this boot revert (guard._rt keeps stage times across unloads)
    import time

    p = r["p"]
    t = time.ticks_ms()
    gone = False
    for n in list(p):
        if time.ticks_diff(t, _rt.get("@" + n, t)) > _TTL:  # no stage time: not expired
            del p[n]
            gone = True
    if gone:
        _save(r)


def _name(n):
    # 1..16 characters of _SAFE, a letter first (strip leaves nothing iff all are of _SAFE)
    if type(n) is not str or not 0 < len(n) <= 16 or not "a" <= n[0] <= "z" or n.strip(_SAFE):
        raise GuardError("bad_name")


def _jwe(text, key=None):
    from hashlib import sha256

    from guard import identity, jws, p256

    dec = jws.b64u_dec
    if type(text) is not str or len(text) > 2 * _MAX_VALUE + 512:
        raise GuardError("secret_size")
    p = text.split(".")
    if len(p) != 5 or p[1]:
        raise GuardError("bad_jwe")
    iv, c, tag = dec(p[2]), dec(p[3]), dec(p[4])
    if len(c) > _MAX_VALUE + 16:
        raise GuardError("secret_size")
    aad = p[0].encode()
    try:
        h = json.loads(dec(aad))
        e = h["epk"]
        x, y = dec(e["x"]), dec(e["y"])
        a = dec(h.get("apu", "")), dec(h.get("apv", ""))
    except (ValueError, KeyError, TypeError, GuardError):
        raise GuardError("bad_jwe")
    if h.get("alg") != "ECDH-ES" or h.get("enc") != _ENC or "zip" in h or "crit" in h \
            or e.get("kty") != "EC" or e.get("crv") != "P-256" or len(iv) != 16 or len(tag) != 16:
        raise GuardError("bad_jwe")
    d, pub = key or identity.key()
    t = jws.thumbprint(pub)
    if h.get("kid", t) != t:
        raise GuardError("wrong_board")
    # Concat KDF: SHA-256 of counter 1 || Z || the fields AlgorithmID (_ENC), PartyUInfo,
    # PartyVInfo (each a 32-bit length, then the bytes) || keydatalen 256
    k = sha256(b"\0\0\0\1" + p256.ecdh(d, b"\x04" + x + y) + b"\0\0\0\x0dA128CBC-HS256")
    d = 0
    for f in a:
        k.update(len(f).to_bytes(4, "big") + f)
    k.update(b"\0\0\1\0")
    v = _cbc(k.digest(), aad, iv, c, tag)
    if len(v) > _MAX_VALUE:
        raise GuardError("secret_size")
    return v


def command(token):
    # A signed command (see the steps above); returns status().
    from guard import anchors, identity, jws

    r = _load()
    key = identity.key()  # read while the heap is whole (a 64K heap: P-256 fragments it)
    c = jws.verify(token, anchors.load("ops")[1], _MAX_CMD)[1]
    try:
        c = json.loads(c)
        op, n, e, q = c["op"], c["name"], c["epoch"], c["seq"]
    except (ValueError, KeyError, TypeError):
        raise GuardError("bad_cmd")
    if c.get("sub") != identity._b64e(identity.ueid() or b""):
        raise GuardError("wrong_board")
    if type(q) is not int or q <= r["n"]:
        raise GuardError("cmd_replay")
    _name(n)
    if type(e) is not int:
        raise GuardError("bad_cmd")
    _expire(r)
    S, P = r["s"], r["p"]
    s = S.get(n)
    p = P.get(n)
    if op == "set" or op == "stage":
        cur = s[0] if s else 0
        if e != cur + 1:
            raise GuardError("old_epoch" if e <= cur else "bad_epoch")
        if not s and n not in P and len(S) + len(P) >= _MAX_NAMES:
            raise GuardError("too_many_secrets")
        v = _jwe(c.get("jwe"), key)
        ent = [e, c.get("iat"), _seal(_dk(r, key[0]), _aad(n, e), v)]
        v = None
        if op == "set":
            S[n] = ent
            P.pop(n, None)
        else:
            import time

            P[n] = ent + [0]
            _rt["@" + n] = time.ticks_ms()
    elif op == "commit" or op == "revert":
        if not p:
            raise GuardError("no_staged")
        if e != p[0]:
            raise GuardError("old_epoch")
        if op == "commit":
            S[n] = [e, c.get("iat"), p[2]]
        del P[n]
    else:
        raise GuardError("bad_cmd")
    r["n"] = q
    _save(r)
    return status()


def status():
    # Names, epochs, times (the host's iat of the command), staged or not: never a value.
    r = _load()
    _expire(r)
    return {"seq": r["n"], "secrets": store.secrets(r)}


def get(name):
    # The committed value of secret `name` (bytes), or None: guard.secret(name).
    r = _load()
    s = r["s"].get(name)
    return _open(_dk(r), _aad(name, s[0]), s[2]) if s else None


def test(name):
    # Run the app's test (guard.on_stage) on the staged value: {"ok": bool, "why": str or
    # None}. A failed test reverts the staged value at once (a fail-safe, as Matter's).
    r = _load()
    _expire(r)
    p = r["p"].get(name)
    if not p:
        raise GuardError("no_staged")
    fn = _rt.get(name)
    if not fn:
        raise GuardError("no_test")
    v = _open(_dk(r), _aad(name, p[0]), p[2])
    try:
        why = None if fn(v) else "failed"
    except Exception as e:  # the app's code: its class name only, never its message
        why = type(e).__name__
    v = None
    if why:
        del r["p"][name]
        _save(r)
    return {"ok": not why, "why": why}


def boot():
    # From guard.boot.run: count this boot for each staged value; revert at _MAX_BOOTS.
    r = _load()
    P = r["p"]
    if P:
        for n in list(P):
            p = P[n]
            p[3] += 1
            if p[3] >= _MAX_BOOTS:
                del P[n]
                print("guard: reverted", n, p[0])
        _save(r)


def rewrap(d, old=None):
    # Before the identity key changes to d: wrap the data key under d too (guard.identity;
    # old: the current key's d, when the caller has it).
    r = _load()
    dk = _dk(r, old)
    r["w"].insert(0, _seal(_kek(d), b"dk", dk))  # first: the key most likely to open it
    _save(r)
