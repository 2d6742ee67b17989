# guard.state: the update state file, shared by the boot path (guard.boot) and the install
# path (guard.install); docs/decisions/0006-install.md has its fields.
#
# /mpguard/state.json is written atomically (temp file + os.rename): a power cut leaves the old
# or the new file, never a torn one. A damaged file is GuardError("bad_state"), never a guess.
# Version 1 (no highest-accepted sequence, no watchdog time) is read as version 2: `hi` is the
# confirmed sequence, or a pending trial's if higher; it is written as version 2 next time.
# Reasons: bad_state bad_arg.
import json
import os

# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import GuardError

STATE = "/mpguard/state.json"
_TMP = "/mpguard/state.tmp"
APP = "/app"
_MAX_BOOTS = const(3)  # failed trial boots before rollback (state "max_boots" overrides)
_WDT = const(120)  # seconds a trial app has (after its `confirm` time) before the watchdog
_MAX_WDT = const(3600)

refused = None  # last refusal of an install, RAM only: refused bundles never write flash
running = None  # slot this boot runs (set by guard.boot)


def _int(v):
    return type(v) is int and v >= 0


def _slot(v):
    return v is None or v in ("a", "b", "c")


def load():
    try:
        f = open(STATE)
    except OSError:  # none yet: the defaults
        return {
            "v": 2, "active": None, "seq": 0, "hi": 0, "app": None, "ver": None, "digest": None,
            "floor": 0, "max_boots": _MAX_BOOTS, "wdt": _WDT, "trial": None, "last": None,
        }
    try:
        st = json.load(f)
    except Exception:  # not JSON, or more than the heap holds
        raise GuardError("bad_state")
    finally:
        f.close()
    if not isinstance(st, dict):
        raise GuardError("bad_state")
    if st.get("v") == 1:  # before the highest-accepted sequence and the trial watchdog
        t = st.get("trial")
        st["v"] = 2
        hi = st.get("seq")
        if isinstance(t, dict) and _int(t.get("seq")) and _int(hi) and t["seq"] > hi:
            hi = t["seq"]
        st["hi"] = hi  # not an integer: refused below
        st["wdt"] = _WDT
    if st.get("v") != 2:
        raise GuardError("bad_state")
    t = st.get("trial")
    for k in ("seq", "hi", "floor", "max_boots", "wdt"):
        if not _int(st.get(k)):
            raise GuardError("bad_state")
    if not _slot(st.get("active")) or not (t is None or isinstance(t, dict)):
        raise GuardError("bad_state")
    if t and (not t.get("slot") or not _slot(t["slot"]) or not _int(t.get("boots"))
              or not _int(t.get("seq")) or not _int(t.get("iat"))
              or not _int(t.get("confirm"))):
        raise GuardError("bad_state")
    return st


def save(st):
    # Atomic: a power cut leaves either the old or the new state.json.
    try:
        os.mkdir("/mpguard")
    except OSError:
        pass
    with open(_TMP, "w") as f:
        json.dump(st, f)
    os.rename(_TMP, STATE)


def status():
    # For posture and `mpguard deploy`: the confirmed app, a pending trial, the last result.
    try:
        st = load()
    except GuardError:
        return {"state": "bad"}
    return {
        "active": st["active"], "seq": st["seq"], "hi": st["hi"], "app": st["app"],
        "ver": st["ver"], "digest": st["digest"], "trial": st["trial"], "last": st["last"],
        "refused": refused, "running": running,
    }


def configure(max_boots=None, wdt=None):
    # Failed trial boots before rollback (1..10); seconds a trial app has to confirm after
    # its `confirm` time before the watchdog resets the board (0: no watchdog, else
    # 10.._MAX_WDT). Kept in the state file.
    if max_boots is not None and (type(max_boots) is not int or not 1 <= max_boots <= 10):
        raise GuardError("bad_arg", "max_boots")
    if wdt is not None and (type(wdt) is not int or not (wdt == 0 or 10 <= wdt <= _MAX_WDT)):
        raise GuardError("bad_arg", "wdt")
    st = load()
    if max_boots is not None:
        st["max_boots"] = max_boots
    if wdt is not None:
        st["wdt"] = wdt
    save(st)
