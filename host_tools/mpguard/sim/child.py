"""One boot of the virtual board: the MicroPython unix port running the firmware
(`firmware/simboot.py`) as a child of the supervisor, with pipes.

stdin and stdout are the board's UART; a third pipe carries the firmware's events (one
line each, see firmware/_simev.py). The child dies with the supervisor (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
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
from typing import Any

from . import folder


def _pdeathsig() -> None:
    # The child dies with the supervisor, whatever kills it (no orphan interpreters).
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_LAUNCHER: bool | None = None


def _launcher(micropython: str) -> bool:
    """Whether boots go through launch.py: `micropython` is this environment's console script
    of the unix port package and that package's library has what launch.py calls."""
    global _LAUNCHER
    if Path(micropython).parent != Path(sys.executable).parent:
        return False
    if _LAUNCHER is None:
        from .launch import library

        _LAUNCHER = library() is not None
    return _LAUNCHER


class Child:
    def __init__(self, d: Path, micropython: str, heapsize: int, bootcfg: dict[str, Any]):
        ctl_r, ctl_w = os.pipe()
        os.set_blocking(ctl_r, False)
        bootcfg = dict(bootcfg, ctl_fd=ctl_w)
        (d / folder.BOOT_FILE).write_text(json.dumps(bootcfg))
        env = {k: v for k, v in os.environ.items() if k != "MICROPYPATH"}
        args = ["-X", f"heapsize={heapsize}", str(folder.firmware_dir() / "simboot.py"),
                str(d / folder.BOOT_FILE)]
        # A board's Ctrl-C: a byte on this pipe (launch.py), else SIGINT (see interrupt())
        self.intr = -1
        keep = [ctl_w]
        if _launcher(micropython):
            intr_r, self.intr = os.pipe()
            os.set_blocking(self.intr, False)
            keep.append(intr_r)
            cmd = [sys.executable, str(Path(__file__).with_name("launch.py")), str(intr_r), *args]
        else:
            cmd = [micropython, *args]
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=tuple(keep),
                env=env,
                cwd=str(d),
                preexec_fn=_pdeathsig,
            )
        except BaseException:
            os.close(ctl_r)
            if self.intr >= 0:
                os.close(self.intr)
            raise
        finally:
            for fd in keep:
                os.close(fd)
        assert self.proc.stdin is not None and self.proc.stdout is not None  # PIPE above
        self.stdin = self.proc.stdin
        self.stdout = self.proc.stdout
        os.set_blocking(self.stdout.fileno(), False)
        self.ctl = ctl_r
        self.eof = False  # the event pipe's last writer is gone
        self._buf = b""

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
