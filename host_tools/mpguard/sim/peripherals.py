"""The virtual board's peripherals, host end: what the app did (recorded outputs) and what it
reads (inputs a test sets). The board end is firmware/_simio.py (docs/sim.md, "Peripherals").

    log = io("a"); log.pin(2) -> [1, 0, 1, 0]; log.toggles(2) -> 3; log.pins -> {"2": [...]}
    set_adc("a", 34, 1234); set_pin("a", 0, 0); set_i2c("a", 0x76, bytes(256))
    set_spi("a", b"\\x12\\x34", bus=1); set_rtc("a", (2025, 1, 2, 3, 12, 0, 0, 0)); clear_io("a")

Outputs: NAME/io.log, one line per event, "BOOT MS KIND ID VALUE...", appended by the board
(BOOT: the sim's boot number; MS: milliseconds since that boot). Inputs: NAME/io_in.json,
rewritten whole (atomically) here, read by the board at each read of the input; an entry
that holds state on the board (an I2C device's memory, SPI bytes still to read, the RTC)
carries a version `v`, so the board takes a value the test set again.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import SimError
from . import folder

ADC_PINS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)
MAX_PIN = 48  # the largest GPIO number of the supported chips (esp32s3)
MAX_BYTES = 4096  # an I2C device's memory or the SPI bytes a test sets
KINDS = ("pin", "adc", "i2c", "spi", "rtc")


@dataclass(frozen=True)
class IORecord:
    boot: int
    ms: int
    kind: str  # pin, pwm, irq, i2c, spi, rtc, wlan
    id: str  # pin number, "bus:addr" of an I2C device, SPI bus, interface
    value: tuple[str, ...]


@dataclass
class IOLog:
    """What the app did to its peripherals, oldest first."""

    records: list[IORecord] = field(default_factory=list)
    truncated: bool = False  # the log passed 1 MiB on the board: older records were dropped

    def of(self, kind: str, id: Any | None = None) -> list[IORecord]:
        return [r for r in self.records if r.kind == kind and (id is None or r.id == str(id))]

    def pin(self, n: int | str) -> list[int]:
        """Levels written to pin n (value(), on(), off(), toggle(), Pin(n, value=)), in order."""
        return [int(r.value[0]) for r in self.of("pin", n)]

    @property
    def pins(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for r in self.of("pin"):
            out.setdefault(r.id, []).append(int(r.value[0]))
        return out

    def toggles(self, n: int | str) -> int:
        """How many times pin n changed level (the first write from low counts if high)."""
        levels = [0, *self.pin(n)]
        return sum(1 for a, b in zip(levels, levels[1:], strict=False) if a != b)

    def pwm(self, n: int | str) -> list[tuple[int, int]]:
        """(freq Hz, duty_u16) each time the app set PWM on pin n; (0, 0) is deinit."""
        return [(int(r.value[0]), int(r.value[1])) for r in self.of("pwm", n)]

    def i2c(self, addr: int, bus: int = 0) -> list[tuple[int, bytes]]:
        """(register, bytes) the app wrote to an I2C device."""
        return [(int(r.value[0]), _unhex(r.value[1])) for r in self.of("i2c", f"{bus}:{addr}")]

    def spi(self, bus: int = 1) -> list[bytes]:
        """Bytes the app clocked out on an SPI bus (SoftSPI: bus -1)."""
        return [_unhex(r.value[0]) for r in self.of("spi", bus)]

    def as_dict(self) -> dict[str, Any]:
        return {"truncated": self.truncated,
                "records": [{"boot": r.boot, "ms": r.ms, "kind": r.kind, "id": r.id,
                             "value": list(r.value)} for r in self.records]}


def _unhex(s: str) -> bytes:
    return b"" if s == "-" else bytes.fromhex(s)


def io(name: str) -> IOLog:
    """The recorded outputs of sim `name` (running or stopped)."""
    d = folder.existing(name)
    log = IOLog()
    try:
        text = (d / folder.IO_LOG).read_text(errors="replace")
    except FileNotFoundError:
        return log
    for line in text.splitlines():
        p = line.split(" ")
        if len(p) < 4:
            continue  # a line the board is still writing
        if p[2] == "trunc":
            log.records.clear()
            log.truncated = True
            continue
        try:
            log.records.append(IORecord(int(p[0]), int(p[1]), p[2], p[3], tuple(x for x in p[4:] if x)))
        except ValueError:
            continue
    return log


def clear_io(name: str) -> None:
    """Forget the recorded outputs (the board goes on recording)."""
    d = folder.existing(name)
    with open(d / folder.IO_LOG, "w"):
        pass


def _update(name: str, kind: str, key: str, value: Any) -> None:
    """Set (or with None remove) one input, atomically; the board reads it at its next read."""
    d = folder.existing(name)
    lock = os.open(d / (folder.IO_IN + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cur = folder.read_json(d / folder.IO_IN) or {}
        seq = int(cur.get("seq", 0)) + 1
        entries = cur.setdefault(kind, {})
        if value is None:
            entries.pop(key, None)
        else:
            if isinstance(value, dict):
                value = dict(value, v=seq)
            entries[key] = value
        cur["seq"] = seq
        folder.write_json(d / folder.IO_IN, cur)
    finally:
        os.close(lock)


def _int(what: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise SimError(f"{what} must be an integer {lo}..{hi}, not {v!r}")
    return v


def _bytes(what: str, b: Any) -> bytes:
    if not isinstance(b, (bytes, bytearray)) or len(b) > MAX_BYTES:
        raise SimError(f"{what} must be at most {MAX_BYTES} bytes")
    return bytes(b)


def set_pin(name: str, pin: int, level: int | bool | None) -> None:
    """The level an input pin reads (None: back to its pull level)."""
    pin = _int("pin", pin, 0, MAX_PIN)
    _update(name, "pin", str(pin), None if level is None else (1 if level else 0))


def set_adc(name: str, pin: int, raw: int | None) -> None:
    """The ADC reading of a pin: raw 12-bit, 0..4095, what ADC.read() returns at 12 bits."""
    if pin not in ADC_PINS:
        raise SimError(f"pin {pin!r} has no ADC (ADC pins: {', '.join(map(str, ADC_PINS))})")
    _update(name, "adc", str(pin), None if raw is None else _int("ADC value", raw, 0, 4095))


def set_i2c(name: str, addr: int, mem: bytes | None = b"", bus: int = 0) -> None:
    """An I2C device at `addr` (7-bit) whose registers start as `mem` (None: remove it)."""
    addr = _int("I2C address", addr, 0x08, 0x77)
    bus = _int("I2C bus", bus, -1, 1)
    value = None if mem is None else {"mem": _bytes("I2C memory", mem).hex()}
    _update(name, "i2c", f"{bus}:{addr}", value)


def set_spi(name: str, data: bytes | None, bus: int = 1) -> None:
    """Bytes the app's SPI reads return, in order (then 0xff); None: none."""
    bus = _int("SPI bus", bus, -1, 2)
    _update(name, "spi", str(bus), None if data is None else {"data": _bytes("SPI data", data).hex()})


