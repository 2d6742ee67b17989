"""The board link's resets (a part of `mpguard.link.BoardLink`).

- `soft_reset()`: Ctrl-D in the raw REPL; boot.py runs again (main.py does not), then the raw
  REPL is back. Bounded by the link's connect timeout, whatever the board prints.
- `hard_reset(wait, until)`: `machine.reset()`; what the board prints (boot.py, main.py: its
  app) is read without interrupting it for `wait` s or until a mark, then the link connects
  again (which interrupts the app). Deploy watches a trial boot this way.
- `reboot()`: `machine.reset()`, and the board is left running its app; the link lets go and
  connects again only when next used.

Both wait for the reset itself (the reset line a board prints, `watch.RESET_LINE`, or its
port going away) for at most RESET_SEEN seconds before anything else: the raw REPL answers
"OK" before it runs `machine.reset()`, and a link that connected at once sent its Ctrl-C
into that code, so the board did not reset at all (once in a few hundred reboots on the
virtual board, whose reset takes longer than a chip's).
"""

from __future__ import annotations

import time

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from .errors import BoardNotAnswering, LinkDeadline
from .watch import RESET_LINE

RESET_SEEN = 3.0  # seconds a reset may take to show (a chip's ROM banner comes within ~0.1 s)


class ResetOps:
    """Mixin of BoardLink: needs its `port`, `connect_timeout`, `transport`, `_record`,
    `_send_reset`, `close`, `connect` and `_stale`."""

    port: str
    connect_timeout: float
    _stale: bool

    @property
    def transport(self) -> SerialTransport:
        raise NotImplementedError  # BoardLink's

    def _record(self, data: bytes) -> None:
        raise NotImplementedError

    def _send_reset(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def connect(self, soft_reset: bool = False) -> None:
        raise NotImplementedError

    def soft_reset(self) -> None:
        """Ctrl-D in the raw REPL: boot.py runs again, then we are back in the raw REPL."""
        t = self.transport
        t.serial.arm(time.monotonic() + self.connect_timeout, "a soft reset", resets=False)
        try:
            t.serial.write(b"\x04")
            data = t.read_until(1, b"raw REPL; CTRL-B to exit\r\n", timeout_overall=self.connect_timeout)
        except (TransportError, OSError, LinkDeadline) as e:
            self._stale = True
            got = t.serial.seen()
            self._record(got)
            raise BoardNotAnswering(f"board on {self.port} did not come back: {e}; it printed "
                                    f"{got[-300:]!r}") from None
        finally:
            t.serial.disarm()
        self._record(data)
        if not data.endswith(b"raw REPL; CTRL-B to exit\r\n"):
            raise BoardNotAnswering(f"board on {self.port} did not come back after soft reset")

    def hard_reset(self, wait: float = 0.0, until: bytes | None = None,
                   until_any: tuple[bytes, ...] = ()) -> bytes:
        """`machine.reset()`: the board reboots and runs boot.py and main.py.

        Collects what the board prints for `wait` seconds (or until `until` appears), then
        reconnects into the raw REPL (interrupting main.py) and returns the collected output.
        """
        self._send_reset()
        return self.wait_boot(wait, until, until_any)

    def reboot(self) -> None:
        """`machine.reset()`, and let the board run (boot.py, main.py: its app). The link lets
        go of the board; its next use reconnects (which interrupts the app)."""
        self._send_reset()
        self.transport.in_raw_repl = False  # nothing more to send: no Ctrl-B into the boot
        self._record(self._read_boot(0.0, ()))
        self.close()
        self._stale = True

    def wait_boot(self, wait: float = 0.0, until: bytes | None = None,
                  until_any: tuple[bytes, ...] = ()) -> bytes:
        """Read the board's output for `wait` s or until `until` (or any of `until_any`)
        appears, then reconnect."""
        marks = until_any + ((until,) if until is not None else ())
        self.transport.in_raw_repl = False
        seen = self._read_boot(wait, marks)
        self._record(seen)
        self.close()
        self.connect(soft_reset=False)
        return seen

    def _read_boot(self, wait: float, marks: tuple[bytes, ...]) -> bytes:
        """What the board prints after a reset was sent: until the reset shows (RESET_SEEN s
        at most), then until `wait` s have passed since the call or a mark appears."""
        t = self.transport
        t0 = time.monotonic()
        deadline, reset_by = t0 + wait, t0 + RESET_SEEN
        seen = b""
        reset = False
        while True:
            now = time.monotonic()
            if reset and (now >= deadline or any(m in seen for m in marks)):
                break
            if not reset and now >= max(deadline, reset_by):
                break
            try:
                n = t.serial.in_waiting
                chunk = t.serial.read(n or 1) if n else b""
            except OSError:  # the port went away with the board (native USB): it reset
                chunk, reset = b"", True
            if chunk:
                seen += chunk
                reset = reset or RESET_LINE.search(seen) is not None
            else:
                time.sleep(0.01)
        return seen
