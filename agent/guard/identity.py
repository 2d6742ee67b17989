# guard.identity: the board's identity (docs/decisions/0012-identity.md): a P-256 key made
# on the board, its UEID (RFC 9711 4.2.1), a PKCS#10 request (RFC 2986) as proof of
# possession, and the certificate the host's device CA issues for it.
# (Over 300 lines: the key, the request and the certificate check are one record's life cycle.)
#
# Records (through guard.store; each written atomically):
#   "id"      the identity: SEC1 ECPrivateKey DER (RFC 5915) || certificate DER || CA DER
#   "id.new"  a pending key (SEC1 DER alone) that has no certificate on the board yet
#   "ueid"    a RAND UEID (profile "ueid": "rand"), made once, never rewritten
# A power cut leaves "id" absent or complete (old or new); "id.new" is resumable. A record
# that does not parse is reported ("damaged"), never guessed at; a forced begin replaces it.
#
# install(cert, chain), in order; any refusal changes nothing:
#   1. a pending key exists (no_pending); sizes within _MAX_CERT, one CA cert (bad_cert)
#   2. the pending key's public point is d*G (bad_store)
#   3. DER of the certificate parses exactly (bad_der); its subjectPublicKeyInfo is the
#      pending key (cert_mismatch); its subject is exactly CN=UEID (ueid_mismatch)
#   4. issuer == the CA's subject, the CA key is P-256, signature is ecdsa-with-SHA256 and
#      verifies over the TBSCertificate (RFC 5280 6.1.3 a.1) (bad_cert, bad_sig)
#   5. one atomic write of "id", then "id.new" is removed
#
# proof(challenge): the continuity proof of an identity rotation (docs/rotate.md).
#
# Reasons: identity_exists no_identity no_pending bad_store bad_ueid bad_cert cert_mismatch
# ueid_mismatch bad_sig bad_arg, plus guard.asn1's bad_der.
from hashlib import sha256

# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import GuardError, hw, store

# guard.jws (and through it P-256, ~20 KiB of heap once loaded) and guard.asn1 are imported
# only where a function needs them: reading the key (attestation) loads neither.

