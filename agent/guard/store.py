# guard.store: where the agent keeps its secret records (the identity key record), the storage
# half of the hardware seam of guard.hw (docs/decisions/0012-identity.md).
# On the sim and on boards without NVS encryption: files under /mpguard/. On a real ESP32 what
# protects them is flash encryption (with the filesystem partition flagged `encrypted`) and no
# REPL; posture reports the eFuse facts. An NVS-encryption backend (esp32.NVS) would go here.
import os

KIND = "file"  # what keeps the records
_DIR = "/mpguard"


def read(name):
    # The record `name` (bytes), or None when there is none.
    try:
        with open(_DIR + "/" + name, "rb") as f:
            return f.read()
    except OSError:
        return None


def exists(name):
    try:
        os.stat(_DIR + "/" + name)
        return True
    except OSError:
        return False


def write(name, parts):
    # Atomic: temp file + rename, so a power cut leaves the old record or the new one.
    # `parts`: the record as a tuple of byte strings (written in turn: never joined in RAM).
    try:
        os.mkdir(_DIR)
    except OSError:
        pass
    p = _DIR + "/" + name
    with open(p + ".tmp", "wb") as f:
        for b in parts:
            f.write(b)
    os.rename(p + ".tmp", p)


def remove(name):
    try:
        os.remove(_DIR + "/" + name)
    except OSError:
        pass


def secrets(r):
    # The public facts of guard.rotate's record "sec" (parsed): per secret its epoch, the host's
    # time of its command and the staged epoch; never a value. Here because both guard.rotate
    # and guard.posture (which must not load guard.rotate: heap) report them.
    out = {}
    s = r["s"]
    for n in s:
        out[n] = {"epoch": s[n][0], "at": s[n][1], "staged": None}
    s = r["p"]
    for n in s:
        out.setdefault(n, {"epoch": 0, "at": None})["staged"] = s[n][0]
    return out
