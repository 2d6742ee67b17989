"""The virtual board's serial port: a pseudo-terminal, optionally at a UART's byte rate and
behind a USB-serial bridge's latency.

The supervisor owns the master end; the slave's path (/dev/pts/N) is the port users open.
Bytes the board prints queue in `emit` (bounded: older output is dropped while nobody
reads, as a UART with no listener loses it); bytes typed queue in `inq` until the board
takes them. With a baud rate both ways run at baud/10 bytes per second (8N1). With a
latency every byte, each way, is held that long after it was sent before it may move on: a
delay line (each chunk stamped with the moment it entered, so a stream keeps its rate and
only its start moves), not a sleep per write. Delay and rate compose: a FIFO's departures
shifted by a constant delay are the same whichever comes first.
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


class Delay:
    """A delay line: chunks leave `delay` seconds after they came, in order."""

    def __init__(self, delay: float):
        self.delay = delay
        self.q: deque[tuple[float, bytes]] = deque()

    def put(self, data: bytes) -> None:
        self.q.append((time.monotonic() + self.delay, data))

    def get(self) -> bytes:
        """Every byte whose delay has passed."""
        now = time.monotonic()
        got = []
        while self.q and self.q[0][0] <= now:
            got.append(self.q.popleft()[1])
        return b"".join(got)

    def wait(self) -> float | None:
        """Seconds until the next chunk may leave (None: nothing held)."""
        if not self.q:
            return None
        return max(0.0, self.q[0][0] - time.monotonic())


class Terminal:
    def __init__(self, baud: int | None, latency_ms: float = 0.0):
        rate = baud / 10 if baud else None
        self.tx = Bucket(rate)  # board -> host
        self.rx = Bucket(rate)  # host -> board
        lat = latency_ms / 1000
        self.tx_delay = Delay(lat) if lat > 0 else None
        self.rx_delay = Delay(lat) if lat > 0 else None
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
        if self.tx_delay is not None:
            self.tx_delay.put(data)
            return
        self._queue(data)

    def _queue(self, data: bytes) -> None:
        if not data:
            return
        self.out.append(data)
        self.out_len += len(data)
        while self.out_len > OUT_MAX:
            self.out_len -= len(self.out.popleft())

    def flush(self) -> None:
        """Write queued output to the port, as fast as the rate allows."""
        if self.tx_delay is not None:
            self._queue(self.tx_delay.get())
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
            data = os.read(self.master, 65536)
        except OSError:
            return
        if self.rx_delay is not None:
            self.rx_delay.put(data)
        else:
            self.inq += data

    def take(self) -> bytes:
        """Input the board may have now (the delay and rate allow it)."""
        if self.rx_delay is not None:
            self.inq += self.rx_delay.get()
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
        for d in (self.tx_delay, self.rx_delay):
            w = d.wait() if d is not None else None
            if w is not None:
                t = min(t, w)
        return t

    def unlink(self, link: Path) -> None:
        try:
            link.unlink()
        except FileNotFoundError:
            pass
