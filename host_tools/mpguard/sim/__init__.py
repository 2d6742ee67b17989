"""The virtual ESP32 board (`mpguard sim`, docs/architecture.md section 3). See docs/sim.md.

    lifecycle.py   start, list, stop, rm, prune (the library behind `mpguard sim`)
    control.py     counters (stats, wait_for), power cuts and reflashing of a running sim
    peripherals.py what the app did to its pins and buses (io), inputs a test sets (set_*)
    folder.py      a sim's folder and its files; image.py its flash image
    supervisor.py  the process behind each running sim: terminal.py (the port), child.py
                   (one boot of the firmware), events.py (what the firmware reports),
                   fwcache.py (the firmware compiled to .mpy, once, into a cache)
    firmware/      the board's firmware, run by the MicroPython unix port
"""

from ..errors import SimError
from .control import arm_power_cut, cut_plan, disarm_power_cut, reflash, stats, wait_for
from .lifecycle import SimInfo, get, list_sims, prune, rm, start, stop, stop_all
from .peripherals import IOLog, clear_io, io, set_adc, set_i2c, set_input, set_pin, set_rtc, set_spi

__all__ = [
    "IOLog",
    "SimError",
    "SimInfo",
    "arm_power_cut",
    "clear_io",
    "cut_plan",
    "disarm_power_cut",
    "get",
    "io",
    "list_sims",
    "prune",
    "reflash",
    "rm",
    "set_adc",
    "set_i2c",
    "set_input",
    "set_pin",
    "set_rtc",
    "set_spi",
    "start",
    "stats",
    "stop",
    "stop_all",
    "wait_for",
]
