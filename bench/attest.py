"""Attestation: token size, attest time and heap on the MicroPython unix port, and host
verifications and appraisals per second on one core over a corpus of tokens from several
boards.

Board side: a littlefs2 image holding what a board holds (the compiled agent in /lib/guard
with its digests, a confirmed 3-file app and its manifest, anchors), mounted at `/` in the
unix port; eFuse words of a fresh ESP32 served through a machine stand-in. The heap figure
is the smallest `-X heapsize` (1 KiB steps) under which mount + agent + token completes,
beside the same for mount alone. Host side: tokens signed on the board by BOARDS keys, each
verified (mpguard.attest.verify: signature with the cached key, claims, UEID, nonce,
freshness) and appraised (facts + the default policy) in a loop in this one process.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from mpguard import boards, files, keys, project, unixport
from mpguard.agent import install as agentinstall
from mpguard.agent import package as agentpkg
from mpguard.attest import facts, policy, store, verify
from mpguard.errors import DeviceError
from mpguard.updates import bundle

BOARDS = 4
TOKENS_PER_BOARD = 3
BLOCKS = 96

_FLASH = """
import os, sys, gc, time
class Flash:
    def __init__(self, f, n):
        self.f, self.n = f, n
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
fl = Flash(open(IN["flash"], "r+b"), IN["blocks"])
"""
_MKFS = _FLASH + """
import binascii
os.VfsLfs2.mkfs(fl)
os.umount("/")
os.mount(os.VfsLfs2(fl), "/")
for p, h in IN["files"].items():
    d = ""
    for part in p.split("/")[1:-1]:
        d += "/" + part
        try:
            os.mkdir(d)
        except OSError:
            pass
    with open(p, "wb") as f:
        f.write(binascii.unhexlify(h))
OUT(1)
"""
_MOUNT = _FLASH + """
os.umount("/")
os.mount(os.VfsLfs2(fl), "/")
sys.path[:] = ["/lib"]
import guard.hw as hw
class M:
    class mem32:
        def __getitem__(self, a):
            return 0
    mem32 = mem32()
    def reset_cause(self):
        return 1
hw.use(mach=M())
"""
_TOKEN = """
import guard.attest as A
class W:
    def write(self, s):
        sys.stdout.write(s)
gc.collect()
ms = 0
for nonce in IN["nonces"]:
    sys.stdout.write('\\x1eOUT:"')
    t = time.ticks_ms()
    A.token(nonce, (IN["d"], bytes.fromhex(IN["pub"]), bytes.fromhex(IN["ueid"])), W())
    ms += time.ticks_diff(time.ticks_ms(), t)
    sys.stdout.write('"\\n')
