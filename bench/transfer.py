"""Bulk transfer vs `mpremote fs cp`, over a virtual board throttled to 115200 baud.

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


def measure(size: int = SIZE, baud: int = BAUD) -> dict[str, float]:
    data = os.urandom(size)
    link_rate = baud / 10
    with tempfile.TemporaryDirectory() as d:
        os.environ["MPGUARD_SIM_DIR"] = d
        info = sim.start(name="bench-xfer", baud=baud)
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
        "link_Bps": link_rate,
        "ours_Bps": size / ours,
        "mpremote_Bps": size / theirs,
    }


def main() -> None:
    r = measure()
    print(f"## bulk transfer, {r['size'] // 1024} KiB of random bytes, virtual board at "
          f"{BAUD} baud ({r['link_Bps']:.0f} B/s)")
    print(f"  mpguard transfer    {r['ours_Bps']:8.0f} B/s  {100 * r['ours_Bps'] / r['link_Bps']:5.1f} % "
          "of the link (incl. start-up)")
    print(f"  mpremote fs cp      {r['mpremote_Bps']:8.0f} B/s  "
          f"{100 * r['mpremote_Bps'] / r['link_Bps']:5.1f} % of the link (incl. connect)")


if __name__ == "__main__":
    main()
