"""Bulk transfer to a board: the host side of agent/guard/xfer.py (wire format described
there). Faster than `mpremote fs cp`, which sends 256-byte `repr` chunks with one round trip
each: here raw bytes flow continuously, flow-controlled by one-byte acks so a small UART RX
buffer never overflows, with an end-to-end SHA-256 the board checks before it commits.

`stream(ser, data)` sends the payload to a board whose code already waits in a
`guard.xfer.Reader(len, sha)`; `BoardLink.stream` (mpguard.link) starts that code, a
streaming agent call through guard.rpc, and reads its answer.

A transfer the host breaks off itself (the progress callback raised, Ctrl-C on the host, or
its deadline passed) first lets the board take the frames in flight (their acks are read, bounded by SETTLE
seconds): bytes left unread in the board's RX buffer would reach its REPL as keystrokes once
the host interrupts the Reader (Ctrl-A, Ctrl-B, Ctrl-E... are ordinary payload bytes).

Compressed transfers (docs/decisions/0017-transfer-window-and-deflate.md): `compress(data)`
gives the wire form the agent's guard.xfer.Z inflates, chunks of at most ZCHUNK payload bytes,
each a 2-byte big-endian length and an independent raw deflate stream with a 2**WBITS-byte
window; or None when that is not smaller than `data`. The window of two 128-byte frames
does not grow (the decision record says why): compression is how a transfer gets faster
when the link's latency, not its baud rate, bounds it.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Callable
from typing import Protocol

from .errors import BoardNotAnswering, LinkDeadline

FRAME = 128  # must equal agent/guard/xfer.py _FRAME
WINDOW = 2  # must equal agent/guard/xfer.py _WINDOW
ESC = 0x10
ACK = 0x06
NAK = 0x15  # the board refused early: stop, send ABORT_FRAME
ABORT_FRAME = bytes([ESC, 0x00]) + bytes(FRAME - 2)
SETTLE = 2.0  # s: longest wait for the acks of frames in flight when the host breaks off
_SPECIAL = (0x03, ESC)
WBITS = 10  # must equal agent/guard/xfer.py _WBITS: the board's inflate window is 2**WBITS B
ZCHUNK = 1024  # payload bytes per compressed chunk (an independent deflate stream)
ZMAX = 1088  # must equal agent/guard/xfer.py _ZMAX: the most compressed bytes in one chunk


class SerialLike(Protocol):
    def write(self, data: bytes) -> int | None: ...
    def read(self, n: int) -> bytes: ...
    @property
    def in_waiting(self) -> int: ...


def encode(data: bytes) -> bytes:
    """Escape Ctrl-C and the escape byte; pad to whole frames."""
    out = bytearray()
    start = 0
    for i, b in enumerate(data):
        if b in _SPECIAL:
            out += data[start:i]
            out.append(ESC)
            out.append(b ^ 0x20)
            start = i + 1
    out += data[start:]
    if len(out) % FRAME:
        out += bytes(FRAME - len(out) % FRAME)
    return bytes(out)


def deflate(chunk: bytes) -> bytes:
    """`chunk` as a raw deflate stream of its own with a 2**WBITS-byte window (what the
    board's `deflate.DeflateIO(stream, RAW, WBITS)` inflates)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -WBITS)
    return c.compress(chunk) + c.flush()


def compress(data: bytes) -> bytes | None:
    """The compressed wire form of `data` (see above), or None when it is not smaller."""
    out = bytearray()
    for i in range(0, len(data), ZCHUNK):
        z = deflate(data[i:i + ZCHUNK])
        if len(z) > ZMAX:  # never: stored blocks add 5 bytes to 2 KiB
            return None
        out += len(z).to_bytes(2, "big") + z
        if len(out) >= len(data):
            return None
    return bytes(out) if data else None


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stream(
    ser: SerialLike,
    data: bytes,
    *,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 10.0,
    console: bytearray | None = None,
) -> bool:
    """Send `data` (already announced to a waiting board Reader) frame by frame.

    An ack is a credit: the host keeps at most WINDOW frames beyond the last ack in flight.
    A board that reads ahead (docs/decisions/0018) sends a block's acks before the block.

    Returns True when every frame was sent and acknowledged, False when the board refused early
    (NAK; the abort frame has then been sent). Bytes the board prints other than acks are
    appended to `console`. Raises BoardNotAnswering if no ack arrives for `timeout` seconds
    (whatever else the board prints: an app that started after a reset does not count).
    """
    enc = encode(data)
    frames = len(enc) // FRAME
    sent = acked = 0
    last = time.monotonic()
    nak = False

    def pump(block: bool) -> None:
        # One byte at a time, and never past the last ack (or a NAK): what the board prints
        # after that (its answer, the raw REPL's EOF markers and prompt) stays on the port
        # for the caller.
        nonlocal acked, last, nak
        while acked < frames and not nak:
            if not block and not ser.in_waiting:
                return
            b = ser.read(1)
            if not b:
                return
            block = False
            if b[0] == ACK:
                acked += 1
                last = time.monotonic()
            elif b[0] == NAK:
                nak = True
            else:
                # only acks count as the board answering: an app that started after a
                # reset and prints must not keep the transfer alive
                if console is not None:
                    console.append(b[0])
                if time.monotonic() - last > timeout:
                    return

    def settle() -> None:
        # The host breaks off: read the acks of the frames in flight, so the board has taken
        # them off its RX buffer before anything else (Ctrl-C, Ctrl-B) reaches it.
        end = time.monotonic() + min(SETTLE, timeout)
        try:
            while acked < sent and not nak and time.monotonic() < end:
                pump(True)
        except OSError:
            pass  # the link itself is gone: nothing to settle

    try:
        # a board that reads ahead acks (credits) frames before they are sent: the last ack
        # may come before the last frame has gone
        while acked < frames or sent < frames:
            if nak:
                ser.write(ABORT_FRAME)
                return False
            if sent < frames and sent - acked < WINDOW:
                ser.write(enc[sent * FRAME : (sent + 1) * FRAME])
                sent += 1
                pump(False)
                if progress:
                    try:
                        progress(min(len(data), sent * FRAME), len(data))
                    except BaseException:
                        settle()
                        raise
                continue
            before = acked
            pump(True)
            if acked == before and time.monotonic() - last > timeout:
                raise BoardNotAnswering(
                    f"board stopped acknowledging after {acked} of {frames} frames"
                )
    except (KeyboardInterrupt, LinkDeadline):  # the host gives up: let the board take its frames
        settle()
        raise
    return True
