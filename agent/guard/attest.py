# guard.attest: the board's Entity Attestation Token (RFC 9711) in JWT form (RFC 7519): a JWS
# compact ES256 (RFC 7515) signed by the board's identity key, kid its RFC 7638 thumbprint.
# The board is the RATS attester (RFC 9334): it reports facts; `mpguard attest` verifies and
# judges them. Profile, claims and their types: docs/attest.md.
#
# token(nonce), in order:
#  1. nonce: a text string of 10..74 base64url characters (RFC 9711 4.1: in JSON the
#     nonce-type is `tstr .size (10..74)`)                                  (bad_nonce)
#  2. a nonce in this boot's ring of recent nonces is refused (replay). RAM only: the
#     host's freshness window and its record of issued nonces cover resets
#  3. key and UEID through _identity(); the UEID must be RFC 9711 4.2.1's type 0x01 RAND
#     (16, 24 or 32 bytes) or 0x02 IEEE EUI (EUI-48, EUI-64)         (no_identity, bad_ueid)
#  4. facts measured and claims serialised (guard.claims over guard.posture; both unloaded
#     again: the heap holds the measuring or the signing, never both)
#  5. signed (_sign); only then does the nonce join the ring
#
# prepare(nonce) does steps 1-4 alone and writes the payload to _PREPARED (the nonce on its
# first line); a token(nonce) after it (the host soft-resets between the two) signs that
# payload instead of measuring again. Each half then has a fresh heap: measuring and signing
# in one call did not fit the virtual board's 64 KiB heap once identity, rotation and the
# eFuse pin had grown the agent. The file is removed when the token is signed or refused.
#
# Reasons: bad_nonce replay no_identity bad_ueid, guard.claims's bad_config, guard.p256's bad_key.
import gc
import sys

# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import GuardError

_RING = const(8)  # recent nonces remembered
B64U = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_seen = []  # type: list
_PREPARED = const("/mpguard/eat.tmp")
# the modules a token loads; each is unloaded again unless it was loaded before
_LOADED = const(("claims", "posture", "pin", "hw", "store", "state", "p256", "ec", "mac"))


def _identity():
    # (d, pub65, ueid bytes) from guard.identity (GuardError no_identity without one); the
    # module is unloaded again unless it was loaded before: posture needs the heap
    had = "guard.identity" in sys.modules
    try:
        from guard import identity
    except ImportError:
        raise GuardError("no_identity")
    k = identity.key() + (identity.ueid(),)
    if not had:
        unload("identity")
    return k


def unload(name):
    # Forget guard.<name> so its code leaves the heap (it was loaded for one call only).
    if "guard." + name in sys.modules:
        del sys.modules["guard." + name]
        g = sys.modules["guard"]
        if hasattr(g, name):
            delattr(g, name)


def b64u(b):
    # base64url without padding (RFC 7515 2), bytes -> bytes. (Each module that needs it has
    # its own copy: in guard/__init__.py it would cost the heap of every operation.)
    from binascii import b2a_base64

    return b2a_base64(b).rstrip(b"=\n").replace(b"+", b"-").replace(b"/", b"_")  # (and its newline)


def _sign(parts, d, pub, emit):
    # JWS compact (RFC 7515 7.1) emitted in pieces as it is made, never held whole: the
    # header, then the payload's pieces base64url-encoded through a 768-byte chunk (a
    # multiple of 3: no padding inside), then the ES256 signature over the SHA-256 of all
    # emitted before the second "." (the signing input, RFC 7515 5.1).
    from hashlib import sha256

    from guard import p256

    # kid: the key's RFC 7638 thumbprint, as guard.jws.thumbprint makes it (made here: guard.jws
    # loaded for it would take the heap the signing needs); the key a valid P-256 point
    p256.decode_point(pub)
    if len(pub) != 65:
        raise GuardError("bad_key")
    kid = b64u(sha256(b'{"crv":"P-256","kty":"EC","x":"' + b64u(pub[1:33]) + b'","y":"' + b64u(pub[33:65])
                      + b'"}').digest())
    h = sha256()

    def out(b):
        h.update(b)
        emit(b)

    out(b64u(b'{"alg":"ES256","kid":"' + kid + b'","typ":"eat+jwt"}') + b".")
    buf = bytearray(768)
    mv = memoryview(buf)
    k = 0
    last = len(parts) - 1
    for j in range(len(parts)):
        x = (b"," if j else b"") + parts[j]
        parts[j] = None
        i = 0
        while i < len(x):
            m = min(768 - k, len(x) - i)
            buf[k : k + m] = x[i : i + m]
            k += m
            i += m
            if k == 768 or (i == len(x) and j == last):
                out(b64u(mv[:k]))
                k = 0
    emit(b"." + b64u(p256.sign(d, h.digest())))


