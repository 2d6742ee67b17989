# guard.install: install a signed bundle into the inactive A/B slot (the install path; the
# boot path is guard.boot, the state file guard.state). docs/decisions/0006-install.md.
#
# install(stream, length), in order:
#  1. guard.bundle checks the header and the manifest signature, fields, target, sequence,
#     expiry, agent version, paths and length: a refusal here changes nothing at all.
#  2. free flash (statvfs + what the inactive slot frees) must hold the new slot.
#  3. a pending trial on the inactive slot is cancelled (state write), the slot is emptied,
#     files are streamed into it in fixed chunks, each hashed (SHA-256) and size-checked;
#     files of the running app not replaced or removed are copied over. Any mismatch or
#     I/O error empties the slot again.
#  4. one atomic state write (temp file + os.rename) makes the slot the trial slot; the
#     next boot runs it on trial (guard.boot), and only confirm() advances the sequence.
#
# Reasons: no_anchors no_space bad_hash io_error, plus guard.state's, guard.bundle's and
# guard.pin's (anchors_pin: the anchors do not match the digest pinned in eFuse).
import hashlib
import json
import os
import time
from binascii import hexlify

from micropython import const

from guard import GuardError, state

ANCHORS = "/mpguard/anchors.json"
_CHUNK = const(1024)
_BLOCK_SLACK = const(2)  # blocks kept free for the state file and littlefs metadata


def load_anchors():
    # /mpguard/anchors.json: {"v": 1, "keys": {kid: base64url(65-byte public key)}}
    from guard import jws

    try:
        with open(ANCHORS) as f:
            d = json.load(f)
        return {k: jws.b64u_dec(v) for k, v in d["keys"].items()}
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        raise GuardError("no_anchors")


def _kind():
    from guard import hw

    return hw.board_kind()


def _now():
    # Seconds since 1970, or None while the board's clock is not set (year < 2024).
    t = time.time()
    if time.gmtime(0)[0] == 2000:
        t += 946684800
    return int(t) if t >= 1704067200 else None


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _walk(d, rel, out):
    # Files under d as (relative path, size), appended to out.
    for e in os.ilistdir(d):
        p = rel + e[0]
        if e[1] == 0x4000:
            _walk(d + "/" + e[0], p + "/", out)
        else:
            out.append((p, os.stat(d + "/" + e[0])[6]))
    return out


def _rmtree(d):
    if not _exists(d):
        return
    for e in os.ilistdir(d):
        p = d + "/" + e[0]
        if e[1] == 0x4000:
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(d)


def _mkdirs(root, p):
    i = p.find("/")
    while i > 0:
        try:
            os.mkdir(root + "/" + p[:i])
        except OSError:
            pass
        i = p.find("/", i + 1)


def _blocks(n, bs):
    return (n + bs - 1) // bs + 1


def _copy(buf, src, dst, n, stream):
    # Stream n bytes from `stream` (or file src) into dst through buf; return the SHA-256 hex.
    h = hashlib.sha256()
    f = open(dst, "wb")
    s = open(src, "rb") if src else stream
    try:
        while n:
            mv = buf[: min(n, _CHUNK)]
            k = 0
            while k < len(mv):  # readinto may return less than asked
                r = s.readinto(mv[k:])
                if not r:
                    raise GuardError("truncated" if stream else "io_error")
                k += r
            h.update(mv)
            f.write(mv)
            n -= len(mv)
    finally:
        f.close()
        if src:
            s.close()
    return hexlify(h.digest()).decode()


def _install(stream, length):
    from guard import bundle

    st = state.load()
    m, digest = bundle.read_manifest(stream, length, load_anchors())
    bundle.check_context(m, length, _kind(), st["seq"], _now(), st["floor"])
    from guard import pin  # hook: anchors that do not match the eFuse pin refuse (guard.pin)

    pin.check(ANCHORS)
    slot = "b" if st["active"] == "a" else "a"
    app = state.APP
    dst = app + "/" + slot
    new = {f[0] for f in m["files"]}
    rm = m.get("remove", [])
    carry = []
    if st["active"]:
        for p, n in _walk(app + "/" + st["active"], "", []):
            if p not in new and p not in rm:
                carry.append((p, n))
    fs = os.statvfs("/")
    bs = fs[0]
    free = fs[0] * fs[4]
    if _exists(dst):  # the inactive slot's old files are freed before writing
        free += sum(_blocks(n, bs) * bs for _, n in _walk(dst, "", []))
    need = sum(_blocks(f[1], bs) for f in m["files"]) + sum(_blocks(n, bs) for _, n in carry)
    if (need + _BLOCK_SLACK) * bs > free:
        raise GuardError("no_space")
    # Genuine, new and meant for this board: from here on the inactive slot is ours.
    buf = memoryview(bytearray(_CHUNK))  # the one chunk buffer for every file
    if st["trial"]:
        st["trial"] = None
        state.save(st)
    try:
        _rmtree(dst)
        try:
            os.mkdir(app)
        except OSError:
            pass
        os.mkdir(dst)
        for p, n, h in m["files"]:
            _mkdirs(dst, p)
            if _copy(buf, None, dst + "/" + p, n, stream) != h:
                raise GuardError("bad_hash", p)
        src = app + "/" + str(st["active"])
        for p, n in carry:
            _mkdirs(dst, p)
            _copy(buf, src + "/" + p, dst + "/" + p, n, None)
    except BaseException as e:  # also KeyboardInterrupt: the host broke off the transfer
        _rmtree(dst)
        if isinstance(e, OSError):
            raise GuardError("io_error")
        raise
    st["trial"] = {
        "slot": slot, "seq": m["seq"], "app": m["app"], "ver": m["ver"], "digest": digest,
        "iat": m["iat"], "confirm": m.get("confirm", 0), "boots": 0,
    }
    st["last"] = {"result": "installed", "seq": m["seq"], "app": m["app"], "ver": m["ver"]}
    state.save(st)
    return {"status": "installed", "reason": None, "slot": slot, "seq": m["seq"]}


def install(stream, length):
    # Entry point of `mpguard deploy`: stream has readinto(buf); length is the bundle's size.
    try:
        r = _install(stream, length)
    except GuardError as e:
        r = {"status": "refused", "reason": e.args[0]}
        if len(e.args) > 1:
            r["detail"] = e.args[1]
    except OSError:
        r = {"status": "refused", "reason": "io_error"}
    state.refused = r
    return r
