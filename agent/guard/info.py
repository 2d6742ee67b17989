# guard.info: facts about the running interpreter, the board and the agent, cheap to gather
# and safe to share; the trust anchors' key ids; and SHA-256 of files (what `mpguard agent
# install` compares).
# Runs as .py on a board without the rest of the agent (with guard.rpc and guard.hw: the
# bootstrap of `mpguard agent install`), so it imports nothing else of guard.
# Reasons: bad_arg.
import gc
import sys

import guard
from guard import GuardError


def _machine():
    m = getattr(sys.implementation, "_machine", None)  # MicroPython 1.20+
    if m:
        return m
    try:
        import os

        return os.uname().machine
    except AttributeError:
        return ""


ANCHORS = "/mpguard/anchors.json"  # guard.install.ANCHORS (a host test keeps them equal)


def anchors():
    # The key ids (RFC 7638 thumbprints) of the trust anchors: {"file": "ok", "kids": [...]};
    # "absent" or "bad" (unreadable) with no kids. Public keys only: nothing secret.
    import json

    try:
        f = open(ANCHORS)
    except OSError:
        return {"file": "absent", "kids": []}
    try:
        keys = json.load(f)["keys"]
        kids = []
        for k in keys:
            if type(k) is str:
                kids.append(k)
        kids.sort()
    except (ValueError, KeyError, TypeError):
        return {"file": "bad", "kids": []}
    finally:
        f.close()
    return {"file": "ok", "kids": kids}


def facts():
    from binascii import hexlify

    from guard import hw

    try:
        # The board kind from guard.hw (the virtual board says it; a chip once its profile is
        # installed), or None: unknown, never guessed.
        kind = hw.board_kind()
    except GuardError:
        kind = None  # a damaged profile: reinstalling the agent replaces it
    try:
        # The chip's unique id (on an ESP32 its factory MAC) as hex: names the board in reports.
        uid = hexlify(hw.unique_id()).decode()
    except (AttributeError, OSError):
        uid = None
    try:
        import deflate  # noqa: F401  (compressed transfers: guard.xfer.Z)

        z = 1
    except ImportError:
        z = 0
    gc.collect()
    impl = sys.implementation
    mpy = getattr(impl, "_mpy", 0)
    return {
        "agent": guard.VERSION,
        "micropython": "%d.%d.%d" % impl.version[:3],
        "mpy": mpy,
        "mpy_version": mpy & 0xFF,
        "mpy_sub": (mpy >> 8) & 3,
        "platform": sys.platform,
        "machine": _machine(),
        "board_kind": kind,
        "uid": uid,
        "heap_free": gc.mem_free(),
        "heap_alloc": gc.mem_alloc(),
        "deflate": z,
        # guard.xfer reads ahead when the host asks (rpc.stream's a); not an agent compiled on
        # the board from .py, which needs that heap for the compiler (docs/decisions/0018)
        "ahead": int(not __file__.endswith(".py")),
    }


def _sha(p, buf):
    import hashlib
    from binascii import hexlify

    try:
        f = open(p, "rb")
    except OSError:
        return None
    h = hashlib.sha256()
    mv = memoryview(buf)
    try:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    finally:
        f.close()
    return hexlify(h.digest()).decode()


def hashes(paths, folder=None):
    # {path: SHA-256 hex, or None when absent} for each of `paths` and each file directly in
    # `folder` (absent folder: none).
    if type(paths) is not list or [p for p in paths if type(p) is not str]:
        raise GuardError("bad_arg", "paths")
    if folder is not None and type(folder) is not str:
        raise GuardError("bad_arg", "folder")
    import os

    found = list(paths)
    if folder:
        more = []
        try:
            for e in os.ilistdir(folder):
                if e[1] != 0x4000:
                    more.append(folder + "/" + e[0])
        except OSError:
            more = []
        found += more
    buf = bytearray(512)
    out = {}
    for p in found:
        out[p] = _sha(p, buf)
    return out