OUT(ms)
"""


def _image(path: Path, agent: dict[str, bytes], key: ec.EllipticCurvePrivateKey) -> None:
    files = dict(agent)
    files["/lib/guard/board.json"] = json.dumps(boards.load_profile("esp32"), sort_keys=True).encode()
    files[agentinstall.DIGESTS] = agentinstall.digests(files)
    files["/mpguard/anchors.json"] = json.dumps(project.anchor_set([keys.public_bytes(key)])).encode()
    app = [("main.py", b"print('app')\n"), ("lib/util.py", b"X = 1\n"), ("data/cfg.json", b"{}")]
    token, _ = bundle.split(bundle.build(app, key, app="demo", version="1.0.0", seq=1,
                                         targets=["esp32"]))
    digest = hashlib.sha256(token).hexdigest()
    files[f"/mpguard/m-{digest[:16]}.jws"] = token
    for p, d in app:
        files[f"/app/a/{p}"] = d
    files["/mpguard/state.json"] = json.dumps({
        "v": 1, "active": "a", "seq": 1, "app": "demo", "ver": "1.0.0", "digest": digest,
        "floor": 0, "max_boots": 3, "trial": None, "last": None}).encode()
    path.write_bytes(b"\xff" * (4096 * BLOCKS))
    unixport.run(_MKFS, {"flash": str(path), "blocks": BLOCKS,
                         "files": {p: d.hex() for p, d in files.items()}}, path=[], heapsize="1M")


def _fits(path: Path, code: str, data: dict, k: int) -> bool:
    try:
        unixport.run(_MOUNT + code, dict(data, flash=str(path), blocks=BLOCKS), path=[],
                     heapsize=f"{k}K")
        return True
    except (DeviceError, ValueError):  # ValueError: the run died with a token half written
        return False


def _smallest(path: Path, code: str, data: dict, lo: int = 8, hi: int = 96) -> int:
    while lo < hi:
        mid = (lo + hi) // 2
        if _fits(path, code, data, mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def main() -> None:
    print("## attestation (token on the unix port, verification on the host)")
    corpus: list[tuple[str, str]] = []
    inv = _Inventory()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        agent = {f"/lib/{m.source.with_suffix('.mpy')}": m.mpy.read_bytes()
                 for m in agentpkg.compile_agent(tmp / "mpy")}
        times = []
        for b in range(BOARDS):
            key = ec.derive_private_key(0x5EED0000 + b, ec.SECP256R1())
            ueid = bytes([2, 0x24, 0x0A, 0xC4, 0, 0, b])
            inv.add(ueid, key)
            img = tmp / f"b{b}.img"
            _image(img, agent, key)
            nonces = [f"bench-nonce-{b:02d}-{i:04d}" for i in range(TOKENS_PER_BOARD)]
            data = {"nonces": nonces, "d": key.private_numbers().private_value,
                    "pub": keys.public_bytes(key).hex(), "ueid": ueid.hex()}
            for nonce in nonces:  # one boot per token, as `mpguard attest` soft-resets first
                res = unixport.run(_MOUNT + _TOKEN, dict(data, nonces=[nonce], flash=str(img),
                                                         blocks=BLOCKS), path=[], heapsize="64K")
                corpus.append((nonce, res.outputs[0]))
                times.append(res.outputs[1])
        one = {"nonces": ["bench-heap-nonce"], "d": 0x5EED0000 + 1, "pub": keys.public_bytes(
            ec.derive_private_key(0x5EED0000 + 1, ec.SECP256R1())).hex(), "ueid": "02240ac4000001"}
        need = _smallest(tmp / "b1.img", _TOKEN, one)
        base = _smallest(tmp / "b1.img", "OUT(1)", one)
    sizes = [len(t) for _, t in corpus]
    print(f"  token size: {min(sizes)}..{max(sizes)} B (JWS compact; {BOARDS} boards)")
    print(f"  token on the unix port: {sum(times) / len(times):.0f} ms each (measure + sign), "
          f"smallest heap {need} KiB (mount and harness alone {base} KiB) under -X heapsize")
    st = store.Store(inv)
    v = verify.Verifier(st, window=1e9)
    pol = policy.load()
    now = time.time()
    for nonce, tok in corpus:  # warm the key cache; every token verifies
        v.verify(tok, nonce, now, now)
    n = 0
    t = time.perf_counter()
    while time.perf_counter() - t < 2.0:
        for nonce, tok in corpus:
            v.verify(tok, nonce, now, now)
        n += len(corpus)
    vps = n / (time.perf_counter() - t)
    evs = [v.verify(tok, nonce, now, now) for nonce, tok in corpus]
    n = 0
    t = time.perf_counter()
    while time.perf_counter() - t < 2.0:
        for ev in evs:
            pol.appraise(facts.derive(ev.claims))
        n += len(evs)
    aps = n / (time.perf_counter() - t)
    # the floor under verify: one ES256 signature check by OpenSSL on this machine, now
    dev = st.device_by_kid(evs[0].kid)
    h, p, s = corpus[0][1].split(".")
    sig = files.b64u_dec(s)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    msg = f"{h}.{p}".encode()
    n = 0
    t = time.perf_counter()
    while time.perf_counter() - t < 1.0:
        dev.public_key.verify(der, msg, ec.ECDSA(hashes.SHA256()))
        n += 1
    raw = n / (time.perf_counter() - t)
    print(f"  host, one core: {vps:,.0f} verifications/s (aim >= 10,000/s; OpenSSL's ES256 "
          f"check alone: {raw:,.0f}/s here); {aps:,.0f} appraisals/s (facts + "
          f"{len(pol.rules)} rules); both: {1 / (1 / vps + 1 / aps):,.0f}/s")


class _Inventory:
    """The devices of the corpus (an in-memory inventory: the bench needs no database)."""

    def __init__(self) -> None:
        self.devs: list[dict] = []

    def add(self, ueid: bytes, key: ec.EllipticCurvePrivateKey) -> None:
        self.devs.append({"ueid": ueid, "public_key": keys.public_bytes(key),
                          "kid": keys.thumbprint(key)})

    def device(self, ueid: bytes) -> dict | None:
        return next((x for x in self.devs if x["ueid"] == bytes(ueid)), None)

    def device_by_thumbprint(self, kid: str) -> dict | None:
        return next((x for x in self.devs if x["kid"] == kid), None)

    def devices(self) -> list[dict]:
        return self.devs


if __name__ == "__main__":
    main()
