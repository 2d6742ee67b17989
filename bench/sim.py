"""Virtual board: start time, terminal byte rate (UART-throttled and not), heap left to code."""

from __future__ import annotations

import os
import select
import statistics
import tempfile
import time
import tty

from mpguard import sim

_left = b""


def _read_until(fd: int, want: bytes, timeout: float = 60.0) -> bytes:
    global _left
    buf = _left
    end = time.monotonic() + timeout
    while want not in buf and time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            buf += os.read(fd, 65536)
    i = buf.find(want)
    if i < 0:
        _left = b""
        return buf
    _left = buf[i + len(want) :]
    return buf[: i + len(want)]


def _raw(fd: int) -> None:
    global _left
    _left = b""
    os.write(fd, b"\r\x03\r\x01")
    _read_until(fd, b"raw REPL; CTRL-B to exit\r\n>")


def _exec(fd: int, code: bytes) -> tuple[bytes, float, float]:
    """(output, seconds to send code until OK, seconds from OK to the end of output)."""
    t0 = time.perf_counter()
    os.write(fd, code + b"\x04")
    _read_until(fd, b"OK")
    t1 = time.perf_counter()
    out = _read_until(fd, b"\x04>")
    t2 = time.perf_counter()
    return out, t1 - t0, t2 - t1


def _rates(baud: int | None) -> tuple[float, float]:
    info = sim.start("bench-" + str(baud or 0), baud=baud)
    fd = os.open(info.port, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    try:
        _raw(fd)
        k = 6 if baud else 256  # blocks of 4 KiB out; the code sent in is 8 times smaller
        n = k * 4096
        _exec(fd, b"pass")
        _, _, t_out = _exec(fd, b"import sys\ns = 'x' * 4096\nfor i in range(%d):\n    sys.stdout.write(s)" % k)
        src = b"#" + b"y" * (3000 if baud else 8000) + b"\n"
        _, t_in, _ = _exec(fd, src)
        return n / t_out, len(src) / t_in
    finally:
        os.close(fd)
        sim.stop(info.name)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        os.environ["MPGUARD_SIM_DIR"] = d
        print("## virtual board (mpguard sim)")
        times = []
        for i in range(5):
            t = time.perf_counter()
            info = sim.start(f"start{i}")
            times.append(time.perf_counter() - t)
            sim.stop(info.name)
        print(f"  start until the board answers   {statistics.median(times) * 1000:7.0f} ms (median of 5)")
        nominal = 115200 / 10
        out, inn = _rates(115200)
        print(f"  --baud 115200 device->host      {out:9.0f} B/s = {out / nominal:5.1%} of {nominal:.0f} B/s")
        print(f"  --baud 115200 host->device      {inn:9.0f} B/s = {inn / nominal:5.1%} of {nominal:.0f} B/s")
        out, inn = _rates(None)
        print(f"  unthrottled device->host        {out:9.0f} B/s")
        print(f"  unthrottled host->device (raw)  {inn:9.0f} B/s")
        info = sim.start("heap")
        fd = os.open(info.port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        _raw(fd)
        res, _, _ = _exec(fd, b"import gc\ngc.collect()\nprint(gc.mem_free(), gc.mem_alloc())")
        os.close(fd)
        sim.stop(info.name)
        free, alloc = (int(x) for x in res.split(b"\x04")[0].split())
        print(f"  heap free to code at the REPL   {free:7d} B (firmware holds {alloc} B; "
              f"profile heap {sim.core._profile('sim')['heap_bytes']} B)")


if __name__ == "__main__":
    main()
