# JWS compact serialization (RFC 7515) with ES256 only (RFC 7518 3.4); kid is the RFC 7638
# JWK thumbprint of the signer's key.
#
# verify(token, keys, max_len), in order; nothing is decoded before the size checks:
#   1. token is bytes, bytearray, memoryview or str and at most max_len bytes   (too_large)
#   2. exactly three parts (RFC 7515 7.1); protected header at most _MAX_HEADER (jws_format,
#      too_large)
#   3. header: strict base64url (RFC 7515 2, no padding); its JSON text is checked for shape
#      *before* it is parsed (shape(): an object at the top only, nesting at most 2, ASCII,
#      no member twice), then parsed: a JSON object                             (jws_format)
#   4. "alg" is exactly "ES256" (4.1.1): "none" and every other value refused   (jws_alg)
#   5. "crit" (4.1.11): no extension is understood, so any "crit" is refused    (jws_crit)
#   6. "kid" (4.1.4) is a string naming one of `keys`                          (unknown_key)
#   7. signature: strict base64url of exactly 64 bytes R || S (RFC 7518 3.4)     (bad_sig)
#   8. ECDSA P-256 over SHA-256(ASCII(header "." payload)) (RFC 7515 5.2 step 8)  (bad_sig)
#      A key given as [pub, digest] has a comb table /mpguard/tab/<kid>, used when its
#      SHA-256 is digest (base64url); a table missing or other is refused      (bad_table)
#   9. only then is the payload decoded (strict base64url)                       (jws_format)
# Returns (header dict, payload bytes). check() does steps 1-8 only and also returns where the
# parts are and the SHA-256 of the signing input (the measurement of a manifest); the caller
# then decodes the payload in place with b64u_into() (guard.bundle: no second buffer).
#
# Reasons (GuardError args[0]): too_large, jws_format, jws_alg, jws_crit, unknown_key,
# bad_sig, bad_table, bad_key (a key in `keys` or given to sign/thumbprint is not a valid
# P-256 point)
import json
from binascii import a2b_base64, b2a_base64
from hashlib import sha256

# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import GuardError, p256

_MAX_TOKEN = const(16384)
_MAX_HEADER = const(1024)  # base64url characters of the protected header
_SIG_B64 = const(86)  # base64url characters of 64 bytes
_CHUNK = const(256)  # base64url characters decoded at a time (a multiple of 4)
_ALG = const("ES256")
_TAB = const("/mpguard/tab/")  # anchor comb tables, by kid (docs/decisions/0020)


def b64u_enc(b):
    # base64url without padding (RFC 7515 2, RFC 4648 5) -> bytes
    return b2a_base64(b).rstrip(b"=\n").replace(b"+", b"-").replace(b"/", b"_")  # (and its newline)


