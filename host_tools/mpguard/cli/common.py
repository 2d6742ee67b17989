"""Small pieces every CLI command shares: results, JSON output, port resolution, progress."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .. import reasons
from ..errors import CommandError, MpguardError, NoPortError


@dataclass
class Result:
    """What a command hands back to `main`: data for --json, text for people, an exit code."""

    data: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    exit_code: int = reasons.EXIT_OK


def error_json(e: MpguardError) -> dict[str, Any]:
    """The --json object of a failed command."""
    err: dict[str, Any] = {"type": type(e).__name__, "message": str(e)}
    reason = getattr(e, "reason", None)
    if reason:
        err["reason"] = reason
        err["hint"] = reasons.hint(reason)
    if e.hint:
        err["hint"] = e.hint
    detail = getattr(e, "detail", None)
    if detail not in (None, ""):
        err["detail"] = detail if isinstance(detail, (int, str)) else str(detail)
    return {"ok": False, "error": err, "exit_code": e.exit_code}


def resolve_port(port: str | None) -> str:
    """A serial port, or `sim:NAME` for a running virtual board."""
    if not port:
        raise CommandError("give the board's port with --port (e.g. /dev/ttyUSB0 or sim:NAME)")
    if port.startswith("sim:"):
        from .. import sim

        info = sim.get(port[4:])
        if not info.running or not info.port:  # as a board unplugged: exit 3, the link's
            raise NoPortError(f"virtual board {port[4:]!r} is not running "
                              f"(mpguard sim start --name {port[4:]})")
        return info.port
    return port


class Progress:
    """A one-line progress meter on stderr (only when stderr is a terminal, or forced)."""

    def __init__(self, label: str, enabled: bool | None = None):
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.t0 = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-6)
        pct = 100 * done // max(total, 1)
        sys.stderr.write(f"\r{self.label}: {done}/{total} B {pct:3d}% {rate / 1024:7.1f} KiB/s")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def print_json(data: Any, one_line: bool = False) -> None:
    """One JSON object; `one_line` for a command whose --json is JSON lines (`line run`)."""
    print(json.dumps(data, indent=None if one_line else 2, sort_keys=True, default=str))


def seconds(text: str) -> float:
    """argparse type: a finite number of seconds above 0 (`--wait -5` or `nan` waited for
    nothing and then blamed the app)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"a number of seconds above 0, not {text}")
    return v


def positive(text: str) -> int:
    """argparse type: a whole number above 0 (`--count 0` ran nothing and said done)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"a whole number above 0, not {v}")
    return v


def output_path(path: str | None) -> None:
    """Refuse (CommandError) an output file that cannot be written where it is named: before
    the work whose result it holds (an attestation recorded, then its report not written)."""
    if not path:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CommandError(f"cannot write {path}: it is a folder")
    if not os.path.isdir(parent):
        raise CommandError(f"cannot write {path}: no folder {parent}")
    if not os.access(parent, os.W_OK):
        raise CommandError(f"cannot write {path}: the folder is not writable")
