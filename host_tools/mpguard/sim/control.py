"""Controls of a virtual board: its counters (flash wear, resets, power cuts) and power cuts.

    stats("a")["writes"]; arm_power_cut("a", after=3, torn=True); wait_for("a", "power_cuts", 1)

`stats` of a running sim is never older than the call: the supervisor, asked with SIGUSR1,
first counts every event the firmware has sent, then writes stats.json stamped with the
moment (CLOCK_MONOTONIC); the caller waits for a stamp later than its own start.
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

from ..errors import SimError
from . import folder

DEFAULT_CUT_WINDOW = 64


def stats(name: str, timeout: float = 10.0) -> dict[str, Any]:
    """Flash wear (block writes, erases, reads; per-block counts) and reset counters; of a
    running sim, as they were at this call or later (SimError if it does not answer)."""
    d = folder.existing(name)
    t0 = time.monotonic()
    if folder.is_running(d):
        pid = (folder.read_json(d / folder.STATE_FILE) or {}).get("pid")
        if pid:
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass
            end = t0 + timeout
            while folder.read_stats(d).get("at", 0) <= t0 and folder.is_running(d):
                if time.monotonic() > end:
                    raise SimError(f"sim {name!r} did not report its counters within {timeout:g} s")
                time.sleep(0.005)
    return folder.read_stats(d)


def wait_for(name: str, key: str, value: int, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until stats(name)[key] >= value (e.g. a power cut happened); returns the stats."""
    end = time.monotonic() + timeout
    while True:
        st = stats(name)
        if st.get(key, 0) >= value:
            return st
        if time.monotonic() > end:
            raise SimError(f"sim {name!r}: {key} stayed at {st.get(key)} (wanted {value})")
        time.sleep(0.02)


def cut_plan(after: int | None, seed: int | None, torn: bool, window: int = DEFAULT_CUT_WINDOW) -> tuple[int, int]:
    """(N, permille): cut at the N-th block write, letting permille/1000 of it reach flash.

    With a seed and no N, N is drawn from 1..window; a torn write keeps a seeded fraction
    (or half without a seed); an untorn cut lets the N-th write complete.
    """
    rng = random.Random(seed)
    if after is None:
        if seed is None:
            raise SimError("a power cut needs --power-cut-after N or --power-cut-seed S")
        after = rng.randint(1, window)
    if after < 1:
        raise SimError("--power-cut-after must be at least 1")
    if not torn:
        return after, 1000
    return after, (rng.randint(1, 999) if seed is not None else 500)


def arm_power_cut(
    name: str, after: int | None = None, seed: int | None = None, torn: bool = False,
    window: int = DEFAULT_CUT_WINDOW,
) -> tuple[int, int]:
    """Cut the power of a running sim at its N-th block write from now; returns (N, permille).

    "From now" is the firmware's own count: the first block write that starts after this
    call is the 1st, whatever writes the host has not been told of yet.
    """
    d = folder.existing(name)
    if not folder.is_running(d):
        raise SimError(f"sim {name!r} is not running")
    plan = cut_plan(after, seed, torn, window)
    folder.write_cut(d, plan)
    return plan


def disarm_power_cut(name: str) -> None:
    folder.write_cut(folder.existing(name), None)
