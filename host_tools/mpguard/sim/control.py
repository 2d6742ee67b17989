"""Controls of a virtual board: its counters (flash wear, resets, power cuts), power cuts and
reflashing.

    stats("a")["writes"]; arm_power_cut("a", after=3, torn=True); wait_for("a", "power_cuts", 1)
    reflash("a", "golden.img")   # power off, the image's bytes to the flash, power on

`stats` of a running sim is never older than the call: the supervisor, asked with SIGUSR1,
first counts every event the firmware has sent, then writes stats.json stamped with the
moment (CLOCK_MONOTONIC); the caller waits for a stamp later than its own start. A request
that needs an answer (reflash) is a file NAME/requests/ID.req, taken at the same SIGUSR1; the
supervisor answers in ID.ans.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import time
from pathlib import Path
from typing import Any

from ..errors import SimError
from . import folder
from .hardware import DEFAULT_FS, check_image

DEFAULT_CUT_WINDOW = 64


def _poke(d: Path) -> bool:
    """SIGUSR1 to the running supervisor: write stats.json now, take the requests. False if
    its pid is not known (yet)."""
    pid = (folder.read_json(d / folder.STATE_FILE) or {}).get("pid")
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
    return bool(pid)


def stats(name: str, timeout: float = 10.0) -> dict[str, Any]:
    """Flash wear (block writes, erases, reads; per-block counts) and reset counters; of a
    running sim, as they were at this call or later (SimError if it does not answer)."""
    d = folder.existing(name)
    t0 = time.monotonic()
    if folder.is_running(d):
        if _poke(d):
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


def reflash(name: str, image: str | os.PathLike[str], timeout: float = 30.0) -> dict[str, Any]:
    """Power a running sim off, write `image`'s bytes over its flash, power it on; returns its
    counters once the board answers again (as `start` returns).

    As a chip that was reflashed while off: the port stays the same (a link open across it
    sees a power-on reset, as after a power cut), an armed power cut is disarmed, the
    counters go on (they are the board's life: `reflashes` counts these, `boots` the power
    on). The sim's own image file keeps its path and is written in place. SimError, with
    nothing changed, for a sim that is not running or an image that is missing, not the
    board's flash size or not a littlefs2 (or blank) image for its block size (a FAT one for
    a sim started with `--fs fat`).
    """
    d = folder.existing(name)
    if not folder.is_running(d):
        raise SimError(f"sim {name!r} is not running")
    cfg = folder.read_json(d / folder.CONFIG) or {}
    src = Path(image).expanduser().resolve()
    if not src.is_file():
        raise SimError(f"image file {src} does not exist" if not src.exists() else f"{src} is not a file")
    size, want = src.stat().st_size, int(cfg["blocks"]) * int(cfg["block_size"])
    if size != want:
        raise SimError(f"{src} is {size} bytes; the flash of sim {name!r} is {want} bytes "
                       f"({cfg['blocks']} blocks of {cfg['block_size']})")
    with contextlib.suppress(OSError):
        if os.path.samefile(src, cfg["image"]):
            raise SimError(f"{src} is the flash image of sim {name!r} itself")
    check_image(src, int(cfg["block_size"]), cfg.get("fs", DEFAULT_FS))
    return _ask(d, {"reflash": str(src)}, timeout)


def _ask(d: Path, req: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send a request to the running supervisor of `d` and wait for its answer: its stats,
    or SimError with its reason."""
    q = d / folder.REQUESTS
    q.mkdir(exist_ok=True)
    rid = secrets.token_hex(8)
    ans = q / f"{rid}.ans"
    folder.write_json(q / f"{rid}.req", req)  # whole or not at all (a rename)
    end = time.monotonic() + timeout
    poked = 0.0
    try:
        while True:
            if time.monotonic() - poked > 1.0:  # again now and then: a pid not known yet
                _poke(d)
                poked = time.monotonic()
            got = folder.read_json(ans)
            if got is not None:
                ans.unlink()
                if got.get("error"):
                    raise SimError(f"sim {d.name!r}: {got['error']}")
                return dict(got["stats"])
            if not folder.is_running(d):
                raise SimError(f"sim {d.name!r} stopped before it answered")
            if time.monotonic() > end:
                raise SimError(f"sim {d.name!r} did not answer within {timeout:g} s")
            time.sleep(0.005)
    finally:
        with contextlib.suppress(FileNotFoundError):
            (q / f"{rid}.req").unlink()  # not taken: nobody will answer it now
