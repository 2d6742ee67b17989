"""Helpers for the tests that look at a virtual board's processes and serial port (a helper
module, not tests): a process's children from /proc, and reading a port until a token."""

from __future__ import annotations

import time
from pathlib import Path

import serial


def children(pid: int) -> list[int]:
    """The process's children, from each of its threads' `children` list: a sim's
    supervisor has its fork server, the server the boot."""
    kids = []
    for t in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids += [int(c) for c in t.read_text().split()]
        except OSError:
            continue
    return kids


def until(s: serial.Serial, token: bytes, timeout: float = 20) -> bytes:
    """Read the port until `token` has come; AssertionError with the last output after
    `timeout` seconds."""
    buf, end = b"", time.monotonic() + timeout
    while token not in buf:
        if time.monotonic() > end:
            raise AssertionError(f"waited {timeout} s for {token!r}; the board printed {buf[-300:]!r}")
        buf += s.read(4096)
    return buf