def _check(nonce):
    # (strip leaves nothing iff every character is base64url)
    if type(nonce) is not str or not 10 <= len(nonce) <= 74 or nonce.encode().strip(B64U):
        raise GuardError("bad_nonce")
    if nonce in _seen:
        raise GuardError("replay")


def _claims(nonce, ueid, had):
    # the payload's pieces (guard.claims), every module the claims loaded unloaded again
    n = len(ueid) - 1 if isinstance(ueid, (bytes, bytearray)) else 0
    if n < 1 or not ((ueid[0] == 1 and n in (16, 24, 32)) or (ueid[0] == 2 and n in (6, 8))):
        raise GuardError("bad_ueid")
    from guard import claims

    parts = claims.claims(nonce, ueid)
    del claims
    for m in _LOADED[:6]:
        if m not in had:
            unload(m)
    if "hw" in had:
        from guard import hw

        hw.forget()  # the board profile, read again when needed: P-256 needs the room
    return parts


def _had():
    # the modules of _LOADED loaded before this call: they stay loaded
    had = []
    for m in _LOADED:
        if "guard." + m in sys.modules:
            had.append(m)
    return had


def _drop(had):
    # leave the modules as found: a second call in one session fits too
    for m in _LOADED:
        if m not in had:
            unload(m)
    gc.collect()


def _remove():
    import os

    try:
        os.remove(_PREPARED)
    except OSError:
        pass


def prepare(nonce, key=None):
    # Steps 1-4 of token(): the payload written to _PREPARED for the token(nonce) that
    # follows; returns its length. `key`: as token()'s (its UEID is used).
    _check(nonce)
    gc.collect()
    had = _had()
    _remove()
    try:
        parts = _claims(nonce, (key or _identity())[2], had)
        with open(_PREPARED, "wb") as f:
            f.write(nonce.encode() + b"\n")
            n = 0
            for j in range(len(parts)):
                n += f.write((b"," if j else b"") + parts[j])
                parts[j] = None
    except BaseException:
        _remove()
        raise
    finally:
        _drop(had)
    return n


def _prepared(nonce):
    # [payload] that prepare(nonce) left, or None (none, or for another nonce)
    try:
        with open(_PREPARED, "rb") as f:
            if f.readline() != nonce.encode() + b"\n":
                return None
            return [f.read()]
    except OSError:
        return None


def token(nonce, key=None, out=None):
    # -> the signed token (str); with `out` (a stream) the token is written to it in pieces
    # instead (no large allocation: the heap of a busy board may have no 3 KiB in one piece)
    # and its length returned. `key` = (d, pub65, ueid) is a test hook for tests and bench
    # on the unix port; on a board the identity key signs.
    _check(nonce)
    gc.collect()  # what a call before left behind, before modules load into the heap
    had = _had()
    parts = _prepared(nonce)
    try:
        d, pub, ueid = key or _identity()
        if parts is None:
            parts = _claims(nonce, ueid, had)
        gc.collect()
        got = []  # type: list

        def emit(b):
            if out is None:
                got.append(b)
            else:
                got.append(len(b))
                out.write(str(b, "ascii"))

        _sign(parts, d, pub, emit)
    finally:
        _remove()
        _drop(had)
    _seen.append(nonce)
    if len(_seen) > _RING:
        _seen.pop(0)
    return sum(got) if out is not None else b"".join(got).decode()
