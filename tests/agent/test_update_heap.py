"""Heap of an install on MicroPython: fits 64K, and its peak does not grow with the bundle.

The heap an operation needs is measured as the smallest `-X heapsize` (bisected, 256-byte
steps) under which a bare board script (flash block device, agent imported, anchors in
place) completes it. Allocation in MicroPython is deterministic, so these figures are too;
no clock is involved. bench/update.py prints the same figures for 64 KiB and 1 MiB bundles.
"""

from __future__ import annotations

from pathlib import Path

from test_update_board import (  # noqa: F401  (fixtures)
    BS,
    agent_mpy,
    app,
    signer,
)

from mpguard import unixport
from mpguard.errors import DeviceError

BUDGET = 24 * 1024  # docs/architecture.md 7: agent heap peak for any operation

# The smallest board: a littlefs2 flash, the agent, a board kind. Nothing else on the heap.
BARE = """
import os, gc
import guard.update as U, guard.hw as hw, guard.jws, guard.bundle
class Flash:
    def __init__(self, f, n):
        self.f = f
        self.n = n
    def readblocks(self, b, buf, off=0):
        self.f.seek(b * 4096 + off)
        self.f.readinto(buf)
    def writeblocks(self, b, buf, off=0):
        self.f.seek(b * 4096 + off)
        self.f.write(buf)
    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return 4096
        if op == 6:
            self.f.seek(arg * 4096)
            for i in range(8):
                self.f.write(b"\\xff" * 512)
        return 0
class Hw:
    def board(self):
        return {"kind": "sim"}
hw.use(sim=Hw())
fl = Flash(open(IN["flash"], "r+b"), IN["blocks"])
src = open(IN["bundle"], "rb") if IN["bundle"] else None
os.VfsLfs2.mkfs(fl)
os.umount("/")
os.mount(os.VfsLfs2(fl), "/")
os.mkdir("/mpguard")
with open("/mpguard/anchors.json", "w") as f:
    f.write(IN["anchors"])
IN = None
gc.collect()
if src:
    src.seek(0, 2)
    n = src.tell()
    src.seek(0)
    r = U.install(src, n)
    if r["status"] != "installed":
        raise ValueError(r["reason"])
OUT(gc.mem_free() + gc.mem_alloc())
"""


def _fits(agent_mpy: Path, tmp: Path, heap: int, bundle: Path | None, anchors: str,
          blocks: int) -> bool:
    img = tmp / "heap.img"
    img.write_bytes(b"\xff" * (BS * blocks))
    data = {"flash": str(img), "blocks": blocks, "bundle": str(bundle) if bundle else None,
            "anchors": anchors}
    try:
        unixport.run(BARE, data, path=[agent_mpy], heapsize=str(heap))
        return True
    except DeviceError as e:
        if e.exc_type != "MemoryError":
            raise
        return False


def min_heap(agent_mpy: Path, tmp: Path, bundle: Path | None, anchors: str,
             blocks: int = 128, lo: int = 16 * 1024, hi: int = 128 * 1024) -> int:
    """Smallest heap (bytes, 256-byte steps) in which the bare board completes."""
    assert _fits(agent_mpy, tmp, hi, bundle, anchors, blocks)
    while hi - lo > 256:
        mid = (lo + hi) // 2 // 256 * 256
        if _fits(agent_mpy, tmp, mid, bundle, anchors, blocks):
            hi = mid
        else:
            lo = mid
    return hi


def test_install_heap_fits_64k_and_is_independent_of_bundle_size(agent_mpy, tmp_path, signer):
    idle = min_heap(agent_mpy, tmp_path, None, signer.anchor_json)
    sizes = {}
    for extra in (16 * 1024, 256 * 1024):
        b = tmp_path / f"b{extra}"
        b.write_bytes(signer.bundle(app("1.0", extra=extra), seq=1))
        sizes[extra] = min_heap(agent_mpy, tmp_path, b, signer.anchor_json, blocks=128)
    print(f"\nheap: agent idle {idle} B; install of 16 KiB {sizes[16 * 1024]} B, "
          f"of 256 KiB {sizes[256 * 1024]} B")
    for need in sizes.values():
        assert need <= 64 * 1024  # every operation runs under -X heapsize=64K
        assert need - idle <= BUDGET
    # 16x the payload (240 KiB more), the same heap: within 1 KiB, the jitter of where the
    # allocator's fragments fall (littlefs's own block buffers come and go with the files)
    assert abs(sizes[256 * 1024] - sizes[16 * 1024]) <= 1024


def test_largest_manifest_installs_in_64k(agent_mpy, tmp_path, signer):
    # As many files as fit the 4 KiB manifest limit: the largest allocation of an install
    from mpguard.errors import BundleError

    files = [("main.py", b"print(1)\n")]
    data = signer.bundle(files, seq=1)
    for i in range(40):
        try:
            bigger = signer.bundle(files + [(f"lib/m{i:02d}.py", b"x = %d\n" % i)], seq=1)
        except BundleError as e:
            assert e.reason in ("too_large", "too_many_files")
            break
        files.append((f"lib/m{i:02d}.py", b"x = %d\n" % i))
        data = bigger
    b = tmp_path / "wide"
    b.write_bytes(data)
    need = min_heap(agent_mpy, tmp_path, b, signer.anchor_json)
    print(f"\nheap: install of a {len(files)}-file bundle ({len(data)} B, the manifest at its "
          f"limit): {need} B")
    assert len(data) > 3800
    assert need <= 64 * 1024
