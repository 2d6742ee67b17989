# guard.install: install a signed bundle into a free app slot (the install path; the boot path
# is guard.boot, the state file guard.state). docs/decisions/0006-install.md.
#
# install(stream, length), in order:
#  0. one buffer (the manifest's length, 1..4 KiB) is allocated as soon as that length is
#     known, before anything else: the manifest is read and decoded in it, then every file
#     streams through it. Nothing else grows with the bundle or with the installed app (no
#     lists of files: the manifest's own list is bounded).
#  1. guard.bundle checks the header, the manifest signature, its fields, target, sequence
#     (above the highest the board has accepted), jump, issue time, expiry, agent version,
#     paths and length: a refusal here changes nothing at all.
#  2. the new slot is the first of a, b, c that is neither the confirmed slot nor the trial
#     slot; free flash (statvfs, plus slots nothing refers to) must hold its files.
#  3. slots nothing refers to are removed; the verified manifest is stored (as the token it
#     was, /mpguard/m-<measurement[:16]>.jws); the files stream into the new slot, each
#     SHA-256'd and size-checked. A release is exactly what it lists: nothing is carried over
#     from the running app. Any mismatch or error removes the new slot and its manifest; the
#     confirmed app, a pending trial and the state file stay as they were.
#  4. one atomic state write makes the new slot the trial slot and raises the highest accepted
#     sequence (`hi`); only then is a trial it replaces removed (ETSI EN 303 645 5.3-8: never
#     cancel what runs before its replacement is complete). The next boot runs the new slot on
#     trial (guard.boot); only confirm() advances the confirmed sequence.
#
# Any failure is a refusal with a reason, never an exception: MemoryError is no_memory, an
# OSError io_error, anything unexpected `internal` (KeyboardInterrupt, the host breaking off,
# still propagates after the slot is cleaned up).
# Reasons: no_anchors no_space no_memory bad_hash io_error internal, plus guard.state's and
# guard.bundle's.
import os
import time

from micropython import const

from guard import GuardError

ANCHORS = "/mpguard/anchors.json"
MANIFESTS = "/mpguard/m-"  # + measurement[:16] + ".jws"
SLOTS = "abc"
_B64 = const(192)  # payload bytes re-encoded at a time when the manifest is stored
_BLOCK_SLACK = const(2)  # blocks kept free for the state file and littlefs metadata
_DIR = const(0x4000)
_DU_DEPTH = const(8)  # folders deeper than this (made by an app) are not counted as free


def load_anchors():
    # /mpguard/anchors.json: {"v": 1, "keys": {kid: base64url(65-byte public key)}}. Read
    # without guard.jws, so the crypto modules load only for the signature check (and are
    # unloaded after it). Each key is checked for shape here and as a point by guard.p256.
    import json
    from binascii import a2b_base64

    try:
        with open(ANCHORS) as f:
            d = json.load(f)
        out = {}
        for k, v in d["keys"].items():
            b = a2b_base64(v.replace("-", "+").replace("_", "/") + "=" * (-len(v) % 4))
            if len(b) != 65 or b[0] != 4:
                raise ValueError
            out[k] = b
        return out
    except Exception:  # missing, unreadable, malformed (also too deep for the heap)
        raise GuardError("no_anchors")


def _now():
    # Seconds since 1970, or None while the board's clock is not set (year < 2024).
    t = time.time()
    if time.gmtime(0)[0] == 2000:
        t += 946684800
    return int(t) if t >= 1704067200 else None


def _stat(p):
    try:
        return os.stat(p)
    except OSError:
        return None


def _blocks(n, bs):
    return (n + bs - 1) // bs + 1


def _du(d, bs, depth=0):
    # Blocks the files under d hold; a lower bound (folders deeper than _DU_DEPTH, which only
    # an app can have made, are not counted). Iterators only, no lists.
    s = _stat(d)
    if s is None:
        return 0
    if not s[0] & _DIR:
        return _blocks(s[6], bs)
    n = 2  # the folder's own metadata pair
    if depth < _DU_DEPTH:
        for e in os.ilistdir(d):
            n += _du(d + "/" + e[0], bs, depth + 1)
    return n