def b64u_dec(s):
    # strict: only the base64url alphabet, no padding, canonical trailing bits. Decoded in
    # chunks so the heap holds the input, the output and one chunk, not copies of the input.
    if isinstance(s, str):
        s = s.encode()
    out = bytearray(len(s) * 3 // 4)
    b64u_into(s, out)
    return bytes(out)


def b64u_into(s, out):
    # Decode base64url s (strict, as b64u_dec) into the buffer `out`; returns the length.
    # `out` may be the same memory as `s` (or start before it): each chunk is copied out of
    # `s` before its bytes are written, and the output never overtakes the input.
    n = len(s)
    if n % 4 == 1:
        raise GuardError("jws_format")
    mv = memoryview(s)
    o = 0
    for i in range(0, n, _CHUNK):
        c = bytes(mv[i : i + _CHUNK])
        if c.find(b"+") >= 0 or c.find(b"/") >= 0 or c.find(b"=") >= 0:
            raise GuardError("jws_format")
        c = c.replace(b"-", b"+").replace(b"_", b"/") + b"=" * (-len(c) % 4)
        try:
            d = a2b_base64(c)
        except ValueError:
            raise GuardError("jws_format")
        # a2b_base64 skips characters outside its alphabet and ignores trailing bits:
        # the round trip catches both
        if b2a_base64(d, newline=False) != c:
            raise GuardError("jws_format")
        out[o : o + len(d)] = d
        o += len(d)
    return o


def shape(b, depth):
    # The shape of the JSON text b, checked before it is parsed (MicroPython's parser needs
    # heap for every level, and keeps the last of two equal members): printable ASCII (tab,
    # CR, LF outside strings), no control character inside a string, one object at the top
    # and only there, arrays nested at most `depth` levels in all. Returns the number of the
    # top object's members, or -1 when the text is not acceptable; a caller compares it with
    # the parsed dict's length to refuse a member that appears twice. MicroPython's parser
    # takes ':' and ',' for spaces and reads "truenull" as two values, so a member could
    # hide from a count of the ':': the top object's grammar is checked here, key ':' value
    # (',' key ':' value)*, a bare value exactly true, false, null or a number's characters.
    # e, at the top level: 0 key or '}', 1 key, 2 ':', 3 value, 4 ',' or '}', 5 in a bare
    # value (w: the word it must be, j: how far), 6 before the object, 7 after it
    lvl = n = j = 0
    e = 6
    w = None
    s = esc = False
    for c in b:
        if c > 126:
            return -1
        if s:
            if c < 32:
                return -1
            if esc:
                esc = False
            elif c == 92:  # backslash
                esc = True
            elif c == 34:
                s = False
            continue
        if e == 5:  # (at the top level only)
            if w is None:
                if c in b"0123456789+-.eE":
                    continue
            elif j < len(w) and c == w[j]:
                j += 1
                continue
            elif j < len(w):
                return -1
            e = 4  # the bare value ended: c is what follows it
        if c in b" \t\n\r":
            continue
        if c < 32:
            return -1
        if lvl > 1:  # inside an array: its nesting only
            if c == 34:
                s = True
            elif c == 91:  # [
                lvl += 1
                if lvl > depth:
                    return -1
            elif c == 93:  # ]
                lvl -= 1
                if lvl == 1:
                    e = 4
            elif c == 123:  # {
                return -1
            continue
        if lvl == 0:
            if c != 123 or e != 6:
                return -1
            lvl = 1
            e = 0
        elif c == 34:  # a key, or a string value
            if e > 1 and e != 3:
                return -1
            s = True
            e = 2 if e < 2 else 4
        elif c == 58:  # :
            if e != 2:
                return -1
            e = 3
            n += 1
        elif c == 44:  # ,
            if e != 4:
                return -1
            e = 1
        elif c == 125:  # }
            if e != 0 and e != 4:
                return -1
            lvl = 0
            e = 7
        elif c == 91:  # [
            if e != 3:
                return -1
            lvl = 2  # (depth is at least 2: the object and one array level)
        elif e == 3:  # a bare value begins (one that begins otherwise, the parser refuses)
            w = b"true" if c == 116 else b"false" if c == 102 else b"null" if c == 110 else None
            j = 1
            e = 5
        else:
            return -1
    return n if e == 7 else -1


def thumbprint(pub65):
    # RFC 7638 3.2: SHA-256 of the required members in lexicographic order, no whitespace
    if not isinstance(pub65, (bytes, bytearray, memoryview)) or len(pub65) != 65:
        raise GuardError("bad_key")
    p256.decode_point(pub65)
    h = sha256(b'{"crv":"P-256","kty":"EC","x":"')
    h.update(b64u_enc(pub65[1:33]))
    h.update(b'","y":"')
    h.update(b64u_enc(pub65[33:65]))
    h.update(b'"}')
    return b64u_enc(h.digest()).decode()


def check(token, keys, max_len=_MAX_TOKEN):
    # Steps 1-8 -> (header dict, index of the first '.', of the second '.', SHA-256 digest
    # of the signing input). The payload is left encoded.
    if isinstance(token, str):
        token = token.encode()
    if not isinstance(token, (bytes, bytearray, memoryview)):
        raise GuardError("jws_format")
    n = len(token)
    if n > max_len:
        raise GuardError("too_large")
    # the positions of the two '.' separators (a memoryview has no find()); more or fewer:
    # jws_format
    d1 = d2 = -1
    for i in range(n):
        if token[i] == 46:
            if d1 < 0:
                d1 = i
            elif d2 < 0:
                d2 = i
            else:
                raise GuardError("jws_format")
    if d2 < 0:
        raise GuardError("jws_format")
    if d1 > _MAX_HEADER:
        raise GuardError("too_large")
    if not d1 or n - d2 - 1 != _SIG_B64:
        raise GuardError("jws_format" if not d1 else "bad_sig")
    mv = memoryview(token)
    raw = b64u_dec(mv[:d1])
    k = shape(raw, 2)  # flat: an object of strings (and "crit", an array, refused below)
    if k < 0:
        raise GuardError("jws_format")
    try:
        hdr = json.loads(raw)
    except ValueError:
        raise GuardError("jws_format")
    if not isinstance(hdr, dict) or len(hdr) != k:
        raise GuardError("jws_format")  # not an object, or a member given twice
    if hdr.get("alg") != _ALG:
        raise GuardError("jws_alg")
    if "crit" in hdr:
        raise GuardError("jws_crit")
    kid = hdr.get("kid")
    if not isinstance(kid, str) or kid not in keys:
        raise GuardError("unknown_key")
    try:
        sig = b64u_dec(mv[d2 + 1 :])
    except GuardError:
        raise GuardError("bad_sig")
    h = sha256(mv[:d2]).digest()
    k = keys[kid]
    t = None
    if type(k) is list:
        # [public key, base64url SHA-256 of its comb table /mpguard/tab/<kid>] (guard.install,
        # from the anchors' "tabs"): a table other than the one the anchors name is refused
        k, d = k
        t = table(kid, d)
        if not t:
            raise GuardError("bad_table")
    if not p256.verify(k, h, sig, t):
        raise GuardError("bad_sig")
    return hdr, d1, d2, h


def table(kid, d):
    # The comb table /mpguard/tab/<kid> if its base64url SHA-256 is d, else b"" (guard.rotate
    # keeps a statement's table only when this finds it)
    try:
        with open(_TAB + kid, "rb") as f:
            t = f.read()
    except OSError:
        return b""
    return t if b64u_enc(sha256(t).digest()).decode() == d else b""


def verify(token, keys, max_len=_MAX_TOKEN):
    if isinstance(token, str):
        token = token.encode()
    hdr, d1, d2, _ = check(token, keys, max_len)
    return hdr, b64u_dec(memoryview(token)[d1 + 1 : d2])


def sign(payload, d, pub65, header=None):
    # -> token bytes; header members are added to {"alg": "ES256", "kid": thumbprint(pub65)}
    hdr = {"alg": _ALG, "kid": thumbprint(pub65)}
    if header:
        for k in header:
            hdr[k] = header[k]
    if hdr["alg"] != _ALG:
        raise GuardError("jws_alg")
    if "crit" in hdr:
        raise GuardError("jws_crit")
    # the header as compact JSON, keys sorted: what mpguard.jose produces for the same header
    out = []
    for k in sorted(hdr):
        out.append(json.dumps(k) + ":" + json.dumps(hdr[k]))
    inp = b64u_enc(("{" + ",".join(out) + "}").encode()) + b"." + b64u_enc(payload)
    sig = p256.sign(d, sha256(inp).digest())
    return inp + b"." + b64u_enc(sig)
