# _simfw: the virtual ESP32's firmware, run by the MicroPython unix port under the sim's
# supervisor (host_tools/mpguard/sim/supervisor.py). It does what ports/esp32/main.c and
# shared/runtime/pyexec.c do on a board, in five modules, all imported before the flash is
# mounted at "/" (which hides the host's files):
#   _simfw     boot, the console, running code, resets (this file)
#   _simflash  the flash: littlefs2 block device over the image, wear counts, power cuts
#   _simraw    the raw REPL and raw-paste, byte for byte as mpremote expects
#   _simrepl   the friendly REPL
#   _simev     the side channel's events, one table shared with the supervisor
# (_simhw, _simmachine and _simmp are the hardware that code on the board imports.)
# Boot: 1. mount the image at "/" (a blank or unmountable image is formatted, as the esp32
# port's inisetup does: littlefs, or FAT for a sim started with --fs fat, a board whose
# filesystem an older firmware made), so paths are the board's paths; 2. run /boot.py, then /main.py if
# the REPL is in friendly mode; 3. friendly or raw REPL; 4. a soft reset (Ctrl-D,
# machine.soft_reset, SystemExit) or machine.reset() ends this process, and the supervisor
# starts a fresh one (a fresh heap, as on a board).
import sys
import os
import io
import json
import time
import micropython
from micropython import const

import _simev
import _simflash
import _simhw

_EXIT_SOFT = const(64)  # + 1 when the REPL was in raw mode
_EXIT_EOF = const(70)

_out = sys.stdout.buffer
_in = sys.stdin.buffer
_b1 = bytearray(1)
_ctlf = None
_g = None
_pend = b""  # bytes read ahead at boot (see _boot_intr)
_ME = 'File "' + __file__.rsplit("/", 1)[0] + "/"  # traceback lines of the firmware itself


def event(e, *a):
    _ctlf.write(_simev.line(e, *a))


def w(s):
    _out.write(s)


def getc():
    global _pend
    if _pend:
        c = _pend[0]
        _pend = _pend[1:]
        return c
    if not _in.readinto(_b1):
        sys.exit(_EXIT_EOF)  # the supervisor is gone: power off
    return _b1[0]


class _Cooked(io.IOBase):
    # The board's stdout turns "\n" into "\r\n" for text (mp_hal_stdout_tx_strn_cooked).
    def write(self, s):
        _out.write(bytes(s).replace(b"\n", b"\r\n"))
        return len(s)


_cooked = _Cooked()
_print = print


def _cprint(*a, sep=" ", end="\n", file=None):
    _print(*a, sep=sep, end=end, file=file or _cooked)


_files = []  # the last files opened, closed at soft reset (gc_sweep_all finalises them on a board)
_bopen = open


def _open(*a, **k):
    f = _bopen(*a, **k)
    # Only the VFS's own file objects have a finaliser on a board. A file of a VFS written in
    # Python (mpremote mount's RemoteFile, an io.IOBase subclass) has none: closing it at a
    # soft reset would talk mpremote's mount protocol to a host that no longer listens (the
    # next session's soft reset then waited 30 s for its 0x18: the mount "hang").
    if not isinstance(f, io.IOBase):
        _files.append(f)
        if len(_files) > 8:
            _files.pop(0)
    return f


def _repl_print(v):
    if v is not None:
        _cprint(repr(v))


# --- running code -----------------------------------------------------------------------


def print_exc(e):
    s = io.StringIO()
    sys.print_exception(e, s)
    for ln in s.getvalue().split("\n"):
        if ln and _ME not in ln:
            w(ln)
            w("\r\n")


def run(src, name, mode, eof):
    # parse_compile_execute: returns True when a soft reset was asked for.
    if src is None:
        if eof:
            w(b"\x04")
        print_exc(MemoryError("source does not fit the heap"))
        if eof:
            w(b"\x04")
        return False
    micropython.kbd_intr(3)
    event(_simev.BUSY)
    try:
        if mode == "exec":
            _g["__file__"] = name
        exec(compile(src, name, mode), _g)
        forced = False
        err = None
    except SystemExit:
        forced = True
        err = None
    except BaseException as e:  # noqa: B036  (a board prints every uncaught exception)
        forced = False
        err = e
    event(_simev.IDLE, _simflash._nr)
    if eof:
        w(b"\x04")
    if err is not None:
        print_exc(err)
    if eof:
        w(b"\x04")
    return forced


