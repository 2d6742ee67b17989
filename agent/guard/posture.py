# guard.posture: the board's security facts, measured here, judged by the host's policy
# (mpguard.attest; docs/attest.md): the board never says "compliant".
# Each fact is {"s": "ok", "v": value}, {"s": "unsupported"} (this board cannot measure it)
# or {"s": "unreadable", "why": reason} (it should, the read failed): never a guess.
#   eFuse fields as read through guard.hw at the board profile's addresses (secure_boot
#     flash_encryption jtag_disable uart_download_disable key_protect secure_version
#     key_purpose) and partition_encrypted: the host decodes them with the same profile
#   webrepl (configured, started in boot.py, running, password class: never the password)
#   repl_uart, wifi_ap, credentials (guard.rotate: per secret its epoch, the host's time of
#     its command, staged epoch; epoch 1 is the factory value; never a value)
#   app, agent: a live SHA-256 re-hash, streamed through one buffer, against the confirmed
#     manifest (/mpguard/m-<digest[:16]>.jws, trusted only if its SHA-256 is the digest the
#     installer recorded after verifying its signature) / /lib/guard/digests.json
#   micropython, update, anchors, anchors_pin (guard.pin), reset_cause, heap, flash
# Reasons: none of its own; a failed read becomes an "unreadable" fact.
import gc
import json
import os
import sys
from binascii import a2b_base64, hexlify
from hashlib import sha256

# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import GuardError
from guard import hw

_MAX_LIST = const(4)  # paths listed per integrity fact: the token stays small
_AGENT_DIR = const("/lib/guard")
_DIGESTS = const("digests.json")
_MANIFEST = const("/mpguard/m-")
_ANCHORS = const("/mpguard/anchors.json")
# Passwords published in docs and firmware (ESP8266's AP, WebREPL examples): never unique.
_DEFAULT_PW = const(("micropythoN", "micropython", "python", "1234", "12345678", "password", "admin"))


def ok(v):
    return {"s": "unsupported"} if v is None else {"s": "ok", "v": v}


def _fact(fn, *a):
    try:
        return ok(fn(*a))
    except GuardError as e:
        why = e.args[0]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        why = "error"
    return {"s": "unreadable", "why": why}


def _read(path):
    try:
        with open(path) as f:
            return f.read(2048)
    except OSError:
        return None


def _webrepl():
    # password: none | default (published) | short (< 8) | set | unreadable
    src = _read("/webrepl_cfg.py")
    pw = "none"
    if src is not None:
        i = src.find("PASS")
        while 0 <= i < len(src) and src[i] not in "'\"":
            i += 1
        e = src.find(src[i], i + 1) if 0 <= i < len(src) else -1
        s = src[i + 1 : e] if e > i else None
        src = None
        pw = "unreadable" if s is None else "default" if s in _DEFAULT_PW else "short" if len(s) < 8 else "set"
        s = None
    m = sys.modules.get("webrepl")
    return {"configured": pw != "none", "in_boot": "webrepl" in (_read("/boot.py") or ""),
            "running": bool(m and getattr(m, "listen_s", None)), "password": pw}


def _walk(root, rel, out):
    for e in os.ilistdir(root + "/" + rel):
        if e[1] == 0x4000:
            _walk(root, rel + e[0] + "/", out)
        else:
            out.append(rel + e[0])
    return out


def measure(root, ref, skip=None):
    # Re-hash every file under root: digest (SHA-256 over the sorted "path\0sha256hex\n"
    # lines), files, result (success | fail | not-run: no reference | absent), bad (missing
    # or changed), extra (not in the reference).
    try:
        paths = sorted(_walk(root, "", []))
    except OSError:
        return {"result": "absent"}
    buf = bytearray(512)
    mv = memoryview(buf)
    agg = sha256()
    n = 0
    bad = []  # type: list
    extra = []  # type: list
    for p in paths:  # each file compared as it is hashed: no table of digests on the heap
        if p == skip:
            continue
        h = sha256()
        with open(root + "/" + p, "rb") as f:
            while True:
                k = f.readinto(buf)
                if not k:
                    break
                h.update(mv[:k])
        d = hexlify(h.digest()).decode()
        n += 1
        agg.update((p + "\0" + d + "\n").encode())
        if ref is not None:
            w = ref.get(p)
            if w is None:
                extra.append(p)
            elif w != d:
                bad.append(p)
    r = {"digest": hexlify(agg.digest()).decode(), "files": n, "result": "not-run"}
    if ref is not None:
        miss = []
        for p in ref:
            if p in bad or p not in paths or p == skip:
                miss.append(p)
        r["result"] = "fail" if miss else "success"
        r["bad"] = miss[:_MAX_LIST]
        r["extra"] = extra[:_MAX_LIST]
    return r


