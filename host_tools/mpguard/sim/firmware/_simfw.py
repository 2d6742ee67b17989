# _simfw: the virtual ESP32's firmware, run by the MicroPython unix port under the sim's
# supervisor (host_tools/mpguard/sim/supervisor.py). It does what ports/esp32/main.c and
# shared/runtime/pyexec.c do on a board:
#   1. mount the flash image (littlefs2) at "/" (a blank or unmountable image is formatted,
#      as the esp32 port's inisetup does), so paths are the board's paths;
#   2. run /boot.py, then /main.py if the REPL is in friendly mode;
#   3. friendly REPL or raw REPL (with raw-paste), byte for byte as mpremote expects;
#   4. soft reset (Ctrl-D, machine.soft_reset, SystemExit) and machine.reset() end this
#      process; the supervisor starts a fresh one (a fresh heap, as on a board).
# Side channel to the supervisor (a pipe, one line per event): U up, B busy (user code
# runs: Ctrl-C becomes SIGINT), I idle, K0/K1 kbd_intr off/on, W n / E n block write/erase,
# X n off k power cut (k bytes of a write reached flash), R hard reset, F formatted.
import sys
import os
import io
import json
import micropython
from micropython import const

import _simhw

_CTRL_A = const(1)
_CTRL_B = const(2)
_CTRL_C = const(3)
_CTRL_D = const(4)
_CTRL_E = const(5)
_EXIT_SOFT = const(64)  # + 1 when the REPL was in raw mode
_EXIT_EOF = const(70)
_WINDOW = const(128)  # raw-paste flow-control window: MICROPY_REPL_STDIN_BUFFER_MAX / 2
_ME = '_simfw.py"'

_out = sys.stdout.buffer
_in = sys.stdin.buffer
_b1 = bytearray(1)
_ctlf = None
_g = None
_raw = False
# flash block device state
_img = None
_bs = 4096
_nblk = 0
_ff = None
_nw = 0
_ne = 0
_nr = 0
_base = None
_cutf = None
_cutbuf = bytearray(32)
_cutseq = b""
_cutat = 0
_cutpm = 1000


def _ctl(s):
    _ctlf.write(s)


def _w(s):
    _out.write(s)


_pend = b""  # bytes read ahead at boot (see _boot_intr)


def _getc():
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
    _files.append(f)
    if len(_files) > 8:
        _files.pop(0)
    return f


def _repl_print(v):
    if v is not None:
        _cprint(repr(v))


# --- flash ------------------------------------------------------------------------------


def _cut_check():
    global _cutseq, _cutat, _cutpm
    _cutf.seek(0)
    n = _cutf.readinto(_cutbuf)
    rec = bytes(_cutbuf[:n])
    if rec == _cutseq or not rec.endswith(b"\n"):
        return
    _cutseq = rec
    p = rec.split()
    _cutat = int(p[1])  # the cut is at this block write, counted over the sim's life
    _cutpm = int(p[2])


