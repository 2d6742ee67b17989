"""espefuse as a fork server: `python efserver.py --serve SOCK_FD` (started by
mpguard.fuse.espefuse; it imports nothing of mpguard).

An espefuse run spends much of its time importing esptool, click, rich and its chip modules
(about 0.3 s of the 0.75 s of CPU a summary of a virtual chip took as a process). This server imports them once, answers "ok" on SOCK_FD (a
Unix socketpair with the process that started it), then forks one child per request. A
request is the run's arguments, environment and folder, with four fds (SCM_RIGHTS): stdin,
stdout, stderr and a status pipe. The child takes the first three as fds 0-2, closes every
other fd and runs espefuse's console-script entry point (`espefuse._main`) as the `espefuse`
command does, then writes its exit code to the status pipe and exits; the server answers the
child's pid. Children are reaped by the kernel (SIGCHLD ignored here), so the server never
waits on one and serves the next request at once: the line's workers run espefuse side by
side. It ends when the starting process's end of the socket closes.
"""

from __future__ import annotations

import ctypes
import fcntl
import importlib
import json
import os
import signal
import socket
import sys

CHIPS = ("esp32", "esp32s2", "esp32s3", "esp32c3")  # their modules are imported up front


def preload() -> bool:
    try:
        import espefuse  # noqa: F401

        for chip in CHIPS:
            for part in ("mem_definition", "fields", "operations", "emulate_efuse_controller"):
                importlib.import_module(f"espefuse.efuse.{chip}.{part}")
    except Exception:
        return False
    return True


def _child(server: int, sock: socket.socket, fds: list[int], req: dict) -> int:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no run outlives the server
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # a Ctrl-C at the terminal reaches the whole process group: a run (a burn) is not cut
    # short by it; mpguard decides (a line finishes the step running, docs/line.md)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != server:
        return 1
    sock.close()
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
    for fd, target in zip(moved, (0, 1, 2, 3), strict=True):
        os.dup2(fd, target)
    os.closerange(4, os.sysconf("SC_OPEN_MAX"))
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    from espefuse import _main

    sys.argv = ["espefuse", *req["argv"]]
    try:
        rc = _main()
    except SystemExit as e:
        rc = e.code
    if rc is None:
        rc = 0
    elif not isinstance(rc, int):
        print(rc, file=sys.stderr)
        rc = 1
    return rc


def serve(sock: socket.socket) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # it ends when its starter's socket closes
    ok = preload()
    sock.send(b"ok" if ok else b"no")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the runs
    while ok:
        msg, fds, _, _ = socket.recv_fds(sock, 65536, 4)
        if not msg:
            break
        req = json.loads(msg)
        server = os.getpid()
        pid = os.fork()
        if pid == 0:  # the run: never back into this loop
            try:
                rc = _child(server, sock, fds, req)
            except KeyboardInterrupt:
                rc = 130
            except BaseException:
                import traceback

                traceback.print_exc()
                rc = 1
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                os.write(3, str(rc).encode())
            except OSError:
                pass
            os._exit(rc & 0xFF)
        for fd in fds:
            os.close(fd)
        sock.send(str(pid).encode())
    return 0


if __name__ == "__main__":
    # not this folder: mpguard's fuse/espefuse.py there would shadow the espefuse package
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        rc = serve(socket.socket(fileno=int(sys.argv[2])))
    except KeyboardInterrupt:  # a Ctrl-C at the terminal reaches the whole process group
        rc = 130
    sys.exit(rc)