def _first(d):
    for e in os.ilistdir(d):
        return e
    return None


def _rmtree(d):
    # Remove d (a folder or a file) and all under it, at any depth an app may have made,
    # without recursion or lists: go down to a folder with no sub-folder, empty it, repeat.
    while True:
        s = _stat(d)
        if s is None:
            return
        if not s[0] & _DIR:
            os.remove(d)
            return
        p = d
        while True:
            e = _first(p)
            if e is None:
                os.rmdir(p)
                break
            q = p + "/" + e[0]
            if e[1] == _DIR:
                p = q
            else:
                os.remove(q)


def _mkdirs(root, p):
    i = p.find("/")
    while i > 0:
        if _stat(root + "/" + p[:i]) is None:
            os.mkdir(root + "/" + p[:i])
        i = p.find("/", i + 1)


def _feed():
    # Feed a watchdog guard.boot armed in this session (guard.hw is loaded then): an install
    # takes long enough for it to fire otherwise.
    import sys

    hw = sys.modules.get("guard.hw")
    if hw:
        hw.feed()


def _copy(buf, dst, n, stream):
    # Stream n bytes from `stream` into file dst through buf; return the SHA-256 hex.
    import hashlib
    from binascii import hexlify

    h = hashlib.sha256()
    with open(dst, "wb") as f:
        while n:
            mv = buf[: min(n, len(buf))]
            k = 0
            while k < len(mv):  # readinto may return less than asked
                r = stream.readinto(mv[k:])
                if not r:
                    raise GuardError("truncated")
                k += r
            h.update(mv)
            f.write(mv)
            n -= len(mv)
            _feed()
    return hexlify(h.digest()).decode()


def _store_manifest(buf, info, path):
    # Write the token guard.bundle verified, as it was: header "." base64url(payload) "."
    # signature (buf holds the payload decoded in place), and check it against the digest.
    import hashlib
    from binascii import b2a_base64, hexlify

    _, _, d1, d2, plen, _ = info
    h = hashlib.sha256()
    with open(path, "wb") as f:
        part = buf[: d1 + 1]
        h.update(part)
        f.write(part)
        i = d1 + 1
        end = i + plen
        while i < end:
            c = b2a_base64(buf[i : min(i + _B64, end)], newline=False)
            c = c.rstrip(b"=").replace(b"+", b"-").replace(b"/", b"_")
            h.update(c)
            f.write(c)
            i += _B64
        f.write(buf[d2 : info[1]])
    if hexlify(h.digest()).decode() != info[0]:
        raise GuardError("internal", "manifest")


def manifest_path(digest):
    return MANIFESTS + digest[:16] + ".jws"


def _tidy(st, state):
    # Remove slots and stored manifests the state refers to no more (best effort: what a
    # power cut leaves here is removed by the next install).
    t = st["trial"]
    keep = (st["active"], t["slot"] if t else None)
    for s in SLOTS:
        if s not in keep:
            _rmtree(state.APP + "/" + s)
    keep = (st["digest"], t["digest"] if t else None)
    for e in os.ilistdir("/mpguard"):
        n = e[0]
        if n.startswith("m-") and n.endswith(".jws"):
            if not any(d and n == manifest_path(d)[9:] for d in keep):
                os.remove("/mpguard/" + n)


def _unload(keep):
    # Drop the agent's modules an install step loaded and no longer needs (not those loaded
    # before the install began): on a board their bytecode sits on the heap, and they load
    # again from flash when next needed. The crypto modules go right after the signature
    # check, so they and the parsed manifest are never on the heap together.
    import sys

    import guard

    for name in [n for n in sys.modules if n.startswith("guard.") and n not in keep]:
        if name not in ("guard.install", "guard.state"):
            del sys.modules[name]
            try:
                delattr(guard, name[6:])
            except AttributeError:
                pass


