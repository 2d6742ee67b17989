# `machine` on the virtual board: the unix port's machine module plus what an ESP32 has
# and the unix port lacks (reset, soft_reset, unique_id, reset_cause and its constants).
from machine import *  # noqa: F403  (the built-in module, imported before this one replaces it)
import _simhw

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


class Timer:
    # machine.Timer as on an ESP32 (virtual timers, mode/period/callback), on a thread that
    # only sleeps and hands the callback to micropython.schedule: the callback runs in the
    # main thread between bytecodes, as a soft timer callback does on a board. The unix port
    # has no GIL, so the thread allocates nothing.
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, **kw):
        self._gen = 0
        if kw:
            self.init(**kw)

    def init(self, mode=1, period=-1, callback=None, freq=None):
        import _thread

        if freq:
            period = 1000 // freq
        self._gen += 1
        self._cb = callback
        _thread.start_new_thread(self._run, (self._gen, mode, period))

    def _run(self, gen, mode, period):
        import micropython
        import time

        while True:
            time.sleep_ms(period)
            if gen != self._gen:
                return
            if self._cb:
                micropython.schedule(self._cb, self)
            if mode == 0:
                return

    def deinit(self):
        self._gen += 1
