"""A board for identity tests (a helper module, not tests): the compiled agent on the
MicroPython unix port over a real littlefs2 flash image whose block writes can be cut, with
guard.hw's backend giving the chip's unique id and the board profile.

Certificates are issued by the host's own CA code (mpguard.identity.ca), so what the board
accepts is what `mpguard provision` gives it; tests check it with `cryptography`/openssl.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from mpguard.agent import package as agentpkg
from mpguard.identity import ca as device_ca

AGENT_SRC = Path(__file__).resolve().parents[2] / "agent"
BS = 4096
# The harness imports every module an identity test may touch before `/` becomes the board's
# flash (BOARD_MODULE below), so all of them sit on the heap at once, which the agent never
# does (it loads and unloads per call). 64K held them until the update path grew three
# modules; the per-operation heap is measured by bench/identity.py and the provisioning e2e
# tests run on the virtual board's 64 KiB profile.
HEAP = "80K"

# Device side, compiled to _idb.mpy. Everything the agent imports lazily is imported before
# `/` becomes the board's flash (the host's files are out of reach after that).
BOARD_MODULE = r"""
import os, hashlib
from binascii import hexlify, unhexlify
import guard, guard.hw as hw, guard.asn1, guard.mac, guard.ec, guard.p256, guard.jws
import guard.identity as I

class Cut(Exception):
    pass

class Flash:
    # Block device over a file; counts block writes; from write number `cut` on, power is off.
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
        if self.cut is not None and self.writes + 1 >= self.cut:
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
    def board(self):
        return IN.get("profile") or {"kind": "sim", "ueid": "eui"}
    def unique_id(self):
        return unhexlify(IN.get("uid") or "240ac4010203")

FL = None
IN = {}

R = None
A = None

def setup(data):
    global IN, FL, R, A
    IN = data
    if IN.get("rot"):  # credential rotation tests: guard.rotate, guard.anchors, the install path
        import guard.rotate as R
        import guard.anchors as A
        for m in ("state", "bundle", "install", "manifest", "slots", "boot", "pin") + (("posture",) if IN.get("pos") else ()):
            try:
                __import__("guard." + m)
            except ImportError:
                pass
    hw.use(sim=Hw())
    FL = Flash(IN["flash"], IN["blocks"])
    if IN.get("mkfs"):
        os.VfsLfs2.mkfs(FL)
    try:
        os.umount("/")
    except OSError:
        pass
    os.mount(os.VfsLfs2(FL), "/")
    os.chdir("/")

def files():
    # {path: hex SHA-256} of every file under /mpguard: the identity's records
    out = {}
    try:
        names = os.listdir("/mpguard")
    except OSError:
        return out
    for n in names:
        with open("/mpguard/" + n, "rb") as f:
            out[n] = hexlify(hashlib.sha256(f.read()).digest()).decode()
    return out

def raw(name):
    # a record's bytes, hex (test-only: how a test learns the key it must never find)
    with open("/mpguard/" + name, "rb") as f:
        return hexlify(f.read()).decode()

def attempt(fn, *a):
    # [result, None] or [None, GuardError reason]
    try:
        return [fn(*a), None]
    except guard.GuardError as e:
        return [None, e.args[0]]
"""

PRELUDE = "import _idb\n_idb.setup(IN)\nfrom _idb import *\n"


def compile_board(out: Path) -> Path:
    agentpkg.compile_agent(out)
    src = out / "_idb.py"
    src.write_text(BOARD_MODULE)
    subprocess.run([agentpkg.mpy_cross_path(), "-o", str(out / "_idb.mpy"), str(src)], check=True)
    src.unlink()
    return out


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class IdBoard:
    """A flash image plus helpers to run device code on it (each run is one boot)."""

    def __init__(self, mp, agent: Path, path: Path, blocks: int = 64, uid: str = "240ac4010203",
                 profile: dict | None = None):
        self.mp = mp
        self.agent = agent
        self.path = path
        self.blocks = blocks
        self.uid = uid
        self.profile = profile
        self.formatted = False
        path.write_bytes(b"\xff" * (BS * blocks))

    def run(self, code: str, heapsize: str = HEAP, **data):
        data.update(flash=str(self.path), blocks=self.blocks, mkfs=not self.formatted,
                    uid=self.uid, profile=self.profile)
        self.formatted = True
        return self.mp.run(PRELUDE + code, data, path=[self.agent], heapsize=heapsize)

    def out(self, code: str, **data):
        return self.run(code, **data).out

    def twin(self, path: Path) -> IdBoard:
        """A board like this one on an image file of its own (whose content the caller sets):
        for the cut points of a sweep run at once (cuts.py)."""
        b = IdBoard(self.mp, self.agent, path, self.blocks, self.uid, self.profile)
        b.formatted = self.formatted
        return b

    def files(self) -> dict:
        return self.out("OUT(files())")

    def status(self) -> dict:
        return self.out("OUT(I.status())")


class HostCA:
    """A project folder holding a device CA made by the host's code (key unencrypted)."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        device_ca.create(root, None)
        self.root = root
        self.ca = device_ca.DeviceCA(root, None)

    def issue(self, pub65: bytes, ueid: str, **kw) -> bytes:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub65)
        return self.ca.issue(key, ueid, **kw).public_bytes(serialization.Encoding.DER)
