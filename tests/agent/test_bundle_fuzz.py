"""Fuzz: mutated bundles through the board's parser and installer on MicroPython.

Seeded mutations of a good bundle: truncation (also a stream shorter than announced), bit
flips, header length fields, payload bytes, and JSON edits of the manifest that are then
signed again with the trusted key (so they reach the field checks, not just the signature).
Every case must end in a clean result: a refusal with a known reason and the board's files
byte for byte unchanged, or (a JSON edit that is still valid) a complete install, after
which the board is restored. Never an uncaught exception, never a partial install.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct

from agentboard import KIND, app

from mpguard import jose, reasons
from mpguard.updates import bundle

SEQ = 5
CASES = 300
SEED = 20261125

NASTY = ["", "/", "..", "a/../b", "/etc/passwd", "guard/x.py", "lib/guard/y.py", "a//b",
         "é", "a\\b", "x" * 70, ".hidden", "a/b/c/d/e", "main.py", "lib", None, 7, [], {}]
VALUES = [None, -1, 0, 1, 2**53, 2**64, 1.5, True, "", "x", "9.9.9", [], {}, ["sim"], [[]],
          "x" * 40]

KNOWN = set(reasons.REASONS)

FUZZ = """
class Window:
    # readinto over one bundle inside the concatenated file
    def __init__(self, f, off, n):
        self.f, self.off, self.left = f, off, n
    def readinto(self, buf):
        k = min(len(buf), self.left)
        if not k:
            return 0
        self.f.seek(self.off)
        k = self.f.readinto(memoryview(buf)[:k])
        self.off += k
        self.left -= k
        return k

RB = bytearray(512)

def restore():
    # copy the pristine image back and mount it afresh
    os.umount("/")
    for i in range(IN["blocks"] * 8):
        STREAMS[1].seek(i * 512)
        STREAMS[1].readinto(RB)
        FL.f.seek(i * 512)
        FL.f.write(RB)
    mount()

src = STREAMS[0]
before = snap()
out = []
for off, real, told in IN["cases"]:
    r = I.install(Window(src, off, real), told)
    if r["status"] == "installed":
        out.append([r["status"], r.get("slot"), app_files(r["slot"])])
        restore()
    else:
        out.append([r["status"], r["reason"], snap() == before])
    OUT(out.pop())  # one line per case: the harness keeps nothing
    gc.collect()
"""


def _flip(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 3)):
        i = rnd.randrange(len(b))
        b[i] ^= 1 << rnd.randrange(8)
    return bytes(b)


def _json_edit(m: dict, rnd: random.Random) -> dict:
    m = json.loads(json.dumps(m))
    what = rnd.randrange(7)
    if what == 0:
        m.pop(rnd.choice(sorted(m)))
    elif what == 1:
        m[rnd.choice(sorted(m) + ["exp", "remove", "confirm", "zzz"])] = rnd.choice(VALUES)
    elif what == 2:
        f = rnd.choice(m["files"])
        f[rnd.randrange(3)] = rnd.choice(NASTY + VALUES)
    elif what == 3:
        f = rnd.choice(m["files"])
        f[1] += rnd.choice([-1, 1, 4096])
    elif what == 4:
        rnd.shuffle(m["files"])
        m["files"].append(list(rnd.choice(m["files"])))
    elif what == 5:
        m["files"][0][0] = rnd.choice([p for p in NASTY if isinstance(p, str)])
    else:
        m["remove"] = [rnd.choice(NASTY)]
    return m


def _cases(signer) -> list[tuple[str, bytes, int]]:
    """(kind, bundle bytes, announced length) for every mutation."""
    rnd = random.Random(SEED)
    files = app("2.0", extra=700)
    blobs = [d for _, d in files]
    good = signer.bundle(files, seq=SEQ + 1, issued_at=1_700_000_000)
    token, payload = bundle.split(good)
    m = json.loads(jose.b64u_dec(token.split(b".")[1]))
    out = []
    while len(out) < CASES:
        kind = rnd.choice(["truncate", "short stream", "flip", "length", "payload", "json",
                           "json text"])
        if kind == "truncate":
            b = good[: rnd.randrange(len(good))]
            out.append((kind, b, len(b)))
        elif kind == "short stream":
            out.append((kind, good[: rnd.randrange(len(good))], len(good)))
        elif kind == "flip":
            b = _flip(good, rnd)
            out.append((kind, b, len(b)))
        elif kind == "length":
            n = rnd.choice([0, 1, len(token) - 1, len(token) + 1, 0xFFFF, rnd.randrange(65536)])
            b = good[:6] + struct.pack(">H", n) + good[8:]
            out.append((kind, b, len(b)))
        elif kind == "payload":
            b = good[: len(good) - len(payload)] + _flip(payload, rnd)
            out.append((kind, b, len(b)))
        elif kind == "json":
            e = _json_edit(m, rnd)
            raw = json.dumps(e, separators=(",", ":")).encode()
            b = bundle.assemble(jose.sign(raw, signer.key), blobs)
            out.append((kind, b, len(b)))
        else:
            raw = bytearray(json.dumps(m, separators=(",", ":")).encode())
            i = rnd.randrange(len(raw))
            if rnd.random() < 0.5:
                del raw[i]
            else:
                raw[i:i] = bytes([rnd.choice(b'{}[]",:0-9ae\\')])
            b = bundle.assemble(jose.sign(bytes(raw), signer.key), blobs)
            out.append((kind, b, len(b)))
    return out


def test_fuzzed_bundles_are_refused_cleanly(fboard, signer):
    assert fboard.out("OUT(install(0))", [signer.bundle(app("1.0"), seq=SEQ)])["status"] \
        == "installed"
    assert "CONFIRMED True" in fboard.run("boot()").stdout
    cases = _cases(signer)
    # every file a complete install can hold: the new app's, or one carried over from 1.0
    allowed = {hashlib.sha256(d).hexdigest() for _, d in app("2.0", extra=700) + app("1.0")}
    blob, index, off = bytearray(), [], 0
    for _, b, told in cases:
        index.append([off, len(b), told])
        blob += b
        off += len(b)
    pristine = fboard.path.read_bytes()
    # 112K: the harness also holds the case index of all the mutations in this one process,
    # and _board preloads every module an install may load (guard.pin the latest)
    results = fboard.run(FUZZ, [bytes(blob), pristine], cases=index, blocks=fboard.blocks,
                         heapsize="112K").outputs
    assert len(results) == len(cases)
    kinds: dict[str, int] = {}
    installed = 0
    for (kind, b, _), (status, what, detail) in zip(cases, results, strict=True):
        kinds[kind] = kinds.get(kind, 0) + 1
        if status == "refused":
            assert what in KNOWN and what not in ("no_memory", "internal"), (kind, what, b[:600])
            assert detail is True, f"{kind}: refused ({what}) but the board's files changed"
        else:
            # still a valid bundle after the edit: it must be installed completely. (The
            # board's JSON parser is more lenient than CPython's: a "json text" edit may be
            # refused by the host yet read by the board; see docs/decisions/0005-bundle.md.)
            assert status == "installed", (kind, status)
            assert all(h in allowed for h in detail.values()), (kind, detail)
            tok, _ = bundle.split(b)
            try:
                mm = json.loads(jose.b64u_dec(tok.split(b".")[1]))
            except ValueError:
                mm = None
            if mm is not None:
                want = {p: h for p, _, h in mm["files"]}
                assert {p: h for p, h in detail.items() if p in want} == want
            installed += 1
    print(f"\nfuzz: {len(cases)} mutated bundles {kinds}; {installed} still valid and "
          f"installed completely, the rest refused cleanly")
