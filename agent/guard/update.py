# guard.update: install a signed bundle into the inactive A/B slot, trial boot, confirm,
# roll back (docs/decisions/0006-install.md).
#
# install(stream, length), in order:
#  1. guard.bundle checks the header and the manifest signature, fields, target, sequence,
#     expiry, agent version, paths and length: a refusal here changes nothing at all.
#  2. free flash (statvfs + what the inactive slot frees) must hold the new slot.
#  3. a pending trial on the inactive slot is cancelled (state write), the slot is emptied,
#     files are streamed into it in fixed chunks, each hashed (SHA-256) and size-checked;
#     files of the running app not replaced or removed are copied over. Any mismatch or
#     I/O error empties the slot again.
#  4. one atomic state write (temp file + os.rename) makes the slot the trial slot.
# boot() counts trial boots, rolls back after max_boots, runs the app's main.py; the
# sequence number (anti-rollback) advances only in confirm().
#
# Reasons: bad_state no_anchors no_space bad_hash io_error bad_arg, plus guard.bundle's.
import hashlib
import json
import os
import sys
import time
from binascii import hexlify

from micropython import const

from guard import GuardError

STATE = "/mpguard/state.json"
_TMP = "/mpguard/state.tmp"
ANCHORS = "/mpguard/anchors.json"
APP = "/app"
_CHUNK = const(1024)
_MAX_BOOTS = const(3)  # failed trial boots before rollback (state "max_boots" overrides)
_BLOCK_SLACK = const(2)  # blocks kept free for the state file and littlefs metadata

_last = None  # last refusal, RAM only: refused bundles never write flash
_running = None  # slot this boot runs
_trial = False
_t0 = time.ticks_ms()


def _default():
    return {
        "v": 1, "active": None, "seq": 0, "app": None, "ver": None, "digest": None,
        "floor": 0, "max_boots": _MAX_BOOTS, "trial": None, "last": None,
    }


def load_state():
    try:
        f = open(STATE)
    except OSError:
        return _default()
    try:
        st = json.load(f)
    except ValueError:
        raise GuardError("bad_state")
    finally:
        f.close()
    if not isinstance(st, dict) or st.get("v") != 1:
        raise GuardError("bad_state")
    return st


def _save(st):
    # Atomic: a power cut leaves either the old or the new state.json.
    try:
        os.mkdir("/mpguard")
    except OSError:
        pass
    with open(_TMP, "w") as f:
        json.dump(st, f)
    os.rename(_TMP, STATE)


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

    st = load_state()
    m, digest = bundle.read_manifest(stream, length, load_anchors())
    bundle.check_context(m, length, _kind(), st["seq"], _now(), st["floor"])
    slot = "b" if st["active"] == "a" else "a"
    dst = APP + "/" + slot
    new = {f[0] for f in m["files"]}
    rm = m.get("remove", [])
    carry = []
    if st["active"]:
        for p, n in _walk(APP + "/" + st["active"], "", []):
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
        _save(st)
    try:
        _rmtree(dst)
        try:
            os.mkdir(APP)
        except OSError:
            pass
        os.mkdir(dst)
        for p, n, h in m["files"]:
            _mkdirs(dst, p)
            if _copy(buf, None, dst + "/" + p, n, stream) != h:
                raise GuardError("bad_hash", p)
        src = APP + "/" + str(st["active"])
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
    _save(st)
    return {"status": "installed", "reason": None, "slot": slot, "seq": m["seq"]}


def install(stream, length):
    # Entry point of `mpguard deploy`: stream has readinto(buf); length is the bundle's size.
    global _last
    try:
        r = _install(stream, length)
    except GuardError as e:
        r = {"status": "refused", "reason": e.args[0]}
        if len(e.args) > 1:
            r["detail"] = e.args[1]
    except OSError:
        r = {"status": "refused", "reason": "io_error"}
    _last = r
    return r


