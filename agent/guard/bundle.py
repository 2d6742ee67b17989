# guard.bundle: read an update bundle's header and manifest and check the manifest's
# signature (docs/bundle-format.md). A bundle is: header (8 bytes) | manifest (JWS compact,
# ES256) | files, in manifest order. read_manifest(), in order, all before the installer writes
# a single byte:
#  1. header: magic, format version, flags, manifest length 1.._MAX_MANIFEST and within the
#     stream                                            (bad_header, too_large, truncated)
#  2. the board has trust anchors                                          (no_anchors)
#  3. one buffer of the manifest's length is allocated (the only large allocation of an
#     install: the files stream through it later) and the manifest read into it
#  4. its signature against the anchors (RFC 7515 5.2, guard.jws)
#  5. the payload, decoded in place, is checked for shape before it is parsed (ASCII, an
#     object only at the top, nesting at most 3): guard.jws.shape           (bad_manifest)
# (read() does 1-5 and loads the crypto modules; guard.install unloads them before it goes on)
#  6. parse(): the payload is one JSON object, no member twice               (bad_manifest)
# guard.manifest then checks the fields (the host's rules too) and the manifest against the
# board (target, sequence, time, agent version, length); guard.install hashes the files while
# it streams them.
# Reasons (GuardError args[0]): bad_header too_large truncated no_anchors bad_manifest, plus
# guard.jws's (jws_format, jws_alg, jws_crit, unknown_key, bad_sig) and guard.manifest's.
import json

# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import GuardError

MAGIC = b"MPGB"
FORMAT = const(1)
HDR_LEN = const(8)  # magic(4) format(1) flags(1) manifest length(2, big-endian)
_MAX_MANIFEST = const(4096)
_MIN_BUF = const(1024)  # the buffer is the manifest's length, and at least this
_JSON_DEPTH = const(3)  # {"files": [[path, size, sha256]]}


def read_exact(stream, mv):
    # Fill memoryview mv from stream.readinto; a short stream is `truncated`.
    n = 0
    size = len(mv)
    while n < size:
        k = stream.readinto(mv[n:])
        if not k:
            raise GuardError("truncated")
        n += k


def read(stream, length, anchors):
    # Steps 1-5 -> (buffer, info). The buffer (a memoryview) then holds: header "." payload
    # JSON ... "." signature; info = [SHA-256 hex of the signing input (the release's
    # measurement), manifest length, first '.', second '.', payload length, members of the
    # payload's top object]. Loads the crypto modules; the caller unloads them.
    import gc
    from binascii import hexlify

    if length < HDR_LEN:
        raise GuardError("truncated")
    hdr = bytearray(HDR_LEN)
    read_exact(stream, memoryview(hdr))
    if hdr[0:4] != MAGIC or hdr[4] != FORMAT or hdr[5] != 0:
        raise GuardError("bad_header")
    mlen = (hdr[6] << 8) | hdr[7]
    if mlen > _MAX_MANIFEST:
        raise GuardError("too_large", "manifest")
    if mlen == 0:
        raise GuardError("bad_header")
    if HDR_LEN + mlen > length:
        raise GuardError("truncated")
    if not anchors:
        raise GuardError("no_anchors")
    gc.collect()
    buf = memoryview(bytearray(max(mlen, _MIN_BUF)))
    tok = buf[:mlen]
    read_exact(stream, tok)
    gc.collect()  # the crypto modules load (from source: compile) into a compact heap
    from guard import jws

    _, d1, d2, h = jws.check(tok, anchors, _MAX_MANIFEST)
    # payload decoded in place, right after the header: header and signature stay intact,
    # so guard.install can store the very token it verified
    plen = jws.b64u_into(tok[d1 + 1 : d2], tok[d1 + 1 :])
    k = jws.shape(tok[d1 + 1 : d1 + 1 + plen], _JSON_DEPTH)
    if k < 0:
        raise GuardError("bad_manifest", "json")
    return buf, [hexlify(h).decode(), mlen, d1, d2, plen, k]


def parse(buf, info):
    # Step 6 (first half): the payload's JSON, a single object with no member twice.
    try:
        m = json.loads(buf[info[2] + 1 : info[2] + 1 + info[4]])
    except ValueError:
        raise GuardError("bad_manifest", "json")
    if not isinstance(m, dict) or len(m) != info[5]:
        raise GuardError("bad_manifest", "json")  # not an object, or a member twice
    return m