class _Flash:
    def readblocks(self, n, buf, off=0):
        global _nr
        _nr += 1
        _img.seek(n * _bs + off)
        _img.readinto(buf)

    def writeblocks(self, n, buf, off=None):
        global _nw
        if off is None:
            # simple interface: whole blocks, erase first (as extmod's flash does)
            for i in range(len(buf) // _bs):
                self.ioctl(6, n + i)
                self.writeblocks(n + i, memoryview(buf)[i * _bs : (i + 1) * _bs], 0)
            return
        _cut_check()
        _nw += 1
        _img.seek(n * _bs + off)
        if _cutat and _base[0] + _nw == _cutat:
            k = len(buf) * _cutpm // 1000
            _img.write(memoryview(buf)[:k])
            _ctl("X %d %d %d\n" % (n, off, k))
            _die()
        _img.write(buf)
        _ctl("W %d\n" % n)

    def ioctl(self, op, arg):
        global _ne
        if op == 4:
            return _nblk
        if op == 5:
            return _bs
        if op == 6:
            _ne += 1
            _img.seek(arg * _bs)
            _img.write(_ff)
            _ctl("E %d\n" % arg)
        return 0


def _die():
    # Power off now: no cleanup, no unwinding, nothing user code could catch.
    os.system("kill -9 $PPID")
    while True:
        pass


def flash_stats():
    return {"writes": _base[0] + _nw, "erases": _base[1] + _ne, "reads": _base[2] + _nr}


# --- resets -----------------------------------------------------------------------------


class _SoftReset(Exception):
    pass


def soft_reset():
    raise SystemExit


def hard_reset():
    _ctl("R\n")
    _die()


def kbd(c):
    _ctl("K1\n" if c == 3 else "K0\n")


def _reboot():
    # gc_sweep_all() of a board's soft reset: finalisers close (and so flush) open files.
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
    _w("MPY: soft reboot\r\n")
    sys.exit(_EXIT_SOFT + (1 if _raw else 0))


# --- running code -----------------------------------------------------------------------


def _print_exc(e):
    s = io.StringIO()
    sys.print_exception(e, s)
    for ln in s.getvalue().split("\n"):
        if ln and _ME not in ln:
            _w(ln)
            _w("\r\n")


def _run(src, name, mode, eof):
    # parse_compile_execute: returns True when a soft reset was asked for.
    if src is None:
        if eof:
            _w(b"\x04")
        _print_exc(MemoryError("source does not fit the heap"))
        if eof:
            _w(b"\x04")
        return False
    micropython.kbd_intr(3)
    _ctl("B\n")
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
    _ctl("I %d\n" % _nr)
    if eof:
        _w(b"\x04")
    if err is not None:
        _print_exc(err)
    if eof:
        _w(b"\x04")
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
        _print_exc(KeyboardInterrupt())
        return False
    return _run(src, path, "exec", False)


# --- raw REPL ---------------------------------------------------------------------------


class _Buf:
    # A growing byte buffer (bytearray.append grows by a few bytes at a time: quadratic).
    # Input that does not fit the heap is still read to its end, then reported as a
    # MemoryError (a board compiles it streaming; the sim holds the source: a smaller limit).
    def __init__(self):
        self.b = bytearray(256)
        self.n = 0
        self.full = False

    def add(self, c):
        if self.full:
            return
        if self.n == len(self.b):
            try:
                b = bytearray(self.n + (self.n >> 1))
            except MemoryError:
                self.full = True
                self.b = None
                return
            b[: self.n] = self.b
            self.b = b
        self.b[self.n] = c
        self.n += 1

    def text(self):
        if self.full:
            return None
        try:
            b = self.b
            self.b = None
            return str(memoryview(b)[: self.n], "utf-8")
        except UnicodeError:
            return ""
        except MemoryError:
            return None


def _raw_paste():
    # Raw-paste mode (pyexec.c do_reader_stdin): window header, then 0x01 per window read.
    _w(b"R\x01")
    _w(bytes((_WINDOW & 0xFF, _WINDOW >> 8, 1)))
    buf = _Buf()
    remain = _WINDOW
    while True:
        c = _getc()
        if c == _CTRL_C or c == _CTRL_D:
            _w(b"\x04")
            if c == _CTRL_C:
                _w(b"\x04")
                _print_exc(KeyboardInterrupt())
                _w(b"\x04")
                return False
            break
        buf.add(c)
        remain -= 1
        if remain == 0:
            _w(b"\x01")
            remain = _WINDOW
    src = buf.text()
    buf = None
    return _run(src, "<stdin>", "exec", True)


def _raw_repl():
    global _raw
    _w(b"raw REPL; CTRL-B to exit\r\n>")
    line = _Buf()
    while True:
        c = _getc()
        if c == _CTRL_A:
            if line.n == 2 and not line.full and line.b[0] == _CTRL_E:
                if line.b[1] != 0x41:
                    _w(b"R\x00")
                    line = _Buf()
                    continue
                line = None
                if _raw_paste():
                    _reboot()
                line = _Buf()
                _w(b">")
                continue
            line = _Buf()
            _w(b"raw REPL; CTRL-B to exit\r\n>")
        elif c == _CTRL_B:
            _w(b"\r\n")
            _raw = False
            return
        elif c == _CTRL_C:
            line = _Buf()
        elif c == _CTRL_D:
            _w(b"OK")
            if not line.n:
                _w(b"\r\n")
                _reboot()
            src = line.text()
            line = None
            if _run(src, "<stdin>", "exec", True):
                _reboot()
            src = None
            line = _Buf()
            _w(b">")
        else:
            line.add(c)


# --- friendly REPL ----------------------------------------------------------------------


def _readline(prompt, pre=""):
    # A small readline: echo, backspace, escape sequences swallowed; returns (ctrl, text).
    _w(prompt)
    s = pre
    _w(pre)
    while True:
        c = _getc()
        if c == 13 or c == 10:
            _w(b"\r\n")
            return 0, s
        if c in (_CTRL_A, _CTRL_B, _CTRL_C, _CTRL_E) or (c == _CTRL_D and not s):
            return c, s
        if c == 8 or c == 127:
            if s:
                s = s[:-1]
                _w(b"\x08 \x08")
        elif c == 27:
            c = _getc()
            if c == 0x5B:
                while True:
                    c = _getc()
                    if 0x40 <= c <= 0x7E:
                        break
        elif c == 9:
            s += "    "
            _w(b"    ")
        elif c >= 32:
            # collect a UTF-8 sequence whole
            b = bytearray((c,))
            if c >= 0xC0:
                for _ in range(1 if c < 0xE0 else 2 if c < 0xF0 else 3):
                    b.append(_getc())
            try:
                s += b.decode()
            except UnicodeError:
                continue
            _w(b)


def _needs_more(s):
    # mp_repl_continue_with_input, simplified: open brackets or triple quotes, a trailing
    # backslash or colon, or a compound statement not yet ended by an empty line.
    if s.count('"""') % 2 or s.count("'''") % 2:
        return True
    depth = 0
    q = None
    for ch in s:
        if q:
            if ch == q:
                q = None
        elif ch in "'\"":
            q = ch
        elif ch == "#":
            q = "\n"
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    if depth > 0 or s.endswith("\\"):
        return True
    last = s.split("\n")[-1]
    if last.rstrip().endswith(":") or last.startswith("@"):
        return True
    return "\n" in s and last.strip() != ""


def _indent(s):
    last = s.split("\n")[-1]
    n = len(last) - len(last.lstrip())
    return " " * (n + (4 if last.rstrip().endswith(":") else 0))


def _banner():
    v = sys.implementation.version
    b = _simhw._cfg["board"]
    _w(
        "MicroPython v%d.%d.%d on %s; %s with %s\r\nType \"help()\" for more information.\r\n"
        % (v[0], v[1], v[2], sys.version.split(" on ")[-1], b.get("name") or "mpguard virtual board " + b.get("kind", "sim"), b.get("chip", "esp32").upper())
    )


def _paste():
    _w(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
    buf = bytearray()
    while True:
        c = _getc()
        if c == _CTRL_C:
            _w(b"\r\n")
            return None
        if c == _CTRL_D:
            _w(b"\r\n")
            return buf.decode()
        buf.append(c)
        _w(b"\r\n=== " if c == 13 else bytes((c,)))


def _friendly_repl():
    global _raw
    _banner()
    while True:
        ctrl, s = _readline(b">>> ")
        mode = "single"
        if ctrl == _CTRL_A:
            _w(b"\r\n")
            _raw = True
            return
        if ctrl == _CTRL_B:
            _w(b"\r\n")
            _banner()
            continue
        if ctrl == _CTRL_C:
            _w(b"\r\n")
            continue
        if ctrl == _CTRL_D:
            _w(b"\r\n")
            _reboot()
        if ctrl == _CTRL_E:
            s = _paste()
            if s is None:
                continue
            mode = "exec"
        elif not s:
            continue
        else:
            cancel = False
            while _needs_more(s):
                ctrl, more = _readline(b"... ", _indent(s))
                if ctrl == _CTRL_C:
                    _w(b"\r\n")
                    cancel = True
                    break
                if ctrl == _CTRL_D:
                    break
                s += "\n" + more
                if not more.strip():
                    break
            if cancel:
                continue
        if _run(s, "<stdin>", mode, False):
            _reboot()


# --- boot -------------------------------------------------------------------------------


def _mount():
    vfs = None
    try:
        vfs = os.VfsLfs2(_Flash())
    except OSError:
        pass
    if vfs is None:
        # ports/esp32/modules/inisetup.py: a flash without a filesystem is formatted.
        _w(b"Performing initial setup\r\n")
        os.VfsLfs2.mkfs(_Flash())
        _ctl("F\n")
        vfs = os.VfsLfs2(_Flash())
    os.umount("/")
    os.mount(vfs, "/")
    os.chdir("/")


def main(g):
    global _ctlf, _g, _raw, _img, _bs, _nblk, _ff, _base, _cutf
    g.pop("_simfw", None)
    _g = g
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    _ctlf = open("/proc/self/fd/%d" % cfg["ctl_fd"], "wb")
    _img = open(cfg["image"], "r+b")
    _cutf = open(cfg["cut_file"], "rb")
    _bs = cfg["block_size"]
    _nblk = cfg["blocks"]
    _ff = b"\xff" * _bs
    _base = cfg["stats_base"]
    _raw = cfg["raw"]
    import binascii

    _simhw._cfg = {
        "efuse": {int(k): v for k, v in cfg["efuse"].items()},
        "uid": binascii.unhexlify(cfg["uid"]),
        "cause": cfg["cause"],
        "board": cfg["board"],
        "net": cfg["net"],
        "boots": cfg.get("boots"),
    }
    _simhw._fw = sys.modules["_simfw"]
    cfg = None
    import builtins
    import _simmachine
    import _simmp

    sys.modules["machine"] = _simmachine
    sys.modules["micropython"] = _simmp
    builtins.print = _cprint
    builtins.__repl_print__ = _repl_print
    builtins.open = _open
    _cut_check()
    _mount()
    sys.path[:] = ["", ".frozen", "/lib"]
    import gc

    gc.collect()
    _ctl("U\n")
    if _run_file("boot.py"):
        _reboot()
    if not _raw and _run_file("main.py"):
        _reboot()
    while True:
        try:
            if _raw:
                _raw_repl()
            else:
                _friendly_repl()
        except KeyboardInterrupt:
            # a Ctrl-C that raced with the end of user code: as if typed at the prompt
            _w(b"\r\n")