def set_rtc(name: str, dt: tuple[int, ...] | None) -> None:
    """The RTC's time, (year, month, day, weekday, hours, minutes, seconds[, subseconds]) as
    machine.RTC().datetime() takes it; it runs on from the moment the board reads it."""
    if dt is None:
        _update(name, "rtc", "0", None)
        return
    if not isinstance(dt, (tuple, list)) or len(dt) not in (7, 8):
        raise SimError("an RTC time is (year, month, day, weekday, hours, minutes, seconds[, us])")
    lims = ((2000, 2099), (1, 12), (1, 31), (0, 6), (0, 23), (0, 59), (0, 59), (0, 999999))
    names = ("year", "month", "day", "weekday", "hours", "minutes", "seconds", "subseconds")
    vals = [_int(f"RTC {n}", v, lo, hi) for n, v, (lo, hi) in zip(names, dt, lims, strict=False)]
    _update(name, "rtc", "0", {"dt": vals + [0] * (8 - len(vals))})


def set_input(name: str, kind: str, id: Any, value: Any) -> None:
    """One input by kind: pin, adc, i2c (value: bytes), spi (value: bytes), rtc."""
    setters = {"pin": lambda: set_pin(name, id, value), "adc": lambda: set_adc(name, id, value),
               "i2c": lambda: set_i2c(name, id, value), "spi": lambda: set_spi(name, value, id),
               "rtc": lambda: set_rtc(name, value)}
    if kind not in setters:
        raise SimError(f"unknown input kind {kind!r} (one of {', '.join(KINDS)})")
    setters[kind]()