def _boot_intr():
    global _pend
    # Bytes that came while the board booted sit unread; a Ctrl-C among them interrupts the
    # boot script about to run (on a board the UART would see it while the script runs).
    import select

    p = select.poll()
    p.register(_in, select.POLLIN)
    got = bytearray(_pend)
    while p.poll(0):
        if not _in.readinto(_b1):
            break
        got.append(_b1[0])
    i = got.find(b"\x03")
    _pend = bytes(got[i + 1 :])
    return i >= 0


def _run_file(path):
    try:
        with _bopen(path) as f:
            src = f.read()
    except OSError:
        return False
    if _boot_intr():
        print_exc(KeyboardInterrupt())
        return False
    return run(src, path, "exec", False)


# --- resets (machine.soft_reset/reset through _simhw) -------------------------------------


def soft_reset():
    raise SystemExit


def hard_reset():
    event(_simev.RESET)
    _simflash.die()


def wdt(ms):
    event(_simev.WDT, ms)


def kbd(c):
    if c == 3:
        event(_simev.KBD_ON)
    else:
        event(_simev.KBD_OFF)


flash_stats = _simflash.stats


def reboot(raw):
    # gc_sweep_all() of a board's soft reset: finalisers close (and so flush) open files.
    # The REPL mode (raw or friendly) survives the reboot, as pyexec_mode_kind does.
    import gc

    for f in _files:
        try:
            f.close()
        except Exception:
            pass
    _g.clear()
    for k in list(sys.modules):
        if not k.startswith("_sim"):
            del sys.modules[k]
    gc.collect()
    w("MPY: soft reboot\r\n")
    sys.exit(_EXIT_SOFT + (1 if raw else 0))


# --- boot -------------------------------------------------------------------------------


def _mount(fs):
    cls = os.VfsFat if fs == "fat" else os.VfsLfs2
    os.umount("/")
    try:
        # VfsFat's constructor takes a flash without a filesystem; its mount refuses it
        os.mount(cls(_simflash.Flash()), "/")
    except OSError:
        # ports/esp32/modules/inisetup.py: a flash without a filesystem is formatted.
        w(b"Performing initial setup\r\n")
        cls.mkfs(_simflash.Flash())
        event(_simev.FORMAT)
        os.mount(cls(_simflash.Flash()), "/")
    os.chdir("/")


def main(g):
    global _ctlf, _g
    g.pop("_simfw", None)
    _g = g
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    _ctlf = open("/proc/self/fd/%d" % cfg["ctl_fd"], "wb")
    _simflash.init(cfg, event)
    raw = cfg["raw"]
    cut_now = cfg["cut_now"]
    fs = cfg.get("fs")
    import binascii

    _simhw._cfg = {
        "efuse": {int(k): v for k, v in cfg["efuse"].items()},
        "uid": binascii.unhexlify(cfg["uid"]),
        "cause": cfg["cause"],
        "board": cfg["board"],
        "net": cfg["net"],
        "boots": cfg.get("boots"),
        "dir": cfg["dir"],
        "fwdir": __file__.rsplit("/", 1)[0],
        "boot": cfg["boot"],
        "t0": time.ticks_ms(),
    }
    reserve = cfg["reserve"]
    _simhw._fw = sys.modules["_simfw"]
    cfg = None
    import builtins
    import _simmachine
    import _simmp
    import _simnetwork
    import _simos
    import _simraw
    import _simrepl

    sys.modules["machine"] = _simmachine
    sys.modules["micropython"] = _simmp
    sys.modules["network"] = _simnetwork
    sys.modules["os"] = _simos
    builtins.print = _cprint
    builtins.__repl_print__ = _repl_print
    builtins.open = _open
    _mount(fs)
    sys.path[:] = ["", ".frozen", "/lib"]
    import gc

    gc.collect()
    # The peripherals' heap, given back as they load (_simhw.load); three chunks fewer pay for
    # the chunks' own headers and the boot's `os` and `network` stubs.
    for _ in range(reserve - 3):
        _simhw._reserve.append(bytearray(1024))
    event(_simev.UP)
    if cut_now:
        _simflash.arm_now(cut_now[0], cut_now[1])
    if _run_file("boot.py"):
        reboot(raw)
    if not raw and _run_file("main.py"):
        reboot(raw)
    while True:
        try:
            raw = _simraw.repl() if raw else _simrepl.repl()
        except KeyboardInterrupt:
            # a Ctrl-C that raced with the end of user code: as if typed at the prompt
            w(b"\r\n")
