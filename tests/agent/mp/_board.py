# Test support on MicroPython (not agent code): a board for the agent's update tests.
# Compiled to _board.mpy beside the agent; a test's code starts with `from _board import *`
# after setup(IN) has mounted the flash (agentboard.PRELUDE). Everything the agent imports
# lazily is imported here, before "/" is replaced by the board's flash. The imports are
# re-exported to the test's code (hence the noqa).
# ruff: noqa: F401
import gc
import hashlib
import os
import sys
from binascii import hexlify

import guard
import guard.bundle
import guard.ec
import guard.hw as hw
import guard.jws
import guard.mac
import guard.manifest
import guard.p256
import guard.pin
import guard.slots
import guard.trial
import guard.xfer
import guard.boot as B
import guard.install as I
import guard.state as S
import micropython
from _flash import Cut, Flash
from _flash import mount as _mount


class Reset(Exception):
    pass


class Hw:
    # The board's hardware seam (guard.hw backend): kind from the test, reset ends a run,
    # the watchdog's arming recorded (ms of each arming, then each feed).
    resets = 0
    wdt_ms = []
    feeds = 0

    def wdt(self, ms):
        if Hw.wdt_ms and Hw.wdt_ms[-1] == ms:
            Hw.feeds += 1
        Hw.wdt_ms.append(ms)

    def board(self):
        return {"kind": IN.get("kind", "sim")}

    def reset(self):
        Hw.resets += 1
        raise Reset()

    def flash_stats(self):
        return {"writes": FL.writes}


class Timer:
    # machine.Timer as guard.boot uses it (an ESP32 hardware timer): every init recorded;
    # a test calls tick() where the timer would fire.
    ONE_SHOT = 0
    PERIODIC = 1
    inits = []

    def __init__(self, id=-1):
        self.id = id

    def init(self, mode=PERIODIC, period=-1, callback=None):
        Timer.inits.append([self.id, mode, period])
        Timer.cb = callback

    def deinit(self):
        Timer.inits.append([self.id, "deinit"])
        Timer.cb = lambda _: None


def tick(n=1):
    # The trial's timer fires n times; the scheduled callbacks run before this returns.
    for _ in range(n):
        Timer.cb(None)
        for _ in range(3):
            pass


class _Machine:
    Timer = Timer


def with_timer():
    # A board with machine.Timer (the unix port has none): guard.boot imports this one.
    import sys

    sys.modules["machine"] = _Machine()


FL = None
STREAMS = []
IN = {}


def mount():
    _mount(FL)


def setup(data):
    global IN, FL, STREAMS
    IN = data
    hw.use(sim=Hw())
    FL = Flash(IN["flash"], IN["blocks"])
    STREAMS = [open(p, "rb") for p in IN.get("bundles", [])]  # before / becomes the flash
    _mount(FL, IN.get("mkfs"))


def provision(anchors):
    try:
        os.mkdir("/mpguard")
    except OSError:
        pass
    with open("/mpguard/anchors.json", "w") as f:
        f.write(anchors)


_SB = bytearray(512)


def snap(prefix=None):
    # {path: SHA-256 hex or "dir"} of every folder and file under `prefix`, or, without a
    # prefix, one SHA-256 over the whole tree: the board's files byte for byte.
    out = {} if prefix else hashlib.sha256()

    def w(d):
        for e in os.ilistdir(d):
            p = d.rstrip("/") + "/" + e[0]
            if e[1] == 0x4000:
                if prefix is None:
                    out.update(b"D" + p.encode() + b"\0")
                elif p.startswith(prefix):
                    out[p] = "dir"
                w(p)
            elif prefix is None or p.startswith(prefix):
                h = out if prefix is None else hashlib.sha256()
                if prefix is None:
                    h.update(b"F" + p.encode() + b"\0")
                with open(p, "rb") as f:
                    while True:
                        n = f.readinto(_SB)
                        if not n:
                            break
                        h.update(memoryview(_SB)[:n])
                if prefix is not None:
                    out[p] = hexlify(h.digest()).decode()

    w("/")
    return out if prefix else hexlify(out.digest()).decode()


# guard.pin unloads itself after each check, and the host's folder is hidden once the flash
# is mounted at /: the harness puts it back before every install.
_PIN = guard.pin
_INSTALL = I.install


def _install(*a):
    sys.modules["guard.pin"] = guard.pin = _PIN
    return _INSTALL(*a)


I.install = _install


def install(i):
    s = STREAMS[i]
    s.seek(0, 2)
    n = s.tell()
    s.seek(0)
    return I.install(s, n)


def app_files(slot):
    # {path: sha256} of one slot, or None if the slot is absent.
    d = "/app/" + str(slot)
    try:
        os.stat(d)
    except OSError:
        return None
    s = snap(d + "/")
    return {k[len(d) + 1:]: v for k, v in s.items() if v != "dir"}


def boot():
    # One boot: the agent's boot path runs the app's main.py; a reset ends the boot.
    try:
        return B.run(), False
    except Reset:
        return None, True
