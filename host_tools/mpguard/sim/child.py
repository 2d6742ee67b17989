"""One boot of the virtual board: the MicroPython unix port running the firmware
(`firmware/simboot.py`) as a child of the supervisor, with pipes.

stdin and stdout are the board's UART; a third pipe carries the firmware's events (one
line each, see firmware/_simev.py). The child dies with the supervisor (PR_SET_PDEATHSIG).

A boot is forked by the supervisor's Zygote (launch.py as a fork server, started once:
decisions/0023), which saves each boot a new Python process; it is then the Zygote's child,
and dies with it as the Zygote dies with the supervisor. Without a Zygote a boot is a new
`launch.py` process, or `micropython` itself (see _launcher).

The firmware a boot runs is the supervisor's choice: compiled to .mpy in a cache
(fwcache.py, decisions/0024), or the sources in firmware/.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import IO, Any

from ..forkserver import LAUNCH, Forked, Zygote, child_env, die_with_parent, this_environments
from . import folder
from .launch import CTL_FD, library

_LAUNCHER: bool | None = None


def _launcher(micropython: str) -> bool:
    """Whether boots go through launch.py: `micropython` is this environment's and that
    package's library has what launch.py calls."""
    global _LAUNCHER
    if not this_environments(micropython):
        return False
    if _LAUNCHER is None:
        _LAUNCHER = library() is not None
    return _LAUNCHER


class Child:
    def __init__(self, d: Path, micropython: str, heapsize: int, bootcfg: dict[str, Any],
                 zygote: Zygote | None = None, fwdir: Path | None = None):
        """One boot of the firmware in `fwdir` (the compiled one of fwcache.boot_dir; default:
        the sources)."""
        ctl_r, ctl_w = os.pipe()
        os.set_blocking(ctl_r, False)
        self.ctl = ctl_r
        self.intr = -1  # a board's Ctrl-C: a byte on this pipe (launch.py), else SIGINT
        args = ["-X", f"heapsize={heapsize}", str((fwdir or folder.firmware_dir()) / "simboot.py"),
                str(d / folder.BOOT_FILE)]
        try:
            forked = zygote is not None and zygote.ok and self._fork(zygote, d, args, bootcfg, ctl_w)
            if not forked:
                self._popen(d, micropython, args, bootcfg, ctl_w)
        except BaseException:
            self.close()
            raise
        finally:
            os.close(ctl_w)
        os.set_blocking(self.stdout.fileno(), False)
        self.eof = False  # the event pipe's last writer is gone
        self._buf = b""

    def _fork(self, zygote: Zygote, d: Path, args: list[str], bootcfg: dict[str, Any], ctl_w: int) -> bool:
        """A boot forked by the Zygote; False if the Zygote is gone (it is not asked again)."""
        (d / folder.BOOT_FILE).write_text(json.dumps(dict(bootcfg, ctl_fd=CTL_FD)))
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        intr_r, self.intr = os.pipe()
        os.set_blocking(self.intr, False)
        self.stdin: IO[bytes] = os.fdopen(in_w, "wb")
        self.stdout: IO[bytes] = os.fdopen(out_r, "rb")
        try:
            self.proc: subprocess.Popen[bytes] | Forked = zygote.fork(args, [in_r, out_w, ctl_w, intr_r])
            return True
        except OSError:
            zygote.close()
            self.stdin.close()
            self.stdout.close()
            os.close(self.intr)
            self.intr = -1
            return False
        finally:
            for fd in (in_r, out_w, intr_r):
                os.close(fd)

    def _popen(self, d: Path, micropython: str, args: list[str], bootcfg: dict[str, Any], ctl_w: int) -> None:
        (d / folder.BOOT_FILE).write_text(json.dumps(dict(bootcfg, ctl_fd=ctl_w)))
        keep = [ctl_w]
        if _launcher(micropython):
            intr_r, self.intr = os.pipe()
            os.set_blocking(self.intr, False)
            keep.append(intr_r)
            cmd = [sys.executable, LAUNCH, str(intr_r), *args]
        else:
            cmd = [micropython, *args]
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=tuple(keep),
                env=child_env(),
                cwd=str(d),
                preexec_fn=die_with_parent,
            )
        finally:
            for fd in keep[1:]:
                os.close(fd)
        assert proc.stdin is not None and proc.stdout is not None  # PIPE above
        self.proc = proc
        self.stdin = proc.stdin
        self.stdout = proc.stdout

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_out(self) -> bytes | None:
        """What the board printed; b"" if nothing now, None at EOF (the interpreter ended)."""
        try:
            data = os.read(self.stdout.fileno(), 65536)
        except BlockingIOError:
            return b""
        return data or None

    def events(self) -> list[bytes]:
        """Every complete event line in the pipe now (never blocks)."""
        while not self.eof and self.ctl >= 0:
            try:
                data = os.read(self.ctl, 65536)
            except BlockingIOError:
                break
            if not data:
                self.eof = True
                break
            self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        return [ln for ln in lines if ln.strip()]

    def write(self, data: bytes) -> None:
        if not data:
            return
        try:
            self.stdin.write(data)
            self.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the child is going down; its exit is handled by the supervisor

    def unread(self) -> int:
        """Bytes written to the board's stdin that it has not read yet."""
        try:
            buf = fcntl.ioctl(self.stdin.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except (OSError, ValueError):
            return 0
        return int.from_bytes(buf, sys.byteorder)

    def interrupt(self) -> None:
        """A Ctrl-C from the host while the board runs code: a KeyboardInterrupt pending (the
        launcher's thread, as an ESP32's UART interrupt marks it), or the port's SIGINT."""
        if self.intr < 0:
            self.proc.send_signal(signal.SIGINT)
            return
        try:
            os.write(self.intr, b"\x03")
        except (BlockingIOError, BrokenPipeError):
            pass  # 64 KiB of Ctrl-C unread, or the interpreter is gone: nothing to add

    def last_events(self, timeout: float = 5.0) -> list[bytes]:
        """After the interpreter ended: every event it sent, up to the pipe's EOF."""
        lines: list[bytes] = []
        end = time.monotonic() + timeout
        while not self.eof and time.monotonic() < end:
            lines += self.events()
            if not self.eof:
                select.select([self.ctl], [], [], max(0.0, end - time.monotonic()))
        return lines + self.events()

    def reap(self) -> int:
        """Wait for the interpreter, close its pipes; returns its exit code."""
        rc = self.proc.wait()
        for f in (self.stdin, self.stdout):
            try:
                f.close()
            except OSError:
                pass
        return rc

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.ctl >= 0:
            os.close(self.ctl)
            self.ctl = -1
        if self.intr >= 0:
            os.close(self.intr)
            self.intr = -1
