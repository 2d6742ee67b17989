"""`make bench`: every benchmark, printed as the rows of the README's numbers table."""

from __future__ import annotations

import importlib
import sys

BENCHES = [
    "bench.esp32",
    "bench.mpy_size",
    "bench.hw_efuse",
    "bench.crypto",
    "bench.transfer",
    "bench.deploy",
    "bench.update",
    "bench.boot",
    "bench.sim",
    "bench.inventory",
    "bench.attest",
    "bench.host_verify",
    "bench.cli",
    "bench.identity",
    "bench.line",
    "bench.rotate",
]


def main() -> int:
    for name in BENCHES:
        importlib.import_module(name).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
