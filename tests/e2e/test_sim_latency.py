"""The virtual board's latency (`--latency MS`): a delay line on every byte, each way, as a
USB-serial bridge has, composable with the baud limit (docs/sim.md). Only lower bounds on
time are asserted (a delay line cannot be faster than its delay); speed is bench's job."""

from __future__ import annotations

import os
import select
import time
import tty

import pytest

import mpguard.sim as simlib

pytestmark = pytest.mark.timeout(120)


class Port:
    """The sim's port opened raw, as a terminal program would."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)

    def read_until(self, want: bytes, timeout: float = 20.0) -> bytes:
        buf = b""
        end = time.monotonic() + timeout
        while want not in buf and time.monotonic() < end:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                buf += os.read(self.fd, 65536)
        assert want in buf, f"no {want!r} in {buf[-200:]!r}"
        return buf

    def drain(self, quiet: float = 0.3) -> None:
        while select.select([self.fd], [], [], quiet)[0]:
            os.read(self.fd, 65536)

    def close(self) -> None:
        os.close(self.fd)


def _round_trips(port: str, n: int = 5) -> list[float]:
    """Seconds from typing Enter at the friendly REPL to its next prompt, n times."""
    p = Port(port)
    try:
        os.write(p.fd, b"\x02\r")
        p.read_until(b">>> ")
        p.drain()
        times = []
        for _ in range(n):
            t0 = time.monotonic()
            os.write(p.fd, b"\r")
            p.read_until(b">>> ")
            times.append(time.monotonic() - t0)
        return times
    finally:
        p.close()


@pytest.mark.parametrize("baud", [None, 115200], ids=["unthrottled", "115200-baud"])
def test_round_trip_takes_at_least_twice_the_latency(sim_factory, baud):
    lat_ms = 40
    info = sim_factory(latency=lat_ms, baud=baud)
    assert info.latency_ms == lat_ms and simlib.get("t").latency_ms == lat_ms
    times = _round_trips(info.port)
    assert min(times) >= 2 * lat_ms / 1000, times


def test_data_arrives_intact_both_ways_through_the_delay(sim_factory, tmp_path, mpr):
    port = sim_factory(latency=5, baud=921600).port
    blob = tmp_path / "b.bin"
    blob.write_bytes(os.urandom(3000) + bytes(range(256)))
    mpr(port, "fs", "cp", str(blob), ":b.bin")
    back = tmp_path / "back.bin"
    mpr(port, "fs", "cp", ":b.bin", str(back))
    assert back.read_bytes() == blob.read_bytes()
    text = "é" * 500 + "end"
    assert mpr(port, "exec", f"print({text!r})").stdout.strip() == text


def test_running_sim_keeps_its_latency(sim_factory):
    sim_factory(latency=3)
    assert simlib.start("t").latency_ms == 3  # same settings: left as it is
    assert simlib.start("t", latency=3).latency_ms == 3
    with pytest.raises(simlib.SimError, match=r"other settings \(--latency\)"):
        simlib.start("t", latency=16)
    assert simlib.get("t").latency_ms == 3