def _install(stream, length):
    import sys

    keep = [n for n in sys.modules if n.startswith("guard.")]
    anchors = load_anchors()
    from guard import bundle

    buf, info = bundle.read(stream, length, anchors)  # also checks the signature
    anchors = None
    _unload(keep)
    from guard import hw

    kind = hw.board_kind()
    del hw
    _unload(keep)
    from guard import state

    st = state.load()
    m = bundle.parse(buf, info)
    want = bundle.HDR_LEN + info[1]
    del bundle
    _unload(keep)
    from guard import manifest

    want += manifest.check(m)  # header + manifest + files
    manifest.check_context(m, want, length, kind, st, _now())
    del manifest
    _unload(keep)
    t = st["trial"]
    slot = [s for s in SLOTS if s != st["active"] and not (t and s == t["slot"])][0]
    app = state.APP
    dst = app + "/" + slot
    mpath = manifest_path(info[0])
    fs = os.statvfs("/")
    bs = fs[0]
    free = fs[4]
    for s in SLOTS:  # slots nothing refers to are freed before writing
        if s != st["active"] and not (t and s == t["slot"]):
            free += _du(app + "/" + s, bs)
    need = _blocks(info[1], bs) + 2 + _BLOCK_SLACK
    for f in m["files"]:
        need += _blocks(f[1], bs)
    if need > free:
        raise GuardError("no_space")
    # Genuine, new and meant for this board: from here on the free slot is ours.
    try:
        _tidy(st, state)
        if _stat(app) is None:
            os.mkdir(app)
        elif not _stat(app)[0] & _DIR:
            os.remove(app)  # not the agent's: an app wrote a file there
            os.mkdir(app)
        if os.statvfs("/")[4] < need:
            raise GuardError("no_space")
        _store_manifest(buf, info, mpath)
        os.mkdir(dst)
        for p, n, h in m["files"]:
            _mkdirs(dst, p)
            if _copy(buf, dst + "/" + p, n, stream) != h:
                raise GuardError("bad_hash", p)
    except BaseException as e:  # also KeyboardInterrupt: the host broke off the transfer
        m = buf = None
        try:
            _rmtree(dst)
            _rmtree(mpath)
        except Exception:
            pass  # garbage nothing refers to: the next install removes it
        if isinstance(e, MemoryError):
            raise GuardError("no_memory")
        if isinstance(e, OSError):
            raise GuardError("io_error")
        raise
    st["trial"] = {
        "slot": slot, "seq": m["seq"], "app": m["app"], "ver": m["ver"], "digest": info[0],
        "iat": m["iat"], "confirm": m.get("confirm", 0), "boots": 0,
    }
    st["hi"] = m["seq"]
    st["last"] = {"result": "installed", "seq": m["seq"], "app": m["app"], "ver": m["ver"]}
    state.save(st)
    try:
        _tidy(st, state)  # the trial this one replaced, if any
    except Exception:
        pass
    return {"status": "installed", "reason": None, "slot": slot, "seq": m["seq"]}


def install(stream, length):
    # Entry point of `mpguard deploy`: stream has readinto(buf); length is the bundle's size.
    # Always answers {"status": "installed"|"refused", "reason", ...}; the refusal is kept in
    # RAM only (state.refused): refused bundles never write flash.
    try:
        r = _install(stream, length)
    except GuardError as e:
        r = {"status": "refused", "reason": e.args[0]}
        if len(e.args) > 1:
            r["detail"] = e.args[1]
    except MemoryError:
        r = {"status": "refused", "reason": "no_memory"}
    except OSError:
        r = {"status": "refused", "reason": "io_error"}
    except Exception as e:
        r = {"status": "refused", "reason": "internal", "detail": type(e).__name__}
    from guard import state

    state.refused = r
    return r
