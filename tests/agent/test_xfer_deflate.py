"""Compressed bulk transfers (guard.xfer.Z behind guard.rpc.stream's z argument) on the
MicroPython unix port: docs/decisions/0017-transfer-window-and-deflate.md.

The wire is mpguard.xfer.compress(payload), framed and escaped as any transfer; its digest is
checked before the last chunk is inflated, so the consumer never gets the payload's last byte
from a corrupted wire; more or fewer inflated bytes than announced (a decompression bomb, data
after the end) are refused; the board's heap stays small whatever the payload.
"""

from __future__ import annotations

import hashlib
import zlib

import pytest
from pathlib import Path

from agentboard import app
from test_rpc import FAKE, answers

from mpguard import xfer

HEAP = "96K"
ROOT = Path(__file__).resolve().parents[2]
# real code: the agent's and the host's own sources (MicroPython and Python)
CODE = b"".join(p.read_bytes() for p in sorted((ROOT / "agent" / "guard").glob("*.py")))[:40_000]

# a consumer of test.take that reads and drops, measuring the live heap (after a collection)
# that the stream it reads keeps on top of what it held before its first read
LIVE = """
import gc
def take(stream, length, limit):
    buf = bytearray(512)
    gc.collect()
    base = gc.mem_alloc()
    hi = 0
    while stream.readinto(buf):
        gc.collect()
        hi = max(hi, gc.mem_alloc() - base)
    return hi
m.take = take
"""


def _z(name, wire: bytes, length: int, sha: str | None = None, limit=10**7, heap="64K",
       mp=None, tail=b"after", consumer="", ahead=0):
    sha = sha or hashlib.sha256(wire).hexdigest()
    code = FAKE + consumer + (
        f"rpc.stream('test.take', '[{limit}]', {length}, {sha!r}, {len(wire)}, {ahead})\n"
        "sys.stdout.write('\\nREST:' + repr(sys.stdin.buffer.read()) + '\\n')\n")
    return mp.run(code, stdin=xfer.encode(wire) + tail, heapsize=heap)


def _chunk(raw: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -xfer.WBITS)
    z = c.compress(raw) + c.flush()
    return len(z).to_bytes(2, "big") + z


def test_compress_pays_only_when_smaller():
    assert xfer.compress(b"") is None
    import os
    assert xfer.compress(os.urandom(5000)) is None  # random bytes never shrink
    z = xfer.compress(CODE)
    assert z is not None and len(z) < 0.6 * len(CODE)


@pytest.mark.parametrize("ahead", [0, 1], ids=["acks", "ahead"])
def test_compressed_round_trip_with_real_code(mp, ahead):
    wire = xfer.compress(CODE)
    res = _z("ok", wire, len(CODE), mp=mp, ahead=ahead)
    (ans,) = answers(res.stdout)
    assert ans["ok"]["n"] == len(CODE) and ans["ok"]["sha"] == hashlib.sha256(CODE).hexdigest()
    assert res.stdout.count("\x06") == len(xfer.encode(wire)) // xfer.FRAME  # every frame acked
    assert "REST:b'after'" in res.stdout  # nothing read past the wire


def test_heap_does_not_grow_with_size(mp):
    payload = CODE * 8  # 320 KB through a 48 KiB heap (the agent compiled from .py in it too)
    res = _z("big", xfer.compress(payload), len(payload), mp=mp, heap="48K")
    (ans,) = answers(res.stdout)
    assert ans["ok"]["n"] == len(payload), res.stdout[-500:]


def test_live_heap_of_a_compressed_transfer(mp):
    import os
    for payload in (CODE, os.urandom(3000) + CODE):  # a chunk stored, not compressed
        (ans,) = answers(_z("live", xfer.compress(payload), len(payload), mp=mp,
                            consumer=LIVE).stdout)
        # one chunk (1 KiB at most, copied into a BytesIO), the 1 KiB window and the inflate
        # state (~1.4 KiB); measured 4.7 KB with real code, 6.7 KB with a stored chunk
        print(f"live heap of a compressed transfer: {ans['ok']} B")
        assert ans["ok"] < 8 * 1024


def test_escapes_inside_compressed_data(mp):
    payload = (b"\x03\x10" + bytes(range(256))) * 40 + CODE[:3000]
    wire = xfer.compress(payload)
    assert b"\x03" in wire or b"\x10" in wire
    (ans,) = answers(_z("esc", wire, len(payload), mp=mp).stdout)
    assert ans["ok"]["sha"] == hashlib.sha256(payload).hexdigest()


