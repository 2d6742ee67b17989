# _simrtc: machine.RTC and machine.WDT of the virtual ESP32 (docs/sim.md, "Peripherals"),
# loaded on first use. The RTC runs from what the app or the test set (else 2000-01-01 at
# power on, as an ESP32's RTC); the app's setting is recorded. The WDT is a real watchdog:
# the supervisor holds its deadline (each feed sends the timeout on the side channel), and
# resets the board with reset_cause() WDT_RESET when it passes, whatever the interpreter is
# doing. As on an ESP32 it cannot be stopped, and a soft reset does not stop it.
import time
import _simhw
import _simio

_base = None  # (seconds since 2000 at _at, ticks_ms at that moment, source)


def _secs(dt):
    y, mo, d = dt[0], dt[1], dt[2]
    h, mi, s = (dt[4], dt[5], dt[6]) if len(dt) > 4 else (0, 0, 0)
    return time.mktime((y, mo, d, h, mi, s, 0, 0))


class RTC:
    def __init__(self, id=0):
        pass

    def init(self, dt):
        self.datetime(dt)

    def datetime(self, dt=None):
        global _base
        if dt is not None:
            _base = (_secs(dt), time.ticks_ms(), None)
            _simio.out("rtc", 0, *dt[:7])
            return None
        test = _simio.get("rtc", 0)
        if test is not None and (_base is None or (_base[2] is not None and _base[2] != test["v"])):
            _base = (_secs(test["dt"]), time.ticks_ms(), test["v"])
        if _base is None:
            _base = (_secs((2000, 1, 1, 0, 0, 0, 0, 0)), _simhw._cfg["t0"], None)
        ms = time.ticks_diff(time.ticks_ms(), _base[1])
        t = time.localtime(_base[0] + ms // 1000)
        return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], (ms % 1000) * 1000)

    def memory(self, data=None):
        return b"" if data is None else None


class WDT:
    def __init__(self, id=0, timeout=5000):
        if not 1 <= timeout <= 0x7FFFFFFF:
            raise ValueError("WDT timeout too short")
        self._ms = timeout
        _simhw.wdt(timeout)

    def feed(self):
        _simhw.wdt(self._ms)
