"""An estimated-on-ESP32 factor for the unix-port timings: how much slower MicroPython runs on
an ESP32 than on this machine, derived from one benchmark run on both.

    python -m bench.esp32 [--runs 7] [--loops 20000]

How it is derived (say it wherever the factor is used):
1. pystone (micropython-lib's `pystone_lowmem`, vendored whole in bench/vendor with its
   licence) runs here on the pinned MicroPython unix port, `--runs` times; the median of its
   pystones/second is this machine's interpreter speed.
2. The ESP32 figure is the one public measurement of the same program found: 1,075
   pystones/second (500 passes in 465 ms) on an ESP32 with MicroPython, reported in
   micropython-ulab issue #296 (2021-01-27; clock frequency not stated).
3. The interpreter ratio R = median here / 1,075. A timing T on the unix port is estimated at
   R x T on the ESP32 for interpreter-bound work (parsing, hashing in Python, file logic).
4. Big-integer work (P-256) is slower still on a 32-bit chip: MicroPython's `mpz` stores
   16-bit digits there and 32-bit digits on x86-64 (py/mpz.h, MPZ_DIG_SIZE), so a schoolbook
   multiplication does up to 4x the digit products. Crypto rows are therefore estimated as a
   range, R x T to 4R x T.
These are estimates from one published figure and one machine's median, good to a factor of
about 2; only a real board gives real numbers.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
from pathlib import Path

from mpguard import unixport

ESP32_PYSTONES = 1075  # micropython-ulab issue #296: "500 passes = 465ms ... 1075 pystones/second"
PYSTONE = Path(__file__).resolve().parent / "vendor" / "pystone_lowmem" / "pystone_lowmem.py"


def pystones(loops: int) -> int:
    out = subprocess.run([unixport.micropython_path(), str(PYSTONE), str(loops)],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    m = re.search(r"benchmarks at (\d+) pystones/second", out)
    if m is None:
        raise RuntimeError(f"pystone printed no figure: {out!r}")
    return int(m.group(1))


def measure(runs: int = 7, loops: int = 20000) -> dict:
    got = [pystones(loops) for _ in range(runs)]
    med = statistics.median(got)
    return {"runs": runs, "loops": loops, "min": min(got), "median": med, "max": max(got),
            "esp32": ESP32_PYSTONES, "ratio": med / ESP32_PYSTONES}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.esp32", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--loops", type=int, default=20000)
    a = ap.parse_args(argv)
    r = measure(a.runs, a.loops)
    print(f"| interpreter speed, pystone_lowmem on the unix port ({r['runs']} runs of {r['loops']} "
          f"passes: min / median / max) | {r['min']:,} / {r['median']:,.0f} / {r['max']:,} "
          f"pystones/s; an ESP32: {r['esp32']:,} (published) | ratio R = {r['ratio']:.0f}: "
          f"estimated ESP32 time = R x unix-port time (crypto: R to 4R) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
