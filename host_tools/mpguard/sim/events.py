"""The firmware's side channel, host end: the events and cut record of `firmware/_simev.py`
(loaded here as a plain Python file, so the supervisor and the firmware read one table) and
the board state and counters the supervisor keeps from them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any


def _load() -> ModuleType:
    path = Path(__file__).resolve().parent / "firmware" / "_simev.py"
    spec = importlib.util.spec_from_file_location("mpguard.sim._simev", path)
    assert spec is not None and spec.loader is not None  # the file ships with the package
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ev = _load()


def parse(line: bytes) -> tuple[str, tuple[int, ...]]:
    """One event line -> (letter, numbers); ValueError if it is not in the table."""
    parts = line.decode("ascii").split()
    if not parts or parts[0] not in ev.ARGS:
        raise ValueError(f"unknown event {line!r}")
    args = tuple(int(p) for p in parts[1:])
    if len(args) != len(ev.ARGS[parts[0]]):
        raise ValueError(f"event {line!r}: wants {len(ev.ARGS[parts[0]])} numbers")
    return parts[0], args


class Board:
    """What the supervisor knows of the running firmware, from its events.

    `stats` are the counters kept in stats.json (wear per block, resets, cuts); `up`, `busy`
    and `kbd` decide what a Ctrl-C byte does; `pending` is how the interpreter will die
    ("cut", "reset" or "wdt"); `wdt_ms` the watchdog's timeout; `cut` is the cut record as the firmware took it: [seq, at, permille]
    (at = 0 once the cut happened), passed to the next boot so a reset keeps the same cut.
    """

    def __init__(self, stats: dict[str, Any]):
        self.stats = stats
        self.up = self.busy = False
        self.kbd = True
        self.pending: str | None = None
        self.cut: list[int] | None = None
        self.boot_reads = 0
        self.wdt_ms = 0  # the watchdog's timeout, as last armed or fed
        self.on = {
            ev.UP: self._up,
            ev.BUSY: self._busy,
            ev.IDLE: self._idle,
            ev.KBD_OFF: self._kbd_off,
            ev.KBD_ON: self._kbd_on,
            ev.WRITE: self._write,
            ev.ERASE: self._erase,
            ev.ARMED: self._armed,
            ev.CUT: self._cut,
            ev.RESET: self._reset,
            ev.FORMAT: self._format,
            ev.WDT: self._wdt,
        }

    def booting(self) -> None:
        self.up = self.busy = False
        self.kbd = True
        self.pending = None
        self.boot_reads = 0
        self.stats["boots"] += 1

    def apply(self, line: bytes) -> str:
        """Apply one event line; returns its letter."""
        letter, args = parse(line)
        self.on[letter](*args)
        return letter

    def _up(self) -> None:
        self.up = True

    def _busy(self) -> None:
        self.busy, self.kbd = True, True

    def _idle(self, reads: int) -> None:
        self.busy = False
        self.stats["reads"] += reads - self.boot_reads
        self.boot_reads = reads

    def _kbd_off(self) -> None:
        self.kbd = False

    def _kbd_on(self) -> None:
        self.kbd = True

    def _write(self, block: int) -> None:
        self._count("writes", "block_writes", block)

    def _erase(self, block: int) -> None:
        self._count("erases", "block_erases", block)

    def _count(self, total: str, per_block: str, block: int) -> None:
        self.stats[total] += 1
        b = str(block)
        self.stats[per_block][b] = self.stats[per_block].get(b, 0) + 1

    def _armed(self, seq: int, at: int, permille: int) -> None:
        self.cut = [seq, at, permille]

    def _cut(self, block: int, offset: int, nbytes: int) -> None:
        st = self.stats
        self.pending = "cut"
        self._write(block)  # the torn (or last) write happened, at least in part
        st["power_cuts"] += 1
        st["last_cut"] = {"block": block, "offset": offset, "bytes_written": nbytes,
                          "boot": st["boots"]}
        if self.cut:
            self.cut[1] = 0  # one cut per arming

    def _reset(self) -> None:
        self.pending = "reset"

    def _format(self) -> None:
        self.stats["formats"] += 1

    def _wdt(self, ms: int) -> None:
        self.wdt_ms = ms
