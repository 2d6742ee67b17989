# _simhw: the virtual board's hardware (docs/decisions/0001-interfaces.md). guard/hw.py uses
# it instead of machine/esp32/network when it imports. The firmware (_simfw) fills _cfg and
# _fw at boot.
_cfg = None
_fw = None


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
