# _simraw: the virtual board's raw REPL, part of its firmware (see _simfw): pyexec.c's
# pyexec_raw_repl with raw-paste, byte for byte as mpremote expects.
from micropython import const
import _simfw

_CTRL_A = const(1)
_CTRL_B = const(2)
_CTRL_C = const(3)
_CTRL_D = const(4)
_CTRL_E = const(5)
_WINDOW = const(128)  # raw-paste flow-control window: MICROPY_REPL_STDIN_BUFFER_MAX / 2
_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"


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


def _paste():
    # Raw-paste mode (pyexec.c do_reader_stdin): window header, then 0x01 per window read.
    w = _simfw.w
    w(b"R\x01")
    w(bytes((_WINDOW & 0xFF, _WINDOW >> 8, 1)))
    buf = _Buf()
    remain = _WINDOW
    while True:
        c = _simfw.getc()
        if c == _CTRL_C or c == _CTRL_D:
            w(b"\x04")
            if c == _CTRL_C:
                w(b"\x04")
                _simfw.print_exc(KeyboardInterrupt())
                w(b"\x04")
                return False
            break
        buf.add(c)
        remain -= 1
        if remain == 0:
            w(b"\x01")
            remain = _WINDOW
    src = buf.text()
    buf = None
    return _simfw.run(src, "<stdin>", "exec", True)


def repl():
    # Returns False when Ctrl-B leaves for the friendly REPL.
    w = _simfw.w
    w(_PROMPT)
    line = _Buf()
    while True:
        c = _simfw.getc()
        if c == _CTRL_A:
            if line.n == 2 and not line.full and line.b[0] == _CTRL_E:
                if line.b[1] != 0x41:
                    w(b"R\x00")
                    line = _Buf()
                    continue
                line = None
                if _paste():
                    _simfw.reboot(True)
                line = _Buf()
                w(b">")
                continue
            line = _Buf()
            w(_PROMPT)
        elif c == _CTRL_B:
            w(b"\r\n")
            return False
        elif c == _CTRL_C:
            line = _Buf()
        elif c == _CTRL_D:
            w(b"OK")
            if not line.n:
                w(b"\r\n")
                _simfw.reboot(True)
            src = line.text()
            line = None
            if _simfw.run(src, "<stdin>", "exec", True):
                _simfw.reboot(True)
            src = None
            line = _Buf()
            w(b">")
        else:
            line.add(c)
