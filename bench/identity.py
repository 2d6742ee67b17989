"""Board identity: on-board key generation + PKCS#10 request (time and heap, unix port), and
`provision` end to end on the virtual board at 115200 baud.

On the unix port the agent (.mpy, as on a board) runs over a littlefs image in a file (so
the store's atomic writes are real flash writes), each operation timed with ticks_us and
its live heap found as in bench/crypto.py (the smallest `-X heapsize` that still runs it,
minus the same for the setup alone).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.crypto import _min_heap, _run
from mpguard import project, sim
from mpguard.agent import install as agent_install
from mpguard.agent import package as agentpkg
from mpguard.identity import provision
from mpguard.link import BoardLink

_SETUP = """
import os, gc, time, micropython
import guard, guard.hw as hw, guard.asn1, guard.mac, guard.ec, guard.p256, guard.jws
import guard.identity as I
class F:
    def __init__(self, p):
        self.f = open(p, 'r+b')
    def readblocks(self, b, buf, off=0):
        self.f.seek(b * 4096 + off)
        self.f.readinto(buf)
    def writeblocks(self, b, buf, off=None):
        self.f.seek(b * 4096 + (off or 0))
        self.f.write(buf)
    def ioctl(self, op, arg):
        if op == 4:
            return 32
        if op == 5:
            return 4096
        if op == 6:
            self.f.seek(arg * 4096)
            self.f.write(b'\\xff' * 4096)
        return 0
class H:
    def board(self):
        return {{'kind': 'sim', 'ueid': 'eui'}}
    def unique_id(self):
        return b'\\x24\\x0a\\xc4\\x01\\x02\\x03'
hw.use(sim=H())
fl = F('{img}')
os.VfsLfs2.mkfs(fl)
os.mount(os.VfsLfs2(fl), '/mnt')
import guard.store
guard.store._DIR = '/mnt/mpguard'
E = 'A' * 43
C = 'challenge-0123456789abcd'
"""
OPS = {
    "begin (keygen + store)": "I.begin(E, True)",
    "csr (sign + DER)": "I.csr(C)",
}
_TIME = """
I.begin(E, True)
op = lambda: {op}
ts = []
for i in range({n}):
    t = time.ticks_us()
    op()
    ts.append(time.ticks_diff(time.ticks_us(), t))
gc.collect()
m0 = micropython.mem_peak()
op()
OUT([ts, micropython.mem_peak() - m0])
"""


def board_ops(n: int = 20) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        agentpkg.compile_agent(path)
        img = path / "flash.img"
        img.write_bytes(b"\xff" * 32 * 4096)
        setup = _SETUP.format(img=img)
        base = _min_heap(path, setup)
        out = {}
        for name, op in OPS.items():
            ts, peak = _run(path, setup + _TIME.format(op=op, n=n)).out
            need = _min_heap(path, setup + "\nI.begin(E, True)\nfor i in range(3):\n    " + op)
            out[name] = {"median_ms": statistics.median(ts) / 1000, "min_ms": min(ts) / 1000,
                         "heap_needed": need - base if need > 0 and base > 0 else None,
                         "mem_peak_delta": peak}
    return out


def provision_e2e(baud: int | None = 115200) -> dict:
    """`provision` of a fresh virtual board that has the agent: seconds and block writes."""
    with tempfile.TemporaryDirectory() as d:
        os.environ["MPGUARD_SIM_DIR"] = str(Path(d) / "sims")
        try:
            proj = project.init(Path(d) / "p", passphrase=None, targets=["sim"])
            info = sim.start(name="bench-provision", baud=baud)
            try:
                with BoardLink(info.port, timeout=120) as link:
                    agent_install.install(link, project.anchor_set(list(proj.anchors().values())))
                    s0 = sim.stats("bench-provision")
                    t0 = time.monotonic()
                    res = provision.provision(link, proj, passphrase=None)
                    dt = time.monotonic() - t0
                    s1 = sim.stats("bench-provision")
                    t1 = time.monotonic()
                    again = provision.provision(link, proj, passphrase=None)
                    dt2 = time.monotonic() - t1
            finally:
                sim.stop("bench-provision")
        finally:
            del os.environ["MPGUARD_SIM_DIR"]
    if res.outcome != "provisioned" or again.outcome != "already":
        raise RuntimeError(f"provision: {res.outcome}, then {again.outcome}")
    return {"baud": baud, "seconds": dt, "writes": s1["writes"] - s0["writes"],
            "erases": s1["erases"] - s0["erases"], "check_seconds": dt2}


def main() -> None:
    print("## board identity (unix port, -X heapsize=64K, agent as .mpy, littlefs in a file)")
    print(f"  {'op':26} {'median':>9} {'min':>9} {'live heap':>10} {'mem_peak delta':>15}")
    for name, o in board_ops().items():
        heap = f"{o['heap_needed']} B" if o["heap_needed"] is not None else "n/a"
        print(f"  {name:26} {o['median_ms']:7.2f}ms {o['min_ms']:7.2f}ms {heap:>10} "
              f"{o['mem_peak_delta']:13d} B")
    r = provision_e2e(115200)
    print("## provision end to end on the virtual board at 115200 baud (agent installed)")
    print(f"  provision: {r['seconds']:.2f} s, {r['writes']} block writes, {r['erases']} erases; "
          f"run again (already provisioned, proof of possession): {r['check_seconds']:.2f} s")


if __name__ == "__main__":
    main()