def status():
    # For posture and `mpguard deploy`: the confirmed app, a pending trial, the last result.
    try:
        st = load_state()
    except GuardError:
        return {"state": "bad"}
    return {
        "active": st["active"], "seq": st["seq"], "app": st["app"], "ver": st["ver"],
        "digest": st["digest"], "trial": st["trial"], "last": st["last"],
        "refused": _last, "running": _running,
    }


def configure(max_boots):
    # Failed trial boots before rollback (1..10); kept in the state file.
    if not isinstance(max_boots, int) or not 1 <= max_boots <= 10:
        raise GuardError("bad_arg", "max_boots")
    st = load_state()
    st["max_boots"] = max_boots
    _save(st)


def select():
    # Boot bookkeeping: which slot to run and whether it is on trial. One state write per
    # trial boot; after max_boots failed trial boots, roll back to the confirmed slot.
    st = load_state()
    t = st["trial"]
    if not t:
        return st["active"], False
    t["boots"] += 1
    if t["boots"] > st["max_boots"]:
        st["trial"] = None
        st["last"] = {"result": "rolled_back", "seq": t["seq"], "app": t["app"],
                      "ver": t["ver"], "boots": t["boots"] - 1}
        _save(st)
        # deploy watches the console for these "guard: ..." lines
        print("guard: rolled back", t["app"], t["ver"], "seq", t["seq"])
        return st["active"], False
    print("guard: trial", t["app"], t["ver"], "seq", t["seq"], "boot", t["boots"])
    _save(st)
    return t["slot"], True


def confirm():
    # The running trial app is healthy: make its slot the confirmed one and advance the
    # sequence number (ETSI EN 303 645 5.3 anti-rollback). False if nothing to confirm.
    st = load_state()
    t = st["trial"]
    if not t or not t["boots"] or (_running and _running != t["slot"]):
        return False
    st["active"] = t["slot"]
    for k in ("seq", "app", "ver", "digest"):
        st[k] = t[k]
    st["floor"] = max(st["floor"], t["iat"])
    st["trial"] = None
    st["last"] = {"result": "confirmed", "seq": t["seq"], "app": t["app"], "ver": t["ver"]}
    _save(st)
    print("guard: confirmed", t["app"], t["ver"], "seq", t["seq"])
    return True


def poll():
    # Automatic confirm once a trial app has run for its manifest's `confirm` seconds.
    if not _trial:
        return False
    st = load_state()
    t = st["trial"]
    if not t or not t["confirm"]:
        return False
    if time.ticks_diff(time.ticks_ms(), _t0) < t["confirm"] * 1000:
        return False
    return confirm()


def _arm(secs):
    try:
        from machine import Timer

        import micropython

        Timer(0).init(mode=Timer.ONE_SHOT, period=secs * 1000 + 10,
                      callback=lambda t: micropython.schedule(lambda _: poll(), None))
    except (ImportError, AttributeError, ValueError, OSError):
        pass  # no hardware timer (unix port): the app calls guard.update.poll()


def boot():
    # Called by /main.py: choose the slot, run its main.py; a crash on trial resets.
    global _running, _trial, _t0
    try:
        slot, trial = select()
    except GuardError as e:
        print("guard: state", e.args[0])
        return None
    if not slot:
        return None
    d = APP + "/" + slot
    _running, _trial, _t0 = slot, trial, time.ticks_ms()
    sys.path.insert(1, d + "/lib")
    sys.path.insert(1, d)
    if trial:
        st = load_state()
        if st["trial"] and st["trial"]["confirm"]:
            _arm(st["trial"]["confirm"])
    try:
        with open(d + "/main.py") as f:
            src = f.read()
        os.chdir(d)
        exec(src, {"__name__": "__main__"})
    except KeyboardInterrupt:
        raise
    except Exception as e:
        sys.print_exception(e)
        if trial:
            from guard import hw

            hw.reset()
    return slot
