# Bulk transfer, host -> board, over the REPL serial link (faster than mpremote fs cp).
#
# Wire format (the host side is mpguard.xfer):
# - the payload is encoded so that Ctrl-C (0x03), which would interrupt the running code,
#   never crosses the link: 0x03 and the escape byte 0x10 are sent as 0x10, b ^ 0x20;
# - encoded bytes travel in frames of exactly _FRAME bytes (the last one padded);
# - the board acks each frame with one 0x06 byte as soon as it has read it off stdin,
#   before doing anything slow with it, and the host keeps at most _WINDOW frames unacked:
#   so no more than _FRAME * _WINDOW bytes ever wait in the board's UART RX buffer;
# - read-ahead (`ahead`, a host that asks for it: docs/decisions/0018): an ack is a credit,
#   one frame more the host may send. The board reads a block of k frames at a time and
#   sends their k acks before it reads them, so they come back to back and are taken off
#   stdin as they arrive; k is at most what the payload surely still has (a frame decodes to
#   at most _FRAME bytes) and what the block holds (heap the consumer does not need). When
#   the block is read, the acks sent equal the frames read, as without read-ahead: what
#   waits in the RX buffer while the consumer is busy is still at most _WINDOW frames;
# - end-to-end integrity: the host states the payload length and SHA-256 up front; the
#   reader checks the digest when the last byte is read, before handing it out, so a
#   consumer (an install) never commits a corrupted stream;
# - a consumer that refuses early calls abort(): the board sends NAK (0x15), the host stops
#   and sends one abort frame (ESC 0x00 ...), the board drops frames up to it;
# - no data for _TIMEOUT_MS: the transfer is abandoned (GuardError "xfer_timeout") and
#   the consumer discards what it staged; the host then restarts from the beginning.
import binascii
import hashlib
import select
import sys

from micropython import const

from guard import GuardError

_FRAME = const(128)
_WINDOW = const(2)
_ESC = const(0x10)
_TIMEOUT_MS = const(5000)
_AHEAD = const(16384)  # the largest read-ahead block
_SPARE = const(24576)  # heap left to the consumer (the agent's budget) before a block is taken

_ZMAX = const(1088)
_WBITS = const(10)

# Reasons: xfer_timeout, xfer_hash (digest mismatch), xfer_format (bad escape, bad deflate
# data), xfer_size (inflated data longer or shorter than announced).


