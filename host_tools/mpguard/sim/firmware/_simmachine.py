# `machine` on the virtual board: the unix port's machine module plus what an ESP32 has
# and the unix port lacks (reset, soft_reset, unique_id, reset_cause and its constants,
# Timer, and the peripherals of _LAZY, loaded when first used).
from machine import *  # noqa: F403  (the built-in module, imported before this one replaces it)
import _simhw
import _thread
import micropython as _mp
import time as _time

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

reset = _simhw.reset
soft_reset = _simhw.soft_reset
unique_id = _simhw.unique_id
reset_cause = _simhw.reset_cause


def freq(hz=None):
    return 160000000


# Peripherals, loaded at the first use of their name (an app that imports none pays nothing).
_LAZY = {"Pin": "_simpin", "PWM": "_simpin", "ADC": "_simpin", "I2C": "_simbus",
         "SoftI2C": "_simbus", "SPI": "_simbus", "SoftSPI": "_simbus", "RTC": "_simrtc",
         "WDT": "_simrtc"}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(name)
    return getattr(_simhw.load(mod), name)


_timers = []  # live timers: the main thread keeps them (and their callbacks) reachable


def _tick(t, gen, mode, period, sleep=_time.sleep_ms, schedule=_mp.schedule):
    # The timer's thread. The unix port runs threads without a GIL, so this must not
    # allocate or import: it only sleeps, compares and hands the callback to
    # micropython.schedule, which runs it in the main thread between bytecodes.
    while True:
        sleep(period)
        if gen != t._gen:
            return
        schedule(t._cb, t)
        if mode == 0:
            return


class Timer:
    # machine.Timer as on an ESP32 (virtual timers: mode, period, callback); callbacks run
    # in the main thread between bytecodes, as soft timer callbacks do on a board.
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, **kw):
        self._gen = 0
        self._cb = None
        if kw:
            self.init(**kw)

    def init(self, mode=1, period=-1, callback=None, freq=None):
        if freq:
            period = 1000 // freq
        self._gen += 1
        self._cb = callback
        if self not in _timers:
            _timers.append(self)
        if callback is not None:
            _thread.start_new_thread(_tick, (self, self._gen, mode, period))

    def deinit(self):
        self._gen += 1
        if self in _timers:
            _timers.remove(self)
