"""Bulk transfer vs `mpremote fs cp`, over a virtual board throttled to 115200 baud.

    python -m bench.transfer                                  # 115200 baud, no latency
    python -m bench.transfer --baud 921600 --latency 0,1,4,16 # one row per latency
    python -m bench.transfer --size 65536 --baud 115200 --latency 16

The latency (ms, each way) is the sim's `--latency`: a USB-serial bridge's delay (1-16 ms
on real boards, 16 ms a common default), so every figure can be taken at realistic settings.

Both move the same random bytes to the same board in the same run:
- mpguard's transfer (guard.xfer on the board, reading into a sink that hashes and drops);
- `mpremote connect PORT fs cp FILE :/bench.bin` (the real CLI, 256-byte repr chunks).
The link's byte rate is baud / 10 (8N1). Printed as the README's numbers table rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mpguard import sim
from mpguard import xfer as transfer
from mpguard.agent import package as agentpkg
from mpguard.link import BoardLink

BAUD = 115200
SIZE = 16 * 1024

_SINK = """\
import hashlib
from guard.xfer import Reader
_r = Reader({n}, {sha!r})
_b = bytearray(512)
while _r.readinto(_b):
    pass
print('sink ok')
"""


def _install_xfer(link: BoardLink) -> None:
    root = agentpkg.agent_dir()
    link.mkdir("/lib/guard")
    for mod in ("__init__.py", "xfer.py"):
        link.put((root / "guard" / mod).read_bytes(), f"/lib/guard/{mod}")


def measure(size: int = SIZE, baud: int = BAUD, latency_ms: float = 0.0) -> dict[str, float]:
    data = os.urandom(size)
    link_rate = baud / 10
    with tempfile.TemporaryDirectory() as d:
        os.environ["MPGUARD_SIM_DIR"] = d
        info = sim.start(name="bench-xfer", baud=baud, latency=latency_ms or None)
        try:
            with BoardLink(info.port, timeout=120) as link:
                _install_xfer(link)
                t = link.transport
                code = _SINK.format(n=size, sha=transfer.digest(data))
                t0 = time.monotonic()
                t.exec_raw_no_follow(code)
                old, t.serial.timeout = t.serial.timeout, 0.05
                transfer.stream(t.serial, data)
                t.serial.timeout = old
                out, err = t.follow(60)
                ours = time.monotonic() - t0
                if b"sink ok" not in out:
                    raise RuntimeError(f"transfer failed: {out!r} {err!r}")
            src = Path(d) / "payload.bin"
            src.write_bytes(data)
            mpremote = str(Path(sys.executable).parent / "mpremote")
            t0 = time.monotonic()
            subprocess.run([mpremote, "connect", info.port, "fs", "cp", str(src), ":/bench.bin"],
                           check=True, capture_output=True, timeout=600)
            theirs = time.monotonic() - t0
        finally:
            sim.stop("bench-xfer")
            del os.environ["MPGUARD_SIM_DIR"]
    return {
        "size": size,
        "baud": baud,
        "latency_ms": latency_ms,
        "link_Bps": link_rate,
        "ours_Bps": size / ours,
        "mpremote_Bps": size / theirs,
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.transfer", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=SIZE, help="bytes to move (default 16 KiB)")
    ap.add_argument("--baud", type=int, default=BAUD, help="the sim's baud (default 115200)")
    ap.add_argument("--latency", default="0", metavar="MS[,MS...]",
                    help="the sim's latency each way, ms; a comma list runs one row each")
    args = ap.parse_args([] if argv is None and __name__ != "__main__" else argv)
    lats = [float(x) for x in args.latency.split(",")]
    print(f"## bulk transfer, {args.size // 1024} KiB of random bytes, virtual board at "
          f"{args.baud} baud ({args.baud / 10:.0f} B/s)")
    for lat in lats:
        r = measure(args.size, args.baud, lat)
        print(f"  latency {lat:4g} ms  mpguard transfer {r['ours_Bps']:8.0f} B/s "
              f"{100 * r['ours_Bps'] / r['link_Bps']:5.1f} % of the link (incl. start-up); "
              f"mpremote fs cp {r['mpremote_Bps']:8.0f} B/s "
              f"{100 * r['mpremote_Bps'] / r['link_Bps']:5.1f} % (incl. connect)")


if __name__ == "__main__":
    main()
