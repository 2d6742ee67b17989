# _simhw: the virtual board's hardware (docs/decisions/0001-interfaces.md). guard/hw.py uses
# it instead of machine/esp32/network when it imports. The firmware (_simfw) fills _cfg and
# _fw at boot.
import time

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
