# guard.bundle: read and check an update bundle (docs/bundle-format.md).
#
# A bundle is: header (8 bytes) | manifest (JWS compact, ES256) | files, in manifest order.
# Checks, in order, all before the installer writes a single byte:
#  1. header: magic, format version, manifest length within _MAX_MANIFEST   (bad_header, too_large)
#  2. manifest signature against the board's trust anchors (RFC 7515 5.2, via guard.jws)
#  3. manifest fields and types, format version                              (bad_manifest)
#  4. target kind, sequence (anti-rollback), expiry, minimum agent version
#  5. file list: count, paths (relative, safe set, depth, reserved names), sizes, and the
#     stream length must equal header + manifest + the sum of the file sizes
# The payload itself is hashed while streaming (guard.install), per file, SHA-256.
#
# Reasons (GuardError args[0]): bad_header too_large truncated bad_length bad_manifest
# wrong_target rollback replay expired agent_too_old too_many_files bad_path reserved_path
# dup_path, plus whatever guard.jws raises (bad_sig, unknown_key, ...).
import gc
import json

from micropython import const

from guard import VERSION, GuardError

MAGIC = b"MPGB"
FORMAT = const(1)
HDR_LEN = const(8)  # magic(4) format(1) flags(1) manifest length(2, big-endian)
_MAX_MANIFEST = const(4096)
_MAX_FILES = const(32)
_MAX_REMOVE = const(32)
_MAX_PATH = const(64)
_MAX_DEPTH = const(4)
_MAX_FILE = const(1048576)
_MAX_TOTAL = const(2097152)
_MAX_NAME = const(32)  # app name and version strings
_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
# Top-level names an app may not use: they would shadow the agent on sys.path.
_RESERVED = ("guard", "guard.py", "guard.mpy", "_simhw.py", "_simhw.mpy")


def read_exact(stream, mv):
    # Fill memoryview mv from stream.readinto; a short stream is `truncated`.
    n = 0
    size = len(mv)
    while n < size:
        k = stream.readinto(mv[n:])
        if not k:
            raise GuardError("truncated")
        n += k


def read_manifest(stream, length, anchors):
    # Steps 1-3. Returns (manifest dict, SHA-256 hex of the manifest token).
    import hashlib
    from binascii import hexlify

    from guard import jws

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
    gc.collect()  # the manifest is the one large allocation: give it a clean heap
    token = bytearray(mlen)
    read_exact(stream, memoryview(token))
    digest = hexlify(hashlib.sha256(token).digest()).decode()
    if not anchors:
        raise GuardError("no_anchors")
    _, payload = jws.verify(token, anchors, _MAX_MANIFEST)
    del token
    gc.collect()
    try:
        m = json.loads(payload)
    except ValueError:
        raise GuardError("bad_manifest", "json")
    payload = None
    _check_fields(m)
    m["_mlen"] = mlen
    return m, digest


def _version(v):
    # "1.2.3" -> (1, 2, 3); anything else is a bad manifest.
    try:
        t = tuple(int(x) for x in v.split("."))
    except (ValueError, AttributeError):
        raise GuardError("bad_manifest", "version")
    if not t or len(t) > 4 or min(t) < 0:
        raise GuardError("bad_manifest", "version")
    return t


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 53


def _str(v):
    if not isinstance(v, str) or not 0 < len(v) <= _MAX_NAME:
        raise GuardError("bad_manifest", "string")


def _check_fields(m):
    if not isinstance(m, dict):
        raise GuardError("bad_manifest")
    if m.get("fmt") != FORMAT:
        raise GuardError("bad_manifest", "fmt")
    for k in ("seq", "iat"):
        if not _is_int(m.get(k)):
            raise GuardError("bad_manifest", k)
    for k in ("exp", "confirm"):
        if k in m and not _is_int(m[k]):
            raise GuardError("bad_manifest", k)
    if m["seq"] < 1:
        raise GuardError("bad_manifest", "seq")
    _str(m.get("app"))
    _str(m.get("ver"))
    _version(m.get("agent"))
    t = m.get("targets")
    if not isinstance(t, list) or not 0 < len(t) <= 8:
        raise GuardError("bad_manifest", "targets")
    for k in t:
        _str(k)
    files = m.get("files")
    rm = m.get("remove", [])
    if not isinstance(files, list) or not isinstance(rm, list):
        raise GuardError("bad_manifest", "files")
    if not files or len(files) > _MAX_FILES or len(rm) > _MAX_REMOVE:
        raise GuardError("too_many_files")
    total = 0
    seen = set()
    dirs = set()
    for f in files:
        if not isinstance(f, list) or len(f) != 3:
            raise GuardError("bad_manifest", "file")
        p, n, h = f
        check_path(p)
        if not _is_int(n) or not isinstance(h, str) or len(h) != 64:
            raise GuardError("bad_manifest", "file")
        try:
            int(h, 16)
        except ValueError:
            raise GuardError("bad_manifest", "sha256")
        if n > _MAX_FILE:
            raise GuardError("too_large", p)
        total += n
        if p in seen:
            raise GuardError("dup_path", p)
        seen.add(p)
        i = p.find("/")
        while i > 0:
            dirs.add(p[:i])
            i = p.find("/", i + 1)
    for p in rm:
        check_path(p)
        if p in seen:
            raise GuardError("dup_path", p)
    for p in seen:
        if p in dirs:
            raise GuardError("bad_path", p)  # both a file and a folder
    if total > _MAX_TOTAL:
        raise GuardError("too_large", "total")
    m["size"] = total


def check_path(p):
    # Relative, '/'-separated, safe characters, no empty/dot-leading part (so no '..',
    # no hidden files), bounded length and depth, never a name that shadows the agent.
    if not isinstance(p, str) or not 0 < len(p) <= _MAX_PATH:
        raise GuardError("bad_path")
    parts = p.split("/")
    if len(parts) > _MAX_DEPTH:
        raise GuardError("bad_path", p)
    for s in parts:
        if not s or s[0] == ".":
            raise GuardError("bad_path", p)
        for c in s:
            if c not in _SAFE:
                raise GuardError("bad_path", p)
    top = parts[1] if parts[0] == "lib" and len(parts) > 1 else parts[0]
    if top in _RESERVED:
        raise GuardError("reserved_path", p)


def check_context(m, length, kind, seq, now, floor):
    # Step 4-5 against the board: target, anti-rollback, expiry, agent version, length.
    if kind not in m["targets"]:
        raise GuardError("wrong_target", kind)
    if m["seq"] < seq:
        raise GuardError("rollback")
    if m["seq"] == seq:
        raise GuardError("replay")
    exp = m.get("exp")
    if exp is not None:
        # Board time may be unknown (no RTC, no network time): `now` is None then, and the
        # board still refuses anything that expired before a time it has proof of (floor:
        # the newest `iat` of a confirmed manifest). docs/decisions/0005-bundle.md.
        t = floor if now is None else max(now, floor)
        if exp <= t:
            raise GuardError("expired")
    if _version(VERSION) < _version(m["agent"]):
        raise GuardError("agent_too_old", m["agent"])
    if length != HDR_LEN + m["_mlen"] + m["size"]:
        raise GuardError("bad_length")
