# _simhw: the virtual board's hardware (docs/decisions/0001-interfaces.md). guard/hw.py uses
# it instead of machine/esp32/network when it imports. The firmware (_simfw) fills _cfg and
# _fw at boot.
import time
import os as _os  # the unix port's own os (boot imports this before `os` is the board's)

_cfg = None
_fw = None
_t0 = time.ticks_ms()  # imported when the firmware starts: this boot's start


def efuse_word(addr):
    return _cfg["efuse"].get(addr, 0)


def unique_id():
    return _cfg["uid"]


def reset():
    _fw.hard_reset()


def soft_reset():
    _fw.soft_reset()


def reset_cause():
    return _cfg["cause"]


def board():
    return _cfg["board"]


def net():
    return _cfg["net"]


def flash_stats():
    return _fw.flash_stats()


def _kbd(c):
    _fw.kbd(c)


def uptime():
    return time.ticks_diff(time.ticks_ms(), _t0) // 1000


def boot_count():
    return _cfg.get("boots")


def repl_uart():
    return True  # the pty is the board's UART, and the REPL is on it


def partition_encrypted():
    # As on a chip: the bootloader runs with flash encryption iff the counter's parity is odd.
    spec = (_cfg["board"].get("efuse") or {}).get("flash_encryption")
    if not spec:
        return None
    n = 0
    for f in spec.get("fields") or (spec,):
        if f.get("on") == "odd":
            n += bin((efuse_word(f["addr"]) >> f["bit"]) & ((1 << f["width"]) - 1)).count("1")
    return bool(n & 1)


def wdt(ms):
    # The watchdog's deadline is ms from now (the supervisor keeps it).
    _fw.wdt(ms)


def load(name):
    # A firmware module that boot did not load (peripherals): imported from the firmware's
    # folder, mounted for the import only at a path nobody uses and taken off sys.path again,
    # so nothing of it shows on the board's filesystem. On a board these are C in flash and
    # cost no heap; here their bytecode lives on the heap, so the firmware keeps a reserve
    # (_reserve, 1 KiB chunks) and gives back what the module holds: the app's free heap is
    # about the same after the import as before it, as on a board.
    import sys

    m = sys.modules.get(name)
    if m is not None:
        return m
    import gc

    os = _os
    gc.collect()
    free0 = gc.mem_free()
    n = len(_reserve)
    _reserve.clear()  # the compiler's working space too
    gc.collect()
    mp = "/_simfw_"
    os.mount(os.VfsPosix(_cfg["fwdir"]), mp, readonly=True)
    sys.path.insert(0, mp)
    try:
        return __import__(name)
    finally:
        sys.path.remove(mp)
        os.umount(mp)
        gc.collect()
        keep = (gc.mem_free() - free0) // 1024
        try:
            for _ in range(min(n, keep)):
                _reserve.append(bytearray(1024))
        except MemoryError:
            pass


_reserve = []  # filled at boot (_cfg["reserve"] KiB)
