"""Where the station's boards are: port sources, polled, so boards come and go (hot-plug).

- `SerialPorts`: pyserial's port listing (`serial.tools.list_ports`), polled: `auto` takes the
  USB serial ports (a VID, as esptool and mpremote look for boards), or only the listed ones.
- `SimPorts`: running virtual boards whose names match a pattern (`sim:line-1-*`): starting
  a sim is plugging a board in, stopping it is pulling it out.
Each poll returns {device: Port} of the boards present now. A board's MAC comes with the port
when the host knows it (a virtual board's), else from esptool (`read-mac`) when its worker
starts.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import LineError

_MAC = re.compile(r"MAC:\s*((?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2})")


@dataclass(frozen=True)
class Port:
    device: str  # what the link opens (/dev/ttyUSB0, the pty of a virtual board)
    label: str  # shown in the table (the port, or sim:NAME)
    sim: str | None = None  # the virtual board's name
    mac: str | None = None  # known without asking the board (a virtual board's), else None


class PortSource(Protocol):
    def poll(self) -> dict[str, Port]: ...


class SerialPorts:
    """pyserial's listing: `only` these devices, or every USB serial port (auto)."""

    def __init__(self, only: list[str] | None = None):
        self.only = only

    def poll(self) -> dict[str, Port]:
        from serial.tools import list_ports

        found = {}
        for p in list_ports.comports():
            if self.only is not None:
                if p.device in self.only:
                    found[p.device] = Port(p.device, p.device)
            elif p.vid is not None:
                found[p.device] = Port(p.device, p.device)
        if self.only:  # a listed port pyserial does not enumerate (a pty) counts if it exists
            for d in self.only:
                if d not in found and Path(d).exists():
                    found[d] = Port(d, d)
        return found


class SimPorts:
    """Running virtual boards whose names match `pattern` (fnmatch)."""

    def __init__(self, pattern: str):
        self.pattern = pattern

    def poll(self) -> dict[str, Port]:
        from .. import sim

        found = {}
        for s in sim.list_sims():
            if s.running and s.port and fnmatch.fnmatchcase(s.name, self.pattern):
                mac = ":".join(s.uid[i:i + 2] for i in range(0, 12, 2)) if s.uid else None
                found[s.port] = Port(s.port, f"sim:{s.name}", s.name, mac)
        return found


class Ports:
    """Several sources as one."""

    def __init__(self, sources: list[PortSource]):
        self.sources = sources

    def poll(self) -> dict[str, Port]:
        out: dict[str, Port] = {}
        for src in self.sources:
            out.update(src.poll())
        return out


def parse(spec: str) -> Ports:
    """`auto`, or a comma-separated list of ports and `sim:PATTERN`s."""
    if spec == "auto":
        return Ports([SerialPorts()])
    sources: list[PortSource] = []
    plain = []
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        if item.startswith("sim:"):
            sources.append(SimPorts(item[4:]))
        else:
            plain.append(item)
    if plain:
        sources.append(SerialPorts(plain))
    if not sources:
        raise LineError("bad_station", f"--ports {spec!r}: auto, or ports and sim:NAME patterns")
    return Ports(sources)


def read_mac(device: str, timeout: float = 60.0) -> str:
    """The chip's MAC from esptool (`read-mac`: the chip is reset into its ROM loader)."""
    exe = Path(sys.executable).parent / "esptool"
    cmd = [str(exe) if exe.exists() else "esptool", "--port", device, "read-mac"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LineError("no_mac", f"{device}: {e}") from None
    m = _MAC.search(res.stdout)
    if res.returncode != 0 or not m:
        raise LineError("no_mac", f"{device}: {(res.stdout + res.stderr).strip()[-200:]}")
    return m.group(1).lower()
