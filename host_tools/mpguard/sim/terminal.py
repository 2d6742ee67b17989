"""The virtual board's serial port: a pseudo-terminal, optionally at a UART's byte rate.

The supervisor owns the master end; the slave's path (/dev/pts/N) is the port users open.
Bytes the board prints queue in `emit` (bounded: older output is dropped while nobody
reads, as a UART with no listener loses it); bytes typed queue in `inq` until the board
takes them. With a baud rate both ways run at baud/10 bytes per second (8N1).
"""

from __future__ import annotations

import errno
import os
import time
import tty
from collections import deque
from pathlib import Path

OUT_MAX = 256 * 1024  # device output kept while nobody reads the port; older is dropped


class Bucket:
    """A token bucket: `rate` bytes per second (None: unlimited)."""

    def __init__(self, rate: float | None):
        self.rate = rate
        self.tokens = 0.0
        self.t = time.monotonic()
        self.cap = max(16.0, rate / 100) if rate else 0.0

    def allow(self, want: int) -> int:
        if not self.rate:
            return want
        now = time.monotonic()
        self.tokens = min(self.cap, self.tokens + (now - self.t) * self.rate)
        self.t = now
        n = min(want, int(self.tokens))
        self.tokens -= n
        return n

    def wait(self) -> float:
        if not self.rate:
            return 0.0
        return max(0.0, (1 - self.tokens) / self.rate)


class Terminal:
    def __init__(self, baud: int | None):
        rate = baud / 10 if baud else None
        self.tx = Bucket(rate)  # board -> host
        self.rx = Bucket(rate)  # host -> board
        self.out: deque[bytes] = deque()
        self.out_len = 0
        self.inq = bytearray()
        self.master = self.slave = -1
        self.port = ""

    def open(self, link: Path) -> str:
        """Open the pty; `link` becomes a symlink to the port. Returns the port."""
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self.slave)
        try:
            link.unlink()
        except FileNotFoundError:
            pass
        link.symlink_to(self.port)
        return self.port

    def emit(self, data: bytes) -> None:
        if not data:
            return
        self.out.append(data)
        self.out_len += len(data)
        while self.out_len > OUT_MAX:
            self.out_len -= len(self.out.popleft())

    def flush(self) -> None:
        """Write queued output to the port, as fast as the rate allows."""
        while self.out:
            n = self.tx.allow(len(self.out[0]))
            if n <= 0:
                return
            chunk = self.out[0][:n]
            try:
                w = os.write(self.master, chunk)
            except BlockingIOError:
                self.tx.tokens += n
                return
            except OSError as e:
                if e.errno == errno.EIO:
                    return
                raise
            self.tx.tokens += n - w
            self.out_len -= w
            if w == len(self.out[0]):
                self.out.popleft()
            else:
                self.out[0] = self.out[0][w:]

    def read(self) -> None:
        """Bytes typed on the port join the input queue."""
        try:
            self.inq += os.read(self.master, 65536)
        except OSError:
            pass

    def take(self) -> bytes:
        """Input the board may have now (the rate allows it)."""
        if not self.inq:
            return b""
        n = self.rx.allow(len(self.inq))
        data = bytes(self.inq[:n])
        del self.inq[:n]
        return data

    def timeout(self, longest: float) -> float:
        """How long the main loop may sleep before queued bytes may move again."""
        t = longest
        if self.out:
            t = min(t, self.tx.wait() or 0.005)
        if self.inq:
            t = min(t, self.rx.wait() or 0.005)
        return t

    def unlink(self, link: Path) -> None:
        try:
            link.unlink()
        except FileNotFoundError:
            pass
