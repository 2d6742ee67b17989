"""Virtual board: start and soft-reset time, terminal byte rate (UART-throttled and not), and
the heap the firmware keeps for itself (what FIRMWARE_HEAP in mpguard.sim.lifecycle pays for).
"""

from __future__ import annotations

import os
import select
import statistics
import tempfile
import time
import tty

from mpguard import sim

_left = b""
_RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"


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


def _open(port: str) -> int:
    global _left
    _left = b""
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    return fd


def _raw(fd: int) -> None:
    global _left
    _left = b""
    os.write(fd, b"\r\x03\r\x01")
    _read_until(fd, _RAW_PROMPT)


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
    fd = _open(str(info.port))
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


_HEAP = b"import gc, micropython\ngc.collect()\nprint(gc.mem_free(), gc.mem_alloc(), micropython.mem_peak())"


def _heap(fd: int) -> tuple[int, int, int]:
    res, _, _ = _exec(fd, _HEAP)
    free, alloc, peak = (int(x) for x in res.split(b"\x04")[0].split())
    return free, alloc, peak


def _friendly_heap(fd: int) -> int:
    """Heap the firmware holds at the friendly REPL after power-on (no raw REPL loaded)."""
    global _left
    _left = b""
    os.write(fd, b"import gc; gc.collect(); print('held', gc.mem_alloc())\r")
    out = _read_until(fd, b"\r\n>>> ")
    return int(out.split(b"held ")[-1].split()[0])


def _board() -> None:
    times = []
    for i in range(5):
        t = time.perf_counter()
        info = sim.start(f"start{i}")
        times.append(time.perf_counter() - t)
        sim.stop(info.name)
    print(f"  start until the board answers   {statistics.median(times) * 1000:7.0f} ms (median of 5)")
    info = sim.start("heap")
    fd = _open(str(info.port))
    try:
        _read_until(fd, b">>> ")
        friendly = _friendly_heap(fd)
        _raw(fd)
        resets = []
        for _ in range(20):  # mpremote soft-resets the board before each command
            t = time.perf_counter()
            os.write(fd, b"\x04")
            _read_until(fd, _RAW_PROMPT)
            resets.append(time.perf_counter() - t)
        free, alloc, peak = _heap(fd)
    finally:
        os.close(fd)
        sim.stop(info.name)
    print(f"  soft reset (raw REPL, Ctrl-D)   {statistics.median(resets) * 1000:7.1f} ms (median of 20)")
    print(f"  heap free to code at the REPL   {free:7d} B (profile heap "
          f"{sim.hardware.profile('sim')['heap_bytes']} B)")
    print(f"  heap the firmware holds         {alloc:7d} B in the raw REPL after a soft reset, "
          f"{friendly} B at the friendly REPL after power-on")
    print(f"  heap peak of a boot             {peak:7d} B (micropython.mem_peak(), raw REPL boot "
          f"+ this measurement; FIRMWARE_HEAP {sim.lifecycle.FIRMWARE_HEAP} B)")


def _smallest_boot_heap() -> int:
    """The smallest interpreter heap the firmware boots in (blank flash: formats it first)."""
    prof = int(sim.hardware.profile("sim")["heap_bytes"])
    saved = sim.lifecycle.FIRMWARE_HEAP
    lo, hi, i = 16 * 1024, 160 * 1024, 0
    try:
        while hi - lo > 512:
            mid = (lo + hi) // 2
            sim.lifecycle.FIRMWARE_HEAP = mid - prof
            i += 1
            try:
                sim.stop(sim.start(f"minheap{i}").name)
                hi = mid
            except sim.SimError:
                lo = mid
    finally:
        sim.lifecycle.FIRMWARE_HEAP = saved
    return hi


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        os.environ["MPGUARD_SIM_DIR"] = d
        print("## virtual board (mpguard sim)")
        _board()
        print(f"  smallest heap it boots in       {_smallest_boot_heap():7d} B (every profile's heap "
              f"+ FIRMWARE_HEAP must be above it)")
        nominal = 115200 / 10
        out, inn = _rates(115200)
        print(f"  --baud 115200 device->host      {out:9.0f} B/s = {out / nominal:5.1%} of {nominal:.0f} B/s")
        print(f"  --baud 115200 host->device      {inn:9.0f} B/s = {inn / nominal:5.1%} of {nominal:.0f} B/s")
        out, inn = _rates(None)
        print(f"  unthrottled device->host        {out:9.0f} B/s")
        print(f"  unthrottled host->device (raw)  {inn:9.0f} B/s")


if __name__ == "__main__":
    main()
