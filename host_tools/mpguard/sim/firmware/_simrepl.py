# _simrepl: the virtual board's friendly REPL, part of its firmware (see _simfw): pyexec.c's
# pyexec_friendly_repl with readline's editing keys, auto-indent and paste mode.
import sys
from micropython import const
import _simfw
import _simhw

_CTRL_A = const(1)
_CTRL_B = const(2)
_CTRL_C = const(3)
_CTRL_D = const(4)
_CTRL_E = const(5)


def _readline(prompt, pre=""):
    # A small readline: echo, backspace, escape sequences swallowed; returns (ctrl, text).
    w = _simfw.w
    getc = _simfw.getc
    w(prompt)
    s = pre
    w(pre)
    while True:
        c = getc()
        if c == 13 or c == 10:
            w(b"\r\n")
            return 0, s
        if c in (_CTRL_A, _CTRL_B, _CTRL_C, _CTRL_E) or (c == _CTRL_D and not s):
            return c, s
        if c == 8 or c == 127:
            if s:
                s = s[:-1]
                w(b"\x08 \x08")
        elif c == 27:
            c = getc()
            if c == 0x5B:
                while True:
                    c = getc()
                    if 0x40 <= c <= 0x7E:
                        break
        elif c == 9:
            s += "    "
            w(b"    ")
        elif c >= 32:
            # collect a UTF-8 sequence whole
            b = bytearray((c,))
            if c >= 0xC0:
                for _ in range(1 if c < 0xE0 else 2 if c < 0xF0 else 3):
                    b.append(getc())
            try:
                s += b.decode()
            except UnicodeError:
                continue
            w(b)


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
    _simfw.w(
        "MicroPython v%d.%d.%d on %s; %s with %s\r\nType \"help()\" for more information.\r\n"
        % (v[0], v[1], v[2], sys.version.split(" on ")[-1], b.get("name") or "mpguard virtual board " + b.get("kind", "sim"), b.get("chip", "esp32").upper())
    )


def _paste():
    w = _simfw.w
    w(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
    buf = bytearray()
    while True:
        c = _simfw.getc()
        if c == _CTRL_C:
            w(b"\r\n")
            return None
        if c == _CTRL_D:
            w(b"\r\n")
            return buf.decode()
        buf.append(c)
        w(b"\r\n=== " if c == 13 else bytes((c,)))


def repl():
    # Returns True when Ctrl-A enters the raw REPL.
    w = _simfw.w
    _banner()
    while True:
        ctrl, s = _readline(b">>> ")
        mode = "single"
        if ctrl == _CTRL_A:
            w(b"\r\n")
            return True
        if ctrl == _CTRL_B:
            w(b"\r\n")
            _banner()
            continue
        if ctrl == _CTRL_C:
            w(b"\r\n")
            continue
        if ctrl == _CTRL_D:
            w(b"\r\n")
            _simfw.reboot(False)
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
                    w(b"\r\n")
                    cancel = True
                    break
                if ctrl == _CTRL_D:
                    break
                s += "\n" + more
                if not more.strip():
                    break
            if cancel:
                continue
        if _simfw.run(s, "<stdin>", mode, False):
            _simfw.reboot(False)
