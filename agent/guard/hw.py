# guard.hw: the only module of the agent that touches hardware (docs/architecture.md section 3).
# In the virtual board the sim provides `_simhw`; on a chip, `machine` and `network`.
# The watchdog (watchdog/feed) is armed by guard.boot on trial boots only.
# The eFuse map is the board profile (boards/KIND.json) installed as BOARD_FILE; without it
# eFuse facts are unknown (None), never guessed.
# Secrets (the identity key record) are kept by guard.store, the storage half of this seam,
# kept apart so that code importing guard.hw (the install path, compiled from source on some
# boards) does not pay for it.
# Reasons: bad_profile (the eFuse map or board file is malformed or points outside the
# chip's eFuse registers; nothing is read then).
import json

# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import GuardError

BOARD_FILE = "/lib/guard/board.json"
FACTS = ("secure_boot", "flash_encryption", "jtag_disable", "uart_download_disable",
         "key_protect", "secure_version", "key_purpose")
_WORD = const(0xFFFFFFFF)


try:  # the backend: the virtual board's _simhw, else the chip's machine
    _sim, _mach = __import__("_simhw"), None
except ImportError:
    _sim, _mach = None, __import__("machine")  # type: ignore[assignment]
_net = None  # network module (or a test's stand-in); imported when first needed
_prof = None  # the board profile, read once
_read = False
_wdt = None  # feed() of the watchdog armed in this session, None while none is


def use(sim=None, mach=None, net=None):
    # Swap the backend (tests, or a host harness): a `_simhw`-like module, or a
    # `machine`-like object (mem32[addr], unique_id, reset, reset_cause) plus `network`.
    global _sim, _mach, _net, _prof, _read, _wdt
    _sim, _mach, _net, _prof, _read, _wdt = sim, mach, net, None, False, None


def forget():
    # Drop the cached board profile (read again when next needed): frees its heap.
    global _prof, _read
    _prof, _read = None, False


def _hw():
    return _sim or _mach


def board():
    # The board profile as a dict, or None when it is not installed.
    global _prof, _read
    if _sim:
        return _sim.board()
    if not _read:
        try:
            with open(BOARD_FILE) as f:
                _prof = json.load(f)
        except OSError:
            _prof = None
        except ValueError:
            raise GuardError("bad_profile", BOARD_FILE)
        _read = True
    return _prof


def board_kind():
    p = board()
    return p.get("kind") if p else None


def chip():
    # The chip (ESP32, ESP32S3, ...) as the firmware names it, not a file: the esp32 port's
    # "<board> with <MCU>" (sys.implementation._machine), the virtual board's chip.
    if _sim:
        return _sim.board().get("chip", "").upper()
    import sys

    m = getattr(sys.implementation, "_machine", "")
    return m.rsplit(" with ", 1)[-1].upper().replace("-", "")


def mem32(addr):
    # One 32-bit eFuse register word, unsigned (machine.mem32 may return it signed).
    if _sim:
        return _sim.efuse_word(addr) & _WORD
    return _mach.mem32[addr] & _WORD  # type: ignore[union-attr]


def efuse(fact, prof=None):
    # {field: value} of one posture fact's eFuse fields, or None if the map lacks it.
    p = prof or board()
    if not p or type(p) is not dict:
        return None
    spec = (p.get("efuse") or {}).get(fact)
    if not spec:
        return None
    regs = p.get("efuse_regs")
    if type(spec) is not dict or type(regs) is not dict:
        raise GuardError("bad_profile", fact)
    base = regs.get("base")
    size = regs.get("size")
    if type(base) is not int or type(size) is not int:
        raise GuardError("bad_profile", fact)
    out = {}
    for f in spec.get("fields") or (spec,):  # never empty: a dict spec is its own field
        if type(f) is not dict:
            raise GuardError("bad_profile", fact)
        a, b, w = f.get("addr"), f.get("bit"), f.get("width")
        if (type(a) is not int or type(b) is not int or type(w) is not int or a < base
                or a + 4 > base + size or a & 3 or b < 0 or w < 1 or b + w > 32):
            raise GuardError("bad_profile", fact)
        out[f.get("field", str(a))] = (mem32(a) >> b) & ((1 << w) - 1)
    return out


def efuse_facts(prof=None):
    # Every posture fact the eFuses measure: {fact: {field: value} or None (unknown)}.
    p = prof or board()
    out = {}
    for fact in FACTS:
        out[fact] = efuse(fact, p)
    return out


def unique_id():
    return _hw().unique_id()


def reset():
    _hw().reset()


def watchdog(ms):
    # Arm the hardware watchdog: the board resets unless feed() comes within ms. On an ESP32
    # it cannot be stopped or disarmed (a soft reset neither), only fed; the sim's twin
    # (_simhw.wdt) behaves the same. False where the board has none.
    global _wdt
    if _sim:
        w = getattr(_sim, "wdt", None)
        if w is None:
            return False
        w(ms)
        _wdt = lambda: w(ms)
    else:
        from machine import WDT

        _wdt = WDT(timeout=ms).feed
    return True


def feed():
    # Feed the watchdog armed in this session; nothing when none is.
    if _wdt:
        _wdt()


def reset_cause():
    # machine's numbering: PWRON 1, HARD 2, WDT 3, DEEPSLEEP 4, SOFT 5.
    return _hw().reset_cause()


def net_facts():
    # {ap_active, ap_open, sta_connected}; None where the board has no Wi-Fi.
    global _net
    if _sim:
        return _sim.net()
    if _net is None:
        try:
            import network

            _net = network
        except ImportError:
            return None
    ap = _net.WLAN(_net.AP_IF)
    sta = _net.WLAN(_net.STA_IF)
    on = bool(ap.active())
    return {
        "ap_active": on,
        "ap_open": on and ap.config("security") == 0,
        "sta_connected": bool(sta.isconnected()),
    }


def now():
    # Seconds since 1970 while the board's clock is set (year 2024 or later), else None (an
    # ESP32's time counts from 2000, the unix port's from 1970).
    import time

    t = time.time() + (946684800 if time.gmtime(0)[0] == 2000 else 0)
    return int(t) if t >= 1704067200 else None


def uptime():
    # Seconds since boot, or None where the board cannot tell. On a chip the RTC counts from
    # power-on until the clock is set (NTP, RTC.datetime): only then is time.time() an uptime.
    if _sim:
        return _sim.uptime()
    import time

    return None if now() else int(time.time())


def boot_count():
    # Boots of the chip (power-on, reset, watchdog; not soft resets), or None: an ESP32 keeps
    # no such counter, and counting in flash would cost a write per boot.
    return _sim.boot_count() if _sim else None


def partition_encrypted():
    # The running app partition's `encrypted` flag (esp32.Partition.info()[5]), or None.
    if _sim:
        return _sim.partition_encrypted()
    try:
        import esp32

        return bool(esp32.Partition(esp32.Partition.RUNNING).info()[5])  # type: ignore[arg-type]
    except (ImportError, AttributeError, IndexError, OSError):
        return None


def repl_uart():
    # Whether the interpreter's REPL listens on the UART, or None where it cannot be told:
    # stock ESP32 firmware always has it; MicroPython offers no run-time query.
    return _sim.repl_uart() if _sim else None


def flash_stats():
    # Block write/erase/read counts: the virtual board only; None on a chip.
    return _sim.flash_stats() if _sim else None