def _app(st):
    ref = None
    d = st["digest"]
    try:
        p = _MANIFEST + d[:16] + ".jws"
        n = os.stat(p)[6]
        with open(p, "rb") as f:
            tok = f.read(n) if n <= 4096 else None  # guard.bundle's manifest limit
    except (OSError, TypeError):
        tok = None
    # the measurement is the SHA-256 of the manifest's signing input (header.payload, RFC 7515
    # 5.1; docs/decisions/0015-update-hardening.md), the stored file the token it was
    if tok and hexlify(sha256(tok[: tok.rfind(b".")]).digest()).decode() == d:
        s = tok.split(b".")[1].replace(b"-", b"+").replace(b"_", b"/")
        ref = {}
        for f in json.loads(a2b_base64(s + b"=" * (-len(s) % 4)))["files"]:
            ref[f[0]] = f[2]
    tok = s = None
    return measure("/app/" + st["active"], ref)


def _agent():
    try:
        with open(_AGENT_DIR + "/" + _DIGESTS) as f:
            ref = json.load(f)["files"]
    except OSError:
        ref = None
    return measure(_AGENT_DIR, ref, _DIGESTS)


def _call(mod, fn, *a):
    # guard.<mod>.<fn>(*a), the module unloaded again after if this loaded it (the token's
    # heap is tight)
    had = "guard." + mod in sys.modules
    m = __import__("guard." + mod, None, None, (fn,))
    try:
        return getattr(m, fn)(*a)
    finally:
        if not had:
            from guard.attest import unload

            unload(mod)


def _update():
    # guard.state's status (the update state file)
    st = _call("state", "status")
    if st.get("state") == "bad":
        raise GuardError("bad_state")
    return st


def _creds():
    # Names, epochs, times (the host's iat) and staged epochs of guard.rotate's record, read
    # here without guard.rotate (its code costs more heap than a token has to spare); never a
    # value. A staged value past its time shows until guard.rotate's next call reverts it.
    from guard import store

    r = store.read("sec")  # guard.rotate._REC
    return store.secrets(json.loads(r)) if r else {}


def _anchors():
    # the kids of {"v": 1, "keys": {kid: key}} (docs/architecture.md), keys left unparsed
    try:
        with open(_ANCHORS) as f:
            return sorted(json.load(f)["keys"])
    except OSError:
        return []


def _pin():
    # guard.pin's state of the anchors file: unpinned | match | mismatch (None: unsupported)
    try:
        with open(_ANCHORS, "rb") as f:
            d = f.read()
    except OSError:
        d = b""
    return _call("pin", "state", d)


def facts(keep):
    # Yields (name, fact) one at a time: the token is serialised as they come, so the heap
    # never holds every fact as objects at once. The update status goes into keep["st"].
    try:
        ef = hw.efuse_facts()
    except GuardError as e:
        ef = dict.fromkeys(hw.FACTS, e.args[0])
    for k in hw.FACTS:
        v = ef[k]
        yield k, {"s": "unreadable", "why": v} if isinstance(v, str) else ok(v)
    ef = None
    yield "partition_encrypted", _fact(hw.partition_encrypted)
    yield "webrepl", _fact(_webrepl)
    yield "repl_uart", _fact(hw.repl_uart)
    yield "wifi_ap", _fact(hw.net_facts)
    yield "credentials", _fact(_creds)
    u = _fact(_update)
    st = keep["st"] = u.get("v")
    if st:
        u = ok({"seq": st["seq"], "app": st["app"], "ver": st["ver"], "trial": bool(st["trial"]),
                "last": (st["last"] or {}).get("result")})
    yield "update", u
    yield "anchors", _fact(_anchors)
    yield "anchors_pin", _fact(_pin)
    yield "app", u if not st else _fact(_app, st) if st["active"] else ok({"result": "absent"})
    yield "agent", _fact(_agent)
    mpy = getattr(sys.implementation, "_mpy", 0)
    yield "micropython", ok({"version": "%d.%d.%d" % sys.implementation.version[:3],
                             "mpy": "%d.%d" % (mpy & 0xFF, (mpy >> 8) & 3)})
    yield "reset_cause", _fact(hw.reset_cause)
    gc.collect()
    yield "heap", ok({"free": gc.mem_free(), "alloc": gc.mem_alloc()})
    yield "flash", _fact(_flash)


def _flash():
    f = os.statvfs("/")
    return {"free": f[0] * f[3], "total": f[0] * f[2]}
