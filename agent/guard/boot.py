# guard.boot: the boot path, all that /main.py loads on a normal boot (the install path is
# guard.install, loaded only when the host streams a bundle).
#
# run(): choose the slot (select), count a trial boot or roll back after max_boots failed
# ones, run the slot's main.py; an exception on trial resets the board. A trial boot also
# loads guard.trial, which arms the hardware watchdog and a 1 s timer tick: a trial app that
# hangs, or returns without confirming, resets the board, and that boot counts as failed.
# The app (or, after the manifest's `confirm` seconds, poll() from the tick) calls confirm(),
# which makes the trial slot the confirmed one and only then advances the sequence number
# (ETSI EN 303 645 5.3 anti-rollback); from then on the tick feeds the watchdog.
# docs/decisions/0006-install.md, docs/threat-model.md.
import os
import sys
import time

from guard import GuardError, state

_trial = False
_confirmed = False  # the trial running in this session has been confirmed
_after = 0  # its manifest's `confirm` seconds (0: the app confirms)
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
    global _confirmed
    st = state.load()
    t = st["trial"]
    if not t or not t["boots"] or (state.running and state.running != t["slot"]):
        return False
    st["active"] = t["slot"]
    for k in ("seq", "app", "ver", "digest"):
        st[k] = t[k]
    st["floor"] = max(st["floor"], t["iat"])
    st["hi"] = max(st["hi"], t["seq"])
    st["trial"] = None
    st["last"] = {"result": "confirmed", "seq": t["seq"], "app": t["app"], "ver": t["ver"]}
    state.save(st)
    _confirmed = True
    tr = sys.modules.get("guard.trial")
    if tr:  # from now on the trial's tick feeds the watchdog it armed
        tr.feed()
    print("guard: confirmed", t["app"], t["ver"], "seq", t["seq"])
    return True


def poll():
    # Automatic confirm once a trial app has run for its manifest's `confirm` seconds.
    if not _trial or _confirmed:
        return False
    t = state.load()["trial"]
    if not t or not t["confirm"]:
        return False
    if time.ticks_diff(time.ticks_ms(), _t0) < t["confirm"] * 1000:
        return False
    return confirm()


def run():
    # Called by /main.py: choose the slot, run its main.py; a crash on trial resets.
    global _trial, _t0, _after
    try:
        os.stat("/mpguard/sec")
        from guard import rotate  # staged secrets: count this boot, revert at the last one

        rotate.boot()
    except (OSError, GuardError):
        pass
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
        st = state.load()
        if st["trial"]:
            _after = st["trial"]["confirm"]
            try:
                from guard import trial as tr

                tr.arm(_after, st["wdt"])
            except Exception:
                pass  # a trial without its tick and watchdog: a reset still counts the boot
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