class Reader:
    # A stream with readinto(): the decoded payload, exactly `length` bytes.
    def __init__(self, length, sha_hex, inp=None, out=None, timeout_ms=_TIMEOUT_MS, ahead=0):
        self.left = length  # payload bytes not yet handed out
        self.want = sha_hex
        self.h = hashlib.sha256()
        self.inp = inp or sys.stdin.buffer
        self.out = out or sys.stdout.buffer
        self.poll = select.poll()
        self.poll.register(self.inp, select.POLLIN)
        self.tmo = timeout_ms
        n = _FRAME
        if ahead:
            import gc

            gc.collect()
            n = (gc.mem_free() - _SPARE) // 2
        while True:
            n = max(_FRAME, min(_AHEAD, n - n % _FRAME))
            try:
                self.frame = bytearray(n)  # free bytes need not be in one piece
                break
            except MemoryError:
                if n == _FRAME:
                    raise
                n //= 2
        self.ahead = ahead
        self.fmv = memoryview(self.frame)
        self.pos = self.end = 0  # read position and end of the current block (pos = end: spent)
        self.esc = False

    def _fill(self, more):
        # Read the next block: `more` payload bytes are still to decode; 0 (abort): one frame,
        # no ack.
        k = 1
        if more and self.ahead:
            k = min(len(self.frame) // _FRAME, (more + _FRAME - 1) // _FRAME)
            self.out.write(b"\x06" * k)
        k *= _FRAME
        mv = self.fmv
        got = 0
        while got < k:
            if not self.poll.poll(self.tmo):
                raise GuardError("xfer_timeout")
            n = self.inp.readinto(mv[got:k])
            if not n:
                raise GuardError("xfer_timeout")
            got += n
        if more and not self.ahead:
            self.out.write(b"\x06")
        self.pos = 0
        self.end = k

    def readinto(self, buf):
        # Fill buf with decoded payload bytes; return how many (0 at the end).
        if not self.left:
            return 0
        mv = memoryview(buf)
        n = 0
        want = min(len(mv), self.left)
        frame = self.frame
        while n < want:
            if self.pos >= self.end:
                self._fill(self.left - n)
            p = self.pos
            if self.esc:
                b = frame[p]
                if b != 0x23 and b != 0x30:
                    raise GuardError("xfer_format")
                mv[n] = b ^ 0x20
                n += 1
                p += 1
                self.esc = False
            # copy the run up to the next escape (or the block's end) in one slice
            e = frame.find(b"\x10", p, self.end)
            end = self.end if e < 0 else e
            k = min(end - p, want - n)
            if k > 0:
                mv[n : n + k] = self.fmv[p : p + k]
                n += k
                p += k
            if p == e and n < want:
                self.esc = True
                p += 1
            self.pos = p
        self.h.update(mv[:n])
        self.left -= n
        if not self.left:
            if binascii.hexlify(self.h.digest()).decode() != self.want:
                raise GuardError("xfer_hash")
            # the rest of the last frame is padding
            self.pos = self.end
        return n

    def abort(self):
        # Stop a transfer early (the consumer refused): send NAK; the host stops and answers
        # with one abort frame (it starts with ESC 0x00, which data never does); read and drop
        # what was in flight up to it, so the link returns to the REPL clean.
        if not self.left:
            return
        # payload bytes still undecoded in the current block (its padding counts too: that
        # only matters when the block ends with the last frame, where the answer is the same)
        f = self.frame
        n = 0
        esc = self.esc
        for i in range(self.pos, self.end):
            if esc:
                esc = False
                n += 1
            elif f[i] == _ESC:
                esc = True
            else:
                n += 1
        if n >= self.left:
            # the rest of the payload is in the block already read (up to the last frame): the
            # host sent everything and will not look for a NAK, so none is sent and no abort
            # frame awaited (that wait cost a refused small bundle the whole timeout)
            self.left = 0
            self.pos = self.end
            return
        self.out.write(b"\x15")
        self.left = 0
        try:
            while True:
                self._fill(0)
                if f[0] == _ESC and f[1] == 0:
                    return
        except GuardError:
            pass


class Z:
    # The inflated stream of a compressed transfer read by Reader r: exactly n bytes.
    def __init__(self, r, n):
        self.r = r
        self.n = n
        self.d = None

    def readinto(self, buf):
        n = self.n
        if not n:
            return 0
        mv = memoryview(buf)[:n]
        k = 0
        while not k:
            d = self.d
            if d:
                try:
                    k = d.readinto(mv)
                except (OSError, EOFError):
                    raise GuardError("xfer_format")
                if k:
                    break
            d = self.d = None  # the spent chunk goes before the next one is allocated
            c = bytearray(2)
            if self.r.readinto(c) < 2:
                raise GuardError("xfer_size")  # the wire ended before n bytes came out
            k = (c[0] << 8) | c[1]
            if k > _ZMAX:
                raise GuardError("xfer_format")
            c = bytearray(k)
            if self.r.readinto(c) < k:
                raise GuardError("xfer_format")
            k = 0
            import deflate
            from io import BytesIO

            self.d = deflate.DeflateIO(BytesIO(c), deflate.RAW, _WBITS)
            del c  # BytesIO holds a copy
        n -= k
        self.n = n
        # the last bytes: the chunk must end here and the wire with it (digest checked)
        try:
            if not n and (d.read(1) or self.r.left):  # type: ignore[union-attr]
                raise GuardError("xfer_size")
        except (OSError, EOFError):
            raise GuardError("xfer_size")
        return k
