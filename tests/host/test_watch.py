"""mpguard.watch: the port's watch sees a board reset in what the board prints, ends a wait
at its deadline, and passes bytes on untouched when disarmed."""

from __future__ import annotations

import time

import pytest

from mpguard.errors import BoardReset, LinkDeadline
from mpguard.watch import RESET_LINE, Watch


class Port:
    """A serial port that hands out prepared chunks, then nothing (like a quiet board)."""

    def __init__(self, *chunks: bytes):
        self.chunks = list(chunks)
        self.timeout = 2.0
        self.written = b""

    def read(self, n: int) -> bytes:
        if not self.chunks:
            return b""
        c = self.chunks[0]
        out, rest = c[:n], c[n:]
        if rest:
            self.chunks[0] = rest
        else:
            self.chunks.pop(0)
        return out

    def inWaiting(self) -> int:  # noqa: N802
        return len(self.chunks[0]) if self.chunks else 0

    in_waiting = property(inWaiting)

    def write(self, data: bytes) -> int:
        self.written += data
        return len(data)


# What boards print when they start, from their ROM or MicroPython (one line each).
RESETS = {
    "esp32 power on": b"ets Jul 29 2019 12:21:46\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n",
    "esp32 software reset": b"ets Jun  8 2016 00:22:57\r\n\r\nrst:0xc (SW_CPU_RESET),boot:0x13\r\n",
    "esp32 watchdog": b"rst:0x8 (TG1WDT_SYS_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n",
    "esp32-s3 power on": b"ESP-ROM:esp32s3-20210327\r\nBuild:Mar 27 2021\r\nrst:0x1 (POWERON),boot:0x8 (SPI_FAST_FLASH_BOOT)\r\n",
    "micropython soft reset": b"MPY: soft reboot\r\n",
}
# Output that mentions resets without being one.
NOT_RESETS = [b"reset the counter\r\n", b"soft reboot\r\n", b"rst: 0x1\r\n", b"MPY: soft\r\n"]


@pytest.mark.parametrize("name", list(RESETS))
def test_a_board_reset_is_seen_even_split_across_reads(name):
    line = RESETS[name]
    for cut in range(1, len(line)):
        w = Watch(Port(b"tick\r\n", line[:cut], line[cut:], b"app output\r\n"))
        w.arm(None, "the test")
        with pytest.raises(BoardReset, match="the board reset during the test") as ei:
            while w.read(64):
                pass
        assert line.rstrip()[:8] in ei.value.output


@pytest.mark.parametrize("text", NOT_RESETS)
def test_output_that_only_mentions_a_reset_is_not_one(text):
    assert not RESET_LINE.search(text)
    w = Watch(Port(text, text))
    w.arm(None)
    assert w.read(100) + w.read(100) == text + text


def test_disarmed_or_resets_off_passes_everything():
    line = RESETS["esp32 power on"]
    w = Watch(Port(line))
    assert w.read(1000) == line  # never armed
    w = Watch(Port(line))
    w.arm(time.monotonic() + 60, "connecting", resets=False)
    assert w.read(1000) == line


def test_deadline_ends_a_wait_on_a_board_that_keeps_printing():
    w = Watch(Port(*[b"tick\r\n"] * 1000))
    w.arm(time.monotonic() - 1, "an eval")  # already past: the next look at the port ends it
    with pytest.raises(LinkDeadline, match="an eval did not finish before its deadline"):
        w.read(1)
    assert w.read(6) == b"tick\r\n"  # disarmed by then: the caller may drain the port


def test_in_waiting_checks_the_deadline_too():
    w = Watch(Port(b"x"))
    w.arm(time.monotonic() - 1)
    with pytest.raises(LinkDeadline):
        _ = w.in_waiting
    w.arm(time.monotonic() - 1)
    with pytest.raises(LinkDeadline):
        w.inWaiting()


def test_the_port_s_own_attributes_pass_through_and_unread_comes_first():
    port = Port(b"bc")
    w = Watch(port)
    w.timeout = 0.05
    assert port.timeout == 0.05 and w.timeout == 0.05
    w.write(b"\x03")
    assert port.written == b"\x03"
    w.unread(b">")
    assert w.in_waiting == 3
    assert w.read(1) == b">" and w.read(5) == b"bc"


class CountingPort(Port):
    def __init__(self, *chunks: bytes):
        super().__init__(*chunks)
        self.reads = 0

    def read(self, n: int) -> bytes:
        self.reads += 1
        return super().read(n)


def test_one_byte_reads_take_what_the_port_holds_in_one_read():
    # mpremote reads one byte a call: the watch takes what is waiting in one port read
    text = b"hello from the board\r\n>"
    port = CountingPort(text)
    w = Watch(port)
    assert w.in_waiting == len(text)
    got = b"".join(w.read(1) for _ in range(5))
    assert got == b"hello" and port.reads == 1
    assert w.in_waiting == len(text) - 5  # what was taken ahead still counts as waiting
    assert w.read(18) == text[5:] and port.reads == 1  # all held: the port is not asked
    assert w.read(1) == b"" and port.reads == 2  # nothing held: the port is asked (and waits)


def test_a_read_of_more_than_is_held_gets_the_rest_from_the_port():
    # mpremote's raw paste: read(2) for "R\x01", then read(2) for the window size, which
    # must be two bytes even when only one of them was taken ahead (struct.unpack)
    port = CountingPort(b"R\x01\x80", b"\x00>")
    w = Watch(port)
    assert w.read(2) == b"R\x01"  # three were waiting: one is held
    assert w.read(2) == b"\x80\x00" and port.reads == 2
    assert w.read(1) == b">"
    # and bytes given back come first, the rest from the port
    w2 = Watch(Port(b"bc"))
    w2.unread(b">")
    assert w2.read(3) == b">bc"


def test_bytes_taken_ahead_are_watched_when_read_not_when_taken():
    # Taken off the port while disarmed, read after arm: the reset in them is still seen (as
    # if they had waited on the port), and bytes read while disarmed are not
    line = RESETS["micropython soft reset"]
    w = Watch(Port(b"x" + line + b"after\r\n"))
    assert w.read(1) == b"x"  # disarmed: the rest was taken ahead
    w.arm(None, "the test")
    with pytest.raises(BoardReset):
        while w.read(1):
            pass
    w2 = Watch(Port(line + b"tail"))
    assert w2.read(len(line)) == line  # disarmed: passed on untouched
    w2.arm(None, "the test")
    assert w2.read(10) == b"tail"
