"""The link's watch on a board's serial port: every wait for a board ends.

mpremote's transport waits with a timeout *between* bytes, so a board that keeps printing
(an app that booted after a power cut, a watchdog reset, a crash) kept the host waiting
forever: each byte restarted the timeout. `Watch` wraps the transport's serial port, so
every byte mpremote (or mpguard.xfer) reads passes through it. While an operation is armed
(`arm(deadline)`):

1. a board reset on the line raises `BoardReset` at once: MicroPython's soft-reset line
   (`MPY: soft reboot`) or the ROM banner an ESP32-family chip prints at power-on and at a
   hard reset (`rst:0x1 (POWERON_RESET),boot:...`, `rst:0xc (SW_CPU_RESET)`; the S2/S3/C3
   print `rst:0x1 (POWERON),boot:...`), which the virtual board prints too;
2. the deadline passing raises `LinkDeadline` (checked at every read and poll of the port,
   which mpremote and mpguard.xfer do at least every 2 s while they wait).

During a reset the host asks for, only the deadline is armed (mpremote's `timeout_overall` is
checked only while the board is silent, so a chatty board kept even `enter_raw_repl`
waiting); while connecting, a reset line also ends the attempt, whose Ctrl-C and Ctrl-A the
reset may have swallowed (link.py sends them again). Disarmed (watching a trial boot) it passes bytes on untouched. A board whose reset drops the USB port itself (most USB-serial boards on
a power cut) fails faster still: the read raises OSError, which the link reports.
"""

from __future__ import annotations

import re
import time
from typing import Any

from .errors import BoardReset, LinkDeadline

# What a board prints when it (re)starts. Kept specific: test output that merely mentions
# "reset" must not look like one.
RESET_LINE = re.compile(rb"MPY: soft reboot\r?\n|rst:0x[0-9a-fA-F]{1,2} \([A-Z0-9_]+\)")
_TAIL = 48  # bytes kept between reads, so a marker split across reads is still seen
_KEEP = 4096  # bytes of the armed operation's output kept for the BoardReset exception
_OWN = ("_ser", "_deadline", "_armed", "_resets", "_tail", "_seen", "_what", "_back", "_ahead")


class Watch:
    """A serial port (pyserial's API, as mpremote uses it) with reset and deadline checks."""

    def __init__(self, ser: Any):
        object.__setattr__(self, "_ser", ser)
        self._deadline: float | None = None
        self._armed = False
        self._resets = True
        self._back = b""  # bytes given back with `unread`, read again first
        self._ahead = b""  # bytes taken off the port ahead of a small read, not yet read
        self._tail = b""
        self._seen = bytearray()
        self._what = ""

    # everything else (write, timeout, rts, dtr, close, ...) is the port's own
    def __getattr__(self, name: str) -> Any:
        return getattr(self._ser, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._ser, name, value)

    def arm(self, deadline: float | None, what: str = "the board", resets: bool = True) -> None:
        """End the wait at `deadline` (time.monotonic(); None: never) and, with `resets`, at
        a board reset (not while connecting or resetting: a reset is expected then)."""
        self._deadline, self._armed, self._what, self._resets = deadline, True, what, resets
        self._tail, self._seen = b"", bytearray()

    def disarm(self) -> None:
        self._deadline, self._armed = None, False

    def _check(self) -> None:
        if self._armed and self._deadline is not None and time.monotonic() > self._deadline:
            self.disarm()
            raise LinkDeadline(f"{self._what} did not finish before its deadline")

    def seen(self) -> bytes:
        """What was read since the last `arm` (its last few KiB)."""
        return bytes(self._seen[-_KEEP:])

    def _feed(self, data: bytes) -> None:
        if not self._armed:
            return
        seen = self._seen
        seen += data  # a bytearray: mpremote reads one byte at a time
        if len(seen) > 2 * _KEEP:
            del seen[:-_KEEP]
        if not self._resets:
            return
        window = self._tail + data
        m = RESET_LINE.search(window)
        self._tail = window[-_TAIL:]
        if m:
            self.disarm()
            at = max(0, len(seen) - len(window) + m.start() - 256)
            raise BoardReset(f"the board reset during {self._what}", bytes(seen[at:]))

    def unread(self, data: bytes) -> None:
        """Give bytes back: the next reads return them first."""
        self._back = data + self._back

    def read(self, n: int = 1) -> bytes:
        """Up to `n` bytes (pyserial's read: waits for `n` until the port's timeout).

        mpremote reads one byte a call; a read of fewer bytes than the port already holds
        takes them all in one system call and keeps the rest for the next reads. Bytes are
        watched (`_feed`) when a read returns them, not when they come off the port, so what
        is armed at that moment decides, as without the read-ahead. A read of more bytes than
        are held gets the rest from the port, waiting as pyserial's does: mpremote reads the
        raw-paste window size as read(2) and unpacks exactly two bytes (one held, one not yet
        read, was a "garbled" answer under load)."""
        self._check()
        out = b""
        if self._back:
            out, self._back = self._back[:n], self._back[n:]
            if len(out) == n:
                return out
        return out + self._read(n - len(out))

    def _read(self, n: int) -> bytes:
        if not self._ahead:
            waiting = self._ser.in_waiting
            if waiting <= n:
                data = self._ser.read(n)
                if data:
                    self._feed(data)
                else:
                    self._check()
                return data
            self._ahead = self._ser.read(waiting)  # there already: does not wait
        data, self._ahead = self._ahead[:n], self._ahead[n:]
        if len(data) < n:
            data += self._ser.read(n - len(data))
        self._feed(data)
        return data

    def inWaiting(self) -> int:  # noqa: N802  (pyserial's old name, which mpremote calls)
        self._check()
        return len(self._back) + len(self._ahead) + int(self._ser.inWaiting())

    @property
    def in_waiting(self) -> int:
        self._check()
        return len(self._back) + len(self._ahead) + int(self._ser.in_waiting)


_QUIET, _SETTLE_MAX = 0.03, 1.0  # s: drain until the port is quiet this long, at most this


def settle(ser: Watch) -> bytes:
    """Drain what the board still prints after entering the raw REPL, giving the final prompt
    `>` back to the port for mpremote; return what was drained. A Ctrl-A of an earlier
    attempt that the board took late (it was booting, or running code that reads stdin)
    prints a second banner; left on the port, the next command's raw-paste handshake read it
    and failed."""
    got = b""
    now = time.monotonic()
    end, last = now + _SETTLE_MAX, now
    while now < end and now - last < _QUIET:
        n = ser.in_waiting
        if n:
            got += ser.read(n)
            last = time.monotonic()
        else:
            time.sleep(0.005)
        now = time.monotonic()
    if got.endswith(b">"):
        ser.unread(b">")
        got = got[:-1]
    return got if got.strip(b">") else b""
