"""Credential rotation on the virtual board at 115200 baud (issue #11): the time of each
command as a user runs it (mpguard.rotate over the real link), the flash it writes, and the
heap a secret command needs on the board's 64 KiB heap.

- time: `secret set`, `rotate NAME` (stage + commit, no test, no restart), `rotate
  identity`, `anchors push` of one statement; wall time, median of a few
- flash: block writes (littlefs programs) and erases the sim counts, and the bytes of the
  flash image that differ after the command (a lower bound of the bytes programmed)
- heap: after a soft reset and the modules a secret command loads (guard.rpc, .identity,
  .rotate, .anchors, .jws, .p256), the free heap and its largest piece; then the command `set`
  (decrypt + seal + commit, the peak of a rotation) run with a ballast of B bytes held
  beside it: of N tries at each B, how many ran. The headroom of the decrypt+commit peak is
  the largest B that still runs.
Reported, never asserted. docs/decisions/0016-rotation.md reads these numbers.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from mpguard import project, sim
from mpguard.errors import DeviceError
from mpguard.identity import provision, records
from mpguard.identity.ca import DeviceCA
from mpguard.link import BoardLink
from mpguard.rotate import anchors, commands, operator, secrets
from mpguard.rotate import identity as rot_identity

NAME = "bench-rotate"
VALUE = b'{"user": "board", "password": "bench-password-0123"}'
_FREE = """
import gc, sys
import guard.rpc, guard.identity, guard.rotate, guard.anchors, guard.jws, guard.p256
gc.collect()
import micropython
free = gc.mem_free()
big = 0
step = 4096
while step >= 64:
    try:
        b = bytearray(big + step)
        b = None
        big += step
    except MemoryError:
        step //= 2
print(free, big)
"""


def _flash(img: Path, before: bytes, s0: dict) -> dict:
    after = img.read_bytes()
    s1 = sim.stats(NAME)
    diff = sum(1 for a, b in zip(before, after, strict=False) if a != b)
    return {"writes": s1["writes"] - s0["writes"], "erases": s1["erases"] - s0["erases"],
            "bytes_changed": diff}


def _timed(img: Path, fn) -> dict:  # type: ignore[no-untyped-def]
    before, s0 = img.read_bytes(), sim.stats(NAME)
    t0 = time.monotonic()
    try:
        fn()
    except DeviceError as e:  # the board ran out of heap on every attempt: say so
        return {"error": e.exc_type or type(e).__name__}
    out = {"seconds": time.monotonic() - t0}
    out.update(_flash(img, before, s0))
    return out


def _heap(link: BoardLink, s: secrets._Session, op_key, tries: int = 6) -> dict:  # type: ignore[no-untyped-def]
    link.soft_reset()
    free, piece = (int(x) for x in link.exec(_FREE, timeout=60).split())
    runs: dict[int, int] = {}
    for ballast in (0, 1024, 2048, 4096, 6144, 8192):
        ok = 0
        for _ in range(tries):
            s.fresh()
            old, _ = secrets._epochs(s.st, "mqtt")
            tok = commands.command(op_key, op="set", sub=s.tgt.ueid, seq=int(s.st["seq"]) + 1,
                                   name="mqtt", epoch=old + 1, value=VALUE,
                                   board_key=s.tgt.public_key)
            code = (f"B = bytearray({ballast})\nimport guard.rpc\n"
                    f"guard.rpc.run('secret.command', {json.dumps([tok])!r})")
            try:
                ok += '"ok"' in link.exec(code, timeout=60)
            except DeviceError:
                pass
        runs[ballast] = ok
    return {"free": free, "largest_piece": piece, "tries": tries, "runs": runs}


def measure(baud: int | None = 115200, n: int = 3) -> dict:
    with tempfile.TemporaryDirectory() as d:
        os.environ["MPGUARD_SIM_DIR"] = str(Path(d) / "sims")
        try:
            proj = project.init(Path(d) / "p", passphrase=None, targets=["sim"])
            info = sim.start(name=NAME, baud=baud)
            img = Path(info.image)
            try:
                with BoardLink(info.port, timeout=120) as link, \
                        records.open_inventory(proj.root) as inv:
                    provision.provision(link, proj, passphrase=None, inventory=inv)
                    op_key = operator.load(proj, None)
                    out: dict = {"baud": baud}
                    out["set"] = _timed(img, lambda: secrets.set_secret(
                        link, inv, op_key, "mqtt", VALUE))
                    rots = [_timed(img, lambda: secrets.rotate_secret(
                        link, inv, op_key, "mqtt", VALUE, restart=False)) for _ in range(n)]
                    ok = [r for r in rots if "error" not in r]
                    out["rotate"] = ({k: statistics.median(r[k] for r in ok) for k in ok[0]}
                                     if ok else rots[0])
                    out["rotate"]["failed"] = len(rots) - len(ok)
                    ca = DeviceCA(proj.root, None)
                    out["identity"] = _timed(img, lambda: rot_identity.rotate_identity(
                        link, ca, inv, days=365))
                    anchors.rotate(proj, add="new", remove=None, passphrase=None)
                    out["anchors_push"] = _timed(img, lambda: anchors.push(link, proj))
                    s = secrets._Session(link, inv, op_key, "mqtt")
                    out["heap"] = _heap(link, s, op_key)
            finally:
                sim.stop(NAME)
        finally:
            del os.environ["MPGUARD_SIM_DIR"]
    return out


def main() -> None:
    for baud in (115200, None):
        _print(measure(baud))


def _print(r: dict) -> None:
    print(f"## credential rotation on the virtual board at {r['baud'] or 'unthrottled'} baud "
          "(agent .mpy, 64 KiB heap; wall time; flash: block writes / erases / image bytes changed)")
    for key, label in (("set", "secret set (one command)"),
                       ("rotate", "rotate NAME (stage + commit)"),
                       ("identity", "rotate identity"),
                       ("anchors_push", "anchors push (one statement)")):
        o = r[key]
        if "seconds" not in o:
            print(f"  {label:30} FAILED: the board raised {o['error']} on every attempt")
            continue
        failed = f"  ({o['failed']} of 3 failed: {o.get('error', 'MemoryError')})" \
            if o.get("failed") else ""
        print(f"  {label:30} {o['seconds']:6.2f} s  {int(o['writes']):4d} writes "
              f"{int(o['erases']):3d} erases {int(o['bytes_changed']):6d} B changed{failed}")
    h = r["heap"]
    print(f"  heap after the modules of a secret command: {h['free']} B free, largest piece "
          f"{h['largest_piece']} B")
    runs = ", ".join(f"{b} B: {k}/{h['tries']}" for b, k in h["runs"].items())
    print(f"  decrypt + commit (`set`) beside a ballast of B bytes, runs out of tries: {runs}")


if __name__ == "__main__":
    main()
