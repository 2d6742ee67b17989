# guard.state: the update state file, shared by the boot path (guard.boot) and the install
# path (guard.install); docs/decisions/0006-install.md has its fields.
#
# /mpguard/state.json is written atomically (temp file + os.rename): a power cut leaves the old
# or the new file, never a torn one. A damaged file is GuardError("bad_state"), never a guess.
# Reasons: bad_state bad_arg.
import json
import os

from micropython import const

from guard import GuardError

STATE = "/mpguard/state.json"
_TMP = "/mpguard/state.tmp"
APP = "/app"
_MAX_BOOTS = const(3)  # failed trial boots before rollback (state "max_boots" overrides)

refused = None  # last refusal of an install, RAM only: refused bundles never write flash
running = None  # slot this boot runs (set by guard.boot)


def _default():
    return {
        "v": 1, "active": None, "seq": 0, "app": None, "ver": None, "digest": None,
        "floor": 0, "max_boots": _MAX_BOOTS, "trial": None, "last": None,
    }


def load():
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
        "active": st["active"], "seq": st["seq"], "app": st["app"], "ver": st["ver"],
        "digest": st["digest"], "trial": st["trial"], "last": st["last"],
        "refused": refused, "running": running,
    }


def configure(max_boots):
    # Failed trial boots before rollback (1..10); kept in the state file.
    if not isinstance(max_boots, int) or not 1 <= max_boots <= 10:
        raise GuardError("bad_arg", "max_boots")
    st = load()
    st["max_boots"] = max_boots
    save(st)
