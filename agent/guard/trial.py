# guard.trial: what a trial boot adds to guard.boot (a normal boot never loads it): a 1 s
# timer tick and the hardware watchdog (docs/decisions/0015-update-hardening.md).
#
# arm(after, wdt): a periodic Timer(0) tick, then (only if the tick runs, so that a confirmed
# trial is fed) the watchdog through guard.hw (machine.WDT on a chip, the sim's _simhw.wdt)
# for `after` + `wdt` seconds: the manifest's healthy time plus the state's margin. Nothing
# feeds it before the trial is confirmed, so a hang resets the board and counts as a failed
# trial boot. Every tick: before the confirm, guard.boot.poll() once the healthy time is up;
# after it, feed the watchdog (an ESP32's cannot be stopped) until the next reset. Anything
# failing here (no machine.Timer on the unix port, no watchdog, a value the chip refuses)
# leaves a plain trial: the app confirms by itself, or a reset counts the boot.
import time

import micropython
# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import boot

_TICK_MS = const(1000)
_MAX_MS = const(0x7FFFFFFF)  # a timer's or watchdog's period in ms (ESP32: a signed 32-bit)
_armed = False  # a watchdog is armed in this session: the tick feeds it once confirmed
_timer = None


def feed():
    try:
        from guard import hw

        hw.feed()
    except Exception:
        pass


def _tick(_):
    # Scheduled, in the main thread: once confirmed, feed (or, with no watchdog to feed, stop
    # ticking); before, confirm when it is time.
    if boot._confirmed:
        if _armed:
            feed()
        elif _timer:
            _timer.deinit()
    elif boot._after and time.ticks_diff(time.ticks_ms(), boot._t0) >= boot._after * 1000:
        try:
            boot.poll()
        except Exception:
            pass


def _irq(_):
    try:
        micropython.schedule(_tick, None)
    except RuntimeError:  # the queue is full: the next tick comes in a second
        pass


def arm(after, wdt):
    global _armed, _timer
    if not after and not wdt:
        return False
    try:
        from machine import Timer

        _timer = Timer(0)
        _timer.init(mode=Timer.PERIODIC, period=_TICK_MS, callback=_irq)
    except Exception:
        return False
    if wdt:
        from guard import hw  # a failure here (the chip refuses the time) is boot's to catch

        _armed = hw.watchdog(min((after + wdt) * 1000, _MAX_MS))
    if not _armed and not after:
        _timer.deinit()  # nothing to feed, nothing to confirm: no tick
    return _armed