def test_a_corrupted_wire_is_refused_before_the_last_chunk_is_inflated(mp):
    wire = bytearray(xfer.compress(CODE))
    wire[len(wire) // 2] ^= 0x40
    res = _z("bad", bytes(wire), len(CODE), sha=hashlib.sha256(xfer.compress(CODE)).hexdigest(),
             mp=mp)
    (ans,) = answers(res.stdout)
    # a flipped bit either breaks the deflate data (xfer_format) or is caught by the digest
    # when the last chunk has been read, before any of it is inflated (xfer_hash)
    assert ans["err"][0] in ("xfer_hash", "xfer_format"), ans


def test_a_corrupted_last_chunk_hands_out_nothing_of_it(mp):
    good = xfer.compress(CODE)
    wire = bytearray(good)
    wire[-3] ^= 0x01
    # limit: the function refuses if it ever sees more than the chunks before the last one
    last = len(CODE) - (len(CODE) - 1) // xfer.ZCHUNK * xfer.ZCHUNK
    res = _z("last", bytes(wire), len(CODE), sha=hashlib.sha256(good).hexdigest(),
             limit=len(CODE) - last, mp=mp)
    assert answers(res.stdout) == [{"err": ["xfer_hash", None]}]


def test_a_bomb_is_refused_after_the_announced_length(mp):
    # one chunk inflating to ~1 MB, announced as 1001 bytes, through a 48 KiB heap (the
    # consumer reads 100 bytes at a time and refuses, too_large, if it is ever handed more
    # than the 1001 bytes)
    bomb = _chunk(bytes(1_000_000))
    assert len(bomb) <= xfer.ZMAX
    res = _z("bomb", bomb, 1001, mp=mp, heap="48K", limit=1001)
    assert answers(res.stdout) == [{"err": ["xfer_size", None]}]


def test_more_or_less_than_announced_is_refused(mp):
    payload = CODE[:5000]
    wire = xfer.compress(payload)
    assert answers(_z("more", wire, len(payload) - 1, mp=mp).stdout) == [
        {"err": ["xfer_size", None]}]
    res = _z("less", wire, len(payload) + 1, mp=mp)
    assert answers(res.stdout) == [{"err": ["xfer_size", None]}]


def test_wire_bytes_after_the_end_are_refused(mp):
    payload = CODE[:5000]
    wire = xfer.compress(payload) + _chunk(b"extra")
    # the host sent everything: no abort frame comes, the Reader's drain times out quietly
    res = _z("extra", wire, len(payload), mp=mp)
    assert answers(res.stdout) == [{"err": ["xfer_size", None]}]


def test_bad_chunks_are_format_errors(mp):
    # a chunk longer than ZMAX is refused before its buffer is allocated (the most two bytes
    # can say, 64 KiB - 1, is more than the board's whole heap); a chunk the wire cuts short
    # is refused, never inflated with what its buffer held (a stored block of zeros would
    # inflate to the announced bytes)
    too_long = (xfer.ZMAX + 1).to_bytes(2, "big") + bytes(xfer.ZMAX + 1)
    most = (0xFFFF).to_bytes(2, "big") + bytes(100)
    garbage = (5).to_bytes(2, "big") + b"\xff" * 5
    c = zlib.compressobj(0, zlib.DEFLATED, -xfer.WBITS)
    stored = c.compress(bytes(100)) + c.flush()
    cut = len(stored).to_bytes(2, "big") + stored[:-50]
    for wire in (too_long, most, garbage, cut):
        res = _z("fmt", wire, 100, mp=mp, tail=xfer.ABORT_FRAME + b"next")
        assert answers(res.stdout) == [{"err": ["xfer_format", None]}], res.stdout[-300:]


# -- the install behind it -----------------------------------------------------------------

INSTALL = """
from guard import xfer
class Acks:  # the acks go nowhere
    def write(self, b):
        pass
r = xfer.Reader({wl}, {sha!r}, inp=STREAMS[0], out=Acks())
before = [snap('/app/a'), snap('/mpguard')]
res = I.install(xfer.Z(r, {n}), {n})
OUT([res, [snap('/app/a'), snap('/mpguard')] == before, app_files('b')])
"""


def _offer(fboard, bundle: bytes, corrupt: bool):
    good = xfer.compress(bundle)
    assert good is not None
    wire = bytearray(good)
    if corrupt:
        wire[-10] ^= 0x04
    code = INSTALL.format(wl=len(wire), sha=hashlib.sha256(good).hexdigest(), n=len(bundle))
    return fboard.run(code, [xfer.encode(bytes(wire))], heapsize=HEAP).out


def test_install_of_a_compressed_bundle(fboard, signer):
    b1 = signer.bundle(app("1.0", extra=6000), seq=1)
    res, _, _ = _offer(fboard, b1, corrupt=False)
    assert res["status"] == "installed", res
    assert "CONFIRMED True" in fboard.run("boot()").stdout


def test_a_corrupted_compressed_bundle_installs_nothing(fboard, signer):
    assert fboard.out("OUT(install(0))", [signer.bundle(app("1.0"), seq=1)])["status"] == "installed"
    assert "CONFIRMED True" in fboard.run("boot()").stdout
    b2 = signer.bundle(app("2.0", extra=6000), seq=2)
    res, kept, slot_b = _offer(fboard, b2, corrupt=True)
    assert res["status"] == "refused" and res["reason"] in ("xfer_hash", "xfer_format"), res
    assert kept and slot_b is None  # the running app and the state as they were