_ID = const("id")
_NEW = const("id.new")
_UEID = const("ueid")
_KEY_LEN = const(121)
_KEY_A = const(b"\x30\x77\x02\x01\x01\x04\x20")  # SEC1 ECPrivateKey: version 1, privateKey ...
_KEY_B = const(b"\xa0\x0a\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07\xa1\x44\x03\x42\x00")  # prime256v1, pub
# SubjectPublicKeyInfo of a P-256 key up to the point: id-ecPublicKey, prime256v1
_SPKI = const(b"\x30\x59\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07\x03\x42\x00")
_SPKI_HEAD = const(26)
_SPKI_LEN = const(91)  # _SPKI_HEAD + 65
_SEQ = const(0x30)  # DER tags (as guard.asn1's)
_SET = const(0x31)
_BITS = const(0x03)
_UTF8 = const(0x0C)
_ECDSA_SHA256 = const(b"\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02")  # AlgorithmIdentifier
_CN = const(b"\x06\x03\x55\x04\x03")  # id-at-commonName
_CHALLENGE = const(b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x09\x07")  # PKCS#9 challengePassword
_MAX_CERT = const(2048)
_MAX_B64 = const(2731)  # base64url characters of _MAX_CERT bytes
_MAX_CHALLENGE = const(128)
_ENTROPY = const(32)
_RAND_LEN = const(16)
# n of P-256 as 32 big-endian bytes (bytes of equal length compare as the numbers; an int
# constant would cost 80 bytes of .mpy)
_N = const(b"\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff"
           b"\xbc\xe6\xfa\xad\xa7\x17\x9e\x84\xf3\xb9\xca\xc2\xfc\x63\x25\x51")
_EUI = const(2)  # RFC 9711 4.2.1 UEID types
_RAND = const(1)


def _key(rec):
    # (d, pub65) of a SEC1 key record (the first 121 bytes of `rec`), checked for shape and
    # range only: loading P-256 here would cost a caller (attestation) the heap it needs
    # later; install() checks pub == d*G before the key gets its certificate
    if rec is None or len(rec) < _KEY_LEN or rec[:7] != _KEY_A or rec[39:56] != _KEY_B \
            or rec[56] != 4:
        raise GuardError("bad_store")
    d = bytes(rec[7:39])
    if not any(d) or d >= _N:  # d in [1, n-1]
        raise GuardError("bad_store")
    return int.from_bytes(d, "big"), bytes(rec[56:_KEY_LEN])


def _parts(rec):
    # [key, cert, ca] slices of the identity record (each a whole DER element)
    from guard import asn1

    _key(rec)
    out = []
    pos = 0
    while pos < len(rec):
        _, _, stop = asn1.read(rec, pos, len(rec), _SEQ)
        out.append(rec[pos:stop])
        pos = stop
    if len(out) != 3:
        raise GuardError("bad_store")
    return out


def _cur():
    rec = store.read(_ID)
    if rec is None:
        raise GuardError("no_identity")
    return rec


def _new():
    new = _pending(store.read(_ID))
    if new is None:
        raise GuardError("no_pending")
    return new


def _challenge(c):
    # the host's fresh challenge: 16.._MAX_CHALLENGE characters
    if not isinstance(c, str) or not 16 <= len(c) <= _MAX_CHALLENGE:
        raise GuardError("bad_arg", "challenge")


def _pending(rec):
    # the pending key record, or None; one left behind by a cut after install's rename
    # (the same key as the identity's) is no pending key
    new = store.read(_NEW)
    if new is not None and rec is not None and new[:_KEY_LEN] == rec[:_KEY_LEN]:
        return None
    return new


def ueid(create=False):
    # RFC 9711 UEID bytes (type byte + id): EUI from the chip's MAC, or RAND as the profile
    # says; a RAND UEID is made (and stored) only when `create`; None until then
    kind = (hw.board() or {}).get("ueid", "eui")
    if kind == "eui":
        u = hw.unique_id()
        if len(u) != 6 and len(u) != 8:
            raise GuardError("bad_ueid")
        return bytes((_EUI,)) + u
    if kind != "rand":
        raise GuardError("bad_profile", "ueid")
    u = store.read(_UEID)
    if u is None and create:
        import os

        u = bytes((_RAND,)) + os.urandom(_RAND_LEN)
        store.write(_UEID, (u,))
    if u is not None and (len(u) != _RAND_LEN + 1 or u[0] != _RAND):
        raise GuardError("bad_ueid")
    return u


def _b64e(b):
    # base64url without padding (RFC 4648 5), as str
    from binascii import b2a_base64

    return b2a_base64(b).rstrip(b"=\n").replace(b"+", b"-").replace(b"/", b"_").decode()


def _b64(s, reason, what):
    # strict base64url (guard.jws) of a string argument, else GuardError(reason, what)
    from guard.jws import b64u_dec

    try:
        if isinstance(s, str):
            return b64u_dec(s)
    except GuardError:
        pass
    raise GuardError(reason, what)


def _pub(rec):
    # base64url of a record's public key; None when absent or damaged
    try:
        return _b64e(_key(rec)[1]) if rec is not None else None
    except GuardError:
        return None


def status():
    # What the host may know: state, UEID, MAC, public keys, certificate digest (base64url),
    # never the key. "damaged": an identity record that does not parse (a forced begin
    # replaces it).
    rec = store.read(_ID)
    new = _pending(rec)
    u = ueid()
    pub = _pub(rec)
    cert = None
    if pub:
        try:
            cert = _b64e(sha256(_parts(rec)[1]).digest())
        except GuardError:
            pub = None
    npub = _pub(new)
    if rec is not None:
        state = "complete" if cert else "damaged"
    else:
        state = "pending" if npub else "none"
    return {
        "state": state, "ueid": _b64e(u) if u else None,
        "uid": _b64e(hw.unique_id()), "pub": pub, "cert_sha256": cert,
        "pending_pub": npub, "store": store.KIND,
    }


def begin(entropy, force=False):
    # Make the pending key from os.urandom and the host's 32 bytes of entropy (HKDF, in
    # guard.p256.keygen); an existing pending key is kept (a resumed provisioning) unless
    # `force`. A board with an identity needs `force`; its identity stays until install().
    e = _b64(entropy, "bad_arg", "entropy")
    if len(e) != _ENTROPY:
        raise GuardError("bad_arg", "entropy")
    rec = store.read(_ID)
    new = _pending(rec)
    if new is not None and not force and _pub(new):
        pass  # keep the pending key (a damaged one, never certified on the board, is replaced)
    else:
        if rec is not None and not force:
            raise GuardError("identity_exists")
        ueid(True)
        from guard import p256

        d, pub = p256.keygen(e)
        store.write(_NEW, (_KEY_A, d.to_bytes(32, "big"), _KEY_B, pub))
        d = 0
    return status()


def _name(u):
    # Name ::= SEQUENCE { SET { SEQUENCE { id-at-commonName, UTF8String base64url(UEID) } } }
    from guard import asn1

    return asn1.seq(asn1.tlv(_SET, asn1.seq(_CN, asn1.tlv(_UTF8, _b64e(u).encode()))))


def csr(challenge, pending=True):
    # PKCS#10 CertificationRequest (RFC 2986 4) for the pending (or the current) key:
    # subject CN = base64url(UEID), the host's challenge as challengePassword (PKCS#9 5.4.1),
    # signed ecdsa-with-SHA256 (RFC 5758 3.2). Returns base64url(DER).
    _challenge(challenge)
    d, pub = _key(_new() if pending else _cur())
    u = ueid()
    if u is None:
        raise GuardError("bad_ueid")
    from guard import asn1

    attrs = asn1.seq(_CHALLENGE, asn1.tlv(_SET, asn1.tlv(_UTF8, challenge.encode())))
    info = asn1.seq(b"\x02\x01\x00", _name(u), _SPKI + pub, asn1.tlv(0xA0, attrs))
    from guard import p256

    sig = p256.sign(d, sha256(info).digest())
    d = 0
    bits = asn1.tlv(_BITS, b"\x00" + asn1.seq(asn1.uint(sig[:32]), asn1.uint(sig[32:])))
    return _b64e(asn1.seq(info, _ECDSA_SHA256, bits))


def install(cert, chain):
    # Store the host's certificate (base64url DER) and its CA chain (a list of one base64url
    # DER certificate) with the pending key, as the board's identity; returns status().
    rec = store.read(_ID)
    new = _pending(rec)
    if new is None:
        raise GuardError("no_pending")
    # the current key for a rewrap, read now while the heap is whole (guard.rotate)
    old = _key(rec)[0] if rec is not None and store.exists("sec") else None
    rec = None
    if not isinstance(chain, list) or len(chain) != 1:
        raise GuardError("bad_cert", "chain")
    for x in (cert, chain[0]):  # too large refused before decoding: no heap spent on it
        if isinstance(x, str) and len(x) > _MAX_B64:
            raise GuardError("bad_cert", "size")
    c = _b64(cert, "bad_cert", "encoding")
    ca = _b64(chain[0], "bad_cert", "encoding")
    if not c or not ca or len(c) > _MAX_CERT or len(ca) > _MAX_CERT:
        raise GuardError("bad_cert", "size")
    from guard import asn1, p256

    d, pub = _key(new)
    if p256.public_key(d) != pub:
        raise GuardError("bad_store")
    d = 0
    tbs, issuer, subject, spki, sig = asn1.certificate(c)
    if spki != _SPKI + pub:
        raise GuardError("cert_mismatch")
    if subject != _name(ueid()):
        raise GuardError("ueid_mismatch")
    h = sha256(tbs).digest()
    del tbs, subject, spki
    _, _, ca_subject, ca_spki, _ = asn1.certificate(ca)
    if issuer != ca_subject or len(ca_spki) != _SPKI_LEN or ca_spki[:_SPKI_HEAD] != _SPKI:
        raise GuardError("bad_cert", "issuer")
    if not p256.verify(bytes(ca_spki[_SPKI_HEAD:]), h, sig):
        raise GuardError("bad_sig")
    del issuer, ca_subject, ca_spki, sig, p256
    import gc
    import sys

    import guard

    for m in ("p256", "ec"):  # done with: their code leaves the heap (a rewrap needs it)
        sys.modules.pop("guard." + m, None)
        guard.__dict__.pop(m, None)
    gc.collect()  # a busy board's heap: the write needs no big piece, but leave it room
    if store.exists("sec"):  # secrets at rest stay readable under the new key (guard.rotate)
        from guard import rotate

        rotate.rewrap(_key(new)[0], old)
    store.write(_ID, (new[:_KEY_LEN], c, ca))
    store.remove(_NEW)
    return status()


def proof(challenge):
    # Continuity of an identity rotation: the current key signs (JWS ES256, guard.jws) the
    # pending key and the host's challenge, {"new": base64url(pending point), "nonce": ...}.
    _challenge(challenge)
    new = _new()
    import json

    from guard import jws

    d, pub = _key(_cur())
    return jws.sign(json.dumps({"new": _b64e(_key(new)[1]), "nonce": challenge}).encode(), d, pub).decode()


def key():
    # (d, pub65) of the board's identity key: for the agent's own signing (attestation),
    # never for an answer to the host.
    return _key(_cur())


def certificate():
    # {"cert", "ca"}: base64url DER of the identity's certificate and its CA (public)
    p = _parts(_cur())
    return {"cert": _b64e(p[1]), "ca": _b64e(p[2])}


def tls_context(server_ca):
    # An ssl.SSLContext for mutual TLS: the identity key and certificate as the client's,
    # the server verified against `server_ca` (DER or PEM bytes of its CA).
    import ssl

    p = _parts(_cur())
    if not isinstance(server_ca, (bytes, bytearray)) or not server_ca:
        raise GuardError("bad_arg", "server_ca")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(p[1], p[0])
    ctx.load_verify_locations(cadata=server_ca)
    # MicroPython documents SSLContext.verify_mode (library/ssl.rst); the ESP32 stub lacks it
    ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]
    return ctx
