# guard.boot: the boot path, all that /main.py loads on a normal boot (the install path is
# guard.install, loaded only when the host streams a bundle).
#
# run(): choose the slot (select), count a trial boot or roll back after max_boots failed
# ones, run the slot's main.py; an exception on trial resets the board. The app (or, after
# the manifest's `confirm` seconds, poll() from a one-shot timer) calls confirm(), which
# makes the trial slot the confirmed one and only then advances the sequence number
# (ETSI EN 303 645 5.3 anti-rollback). docs/decisions/0006-install.md.
import os
import sys
import time

from guard import GuardError, state

_trial = False
_t0 = time.ticks_ms()


def select():
    # Boot bookkeeping: which slot to run and whether it is on trial. One state write per
    # trial boot; after max_boots failed trial boots, roll back to the confirmed slot.
    st = state.load()
    t = st["trial"]
    if not t:
        return st["active"], False
    t["boots"] += 1
    if t["boots"] > st["max_boots"]:
        st["trial"] = None
        st["last"] = {"result": "rolled_back", "seq": t["seq"], "app": t["app"],
                      "ver": t["ver"], "boots": t["boots"] - 1}
        state.save(st)
        # deploy watches the console for these "guard: ..." lines
        print("guard: rolled back", t["app"], t["ver"], "seq", t["seq"])
        return st["active"], False
    print("guard: trial", t["app"], t["ver"], "seq", t["seq"], "boot", t["boots"])
    state.save(st)
    return t["slot"], True


def confirm():
    # The running trial app is healthy: make its slot the confirmed one and advance the
    # sequence number (ETSI EN 303 645 5.3 anti-rollback). False if nothing to confirm.
    st = state.load()
    t = st["trial"]
    if not t or not t["boots"] or (state.running and state.running != t["slot"]):
        return False
    st["active"] = t["slot"]
    for k in ("seq", "app", "ver", "digest"):
        st[k] = t[k]
    st["floor"] = max(st["floor"], t["iat"])
    st["trial"] = None
    st["last"] = {"result": "confirmed", "seq": t["seq"], "app": t["app"], "ver": t["ver"]}
    state.save(st)
    print("guard: confirmed", t["app"], t["ver"], "seq", t["seq"])
    return True


def poll():
    # Automatic confirm once a trial app has run for its manifest's `confirm` seconds.
    if not _trial:
        return False
    t = state.load()["trial"]
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
        pass  # no hardware timer (unix port): the app calls guard.boot.poll()


def run():
    # Called by /main.py: choose the slot, run its main.py; a crash on trial resets.
    global _trial, _t0
    try:
        slot, trial = select()
    except GuardError as e:
        print("guard: state", e.args[0])
        return None
    if not slot:
        return None
    d = state.APP + "/" + slot
    state.running, _trial, _t0 = slot, trial, time.ticks_ms()
    sys.path.insert(1, d + "/lib")
    sys.path.insert(1, d)
    if trial:
        t = state.load()["trial"]
        if t and t["confirm"]:
            _arm(t["confirm"])
    try:
        with open(d + "/main.py") as f:
            src = f.read()
        os.chdir(d)
        exec(compile(src, d + "/main.py", "exec"), {"__name__": "__main__"})
    except KeyboardInterrupt:
        raise
    except Exception as e:
        sys.print_exception(e)
        if trial:
            from guard import hw

            hw.reset()
    return slot
